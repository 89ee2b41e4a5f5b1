"""The agreement report: ``agreement.csv`` (per muscle × level), ``agreement_cases.csv`` (per case),
Bland–Altman and Dice/ASSD plots (PNG, matplotlib Agg) and ``report.html`` linking them.

Written into a staging folder beside ``out`` and swapped into place when complete
(``ParaspinalLBPCore.staging``), so a report is never half written: a run stopped at any moment leaves
the earlier report in ``out`` or the complete new one.
"""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np
import pandas as pd

from ParaspinalLBPCore.errors import BadInputError
from ParaspinalLBPCore.staging import staged_dir
from ParaspinalSegLib.agreement import MEASURES, AgreementResult

REFERENCES = (
    "Shrout PE, Fleiss JL. Intraclass correlations: uses in assessing rater reliability. Psychol Bull 1979;86:420–8.",
    "McGraw KO, Wong SP. Forming inferences about some intraclass correlation coefficients. Psychol Methods "
    "1996;1:30–46.",
    "Bland JM, Altman DG. Statistical methods for assessing agreement between two methods of clinical "
    "measurement. Lancet 1986;i:307–10.",
    "Bland JM, Altman DG. Measuring agreement in method comparison studies. Stat Methods Med Res 1999;8:135–60.",
    "Carkeet A. Exact parametric confidence intervals for Bland–Altman limits of agreement. Optom Vis Sci "
    "2015;92:e71–80.",
    "Dice LR. Measures of the amount of ecologic association between species. Ecology 1945;26:297–302.",
)


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def bland_altman_figure(result: AgreementResult, measure: str, structure: str, path: Path) -> Path:
    """One panel per level: (mean of A and B, A − B) per case; bias (green) and limits of agreement (red)
    as solid lines, their 95 % CIs dotted."""
    rows = result.summary[result.summary["structure"] == structure]
    levels = list(rows["level"])
    fig = _figure(2.6 * len(levels) + 0.6, 2.8)
    axes = fig.subplots(1, len(levels), squeeze=False)[0]
    for ax, level in zip(axes, levels, strict=True):
        g = result.cases[(result.cases["structure"] == structure) & (result.cases["level"] == level)]
        a, b = g[f"{measure}_a"].astype(float), g[f"{measure}_b"].astype(float)
        ax.scatter((a + b) / 2, a - b, s=12, color="#1565c0", zorder=3)
        s = rows[rows["level"] == level].iloc[0]
        for key, color in (("bias", "#2e7d32"), ("loa_lower", "#c62828"), ("loa_upper", "#c62828")):
            ax.axhline(s[f"{measure}_ba_{key}"], color=color, lw=1.2)
            for end in ("lo", "hi"):
                ax.axhline(s[f"{measure}_ba_{key}_{end}"], color=color, lw=0.8, ls=":")
        ax.set_title(level, fontsize=9)
        ax.set_xlabel(f"mean of A and B, {MEASURES[measure]}", fontsize=7)
        ax.tick_params(labelsize=7)
    axes[0].set_ylabel(f"A − B, {MEASURES[measure]}", fontsize=8)
    fig.suptitle(f"{structure.replace('_', ' ')}: {MEASURES[measure]}", fontsize=9)
    fig.subplots_adjust(left=0.6 / fig.get_figwidth(), right=0.98, bottom=0.18, top=0.82, wspace=0.3)
    fig.savefig(path)
    return path


def overlap_figure(result: AgreementResult, path: Path) -> Path:
    """Dice and ASSD of every case × level per muscle (one dot per case and level)."""
    rows = result.cases[result.cases["level"] != "all"]
    rows = rows if not rows.empty else result.cases
    names = list(dict.fromkeys(result.summary["structure"]))
    fig = _figure(max(6.0, 0.9 * len(names) + 1.5), 5.0)
    axes = fig.subplots(2, 1, sharex=True)
    rng = np.random.default_rng(0)  # jitter only, fixed for reproducible figures
    for ax, metric, label in ((axes[0], "dice", "Dice"), (axes[1], "assd_mm", "ASSD (mm)")):
        for x, name in enumerate(names):
            v = rows.loc[rows["structure"] == name, metric].astype(float).dropna()
            ax.scatter(x + rng.uniform(-0.2, 0.2, len(v)), v, s=8, alpha=0.7)
        ax.set_ylabel(label, fontsize=8)
        ax.tick_params(labelsize=7)
    axes[1].set_xticks(range(len(names)), [n.replace("_", " ") for n in names], rotation=30, ha="right")
    fig.subplots_adjust(left=0.1, right=0.98, bottom=0.22, top=0.97, hspace=0.08)
    fig.savefig(path)
    return path


def _ci(row: pd.Series, key: str, digits: int = 2) -> str:
    v, lo, hi = (row.get(k, np.nan) for k in (key, f"{key}_lo", f"{key}_hi"))
    if not np.isfinite(v):
        return "–"
    ci = f" [{lo:.{digits}f}, {hi:.{digits}f}]" if np.isfinite(lo) and np.isfinite(hi) else ""
    return f"{v:.{digits}f}{ci}"


def _table(result: AgreementResult) -> str:
    head = ["muscle", "level", "n", "Dice", "ASSD mm", "HD95 mm"]
    for m in result.measures:
        head += [f"{MEASURES[m]} ICC(2,1)", "ICC(3,1)", "bias", "limits of agreement"]
    body = []
    for _, r in result.summary.iterrows():
        cells = [r["structure"].replace("_", " "), r["level"], str(r["n_cases"]),
                 f"{r['dice_mean']:.3f} ± {r['dice_sd']:.3f}" if np.isfinite(r["dice_sd"]) else f"{r['dice_mean']:.3f}",
                 f"{r['assd_mm_mean']:.2f}", f"{r['hd95_mm_mean']:.2f}"]  # fmt: skip
        for m in result.measures:
            cells += [_ci(r, f"{m}_icc21"), _ci(r, f"{m}_icc31"), _ci(r, f"{m}_ba_bias")]
            cells.append(f"{_ci(r, f'{m}_ba_loa_lower')} to {_ci(r, f'{m}_ba_loa_upper')}")
        body.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    return (
        "<table><tr>"
        + "".join(f"<th>{html.escape(h)}</th>" for h in head)
        + "</tr>"
        + "".join(body)
        + "</table>"
    )


def _page(result: AgreementResult, figures: list[str], a: str, b: str) -> str:
    refs = "".join(f"<li>{html.escape(r)}</li>" for r in REFERENCES)
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in result.notes)
    figs = "".join(f'<figure><img src="{html.escape(f)}" alt="{html.escape(f)}"></figure>' for f in figures)
    n = result.cases["case_id"].nunique()
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Rater agreement</title>
<style>body{{font-family:sans-serif;margin:1em 2em}}table{{border-collapse:collapse;font-size:12px}}
td,th{{border:1px solid #ccc;padding:2px 6px;text-align:right}}figure{{margin:.5em 0}}img{{max-width:100%}}</style>
</head><body><h1>Segmentation agreement</h1>
<p>Rater A: <code>{html.escape(a)}</code>; rater B: <code>{html.escape(b)}</code>; {n} cases in common.
Tables: <a href="agreement.csv">agreement.csv</a> (per muscle × level), <a href="agreement_cases.csv">agreement_cases.csv</a>
(per case).</p>{f"<ul>{notes}</ul>" if notes else ""}
<p>Dice and ASSD/HD95 (in-plane outlines, mm) as mean over cases (± SD for Dice). ICC(2,1): two-way random effects,
absolute agreement; ICC(3,1): two-way mixed, consistency; 95 % CIs (McGraw &amp; Wong 1996). Bland–Altman: bias =
mean(A − B) with its t interval; limits of agreement bias ± 1.96 SD with exact 95 % CIs (Carkeet 2015).</p>
{_table(result)}<h2>Figures</h2>{figs}<h2>References</h2><ol>{refs}</ol></body></html>"""


def write_report(result: AgreementResult, out: str | Path, folder_a: str, folder_b: str) -> Path:
    """Write the tables, figures and ``report.html`` into ``out`` (replaced as a whole); returns the page."""
    out = Path(out)
    if out.is_dir() and any(out.iterdir()) and not (out / "agreement.csv").is_file():
        raise BadInputError(
            f"--out {out}: folder exists and is not an agreement report; choose a new or empty folder"
        )
    with staged_dir(out) as stage:
        result.summary.to_csv(stage / "agreement.csv", index=False)
        result.cases.to_csv(stage / "agreement_cases.csv", index=False)
        (stage / "figures").mkdir()
        figures = [overlap_figure(result, stage / "figures" / "overlap.png")]
        for m in result.measures:
            for structure in dict.fromkeys(result.summary["structure"]):
                figures.append(
                    bland_altman_figure(result, m, structure, stage / "figures" / f"ba_{m}_{structure}.png")
                )
        rel = [p.relative_to(stage).as_posix() for p in figures]
        (stage / "report.html").write_text(_page(result, rel, str(folder_a), str(folder_b)), encoding="utf-8")
    return out / "report.html"
