"""Accuracy and speed of the seed auto-initialisation (``propose-seeds``), reported separately from segment().

Run: ``.venv/bin/python Testing/benchmarks/bench_autoseed.py [--phantoms N]``. For every case it prints
the fraction of proposed seeds inside the correct reference muscle, their depth inside it and distance
to its most interior voxel, the canal localisation error (where a canal/cord label exists), and the
Dice of ``segment()`` run from the proposed seeds vs from reference one-click seeds (most interior
voxel of each reference label on the same slices). Timing: propose_seeds as a ratio of segment() on
the same case, measured in this process, plus absolute seconds.
"""

from __future__ import annotations

import argparse
import copy
import tempfile
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage as ndi

from ParaspinalLBPCore.structures import BY_NAME, MUSCLE_NAMES, MUSCLEMAP_LABEL_NAMES, TUM01_LABEL_NAMES
from ParaspinalSegLib.autoseed import propose_seeds, refine_seeds, seed_accuracy
from ParaspinalSegLib.autoseed_anatomy import AutoSeedParams, prepare_maps, slice_anatomy
from ParaspinalSegLib.markups import MarkupPoint, read_points
from ParaspinalSegLib.phantom import make_phantom, write_phantom
from ParaspinalSegLib.phantom_params import PhantomParams
from ParaspinalSegLib.segment import segment

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"
PHANTOM_NAMES = {BY_NAME[n].value: n for n in MUSCLE_NAMES}


def reference_seeds(truth: sitk.Image, names: dict[int, str], slices: dict[str, int]) -> list[MarkupPoint]:
    """One click per muscle per level: the most interior voxel of each reference label on the given slice."""
    arr = sitk.GetArrayViewFromImage(truth)
    sx, sy = truth.GetSpacing()[:2]
    pts = []
    for level, k in slices.items():
        for v, name in names.items():
            m = arr[k] == v
            if m.sum() < 20:
                continue
            dt = ndi.distance_transform_edt(m, sampling=(sy, sx))
            j, i = np.unravel_index(int(np.argmax(dt)), dt.shape)
            pts.append(
                MarkupPoint(name, np.array(truth.TransformIndexToPhysicalPoint((int(i), int(j), k))), level)
            )
    return pts


def dice(a: np.ndarray, b: np.ndarray, names: dict[int, str], b_names: dict[int, str]) -> dict[str, float]:
    """Dice per structure between our labels (structures.py values) and reference labels (own values)."""
    out = {}
    for v, name in b_names.items():
        x, y = a == BY_NAME[name].value, b == v
        if x.sum() + y.sum():
            out[name] = 2.0 * float((x & y).sum()) / float(x.sum() + y.sum())
    del names
    return out


def canal_errors(inputs, truth_arr: np.ndarray, canal_value: int, spacing) -> list[float]:
    """Per slice with a canal/cord label: distance (mm) from our canal centre to the label's centroid."""
    p = AutoSeedParams()
    maps = prepare_maps(inputs, True, p)
    errs = []
    for k in range(truth_arr.shape[0]):
        m = truth_arr[k] == canal_value
        if not m.any():
            continue
        try:
            anat = slice_anatomy(maps, k, p)
        except ValueError:
            errs.append(float("inf"))
            continue
        if anat.canal is None:
            errs.append(float("inf"))
            continue
        cj, ci = np.argwhere(m).mean(axis=0)
        errs.append(float(np.hypot((anat.canal[0] - cj) * spacing[1], (anat.canal[1] - ci) * spacing[0])))
    return errs


def placement(case: str, prop, truth: sitk.Image, names: dict[int, str], seconds: float) -> None:
    """Print how many proposed points lie in the right reference muscle, their depth and distance to its centre."""
    rows = seed_accuracy(prop.points, truth, names)
    inside = [r["inside"] for r in rows]
    depth = [r["depth_mm"] for r in rows if r["inside"]]
    far = [r["to_interior_mm"] for r in rows]
    print(
        f"{case:<22} seeds inside correct muscle {sum(inside)}/{len(inside)} ({100 * np.mean(inside):.1f} %), "
        f"missing {len(prop.info['missing'])}; depth median "
        f"{f'{np.median(depth):.1f} mm' if depth else '- (none inside)'}; "
        f"to interior median {np.nanmedian(far):.1f} / max {np.nanmax(far):.1f} mm; propose {seconds:.2f} s"
    )
    for r in rows:
        if not r["inside"]:
            print(
                f"{'':<24}off: {r['structure']} {r['level'] or 'k=' + str(r['k'])} -> {r['found'] or 'background'}"
            )


def evaluate(
    case: str,
    inputs,
    truth: sitk.Image,
    names: dict[int, str],
    levels,
    structures,
    run_segment: bool,
    refine: bool = False,
):
    """Print the seed accuracy (and optionally segment() Dice from auto vs reference seeds) of one case."""
    t0 = time.perf_counter()
    prop = propose_seeds(
        inputs, structures=structures, levels=levels, assume_same_grid=True, allow_missing=True
    )
    t_prop = time.perf_counter() - t0
    placement(case, prop, truth, names, t_prop)
    refined = None
    if refine:
        t0 = time.perf_counter()
        refined = refine_seeds(copy.deepcopy(prop), inputs, levels, assume_same_grid=True)
        t_ref = time.perf_counter() - t0
        step = refined.info["refine"][0] if refined.info["refine"] else {}
        placement(f"  refined (+{t_ref:.2f} s)", refined, truth, names, t_prop + t_ref)
        print(
            f"{'':<24}refinement move median {step.get('median_move_mm')} / max {step.get('max_move_mm')} mm"
        )
    if not run_segment:
        return
    slices = {}
    for s in prop.info["seeds"]:
        slices.setdefault(s["level"] or f"k{s['kji'][0]}", s["kji"][0])
    ref_pts = reference_seeds(truth, names, slices)
    wanted = {p.label for p in prop.points}
    ref_pts = [p for p in ref_pts if p.label in wanted]
    if not any(s["level"] for s in prop.info["seeds"]):  # untagged slabs: give both runs the same tags
        ref_pts = [MarkupPoint(p.label, p.position_lps, "") for p in ref_pts]
    t_arr = sitk.GetArrayFromImage(truth)
    wanted_names = {v: n for v, n in names.items() if n in wanted}
    seg_ref = segment(inputs, ref_pts, levels=levels, assume_same_grid=True)
    d_ref = dice(sitk.GetArrayFromImage(seg_ref.labels), t_arr, {}, wanted_names)
    for tag, pts in (("auto", prop), ("refined", refined)):
        if pts is None:
            continue
        t0 = time.perf_counter()
        seg_auto = segment(inputs, pts.points, levels=levels, assume_same_grid=True)
        t_seg = time.perf_counter() - t0
        d_auto = dice(sitk.GetArrayFromImage(seg_auto.labels), t_arr, {}, wanted_names)
        worst = max(d_ref[n] - d_auto.get(n, 0.0) for n in d_ref)
        print(
            f"{'':<24}segment Dice {tag}/reference seeds: "
            + ", ".join(f"{n} {d_auto.get(n, 0):.3f}/{d_ref[n]:.3f}" for n in sorted(d_ref))
            + f"; mean {np.mean([d_auto.get(n, 0.0) for n in d_ref]):.3f}/{np.mean(list(d_ref.values())):.3f}"
            + f"; worst loss {worst:.3f}; time propose/segment = {t_prop / t_seg:.2f} ({t_seg:.2f} s segment)"
        )


def main() -> None:
    """Run every case the machine has (phantoms always; shared real data when present)."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--phantoms", type=int, default=3, help="phantom seeds 0..N-1 (default 3)")
    ap.add_argument("--no-segment", action="store_true", help="skip the segment() Dice comparison")
    ap.add_argument(
        "--refine", action="store_true", help="also evaluate the opt-in refinement (refine_seeds)"
    )
    args = ap.parse_args()
    rf = args.refine
    run_seg = not args.no_segment
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(args.phantoms):
            variants = {"female": PhantomParams(), "male": PhantomParams(sex="male", body_scale=1.15)}
            for vname, params in variants.items():
                out = Path(tmp) / f"ph{seed}{vname}"
                write_phantom(make_phantom(params, seed=seed), out)
                truth = sitk.ReadImage(str(out / "labels.nii.gz"))
                levels = read_points(out / "levels.mrk.json")
                dixon = {
                    "water": sitk.ReadImage(str(out / "water.nii.gz")),
                    "fat": sitk.ReadImage(str(out / "fat.nii.gz")),
                }
                evaluate(
                    f"phantom{seed} {vname} dixon",
                    dixon,
                    truth,
                    PHANTOM_NAMES,
                    levels,
                    list(MUSCLE_NAMES),
                    run_seg and vname == "female",
                    rf,
                )
                for contrast in ("t1w", "t2w"):
                    img = sitk.ReadImage(str(out / f"{contrast}.nii.gz"))
                    evaluate(
                        f"phantom{seed} {vname} {contrast}",
                        img,
                        truth,
                        PHANTOM_NAMES,
                        levels,
                        list(MUSCLE_NAMES),
                        False,
                        rf,
                    )
                errs = canal_errors(
                    dixon, sitk.GetArrayFromImage(truth), BY_NAME["spinal_canal"].value, truth.GetSpacing()
                )
                print(
                    f"{'':<24}canal error (dixon) median {np.median(errs):.1f} / max {np.max(errs):.1f} mm over {len(errs)} slices"
                )
                errs = canal_errors(
                    sitk.ReadImage(str(out / "t1w.nii.gz")),
                    sitk.GetArrayFromImage(truth),
                    BY_NAME["spinal_canal"].value,
                    truth.GetSpacing(),
                )
                print(
                    f"{'':<24}canal error (t1w) median {np.median(errs):.1f} / max {np.max(errs):.1f} mm over {len(errs)} slices"
                )
    tum = SHARED / "myosegmentum_tum01"
    if tum.exists():
        inputs = {
            "water": sitk.ReadImage(str(tum / "water.nii.gz")),
            "fat": sitk.ReadImage(str(tum / "fat.nii.gz")),
        }
        truth = sitk.ReadImage(str(tum / "labels.nii.gz"))
        slabs = np.array_split(np.arange(truth.GetSize()[2]), 4)
        levels = {f"L{n + 2}": (int(s[0]), int(s[-1])) for n, s in enumerate(slabs)}
        structures = list(TUM01_LABEL_NAMES.values())
        evaluate("tum01 dixon", inputs, truth, TUM01_LABEL_NAMES, levels, structures, run_seg, rf)
        w = sitk.Cast(inputs["water"], sitk.sitkFloat32)
        w.CopyInformation(inputs["fat"])
        inphase = w + sitk.Cast(inputs["fat"], sitk.sitkFloat32)
        evaluate("tum01 in-phase (F+W)", inphase, truth, TUM01_LABEL_NAMES, levels, structures, False, rf)
        evaluate("tum01 dixon, no levels", inputs, truth, TUM01_LABEL_NAMES, None, structures, False)
    mm = SHARED / "musclemap_sub0001"
    if mm.exists():
        img, truth = sitk.ReadImage(str(mm / "image.nii.gz")), sitk.ReadImage(str(mm / "labels.nii.gz"))
        six = [n for n in MUSCLE_NAMES if "quadratus" not in n]
        evaluate("musclemap t1 (6)", img, truth, MUSCLEMAP_LABEL_NAMES, None, six, run_seg, rf)
        evaluate("musclemap t1 (MF+ES)", img, truth, MUSCLEMAP_LABEL_NAMES, None, six[:4], False, rf)
        evaluate(
            "musclemap t1 (QL)",
            img,
            truth,
            MUSCLEMAP_LABEL_NAMES,
            None,
            [n for n in MUSCLE_NAMES if "quadratus" in n],
            False,
        )
    ts = SHARED / "totalseg_mr_example"
    if ts.exists():
        img, seg = sitk.ReadImage(str(ts / "image.nii.gz")), sitk.ReadImage(str(ts / "seg.nii.gz"))
        errs = canal_errors(img, sitk.GetArrayFromImage(seg), 21, seg.GetSpacing())
        print(
            f"{'totalseg_mr (cord)':<22} canal error median {np.median(errs):.1f} / max {np.max(errs):.1f} mm over {len(errs)} slices"
        )


if __name__ == "__main__":
    main()
