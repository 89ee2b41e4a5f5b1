"""``python -m ParaspinalSegLib phantom``: render one digital phantom case into a directory (contract C3)."""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path
from typing import Any

from ParaspinalLBPCore.errors import BadInputError
from ParaspinalLBPCore.structures import LEVELS
from ParaspinalSegLib.phantom_params import PARASPINALS, PATTERNS, PhantomParams, preset

log = logging.getLogger(__name__)


def parse_levels(text: str) -> list[str]:
    """'L1-L5', 'L3-L5', 'L2,L3' or 'L4' -> list of level names (cranio-caudal order)."""
    text = text.strip().upper().replace(" ", "")
    if "-" in text:
        lo, hi = text.split("-", 1)
        if lo not in LEVELS or hi not in LEVELS:
            raise BadInputError(f"--levels {text!r}: expected a range like L1-L5")
        i, j = sorted((LEVELS.index(lo), LEVELS.index(hi)))
        return list(LEVELS[i : j + 1])
    levels = [p for p in text.split(",") if p]
    for lv in levels:
        if lv not in LEVELS:
            raise BadInputError(f"--levels: unknown level {lv!r}; expected among {', '.join(LEVELS)}")
    return sorted(levels, key=LEVELS.index)


def add_cli(subparsers: Any, name: str) -> None:
    """Register the ``phantom`` sub-command."""
    p = subparsers.add_parser(
        name,
        help="render a digital lumbar MRI phantom with ground truth",
        description="Render an axial lumbar Dixon phantom (water, fat, in/opposed phase, T1w, T2w) with "
        "label map, FF map, truth.json, levels and seeds markups. Same --seed and parameters give "
        "byte-identical files. Parameters: --params YAML (see presets/phantom_default.yaml), then overrides.",
    )
    p.add_argument("--out", required=True, type=Path, help="output directory (created)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--params", type=Path, help="parameter YAML; all keys optional")
    p.add_argument(
        "--preset",
        help="shipped parameter set instead of --params: default, goutallier_0 … goutallier_4 "
        "(fatty multifidus/erector spinae at that Goutallier grade; see docs/phantom.md)",
    )
    p.add_argument(
        "--pattern",
        choices=PATTERNS,
        help="fat pattern of the multifidus and erector spinae (both sides), overriding the parameters",
    )
    p.add_argument("--levels", help="levels, e.g. L1-L5 (default) or L3-L5")
    p.add_argument("--sex", choices=("female", "male"))
    p.add_argument("--body-scale", type=float)
    p.add_argument("--snr", type=float, help="lean-muscle Dixon signal / noise sigma")
    p.add_argument("--bias-strength", type=float, help="coil bias amplitude (0 = none)")
    p.add_argument("--matrix", type=int, nargs=2, metavar=("NX", "NY"))
    p.add_argument("--spacing", type=float, nargs=2, metavar=("SX", "SY"), help="in-plane spacing in mm")
    p.add_argument("--slice-thickness", type=float, help="mm")
    p.add_argument("--slice-gap", type=float, help="mm")
    p.add_argument("--slices-per-level", type=int)
    p.add_argument("--asymmetry", type=float, help="relative L/R CSA difference of all muscles")
    p.add_argument("--seed-jitter-mm", type=float, help="SD of random in-plane offsets of the seed points")
    p.add_argument(
        "--dicom",
        action="store_true",
        help="also write OUT/dicom/: the images as one DICOM MR study (T1w, T2w, Dixon W/F/IP/OP series)",
    )
    p.add_argument(
        "--dicom-series",
        metavar="NAMES",
        help="with --dicom: only these series, comma-separated (of water, fat, inphase, opposed, t1w, t2w)",
    )
    p.set_defaults(func=run)


_OVERRIDES = {
    "sex": "sex",
    "body_scale": "body_scale",
    "snr": "snr",
    "bias_strength": "bias_strength",
    "matrix": "matrix",
    "spacing": "spacing_mm",
    "slice_thickness": "slice_thickness_mm",
    "slice_gap": "slice_gap_mm",
    "slices_per_level": "slices_per_level",
    "asymmetry": "asymmetry",
    "seed_jitter_mm": "seed_jitter_mm",
}


def params_from_args(args: argparse.Namespace) -> PhantomParams:
    """YAML (if any) then command-line overrides, validated."""
    data: dict[str, Any] = {}
    if args.params is not None and getattr(args, "preset", None):
        raise BadInputError("give --params or --preset, not both")
    if args.params is not None:
        data = PhantomParams.from_yaml(args.params).to_dict()
    elif getattr(args, "preset", None):
        data = preset(args.preset).to_dict()
    if getattr(args, "pattern", None):
        data.setdefault("muscles", {})
        for name in PARASPINALS:
            data["muscles"].setdefault(name, {})["pattern"] = args.pattern
    overridden = []
    for attr, key in _OVERRIDES.items():
        value = getattr(args, attr, None)
        if value is not None:
            data[key] = list(value) if isinstance(value, list) else value
            overridden.append(key)
    if args.levels:
        data["levels"] = parse_levels(args.levels)
        muscles = data.get("muscles") or {}
        for settings in muscles.values():  # a YAML written for other levels: keep only the chosen ones
            for key in ("fat_fraction", "atrophy"):
                if isinstance(settings.get(key), dict):
                    settings[key] = {lv: v for lv, v in settings[key].items() if lv in data["levels"]}
    source = (
        str(args.params)
        if args.params
        else (f"preset {args.preset}" if getattr(args, "preset", None) else "command line")
    )
    if (args.params or getattr(args, "preset", None)) and (overridden or args.levels):
        source += " with command-line overrides"
    return PhantomParams.from_dict(data, source=source)


def run(args: argparse.Namespace) -> int:
    """Render and write one case."""
    from tqdm import tqdm

    from ParaspinalSegLib.phantom import make_phantom, write_phantom

    params = params_from_args(args)
    with tqdm(total=2, desc="phantom", unit="step", disable=None) as bar:
        t0 = time.perf_counter()
        phantom = make_phantom(params, args.seed)
        bar.update()
        t1 = time.perf_counter()
        write_phantom(phantom, args.out)
        if getattr(args, "dicom", False):
            from ParaspinalSegLib.dicom_phantom import write_phantom_dicom

            names = [n.strip() for n in (args.dicom_series or "").split(",") if n.strip()]
            write_phantom_dicom(phantom, args.out / "dicom", **({"names": tuple(names)} if names else {}))
        bar.update()
    log.info(
        "phantom written to %s (render %.2f s, write %.2f s)", args.out, t1 - t0, time.perf_counter() - t1
    )
    return 0
