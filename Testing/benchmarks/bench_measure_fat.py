"""Measurement against ground truth, with the TRUE labels (measurement error apart from segmentation error).

Run: .venv/bin/python Testing/benchmarks/bench_measure_fat.py [--shared ../shared] [--sections ...]

Sections (``--sections``, default all):
- ``tum01``: the lean real case, non-Dixon (t1_local / t1_linear on the synthesised in-phase F + W) vs Dixon
  per muscle × level, and each method's time as a ratio to the Dixon measurement (same process).
- ``phantom``: the phantom at Goutallier grades 0–4 × fat pattern, truth labels: Dixon signal FF minus the
  truth, the fat volume fraction minus the truth (the phantom's adipose fraction of each voxel's noiseless
  FF), lean CSA error, and single-image FF (T1w-like and in-phase, t1_local) minus the truth FF; with all
  eight muscles labelled and with the paraspinals only (the protocol's clicks).
- ``infiltrated``: TUM01 infiltrated inside its manual outlines per grade × pattern (infiltrate.py):
  volume fraction minus the truth (added fat + the rest's own fat as measured on the original case),
  in-phase t1_local minus Dixon, lean CSA error.
- ``contrast``: the contrast check's verdict on every input the project has and on the refused models.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
import SimpleITK as sitk

from ParaspinalLBPCore.structures import BY_NAME, MUSCLE_NAMES, TUM01_LABEL_NAMES
from ParaspinalSegLib import phantom_physics as phys
from ParaspinalSegLib.contrast import check_contrast
from ParaspinalSegLib.fat_patterns import PATTERNS
from ParaspinalSegLib.infiltrate import eroded_inplane, infiltrate
from ParaspinalSegLib.measure import measure_labels
from ParaspinalSegLib.phantom import make_phantom
from ParaspinalSegLib.phantom_params import PARASPINALS, goutallier_params
from ParaspinalSegLib.validation import GRADE_FF

LEVELS = {"L2": (0, 7), "L3": (8, 14), "L4": (15, 21), "L5": (22, 28)}
pd.set_option("display.width", 200)


def _tum01(shared: Path) -> tuple[sitk.Image, sitk.Image, sitk.Image]:
    d = shared / "data" / "myosegmentum_tum01"
    fat = sitk.Cast(sitk.ReadImage(str(d / "fat.nii.gz")), sitk.sitkFloat32)
    water = sitk.Cast(sitk.ReadImage(str(d / "water.nii.gz")), sitk.sitkFloat32)
    water.CopyInformation(fat)
    return water, fat, sitk.ReadImage(str(d / "labels.nii.gz"))


def _like(arr: np.ndarray, ref: sitk.Image) -> sitk.Image:
    img = sitk.GetImageFromArray(np.asarray(arr, np.float32))
    img.CopyInformation(ref)
    return img


def section_tum01(shared: Path, repeat: int) -> None:
    """Lean real case: non-Dixon vs Dixon, and timings."""
    water, fat, labels = _tum01(shared)
    inphase = water + fat
    runs = {
        "dixon": {"water": water, "fat": fat},
        "t1_linear": {"image": inphase, "fat_method": "t1_linear"},
        "t1_local": {"image": inphase, "fat_method": "t1_local"},
    }
    ff, vf, secs = {}, {}, {}
    for name, kw in runs.items():
        best = float("inf")
        for _ in range(repeat):
            t0 = time.perf_counter()
            table = measure_labels(
                labels, TUM01_LABEL_NAMES, levels=LEVELS, per_slice=False, erode_px=1, **kw
            )
            best = min(best, time.perf_counter() - t0)
        secs[name] = best
        ff[name] = table.set_index(["structure", "level"])["fat_fraction_pct"]
        vf[name] = table.set_index(["structure", "level"])["fat_volume_fraction_pct"]
    out = pd.DataFrame(ff)
    out["dixon_volume"] = vf["dixon"]
    out["linear-dixon"] = out["t1_linear"] - out["dixon"]
    out["local-dixon"] = out["t1_local"] - out["dixon"]
    print("== TUM01 (lean, manual labels, 1-voxel erosion): signal FF % and Dixon fat volume fraction %")
    print(out.round(2).to_string())
    per_level = out.drop("all", level="level")
    for col in ("linear-dixon", "local-dixon"):
        whole = out.xs("all", level="level")[col].abs()
        print(f"{col}: whole muscle max |d| {whole.max():.2f} pp; per level median |d| "
              f"{per_level[col].abs().median():.2f}, max {per_level[col].abs().max():.2f} pp")  # fmt: skip
    for name, s in secs.items():
        print(f"time {name}: {s:.3f} s ({s / secs['dixon']:.1f}x dixon)")


def _phantom_truth(ph, names: dict[int, str]) -> pd.DataFrame:
    """Per structure x level: truth signal FF, truth adipose volume fraction over the 1-voxel-eroded truth
    label (the phantom's tissue model applied to its noiseless FF map), truth CSA."""
    lab = ph.arrays["labels"]
    vol = phys.adipose_fraction(ph.arrays["ff"])
    rows = []
    for value, name in names.items():
        core = eroded_inplane(lab == value)
        for lv, (k0, k1) in ph.level_slices.items():
            t = ph.truth["structures"][name][lv]
            rows.append({"structure": name, "level": lv, "ff_true": t["fat_fraction_pct"], "csa_true": t["csa_cm2"],
                         "vf_true": 100 * float(vol[k0 : k1 + 1][core[k0 : k1 + 1]].mean())})  # fmt: skip
    return pd.DataFrame(rows).set_index(["structure", "level"])


def section_phantom(grades: list[int], patterns: list[str], overrides: dict) -> None:
    """Phantom per grade x pattern, truth labels."""
    rows = []
    for grade in grades:
        for pattern in patterns:
            ph = make_phantom(
                goutallier_params(grade, pattern, **overrides), seed=10 * grade + PATTERNS.index(pattern)
            )
            for subset_name, subset in (("all 8", MUSCLE_NAMES), ("MF+ES", PARASPINALS)):
                names = {BY_NAME[n].value: n for n in subset}
                la = ph.arrays["labels"].copy()
                la[~np.isin(la, list(names))] = 0
                labels = _like(la, ph.images["labels"])
                kw = {"levels": ph.level_slices, "per_slice": False, "erode_px": 1}
                truth = _phantom_truth(ph, names)
                dixon = {"water": ph.images["water"], "fat": ph.images["fat"]}
                m = {"dixon": measure_labels(labels, names, **dixon, **kw),
                     "raw": measure_labels(labels, names, **dixon, **{**kw, "erode_px": 0})}  # fmt: skip
                for img in ("t1w", "inphase"):
                    m[img] = measure_labels(labels, names, image=ph.images[img], fat_method="t1_local", **kw)
                m = {k: v[v.level != "all"].set_index(["structure", "level"]) for k, v in m.items()}
                d = m["dixon"].join(truth)
                para = d.index.get_level_values("structure").isin(PARASPINALS)
                lean_true = d.csa_true * (1 - d.vf_true / 100)
                rows.append({
                    "grade": grade, "pattern": pattern, "labels": subset_name,
                    "ff_true_MF_ES": d.ff_true[para].mean(), "vf_true_MF_ES": d.vf_true[para].mean(),
                    "dixon_ff_err_max": (d.fat_fraction_pct - d.ff_true).abs().max(),
                    "dixon_ff_err_mean": (d.fat_fraction_pct - d.ff_true).mean(),
                    "raw_ff_err_mean": (m["raw"].fat_fraction_pct - d.ff_true).mean(),
                    "raw_ff_err_max": (m["raw"].fat_fraction_pct - d.ff_true).abs().max(),
                    "vf_err_mean": (d.fat_volume_fraction_pct - d.vf_true).mean(),
                    "vf_err_max": (d.fat_volume_fraction_pct - d.vf_true).abs().max(),
                    "lean_csa_err_max_pct": (100 * (d.lean_csa_cm2 / lean_true - 1)).abs().max(),
                    "fcsa_err_mean_pct": (100 * (d.fcsa_cm2 / lean_true - 1)).mean(),
                    "t1w_err_mean": (m["t1w"].fat_fraction_pct - d.ff_true)[para].mean(),
                    "t1w_err_max": (m["t1w"].fat_fraction_pct - d.ff_true)[para].abs().max(),
                    "inphase_err_mean": (m["inphase"].fat_fraction_pct - d.ff_true)[para].mean(),
                    "inphase_err_max": (m["inphase"].fat_fraction_pct - d.ff_true)[para].abs().max(),
                })  # fmt: skip
            print(f"  phantom G{grade} {pattern} done", flush=True)
    table = pd.DataFrame(rows)
    print("== Phantom, truth labels, per structure x level (pp unless %): Dixon signal FF, fat volume fraction "
          "(vf), lean CSA = CSA x (1 - vf) vs truth, fcsa (by signal FF) vs true lean CSA, single-image FF "
          "(t1_local) minus truth on the paraspinals")  # fmt: skip
    print(table.round(2).to_string(index=False))
    for labels_kind, g in table.groupby("labels"):
        print(f"  {labels_kind}: max |Dixon FF err| {g.dixon_ff_err_max.max():.2f} pp, max |vf err| "
              f"{g.vf_err_max.max():.2f} pp, max |lean CSA err| {g.lean_csa_err_max_pct.max():.2f} %, "
              f"t1w max |err| {g.t1w_err_max.max():.2f} pp, in-phase max |err| {g.inphase_err_max.max():.2f} pp")  # fmt: skip


def section_infiltrated(shared: Path, grades: list[int], patterns: list[str]) -> None:
    """TUM01 infiltrated inside the manual outlines, truth labels."""
    water, fat, raw = _tum01(shared)
    names = TUM01_LABEL_NAMES
    lab = sitk.GetArrayFromImage(raw)
    kw = {"levels": LEVELS, "per_slice": False, "erode_px": 1}
    base = measure_labels(raw, names, water=water, fat=fat, **kw)
    from ParaspinalSegLib.fat import dixon_volume_fraction

    v_base, _ = dixon_volume_fraction(sitk.GetArrayFromImage(water), sitk.GetArrayFromImage(fat), lab > 0,
                                      (raw.GetSpacing()[1], raw.GetSpacing()[0]))  # fmt: skip
    rows = []
    for grade in grades:
        for pattern in patterns:
            res = infiltrate({"water": water, "fat": fat}, raw, names, GRADE_FF[grade], kind="ff", pattern=pattern,
                             seed=grade, levels=LEVELS, assume_same_grid=True)  # fmt: skip
            added = sitk.GetArrayFromImage(res.volume_fraction)
            true_v = added + (1 - added) * np.nan_to_num(
                v_base
            )  # added fat + the muscle's own, as measured before
            dix = measure_labels(raw, names, water=res.images["water"], fat=res.images["fat"], **kw)
            ip = measure_labels(raw, names, image=res.images["inphase"], fat_method="t1_local", **kw)
            dix, ip = dix.set_index(["structure", "level"]), ip.set_index(["structure", "level"])
            for (name, level), r in dix.iterrows():
                value = next(v for v, n in names.items() if n == name)
                k0, k1 = LEVELS[level] if level != "all" else (0, lab.shape[0] - 1)
                core = eroded_inplane(lab == value)[k0 : k1 + 1]
                vt = 100 * float(true_v[k0 : k1 + 1][core].mean())
                rows.append({"grade": grade, "pattern": pattern, "structure": name, "level": level,
                             "ff_dixon": r.fat_fraction_pct, "vf": r.fat_volume_fraction_pct, "vf_true": vt,
                             "vf_err": r.fat_volume_fraction_pct - vt,
                             "lean_csa_err_pct": 100 * ((1 - r.fat_volume_fraction_pct / 100) / (1 - vt / 100) - 1),
                             "inphase_minus_dixon": ip.loc[(name, level), "fat_fraction_pct"] - r.fat_fraction_pct,
                             "k": res.truth.get("fat_reference_voxels")})  # fmt: skip
            print(f"  tum01 G{grade} {pattern} done", flush=True)
    table = pd.DataFrame(rows)
    whole = table[table.level == "all"]
    per_level = table[table.level != "all"]
    print("== TUM01 infiltrated inside its manual outlines, truth labels; vf truth = added fat + (1 - added) x "
          f"the muscle's own vf measured before (lean case: {base[base.level == 'all'].fat_volume_fraction_pct.round(1).tolist()} %)")  # fmt: skip
    summary = table.groupby(["grade", "pattern"]).apply(
        lambda g: pd.Series({
            "ff_dixon_MF_ES": g[g.level == "all"].ff_dixon.mean(), "vf_true": g[g.level == "all"].vf_true.mean(),
            "vf_err_whole_max": g[g.level == "all"].vf_err.abs().max(),
            "vf_err_level_max": g[g.level != "all"].vf_err.abs().max(),
            "lean_csa_err_whole_max_pct": g[g.level == "all"].lean_csa_err_pct.abs().max(),
            "inphase_whole_mean": g[g.level == "all"].inphase_minus_dixon.mean(),
            "inphase_whole_max": g[g.level == "all"].inphase_minus_dixon.abs().max(),
            "inphase_level_max": g[g.level != "all"].inphase_minus_dixon.abs().max(),
        }), include_groups=False)  # fmt: skip
    print(summary.round(2).to_string())
    print(f"  whole muscles: max |vf err| {whole.vf_err.abs().max():.2f} pp, mean {whole.vf_err.mean():+.2f}; "
          f"per level max {per_level.vf_err.abs().max():.2f}; in-phase - Dixon whole max "
          f"{whole.inphase_minus_dixon.abs().max():.2f} pp, per level max {per_level.inphase_minus_dixon.abs().max():.2f}")  # fmt: skip


def section_contrast(shared: Path, overrides: dict) -> None:
    """The contrast check on every input the project has and on the models of refused inputs."""
    water, fat, _ = _tum01(shared)
    w, f = sitk.GetArrayFromImage(water), sitk.GetArrayFromImage(fat)
    ff = f / np.maximum(w + f, 1e-6)
    body = np.flatnonzero((w + f > np.percentile(w + f, 60)).any(axis=(0, 2)))
    coil = (1 + 2 * np.exp(-np.clip((body[-1] - np.arange(w.shape[1])) * 1.0185, 0, None) / 60.0))[
        None, :, None
    ]
    rows = []

    def add(name: str, expected_ok: bool, **kw) -> None:
        t0 = time.perf_counter()
        v = check_contrast(**kw)
        rows.append({"input": name, "expected": "accept" if expected_ok else "refuse", "verdict": v.finding,
                     "ok": v.ok, "correct": v.ok == expected_ok, **v.evidence, "s": time.perf_counter() - t0})  # fmt: skip

    add("TUM01 Dixon pair", True, water=water, fat=fat)
    add("TUM01 in-phase W+F", True, image=_like(w + f, fat))
    add("TUM01 water as the image", False, image=water)
    add("TUM01 water/fat swapped", False, water=fat, fat=water)
    add("TUM01 W + 5% F (STIR/SPAIR, residual fat)", False, image=_like(w + 0.05 * f, fat))
    add("TUM01 W(1-FF) (complete suppression)", False, image=_like(w * (1 - ff), fat))
    add("TUM01 water, 3x surface coil", False, image=_like(w * coil, fat))
    add("TUM01 W + 10% F, 3x surface coil", False, image=_like((w + 0.1 * f) * coil, fat))
    add("TUM01 opposed-phase |W-F| (metadata only)", True, image=_like(np.abs(w - f), fat))
    for path in ("musclemap_sub0001/image.nii.gz", "totalseg_mr_example/image.nii.gz"):
        add(path, True, image=sitk.ReadImage(str(shared / "data" / path)))
    for grade in range(5):
        for pattern in ("diffuse", "confluent"):
            ph = make_phantom(goutallier_params(grade, pattern, **overrides), seed=grade)
            for img in ("inphase", "t1w", "t2w"):
                add(f"phantom G{grade} {pattern} {img}", True, image=ph.images[img])
            add(
                f"phantom G{grade} {pattern} Dixon pair", True, water=ph.images["water"], fat=ph.images["fat"]
            )
            add(f"phantom G{grade} {pattern} water", False, image=ph.images["water"])
            add(f"phantom G{grade} {pattern} swapped", False, water=ph.images["fat"], fat=ph.images["water"])
    table = pd.DataFrame(rows)
    print("== Contrast check (refuse = fat-suppressed / water-only single image, swapped pair)")
    print(table.round(3).to_string(index=False))
    acc, ref = table[table.expected == "accept"], table[table.expected == "refuse"]
    print(f"  valid inputs accepted {int(acc.ok.sum())}/{len(acc)} (false refusals {int((~acc.ok).sum())}); "
          f"invalid refused {int((~ref.ok).sum())}/{len(ref)} (false accepts {int(ref.ok.sum())}); "
          f"time median {table.s.median():.2f} s")  # fmt: skip


def main() -> int:
    """Run the requested sections."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--shared", default=str(Path(__file__).resolve().parents[3] / "shared"))
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--sections", nargs="+", default=["tum01", "phantom", "infiltrated", "contrast"])
    ap.add_argument("--grades", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    ap.add_argument("--patterns", nargs="+", default=list(PATTERNS))
    ap.add_argument("--small", action="store_true", help="phantom on a 256 x 256 grid, levels L3-L5 (faster)")
    args = ap.parse_args()
    shared = Path(args.shared)
    overrides = {"matrix": [256, 256], "levels": ["L3", "L4", "L5"]} if args.small else {}
    if "tum01" in args.sections:
        section_tum01(shared, args.repeat)
    if "phantom" in args.sections:
        section_phantom(args.grades, args.patterns, overrides)
    if "infiltrated" in args.sections:
        section_infiltrated(shared, [g for g in args.grades if g > 0], args.patterns)
    if "contrast" in args.sections:
        section_contrast(shared, overrides)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
