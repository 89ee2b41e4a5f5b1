"""``paraspinal-seg infiltrate``: synthetic fatty infiltration of a labelled real case inside its outlines.

Writes into ``--out``: the infiltrated images (``water``/``fat``/``inphase`` = W + F, or ``image``), the
unchanged ``labels.nii.gz`` with ``labels.json`` (C1, with the level ranges), ``volume_fraction.nii.gz`` (added
fat volume fraction per voxel), ``truth.json`` (per structure × level: CSA, volume, fat volume fraction, Dixon FF
in the outline raw and 1-voxel eroded) and ``seeds.mrk.json`` (one click per muscle per level, the validation's
seeding rule ``seeds.points_from_labels``). Every file is written atomically.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from ParaspinalLBPCore.atomic import atomic_path
from ParaspinalLBPCore.errors import BadInputError, MissingKeyError
from ParaspinalLBPCore.structures import MUSCLE_NAMES, MUSCLEMAP_LABEL_NAMES, TUM01_LABEL_NAMES
from ParaspinalSegLib.fat_patterns import PATTERNS

log = logging.getLogger(__name__)
KNOWN_LABEL_SETS = {"tum01": TUM01_LABEL_NAMES, "musclemap": MUSCLEMAP_LABEL_NAMES}


def add_cli(subparsers: argparse._SubParsersAction, name: str) -> None:
    """Register the ``infiltrate`` sub-command."""
    p = subparsers.add_parser(
        name, help="infiltrate fat into a labelled real case inside its outlines", description=__doc__
    )
    p.add_argument("--water", type=Path, help="Dixon water image")
    p.add_argument("--fat", type=Path, help="Dixon fat image")
    p.add_argument(
        "--image", type=Path, help="single fat-bright image (T1w/T2w/in-phase) instead of a Dixon pair"
    )
    p.add_argument("--labels", type=Path, required=True, help="manual label map on the image grid")
    p.add_argument(
        "--label-names",
        default=None,
        help="labels.json (value -> structure name), or 'tum01' / 'musclemap' for the shared cases; "
        "default: the project's values (structures.py)",
    )
    p.add_argument(
        "--severity", type=float, required=True, help="target per muscle (fraction 0-1, see --kind)"
    )
    p.add_argument(
        "--kind",
        choices=("ff", "volume"),
        default="volume",
        help="severity is the mean Dixon signal FF in the outline (ff) or the mean fat volume fraction (volume)",
    )
    p.add_argument("--pattern", choices=PATTERNS, default="diffuse")
    p.add_argument("--structures", nargs="+", help="muscles to infiltrate (default: every named muscle)")
    p.add_argument(
        "--slabs", type=int, default=4, help="levels = this many equal slabs of slices (default 4)"
    )
    p.add_argument("--first-level", type=int, default=2, help="level number of slab 0 (default 2: L2)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--assume-same-grid", action="store_true", help="accept images whose headers differ from the labels'"
    )
    p.add_argument("--out", type=Path, required=True, help="output directory (created)")
    p.set_defaults(func=run)


def _names(spec: str | None, present: set[int]) -> dict[int, str]:
    """value -> canonical muscle name from a label set keyword, a labels.json, or the project's values."""
    from ParaspinalLBPCore.structures import canonical_name, default_label_names
    from ParaspinalSegLib.io import read_labels_json

    if spec is None:
        names = default_label_names()
    elif spec.lower() in KNOWN_LABEL_SETS:
        names = KNOWN_LABEL_SETS[spec.lower()]
    else:
        names = read_labels_json(spec)[0]
    names = {v: canonical_name(n) for v, n in names.items()}
    return {v: n for v, n in names.items() if n in MUSCLE_NAMES and v in present}


def _atomic(path: Path, write) -> None:
    """Write through a temporary file in the same folder, then rename (no half-written outputs)."""
    with atomic_path(path) as tmp:
        write(str(tmp))


def run(args: argparse.Namespace) -> int:
    """Read, infiltrate, write."""
    import numpy as np
    import SimpleITK as sitk
    from tqdm import tqdm

    from ParaspinalSegLib.infiltrate import infiltrate
    from ParaspinalSegLib.io import read_volume, write_labels, write_labels_json
    from ParaspinalSegLib.markups import write_points
    from ParaspinalSegLib.seeds import points_from_labels

    dixon = args.water is not None or args.fat is not None
    if (args.image is not None) == dixon or (dixon and (args.water is None or args.fat is None)):
        raise BadInputError("give either --water and --fat, or --image")
    with tqdm(total=3, desc="infiltrate", unit="step", disable=None) as bar:
        labels = read_volume(args.labels, "label map")
        lab = sitk.GetArrayFromImage(labels)
        names = _names(args.label_names, {int(v) for v in np.unique(lab)})
        if args.structures:
            unknown = set(args.structures) - set(names.values())
            if unknown:
                raise MissingKeyError(
                    f"--structures: {sorted(unknown)} not among the labelled muscles {sorted(names.values())}"
                )
            names = {v: n for v, n in names.items() if n in args.structures}
        if not names:
            raise BadInputError(f"{args.labels}: no labelled muscle found (check --label-names)")
        paths = {"image": args.image} if args.image else {"water": args.water, "fat": args.fat}
        images = {k: read_volume(p, f"{k} image") for k, p in paths.items()}
        slabs = np.array_split(np.arange(lab.shape[0]), args.slabs)
        levels = {f"L{i + args.first_level}": (int(s[0]), int(s[-1])) for i, s in enumerate(slabs) if s.size}
        bar.update()
        res = infiltrate(images, labels, names, args.severity, kind=args.kind, pattern=args.pattern,
                         seed=args.seed, levels=levels, assume_same_grid=args.assume_same_grid)  # fmt: skip
        bar.update()
        out = args.out
        out.mkdir(parents=True, exist_ok=True)
        for name, img in {**res.images, "volume_fraction": res.volume_fraction}.items():
            _atomic(out / f"{name}.nii.gz", lambda tmp, img=img: sitk.WriteImage(img, tmp, True))
        write_labels(out / "labels.nii.gz", labels)
        write_labels_json(out / "labels.json", names, levels)
        text = json.dumps(res.truth, indent=2) + "\n"
        _atomic(out / "truth.json", lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
        clicks = points_from_labels(lab, labels, names, args.slabs, args.first_level)
        write_points(out / "seeds.mrk.json", [(c.label, c.position_lps, c.description) for c in clicks])
        bar.update()
    log.info("infiltrated case written to %s", out)
    return 0
