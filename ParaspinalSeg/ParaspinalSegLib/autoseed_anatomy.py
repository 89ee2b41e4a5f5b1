"""Anatomy for the automatic seed proposal: tissue maps, body, midline, paraspinal masses, spinal canal.

All geometry is in mm (anatomy-relative), so it does not depend on the voxel grid; see
:mod:`ParaspinalSegLib.autoseed` for the method and the public API.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import SimpleITK as sitk
from scipy import ndimage as ndi

from ParaspinalLBPCore.errors import BadInputError
from ParaspinalSegLib.contrast import require_supported
from ParaspinalSegLib.io import check_finite, check_volume, match_grid, same_grid_problems


@dataclass
class AutoSeedParams:
    """Anatomy-relative geometry (mm) and tissue thresholds; generic adult lumbar values, not one case's."""

    smooth_mm: float = 1.0
    local_fat_mm: float = 40.0  # single images: fat reference taken within this radius (coil shading)
    lean_max_ff: float = 0.45
    open_mm: float = 2.0
    mass_open_mm: float = 5.0
    close_mm: float = 2.5
    midline_cut_mm: float = 1.5
    midline_search_frac: float = 0.15
    entry_offsets_mm: tuple[float, ...] = (15.0, 20.0, 25.0, 30.0, 35.0, 40.0, 45.0, 50.0)
    entry_depth_mm: float = 90.0
    max_lateral_mm: float = 110.0  # erector spinae ends ≤ ~90 mm from the midline
    median_mm: float = 2.5  # median filter radius: fat streaks inside a fatty muscle do not split it
    similar_range: tuple[float, float] = (0.6, 1.5)  # × the back muscles' signal at their surface
    shell_depth_mm: float = 60.0  # thickest multifidus + erector spinae (front to back) in adults ≈ 55 mm
    canal_sigma_mm: float = 3.5
    canal_window_mm: tuple[float, float] = (35.0, 5.0)  # in front of / behind the masses' medial front
    mf_band: tuple[float, float] = (0.0, 0.22)  # fraction of the mass's lateral extent
    behind_canal_mm: float = 8.0
    es_band: tuple[float, float] = (0.55, 1.0)
    psoas_offset_mm: tuple[float, float] = (20.0, 85.0)
    psoas_depth_mm: tuple[float, float] = (15.0, 75.0)  # in front of the canal centre
    # typical psoas centre in front of the canal / beside the midline, as a fraction of the back muscles'
    # lateral extent (body size): measured 0.35–0.6 / 0.4–0.65 on the phantom and MuscleMap
    psoas_expected: tuple[float, float] = (0.4, 0.5)
    psoas_min_depth_mm: float = 4.0  # inscribed radius: even at L1 the psoas is ≥ ~10 mm across
    ql_depth_mm: tuple[float, float] = (-15.0, 35.0)
    local_radius_mm: float = 12.0
    fascia_climb: bool = False  # tried: fewer seeds inside on TUM01 (13/16 vs 16/16), no Dice gain
    fascia_sigma_mm: float = 1.0
    fascia_margin_mm: float = 3.0
    fascia_min_fraction: float = 0.08  # share of a 4 mm column band of the mass lying on fat lines
    fascia_search_mm: tuple[float, float] = (16.0, 0.5)  # from 16 mm to half the mass's width
    fascia_ridge: float = 0.025  # fat-line strength (fatness units) that counts as a fascia
    min_interior_mm: float = 2.0
    slab_mm: float = 36.0  # one lumbar level, used to space seeded slices when no levels are given


@dataclass
class TissueMaps:
    reference: sitk.Image
    dixon: bool
    signal: np.ndarray  # smoothed signal for body / canal
    lean: np.ndarray  # bool, muscle-like
    fatness: np.ndarray  # 0 (lean) .. 1 (fat)
    canal_img: np.ndarray  # image in which CSF is a blob
    canal_sign: float  # +1: CSF bright; 0: either sign
    spacing: tuple[float, float]  # (sy, sx) mm
    fat_ref: float  # signal of fat in canal_img (inf for Dixon water)
    notes: list[str]


def prepare_maps(image_or_dixon, assume_same_grid: bool, p: AutoSeedParams) -> TissueMaps:
    """Validate the input(s) (axial, 3D, finite, one grid) and compute the smoothed tissue maps."""
    notes: list[str] = []
    if isinstance(image_or_dixon, sitk.Image):
        ref = check_volume(image_or_dixon, "image")
        arrs = {"image": check_finite(sitk.GetArrayFromImage(ref), "image")}
    elif isinstance(image_or_dixon, Mapping):
        missing = [k for k in ("water", "fat") if image_or_dixon.get(k) is None]
        if missing:
            raise BadInputError(f"Dixon input needs 'water' and 'fat' images; missing {missing}")
        ref = check_volume(image_or_dixon["fat"], "fat image")
        water = check_volume(image_or_dixon["water"], "water image")
        problems = same_grid_problems(water, ref)
        if problems:
            water = match_grid(water, ref, "water image", "fat image", assume_same_grid)
            notes.append(
                "water image grid differs from the fat image ("
                + "; ".join(problems)
                + "); assumed same voxels"
            )
        arrs = {
            "water": check_finite(sitk.GetArrayFromImage(water), "water image"),
            "fat": check_finite(sitk.GetArrayFromImage(ref), "fat image"),
        }
    else:
        raise BadInputError("input must be a sitk.Image (T1/T2) or a Dixon pair {'water': img, 'fat': img}")
    sx, sy = ref.GetSpacing()[:2]
    verdict = require_supported(arrs.get("image"), water=arrs.get("water"), fat=arrs.get("fat"),
                                spacing_ji=(sy, sx), what="image" if "image" in arrs else "water/fat images")  # fmt: skip
    if verdict.finding == "inconclusive":
        notes.append(f"contrast check: {verdict.reason}")
    sig = (0.0, p.smooth_mm / sy, p.smooth_mm / sx)
    sm = {k: ndi.gaussian_filter(v.astype(np.float32), sig) for k, v in arrs.items()}
    if "water" in sm:
        w, f = np.maximum(sm["water"], 0), np.maximum(sm["fat"], 0)
        signal = w + f
        _check_not_constant(signal, "water + fat")
        body = _body(signal)
        fatness = np.where(signal > 0, f / np.maximum(signal, 1e-6), 1.0)
        lean_ref = float(np.median(signal[body & (fatness < 0.3)])) if np.any(body & (fatness < 0.3)) else 0.0
        lean = body & (fatness < p.lean_max_ff) & (signal > 0.3 * lean_ref)
        return TissueMaps(ref, True, signal, lean, fatness, w, 1.0, (sy, sx), float("inf"), notes)
    img = sm["image"]
    _check_not_constant(img, "image")
    body = _body(img)
    vals = img[body]
    split = _otsu(vals)
    fat_ref = float(np.percentile(vals[vals > split], 90)) if np.any(vals > split) else split
    fatness = np.clip(img / max(fat_ref, 1e-6), 0, 1)
    lean = body & (img < split)
    if p.local_fat_mm > 0:
        # coil shading (fat near the posterior coil far brighter than elsewhere) defeats a global split:
        # compare each voxel with the brightest fat within local_fat_mm instead
        local = _local_fat(img, body, p.local_fat_mm, (sy, sx))
        rel = np.where(body, img / np.maximum(local, 1e-6), 1.0)
        fatness = np.clip(rel, 0, 1).astype(np.float32)
        rsplit = _otsu(rel[body])
        lean = body & (rel < rsplit)
        notes.append(f"single image: muscle/fat split at {rsplit:.3f} of the local fat signal")
    else:
        notes.append(f"single image: muscle/fat split at {split:.4g} (fat reference {fat_ref:.4g})")
    return TissueMaps(ref, False, img, lean, fatness, img, 0.0, (sy, sx), fat_ref, notes)


def _local_fat(
    img: np.ndarray, body: np.ndarray, radius_mm: float, spacing: tuple[float, float]
) -> np.ndarray:
    """Per slice, a smooth map of the fat signal: the 95th percentile within ``radius_mm`` (coarse grid)."""
    out = np.empty_like(img, dtype=np.float32)
    step = max(1, round(radius_mm / 4.0 / min(spacing)))  # work on a grid ~4× coarser than the radius
    size = (
        max(3, round(2 * radius_mm / spacing[0] / step)),
        max(3, round(2 * radius_mm / spacing[1] / step)),
    )
    for k in range(img.shape[0]):
        small = np.where(body[k], img[k], 0.0)[::step, ::step]
        q = ndi.percentile_filter(small, 95, size=size)
        q = ndi.gaussian_filter(q, 1.0)
        out[k] = ndi.zoom(q, (img.shape[1] / q.shape[0], img.shape[2] / q.shape[1]), order=1)[
            : img.shape[1], : img.shape[2]
        ]
    return out


def _check_not_constant(a: np.ndarray, what: str) -> None:
    if not np.any(a > 0) or float(np.ptp(a)) <= 1e-6 * max(1.0, float(np.abs(a).max())):
        raise BadInputError(f"{what}: the image is empty or constant; nothing to propose seeds from")


def _otsu(values: np.ndarray, bins: int = 256) -> float:
    """Otsu threshold of a 1D sample (between-class variance maximum)."""
    hist, edges = np.histogram(values, bins=bins)
    centres = 0.5 * (edges[:-1] + edges[1:])
    w0 = np.cumsum(hist).astype(float)
    w1 = w0[-1] - w0
    m = np.cumsum(hist * centres)
    mu0 = m / np.maximum(w0, 1)
    mu1 = (m[-1] - m) / np.maximum(w1, 1)
    var = w0 * w1 * (mu0 - mu1) ** 2
    return float(centres[int(np.argmax(var))])


def _body(signal: np.ndarray) -> np.ndarray:
    """Body mask per slice: everything between the outermost voxels with signal (rows and columns)."""
    thr = 0.5 * _otsu(signal[signal > 0]) if np.any(signal > 0) else 0.0
    fg = signal > thr
    out = np.zeros_like(fg)
    for k in range(fg.shape[0]):
        lab, n = ndi.label(fg[k])
        if n == 0:
            continue
        sizes = ndi.sum_labels(fg[k], lab, np.arange(1, n + 1))
        keep = np.isin(lab, 1 + np.flatnonzero(sizes >= 0.05 * sizes.max()))
        rows, cols = _span(keep, 1), _span(keep, 0)
        out[k] = rows & cols
        # a field of view narrower than the body (anterior abdomen cut off, typical of lumbar scans):
        # rows in front of the body's centre with signal at both edges are inside all along; never
        # behind it, where the air between the buttocks/flanks would count as body
        wide = rows.sum(axis=1) >= 0.9 * keep.shape[1]
        if out[k].any():
            front = np.arange(keep.shape[0]) < np.median(np.nonzero(out[k])[0])
            out[k] |= rows & (wide & front)[:, None]
    return out


def _span(mask: np.ndarray, axis: int) -> np.ndarray:
    """True between the first and last True along ``axis``; where the field of view cuts the body
    (a long run of signal on that image edge), the span reaches the edge."""
    edge = max(4, mask.shape[1 - axis] // 20)
    cut_start = np.take(mask, 0, axis=axis).sum() >= edge
    cut_end = np.take(mask, -1, axis=axis).sum() >= edge
    fwd = np.maximum.accumulate(mask, axis=axis)
    bwd = np.flip(np.maximum.accumulate(np.flip(mask, axis), axis=axis), axis)
    if cut_start:
        fwd = np.ones_like(fwd)
    if cut_end:
        bwd = np.ones_like(bwd)
    return fwd & bwd


def disk(radius_mm: float, spacing: tuple[float, float]) -> np.ndarray:
    ry, rx = (max(1, round(radius_mm / s)) for s in spacing)
    jj, ii = np.mgrid[-ry : ry + 1, -rx : rx + 1]
    return (jj * spacing[0]) ** 2 + (ii * spacing[1]) ** 2 <= radius_mm**2 + 1e-9


def _midline(img2: np.ndarray, body2: np.ndarray, p: AutoSeedParams) -> float:
    """Column (fractional) about which the posterior half of the body is most mirror-symmetric."""
    jj, ii = np.nonzero(body2)
    if jj.size == 0:
        return float("nan")
    j_mid = 0.5 * (jj.min() + jj.max())
    rows = slice(int(j_mid), int(jj.max()) + 1)
    a = np.where(body2, img2, 0.0)[rows].astype(np.float64)
    a = a - a[body2[rows]].mean() if body2[rows].any() else a
    a = np.where(body2[rows], a, 0.0)
    n = a.shape[1]
    flipped = a[:, ::-1]
    ci = 0.5 * (ii.min() + ii.max())
    half = p.midline_search_frac * (ii.max() - ii.min())
    best, best_c = -np.inf, ci
    for c2 in range(int(2 * (ci - half)), int(2 * (ci + half)) + 1):  # mirror about c = c2 / 2
        d = c2 - (n - 1)  # mirrored[i] = a[c2 - i] = flipped[i - d]
        if abs(d) >= n // 2:
            continue
        x = a[:, max(0, d) : n + min(0, d)]
        y = flipped[:, max(0, -d) : n - max(0, d)]
        score = float((x * y).sum()) / (np.sqrt(float((x * x).sum()) * float((y * y).sum())) + 1e-12)
        if score > best:
            best, best_c = score, 0.5 * c2
    return best_c


@dataclass
class SliceAnatomy:
    """Landmarks found on one slice (voxel indices j, i; fractional)."""

    k: int
    midline: float
    masses: dict[str, np.ndarray]  # side -> bool mask of the paraspinal mass
    lean: np.ndarray  # opened lean mask with the midline cut
    canal: tuple[float, float] | None
    front_j: float  # medial front of the paraspinal masses (≈ laminae)
    muscle: np.ndarray  # lean mask closed over fat streaks: "muscle-like tissue" for the final check
    core: dict[str, np.ndarray]  # first-pass masses (muscle-like signal only): their lateral extent
    info: dict = field(default_factory=dict)


def side_u(shape: tuple[int, int], midline: float, side: str, sx: float) -> np.ndarray:
    """Signed lateral distance (mm) from the midline towards ``side`` (LPS: +i is the patient's left)."""
    sgn = 1.0 if side == "left" else -1.0
    return np.broadcast_to(sgn * (np.arange(shape[1]) - midline) * sx, shape)


def slice_anatomy(m: TissueMaps, k: int, p: AutoSeedParams) -> SliceAnatomy:
    """Midline, paraspinal masses and canal on slice ``k``; errors name the slice."""
    sy, sx = m.spacing
    body2 = _body(m.signal[k : k + 1])[0]
    if body2.sum() * sy * sx < 2000.0:  # < 20 cm²: no trunk in this slice
        raise BadInputError(f"slice k={k}: no body cross-section found (is the image a lumbar axial MRI?)")
    c = _midline(1.0 - m.fatness[k], body2, p)
    lean = ndi.binary_opening(m.lean[k] & body2, disk(p.open_mm, m.spacing))
    cut = np.abs(np.arange(lean.shape[1]) - c) * sx <= p.midline_cut_mm
    lean[:, cut] = False
    entry = _entry_surface(lean, body2, c, p, m.spacing)
    cols = [round(c + g * d / sx) for d in p.entry_offsets_mm for g in (-1, 1)]
    backs = [entry[i] for i in cols if 0 <= i < lean.shape[1] and entry[i] >= 0]
    if not backs:
        raise BadInputError(f"slice k={k}: no muscle found behind the spine (beside the midline)")
    u_abs = np.abs(np.arange(lean.shape[1]) - c) * sx
    shell = (np.arange(lean.shape[0])[:, None] >= np.median(backs) - p.shell_depth_mm / sy) & (
        u_abs[None, :] <= p.max_lateral_mm
    )
    med = ndi.median_filter(m.canal_img[k], footprint=disk(p.median_mm, m.spacing))
    ref = _muscle_reference(med, entry, cols, p, m.spacing)
    # dark muscle near the noise level (some T1 protocols): only the upper bound (bone marrow, fat) counts
    lo = p.similar_range[0] * ref if ref > 0.15 * m.fat_ref else -np.inf
    similar = (med >= lo) & (med <= p.similar_range[1] * ref)
    lean_shell = ndi.binary_opening(lean & shell & similar, disk(p.open_mm, m.spacing))
    masses = _back_regions(lean_shell, entry, c, p, m.spacing)
    both = masses["left"] | masses["right"]
    jj, ii = np.nonzero(both)
    if jj.size == 0:
        return SliceAnatomy(k, c, masses, lean, None, float("nan"), lean, masses)
    u_abs = np.abs(ii - c) * sx
    medial = u_abs <= 20.0
    front = float(np.percentile(jj[medial], 5)) if medial.any() else float(jj.min())
    canal = _canal(m, k, c, front, p)
    # second pass, now that the canal bounds the back muscles in front (transverse processes, laminae):
    # close the lean mask so that fat streaks inside a fatty muscle do not cut it into pieces
    closed = ndi.binary_closing(m.lean[k] & body2, disk(p.close_mm, m.spacing)) & body2
    closed[:, cut] = False
    core = masses
    if canal is not None:
        behind = (np.arange(lean.shape[0]) >= canal[0])[:, None]
        if m.dixon:  # F/(F+W) already tells fat streaks from fascia: keep the muscle-signal regions
            masses = {side: mass & behind for side, mass in masses.items()}
        else:
            masses = _back_regions(closed & shell & behind, entry, c, p, m.spacing)
            masses = {side: _largest(mass) for side, mass in masses.items()}
    # thin lean tissue joined to the mass (latissimus, obliques along the flank) is cut off: the
    # multifidus and erector spinae are thicker than twice this radius
    medial = np.abs(np.arange(lean.shape[1]) - c)[None, :] * sx <= 25.0
    for side, mass in masses.items():
        opened = ndi.binary_opening(mass, disk(p.mass_open_mm, m.spacing))
        lab, n = ndi.label(opened)
        if n > 1:  # the largest part (erector) and any sizeable part beside the midline (multifidus)
            sizes = ndi.sum_labels(opened, lab, np.arange(1, n + 1)) * sy * sx
            near = ndi.maximum(medial & opened, lab, np.arange(1, n + 1)).astype(bool)
            keep = (sizes == sizes.max()) | (near & (sizes >= 200.0))
            opened = np.isin(lab, 1 + np.flatnonzero(keep))
        masses[side] = opened
    return SliceAnatomy(k, c, masses, lean, canal, front, closed, core)


def _back_regions(
    region: np.ndarray, entry: np.ndarray, c: float, p: AutoSeedParams, spacing: tuple[float, float]
) -> dict[str, np.ndarray]:
    """Per side, the regions of ``region`` met first (within 15 mm) walking forwards from the back."""
    sy, sx = spacing
    lab, _n = ndi.label(region)
    out: dict[str, np.ndarray] = {}
    for side in ("left", "right"):
        sgn = 1 if side == "left" else -1
        hits = []
        for d in p.entry_offsets_mm:
            i = round(c + sgn * d / sx)
            if 0 <= i < region.shape[1] and entry[i] >= 0:
                j1 = int(entry[i])
                seg = lab[max(0, int(j1 - 15.0 / sy)) : j1 + 1, i]
                if np.any(seg > 0):
                    hits.append(int(seg[np.flatnonzero(seg)[-1]]))
        # every region met from the back: multifidus and erector may be split by their fascia
        out[side] = np.isin(lab, sorted(set(hits))) & (side_u(region.shape, c, side, sx) > 0)
    return out


def _largest(mask: np.ndarray) -> np.ndarray:
    lab, n = ndi.label(mask)
    if n <= 1:
        return mask
    return lab == 1 + int(np.argmax(ndi.sum_labels(mask, lab, np.arange(1, n + 1))))


def _entry_surface(
    lean: np.ndarray, body2: np.ndarray, c: float, p: AutoSeedParams, spacing: tuple[float, float]
) -> np.ndarray:
    """Per column, the first lean voxel met walking forwards from the back skin (−1 where none)."""
    sy, _sx = spacing
    out = np.full(lean.shape[1], -1.0)
    rows = np.arange(lean.shape[0])[:, None]
    j_post = np.where(body2.any(0), np.max(np.where(body2, rows, -1), axis=0), -1)
    reach = rows >= (j_post - p.entry_depth_mm / sy)[None, :]
    cand = lean & reach
    has = cand.any(0)
    out[has] = np.max(np.where(cand, rows, -1), axis=0)[has]
    return out


def _muscle_reference(
    img2: np.ndarray, entry: np.ndarray, cols: list[int], p: AutoSeedParams, spacing: tuple[float, float]
) -> float:
    """Median signal 3–10 mm inside the back muscles' posterior surface beside the midline."""
    sy = spacing[0]
    vals = []
    for i in cols:
        if 0 <= i < img2.shape[1] and entry[i] >= 0:
            j0, j1 = int(entry[i] - 10.0 / sy), int(entry[i] - 3.0 / sy)
            vals.extend(img2[max(0, j0) : max(0, j1) + 1, i].tolist())
    if not vals:
        raise BadInputError("no muscle found behind the spine (beside the midline)")
    return float(np.median(vals))


def _canal(m: TissueMaps, k: int, c: float, front: float, p: AutoSeedParams) -> tuple[float, float] | None:
    """Canal centre: the strongest CSF blob on the midline just in front of the paraspinal masses."""
    sy, sx = m.spacing
    img = m.canal_img[k].astype(np.float64)
    s1 = p.canal_sigma_mm
    dog = ndi.gaussian_filter(img, (s1 / sy, s1 / sx)) - ndi.gaussian_filter(
        img, (2.5 * s1 / sy, 2.5 * s1 / sx)
    )
    resp = dog if m.canal_sign > 0 else np.abs(dog)
    j0 = max(0, int(front - p.canal_window_mm[0] / sy))
    j1 = min(img.shape[0] - 1, int(front + p.canal_window_mm[1] / sy))
    i0 = max(0, round(c - 4.0 / sx))
    i1 = min(img.shape[1] - 1, round(c + 4.0 / sx))
    if j1 <= j0 or i1 < i0:
        return None
    # the canal is centred on the midline: its depth from the response across ±4 mm, its column = midline
    # (a single-voxel maximum of |DoG| on T1 sits on the ring of epidural fat, not in the centre)
    profile = resp[j0 : j1 + 1, i0 : i1 + 1].mean(axis=1)
    return float(j0 + int(np.argmax(profile))), float(c)
