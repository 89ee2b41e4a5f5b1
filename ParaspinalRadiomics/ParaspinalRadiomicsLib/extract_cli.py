"""``python -m ParaspinalRadiomicsLib extract``: all structures of one case to a C5 feature table.

``--progress`` prints ``PROGRESS <done>/<total> <structure> <level>`` on stdout after each mask instead
of the tqdm bar, for programs that run the command in the background (the Slicer module's Apply
button, via ``ParaspinalLBPSlicer.jobs``).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from ParaspinalRadiomicsLib.preset_files import available_presets


def quiet_radiomics(args: argparse.Namespace) -> None:
    """pyradiomics logs every step at INFO; keep the CLI to progress bars and warnings unless --verbose."""
    if not getattr(args, "verbose", False):
        logging.getLogger("radiomics").setLevel(logging.ERROR)


def add_common_options(p: argparse.ArgumentParser) -> None:
    """Options shared by extract, batch and perturb."""
    p.add_argument(
        "--params",
        required=True,
        help=f"pyradiomics parameter YAML, or a preset name ({', '.join(available_presets())})",
    )
    p.add_argument(
        "--per-level", action="store_true", help="also one row per vertebral level slab (needs levels)"
    )
    p.add_argument(
        "--per-side",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="one row per sided structure (default); --no-per-side merges left+right",
    )
    p.add_argument(
        "--structures",
        type=lambda t: [x.strip() for x in t.split(",") if x.strip()],
        help="comma-separated structure names to extract (default: every named label)",
    )
    p.add_argument(
        "--classes",
        nargs="+",
        help="feature classes to keep (e.g. firstorder shape glcm; default: all the parameters enable)",
    )
    p.add_argument(
        "--progress",
        action="store_true",
        help="print 'PROGRESS <done>/<total> <stage>' lines on stdout instead of the tqdm bar",
    )
    p.add_argument(
        "--resample-mask",
        action="store_true",
        help="resample a label map whose grid differs from the image's (nearest neighbour)",
    )


def add_cli(subparsers: argparse._SubParsersAction, name: str) -> None:
    """Register the ``extract`` sub-command."""
    p = subparsers.add_parser(
        name, help="extract features of every structure of one case", description=__doc__
    )
    p.add_argument("--image", required=True, help="image file (NIfTI, NRRD, ...) or a DICOM series folder")
    p.add_argument(
        "--series",
        metavar="NUMBER|UID",
        help="series of a DICOM folder holding several (SeriesNumber or UID)",
    )
    p.add_argument("--labels", required=True, help="label map or Slicer .seg.nrrd on the image grid")
    p.add_argument(
        "--label-names", help="labels.json (C1); default: .seg.nrrd names or labels.json beside LABELS"
    )
    p.add_argument("--case-id", help="case identifier (default: image file name)")
    p.add_argument("--out", required=True, help="output features.csv (C5)")
    add_common_options(p)
    p.set_defaults(func=run)


def params_of(args: argparse.Namespace):
    """``--params`` restricted to ``--classes`` when given (validated before any work)."""
    from ParaspinalRadiomicsLib.extraction import select_feature_classes  # the CLI loads pyradiomics lazily

    return select_feature_classes(args.params, args.classes) if args.classes else args.params


def print_progress(done: int, total: int, what: str) -> None:
    """One machine-readable progress line (``--progress``)."""
    print(f"PROGRESS {done}/{total} {what}", flush=True)


def run(args: argparse.Namespace) -> int:
    """Extract one case and write the table atomically."""
    from tqdm import tqdm

    from ParaspinalRadiomicsLib.extraction import extract_case
    from ParaspinalRadiomicsLib.inputs import load_case
    from ParaspinalRadiomicsLib.tables import write_features

    quiet_radiomics(args)
    params = params_of(args)
    image, labels, names, levels = load_case(args.image, args.labels, args.label_names, args.series)
    case_id = args.case_id or Path(args.image).name.split(".")[0]
    with tqdm(total=0, desc=case_id, unit="mask", disable=args.progress) as bar:

        def progress(done: int, total: int, what: str) -> None:
            if args.progress:
                print_progress(done, total, what)
            bar.total = total
            bar.set_postfix_str(what)
            bar.update(done - bar.n)

        df = extract_case(
            image,
            labels,
            names,
            params,
            levels=levels,
            per_level=args.per_level,
            per_side=args.per_side,
            case_id=case_id,
            progress=progress,
            resample_mask=args.resample_mask,
            structures=args.structures,
        )
    write_features(df, args.out)
    n_err = int((df.status != "ok").sum())
    print(f"{args.out}: {len(df)} rows ({n_err} with status error), {len(df.columns) - 8} features")
    return 0
