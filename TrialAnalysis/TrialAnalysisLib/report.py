"""The trial report: run the statistical analysis plan on a trial dataset and render HTML (+ PDF).

``run_analyses(data, imputations=20, seed=1)`` returns every result (primary ITT ANCOVA with MICE,
complete-case and per-protocol sensitivity analyses, responders at the MCID, mixed models for
ODI/VAS/JOA by visit, KM/log-rank/Cox for recurrence, subgroups, safety and conduct tables);
``render_report(data, out_dir)`` writes ``report.html`` (self-contained: figures embedded as
base64 PNG, no external resources), ``report.pdf`` (matplotlib PdfPages: figures + text tables),
``results.json`` and the figures as PNG beside them, stamped with package versions, the data
hash (SHA-256 over the dataset's CSV, JSON and checksum files) and the seed.

A coded dataset (arm_coding.csv, e.g. the randomisation service's coded export) gives the blinded
report: arms are ``Arm A``/``Arm B`` in every table and figure, effects are Arm A − Arm B with
two-sided p-values (which arm is the intervention, and so the direction of the protocol's one-sided
hypothesis, is unknown), and arm-revealing material (exercise-diary compliance, a simulation's
planted truth) is left out.

Every output is first written into a hidden staging folder inside ``out_dir`` and moved into
place only when the whole report is done (``results.json`` last, so it marks a complete run), through
``ParaspinalLBPCore.staging``: an interrupted, cancelled or killed run leaves the previous report, if
any, or the complete new one (a kill during the final moves is finished by the next run or by the
Slicer job that was cancelled). ``progress(stage)`` callbacks are called before each of
:func:`report_stages` (the CLI's ``--progress`` lines).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import os
import platform
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ParaspinalLBPCore.staging import staged_files
from TrialAnalysisLib import consort, survival, tables
from TrialAnalysisLib.ancova import ancova
from TrialAnalysisLib.mixed import mixed_model
from TrialAnalysisLib.results import fmt_p
from TrialAnalysisLib.sample_size import plot_power_curve, protocol_statement
from TrialAnalysisLib.sample_size import sample_size as sample_size_fn
from TrialAnalysisLib.schema import UNBLINDED, ArmCoding, arm_coding, load_trial

MCID = 10.0
COVARIATES = ["odi_baseline", "sex", "centre"]
AUXILIARY = ["odi_eoi_6w", "odi_m1", "odi_m3", "odi_m6", "age", "mean_ff_pct", "vas_baseline"]

#: Stages of :func:`run_analyses`, in order (each announced through ``progress`` before it runs).
ANALYSIS_STAGES = (
    "primary ANCOVA (multiple imputation)",
    "sensitivity analyses (complete case, per protocol)",
    "mixed model ODI",
    "mixed model VAS",
    "mixed model JOA",
    "subgroups",
    "recurrence (KM, log-rank, Cox)",
    "Table 1, safety and conduct tables",
)
#: Stages :func:`render_report` adds after the analyses.
RENDER_STAGES = ("figures", "report.html and results.json", "report.pdf")

Progress = Callable[[str], None]


def report_stages(pdf: bool = True) -> list[str]:
    """The stages :func:`render_report` announces, in order (so callers know the total in advance)."""
    return [*ANALYSIS_STAGES, *(s for s in RENDER_STAGES if pdf or s != "report.pdf")]


def _noop(stage: str) -> None:
    return None


def data_hash(directory: str | Path | None) -> str:
    """SHA-256 over the dataset's CSV/JSON files (sorted by name), so a report names its exact data."""
    if directory is None:
        return "unknown"
    h = hashlib.sha256()
    for f in sorted(Path(directory).glob("*")):
        if f.suffix in (".csv", ".json", ".sha256") and f.is_file():
            h.update(f.name.encode())
            h.update(f.read_bytes())
    return h.hexdigest()


def versions() -> dict[str, str]:
    """Versions of Python and the numerical packages used."""
    out = {"python": platform.python_version()}
    for pkg in ("numpy", "pandas", "scipy", "statsmodels", "matplotlib", "jinja2"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def run_analyses(
    data: Any, imputations: int = 20, seed: int = 1, progress: Progress | None = None
) -> dict[str, Any]:
    """Run the SAP on ``data`` (TrialData); returns named results and tables.

    ``progress(stage)`` is called before each of ``ANALYSIS_STAGES`` (always all of them, in order).
    """
    step = iter(ANALYSIS_STAGES)
    say = progress or _noop
    arms = arm_coding(data)
    wide = tables.wide_frame(data)
    res: dict[str, Any] = {"wide": wide, "arms": arms}
    alternative = "two-sided" if arms.coded else "less"  # coded: the protocol's direction is unknown
    kw = {"reference": arms.reference, "alternative": alternative, "responder_threshold": -MCID}
    say(next(step))
    res["primary_mi"] = ancova(
        wide,
        "odi_change_12m",
        "arm",
        COVARIATES,
        imputations=imputations,
        auxiliary=[a for a in AUXILIARY if a in wide.columns],
        seed=seed,
        **kw,
    )
    say(next(step))
    res["primary_cc"] = ancova(wide, "odi_change_12m", "arm", COVARIATES, **kw)
    pp = wide[wide["per_protocol"].eq(True)]  # missing flag = not per protocol
    res["primary_pp"] = ancova(pp, "odi_change_12m", "arm", COVARIATES, **kw)
    res["mixed"] = {}
    for score in ("odi", "vas", "joa"):
        say(next(step))
        long = tables.long_frame(wide, score)
        res["mixed"][score] = mixed_model(
            long,
            score,
            "visit",
            "arm",
            "participant_id",
            covariates=[f"{score}_baseline", "sex", "centre"],
            reference=arms.reference,
        )
    say(next(step))
    res["subgroups"] = tables.subgroup_effects(wide, reference=arms.reference)
    say(next(step))
    if data.recurrence is not None:
        rec = data.recurrence.merge(wide[["participant_id", "arm", "centre", "sex"]], on="participant_id")
        rec["arm"] = rec["arm"].astype(str)
        rec["time_days"] = rec["time_days"].astype(float)
        rec["event"] = rec["event"].astype(float)
        res["km"] = survival.kaplan_meier(rec, "time_days", "event", "arm")
        res["logrank"] = survival.logrank(rec, "time_days", "event", "arm", strata=["centre", "sex"])
        res["cox"] = survival.cox(
            rec, "time_days", "event", ["arm"], references={"arm": arms.reference}, strata=["centre", "sex"]
        )
        res["zph"] = survival.cox_zph(res["cox"])
    say(next(step))
    res["table1"] = tables.table1(wide)
    res["ae"] = tables.ae_tables(data.adverse_events, wide)
    res["compliance"] = tables.compliance_summary(
        wide, data.compliance, diary_arm=None if arms.coded else "exercise"
    )
    res["nass"], res["nass_tests"] = tables.nass_comparison(wide)
    res["consort"] = consort.consort_counts(data)
    res["sample_size"] = sample_size_fn(n_per_arm_total=157)
    return res


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_forest(sub: pd.DataFrame, overall: pd.Series, path: Path, arms: ArmCoding = UNBLINDED) -> None:
    """Forest plot of the adjusted difference between the arms (``arms.contrast``) by subgroup level."""
    plt = _plt()
    rows = [("Overall (ITT, MI)", overall["estimate"], overall["ci_low"], overall["ci_high"], "")]
    for _, r in sub.iterrows():
        rows.append(
            (
                f"{r['subgroup']}: {r['level']} (n={r['n']})",
                r["estimate"],
                r["ci_low"],
                r["ci_high"],
                f"p_int={r.get('p_interaction', np.nan):.2f}",
            )
        )
    fig, ax = plt.subplots(figsize=(7, 0.35 * len(rows) + 1.2))
    for i, (_lab, e, lo, hi, _) in enumerate(rows):
        y = len(rows) - i
        ax.plot([lo, hi], [y, y], color="C0" if i else "k")
        ax.plot(e, y, "s" if i else "D", color="C0" if i else "k")
    ax.set_yticks([len(rows) - i for i in range(len(rows))], [r[0] for r in rows], fontsize=8)
    ax.axvline(0, color="0.5", lw=0.8)
    ax.axvline(-MCID, color="C3", ls=":", lw=0.8, label=f"−MCID ({MCID:g})")
    ax.set_xlabel(f"{arms.contrast}, 12-month ODI change (points; < 0 favours {arms.compared})")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_trajectories(res: dict[str, Any], path: Path) -> None:
    """Estimated marginal means (95 % CI) by visit and arm for ODI, VAS and JOA."""
    plt = _plt()
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
    for ax, (score, r) in zip(axes, res["mixed"].items(), strict=True):
        emm = r.tables["emmeans"]
        for i, (arm, g) in enumerate(emm.groupby("arm", sort=False)):
            x = np.arange(len(g)) + (i - 0.5) * 0.08
            ax.errorbar(
                x,
                g["estimate"],
                yerr=[g["estimate"] - g["ci_low"], g["ci_high"] - g["estimate"]],
                marker="o",
                capsize=3,
                label=str(arm),
            )
        ax.set_xticks(range(len(g)), [str(v) for v in g["time"]])
        ax.set(title=score.upper(), xlabel="visit", ylabel=f"{score.upper()} (EMM)")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _html_table(df: pd.DataFrame, digits: int = 3) -> str:
    d = df.copy()
    for c in d.columns:
        if c == "p" or c.startswith(("p_", "p ")) or c.endswith("_p"):
            d[c] = [fmt_p(v) if isinstance(v, (float, np.floating)) else v for v in d[c]]
        elif pd.api.types.is_float_dtype(d[c]):
            d[c] = d[c].map(
                lambda v: "" if pd.isna(v) else f"{v:.{digits}g}" if abs(v) >= 1000 else f"{v:.{digits}f}"
            )
    return d.to_html(index=False, border=0, classes="tab", na_rep="")


def _primary_rows(res: dict[str, Any]) -> pd.DataFrame:
    arms: ArmCoding = res["arms"]
    rows = []
    for key, label in (
        ("primary_mi", "ITT, multiple imputation (primary)"),
        ("primary_cc", "complete cases"),
        ("primary_pp", "per protocol (compliance ≥ 75 %)"),
    ):
        r = res[key]
        d = r.tables["difference"].iloc[0]
        lsm = r.tables["lsmeans"].set_index("arm")["estimate"]
        rows.append(
            {
                "analysis": label,
                "n": r.info["n_analysed"],
                f"LS-mean {arms.compared}": lsm.get(arms.compared, np.nan),
                f"LS-mean {arms.reference}": lsm.get(arms.reference, np.nan),
                "difference": d["estimate"],
                "se": d["se"],
                "df": d["df"],
                "ci_low": d["ci_low"],
                "ci_high": d["ci_high"],
                f"p ({'two' if arms.coded else 'one'}-sided)": d["p"],
            }
        )
    return pd.DataFrame(rows)


def render_report(
    data: Any,
    out_dir: str | Path,
    imputations: int = 20,
    seed: int = 1,
    pdf: bool = True,
    progress: Progress | None = None,
) -> Path:
    """Run the SAP on ``data`` and write report.html (+ report.pdf, results.json, PNGs) to ``out_dir``.

    All files are made in a staging folder and moved into ``out_dir`` at the end, results.json last;
    if the run stops early (error, Ctrl-C, SIGTERM, SIGKILL) nothing in ``out_dir`` changes.
    """
    if isinstance(data, (str, Path)):
        data = load_trial(data)
    out = Path(out_dir)
    with staged_files(out, label="report", last=("results.json",)) as staging:
        _render(data, staging, imputations, seed, pdf, progress or _noop)
        for f in staging.iterdir():
            os.chmod(f, 0o644)
    return out / "report.html"


def _render(data: Any, out: Path, imputations: int, seed: int, pdf: bool, say: Progress) -> None:
    """Analyses, figures, HTML, results.json and PDF, all written into ``out`` (the staging folder)."""
    import jinja2

    res = run_analyses(data, imputations=imputations, seed=seed, progress=say)
    arms: ArmCoding = res["arms"]
    say("figures")
    figs = report_figures(res, out)
    say("report.html and results.json")
    images = {k: base64.b64encode(p.read_bytes()).decode() for k, p in figs.items()}
    meta = {
        "generated": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "data_dir": str(data.directory),
        "data_hash": data_hash(data.directory),
        "seed": seed,
        "imputations": imputations,
        "versions": versions(),
        "arm_coding": arms.to_dict(),
    }
    headline = _headline(res, imputations)
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
    )
    html = env.get_template("report.html.j2").render(
        meta=meta,
        images=images,
        t=_report_tables(res),
        headline=headline,
        res=res,
        fmt_p=fmt_p,
        sample_size_text=protocol_statement(),
        truth={} if arms.coded else (data.truth or {}),  # the planted effect's sign would decode the arms
        arms=arms,
    )
    (out / "report.html").write_bytes(html.encode())
    summary = {
        "meta": meta,
        "primary": {k: res[k].to_dict() for k in ("primary_mi", "primary_cc", "primary_pp")},
        "consort": res["consort"],
        "nass_tests": res["nass_tests"],
    }
    if "cox" in res:
        summary["cox"] = res["cox"].to_dict()
        summary["logrank"] = res["logrank"].to_dict()
    (out / "results.json").write_bytes(json.dumps(summary, indent=2, default=str).encode())
    if pdf:
        say("report.pdf")
        _write_pdf(out / "report.pdf", res, figs, meta, headline)


def _headline(res: dict[str, Any], imputations: int) -> str:
    """The primary result in one sentence; for coded arms, said to be blinded and direction-free."""
    arms: ArmCoding = res["arms"]
    d = res["primary_mi"].tables["difference"].iloc[0]
    sided = "two-sided" if d["alternative"] == "two-sided" else "one-sided"
    text = (
        f"Adjusted difference ({arms.contrast}) in 12-month ODI change: {d['estimate']:.2f} points "
        f"(95 % CI {d['ci_low']:.2f} to {d['ci_high']:.2f}; {sided} p = {fmt_p(d['p'])}), "
        f"ITT with {imputations} imputations."
    )
    if arms.coded:
        text = f"BLINDED (arms coded {' and '.join(arms.values)}). {text} Which arm is the intervention is not known here."
    return text


def report_figures(res: dict[str, Any], out: Path, fmt: str = "png") -> dict[str, Path]:
    """The report's figures in ``out`` (format ``fmt``: png for the report, svg or pdf to read their
    text): CONSORT, subgroup forest, trajectories, KM and PH check (with recurrence data), power curve."""
    figs: dict[str, Path] = {}
    figs["consort"] = out / f"consort.{fmt}"
    consort.plot_consort(res["consort"], figs["consort"])
    figs["forest"] = out / f"forest_subgroups.{fmt}"
    plot_forest(res["subgroups"], res["primary_mi"].tables["difference"].iloc[0], figs["forest"], res["arms"])
    figs["trajectories"] = out / f"trajectories.{fmt}"
    plot_trajectories(res, figs["trajectories"])
    if "km" in res:
        figs["km"] = out / f"km_recurrence.{fmt}"
        survival.plot_km(
            res["km"],
            figs["km"],
            times=[0, 90, 180, 270, 365],
            xlabel="Days since end of intervention",
            ylabel="Recurrence-free",
        )
        figs["zph"] = out / f"cox_zph.{fmt}"
        survival.plot_zph(res["zph"], figs["zph"])
    figs["power"] = out / f"power_curve.{fmt}"
    plot_power_curve(figs["power"])
    return figs


def _report_tables(res: dict[str, Any]) -> dict[str, Any]:
    """The HTML tables the report template places (by name)."""
    pm = res["primary_mi"]
    t = {
        "primary": _html_table(_primary_rows(res)),
        "type3": _html_table(pm.tables["type3"]),
        "responder": _html_table(pm.tables["responder"].drop(columns=["df", "statistic"], errors="ignore")),
        "table1": res["table1"].to_html(index=False, border=0, classes="tab"),
        "subgroups": _html_table(res["subgroups"]),
        "mixed": {s: _html_table(r.tables["contrasts"]) for s, r in res["mixed"].items()},
        "mixed_f": {s: _html_table(r.tables["F_tests"]) for s, r in res["mixed"].items()},
        "ae": {k: v.to_html(index=False, border=0, classes="tab") for k, v in res["ae"].items()},
        "compliance": res["compliance"].to_html(index=False, border=0, classes="tab"),
        "nass": res["nass"].to_html(index=False, border=0, classes="tab"),
        "sample_size": _html_table(res["sample_size"].table),
    }
    if "km" in res:
        t["km"] = _html_table(res["km"].table[["term", "estimate", "ci_low", "ci_high", "n", "events"]])
        t["risk"] = survival.risk_table(res["km"], [0, 90, 180, 270, 365]).to_html(border=0, classes="tab")
        t["logrank"] = _html_table(res["logrank"].tables["groups"])
        t["cox"] = _html_table(
            res["cox"].table[["term", "estimate", "se", "p", "hr", "hr_ci_low", "hr_ci_high"]]
        )
        t["zph"] = _html_table(res["zph"].table)
    return t


def _text_page(pdf: Any, title: str, text: str) -> None:
    plt = _plt()
    fig = plt.figure(figsize=(8.27, 11.69))
    fig.text(0.05, 0.97, title, fontsize=13, weight="bold", va="top")
    fig.text(0.05, 0.93, text, fontsize=6.5, family="monospace", va="top")
    pdf.savefig(fig)
    plt.close(fig)


def pdf_text_pages(res: dict[str, Any], meta: dict[str, Any], headline: str) -> list[tuple[str, str]]:
    """(title, monospaced text) of the PDF's text pages: key tables, then secondary, safety and conduct."""
    with pd.option_context("display.width", 150, "display.max_columns", 20, "display.precision", 3):
        parts = [
            headline,
            "",
            f"data hash {meta['data_hash'][:16]}…  seed {meta['seed']}  "
            f"imputations {meta['imputations']}  {meta['versions']}",
            "",
            "Primary and sensitivity analyses",
            _primary_rows(res).to_string(index=False),
            "",
            "Type III tests (MI, D1)",
            res["primary_mi"].tables["type3"].to_string(index=False),
            "",
            "Table 1",
            res["table1"].to_string(index=False),
        ]
        pages = [("METNLBP trial report" + (" (BLINDED: arms coded)" if res["arms"].coded else ""), parts)]
        parts = ["Mixed models: arm contrasts by visit"]
        for s, r in res["mixed"].items():
            table = r.tables["contrasts"][["term", "estimate", "se", "df", "p", "ci_low", "ci_high"]]
            parts += [s.upper(), table.to_string(index=False), ""]
        if "cox" in res:
            parts += [
                "Cox (stratified by centre, sex)",
                res["cox"].table.to_string(index=False),
                "",
                "Log-rank (stratified)",
                res["logrank"].tables["groups"].to_string(index=False),
            ]
        parts += [
            "",
            "Adverse events",
            res["ae"]["overview"].to_string(index=False),
            "",
            "Compliance",
            res["compliance"].to_string(index=False),
            "",
            "NASS",
            res["nass"].to_string(index=False),
        ]
        pages.append(("Secondary, safety and conduct", parts))
    return [(title, "\n".join(lines)) for title, lines in pages]


def _write_pdf(
    path: Path, res: dict[str, Any], figs: dict[str, Path], meta: dict[str, Any], headline: str
) -> None:
    """PDF via matplotlib PdfPages: the text pages of :func:`pdf_text_pages`, then one page per figure."""
    from matplotlib.backends.backend_pdf import PdfPages

    plt = _plt()
    with PdfPages(path) as pdf:
        for title, text in pdf_text_pages(res, meta, headline):
            _text_page(pdf, title, text)
        for name, p in figs.items():
            img = plt.imread(p)
            fig = plt.figure(figsize=(8.27, 11.69))
            ax = fig.add_axes((0.05, 0.3, 0.9, 0.65))
            ax.imshow(img)
            ax.axis("off")
            ax.set_title(name)
            pdf.savefig(fig)
            plt.close(fig)
