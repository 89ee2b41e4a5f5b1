"""Parameters of :func:`ParaspinalSegLib.segment.segment`, one group per stage of the segmenter.

Defaults are the validated ones (docs/segmentation.md has the experiments behind each and the numbers);
lengths are in mm so that they mean the same anatomy at any voxel size, except where a voxel count is the
point (smoothing, opening, the partial-volume rim).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class InputParams:
    """What a click marks and how far around the clicks the segmenter looks."""

    smoothing_px: float = 0.7  # in-plane Gaussian on the signals (noise would otherwise steer the growth)
    seed_radius_mm: float = 2.0  # a click marks a disc of this radius (painted seeds: the voxel itself)
    margin_mm: float = 45.0  # region of interest: the clicks' bounding box plus this (every muscle's reach)


@dataclass
class CompetitorParams:
    """Competing seeds: tissue that is certainly not one of the clicked muscles."""

    fat_threshold: float = 0.7  # FF (single image: fat-likeness) above which a voxel is fat
    dark_fraction: float = 0.4  # signal below this × the muscle's is a void (bone, ligament, air)
    # without psoas/QL clicks nothing competes for the muscle in front of the transverse processes: tissue
    # this far anterior of the most anterior multifidus/erector click is background (0 = off)
    anterior_limit_mm: float = 25.0
    # priors.mark_anterolateral: in front of and lateral to the erector, beyond factor × its inscribed radius
    # from its deepest point (searched within search_mm of the click); only without psoas/QL clicks; 0 = off
    anterolateral_factor: float = 1.25
    anterolateral_search_mm: float = 8.0
    extent_scale: float = 1.0  # × priors.DEFAULT_EXTENT_MM (a muscle's in-plane reach from a click); 0 = off


@dataclass
class MidlineParams:
    """The left/right barrier along the spinous process and the multifidus' medial margin (priors.py)."""

    search_mm: float = 8.0  # the path stays within this of the midpoint between the multifidus clicks
    rows_mm: float = 25.0  # ... over the paraspinal clicks' rows ± this (a muscle's depth)
    # multifidus voxels closer than margin_mm to the path that are not clearly muscle (|water/ref − 1| + FF
    # above margin_nonmuscle: interspinous ligament / lamina tissue) are removed (0 = off)
    margin_mm: float = 2.5
    margin_nonmuscle: float = 0.3


@dataclass
class GrowthParams:
    """Step cost of the shortest-path growth (growcut.edge_graph)."""

    eps_per_mm: float = 0.04  # cost per mm travelled: bounds the growth where no edge shows
    diff_weight: float = 1.0  # × |Δ water| + |Δ fat| + |Δ FF| (signals relative to the muscle's)
    ridge_weight: float = 10.0  # × the fat image's bright-line strength above ridge_floor (fascia)
    ridge_sigma_px: float = 1.0
    ridge_floor: float = 0.2


@dataclass
class SplitParams:
    """Multifidus / erector spinae split of one side's grown mass (split.py)."""

    ridge_weight: float = 30.0  # geodesic cost of the fascia ridge
    eps_per_mm: float = 0.05
    # size of each muscle: deepest point within radius_away_mm of its clicks, advancing at most
    # radius_toward_mm towards the other muscle (split.muscle_radii)
    radius_away_mm: float = 8.0
    radius_toward_mm: float = 5.0
    # per-slice seam along the fascia within refine_band_mm of the geodesic boundary (0 = off); cost
    # −(line strength + refine_contrast × FF contrast across it) + refine_prior × |offset| / band,
    # line strength (σ refine_sigma_px) averaged over refine_slices slices
    refine_band_mm: float = 8.0
    refine_sigma_px: float = 1.5
    refine_prior: float = 0.02
    refine_contrast: float = 0.3
    refine_slices: int = 3


@dataclass
class FrontParams:
    """The erector's anterior fascia (priors.clip_erector_front; only without psoas/QL clicks)."""

    # prior line factor × the erector's inscribed radius in front of its deepest point, slope mm backwards
    # per mm laterally, re-drawn along the fat ridge within band_mm (0 = the line itself); factor 0 = off
    factor: float = 1.0
    slope: float = 0.3
    band_mm: float = 4.0
    pull: float = 0.02


@dataclass
class ShapeParams:
    """Per-slice regularisation and the partial-volume rim (shape.py)."""

    open_radius_px: float = 1.0  # opening cuts thin necks before the seeded component is kept
    rim_px: int = 2  # the rim grows at most this many voxels
    rim_min_fraction: float = 0.5  # muscle volume fraction a rim voxel needs (0.5: the partial-volume CSA)


@dataclass
class CompartmentParams:
    """The fat-aware pass (compartment.py) for multifidus and erector spinae whose lean segmentation stopped at
    intramuscular fat."""

    # the fat-aware result replaces the lean one for a growth group it makes this much larger (the lean pass
    # stopped at intramuscular fat); 0 = no fat-aware pass
    min_gain: float = 0.25
    envelope_mm: float = 3.0  # closing radius of each structure's envelope (bridges streaks and small bays)
    # a fascia line (thin tissue between intramuscular and outside fat) is closed over gaps of up to 2 x this;
    # 0 = fat is intramuscular only where tissue encloses it completely
    fascia_gap_px: int = 3
    fill_sigma_px: float = 3.0  # intramuscular fat takes the mean signal of the muscle within this (Gaussian)


@dataclass
class SegmentParams:
    """All parameters of :func:`~ParaspinalSegLib.segment.segment`, grouped by stage."""

    inputs: InputParams = field(default_factory=InputParams)
    competitors: CompetitorParams = field(default_factory=CompetitorParams)
    midline: MidlineParams = field(default_factory=MidlineParams)
    growth: GrowthParams = field(default_factory=GrowthParams)
    split: SplitParams = field(default_factory=SplitParams)
    front: FrontParams = field(default_factory=FrontParams)
    shape: ShapeParams = field(default_factory=ShapeParams)
    compartment: CompartmentParams = field(default_factory=CompartmentParams)


__all__ = [
    "CompartmentParams",
    "CompetitorParams",
    "FrontParams",
    "GrowthParams",
    "InputParams",
    "MidlineParams",
    "SegmentParams",
    "ShapeParams",
    "SplitParams",
]
