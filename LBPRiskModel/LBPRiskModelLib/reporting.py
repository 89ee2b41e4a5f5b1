"""Model card, TRIPOD+AI checklist and the self-contained HTML report (images embedded, no external resources)."""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any

from LBPRiskModelLib.bundle import DISCLAIMER_EN, DISCLAIMER_ZH
from ParaspinalLBPCore.atomic import atomic_write_text

FAMILY_NAMES = {
    "logistic_regression": "Logistic regression",
    "random_forest": "Random forest",
    "xgboost": "XGBoost",
    "lightgbm": "LightGBM",
    "mlp": "Multilayer perceptron",
}


def _f(x: Any, nd: int = 3) -> str:
    if x is None:
        return "–"
    if isinstance(x, float):
        return "–" if x != x else f"{x:.{nd}f}"
    return str(x)


def metrics_rows(metrics: dict[str, Any]) -> list[list[str]]:
    """One row per model family with the headline test-set metrics."""
    rows = []
    for fam, m in metrics["families"].items():
        lo, hi = m["test_auc_ci_delong"]
        blo, bhi = m["test_auc_ci_bootstrap"]
        sel = " ★" if fam == metrics["selected_model"] else ""
        rows.append(
            [
                FAMILY_NAMES.get(fam, fam) + sel,
                _f(m["cv_auc"]),
                f"{_f(m['test_auc'])} ({_f(lo)}–{_f(hi)})",
                f"{_f(blo)}–{_f(bhi)}",
                _f(m["optimism_corrected_auc"]),
                _f(m["threshold"]),
                _f(m["sensitivity"]),
                _f(m["specificity"]),
                _f(m["ppv"]),
                _f(m["npv"]),
                _f(m["f1"]),
                _f(m["brier"]),
                _f(m["calibration_slope"], 2),
                _f(m["calibration_intercept"], 2),
                _f(m.get("vs_clinical_only", {}).get("p_delong")),
            ]
        )
    return rows


METRIC_HEAD = [
    "Model",
    "CV AUC (train)",
    "Test AUC (DeLong 95% CI)",
    "Bootstrap 95% CI",
    "Optimism-corrected AUC",
    "Threshold",
    "Sens",
    "Spec",
    "PPV",
    "NPV",
    "F1",
    "Brier",
    "Cal. slope",
    "Cal. intercept",
    "p vs clinical-only (DeLong)",
]


def _md_table(head: list[str], rows: list[list[str]]) -> str:
    out = "| " + " | ".join(head) + " |\n|" + "---|" * len(head) + "\n"
    return out + "".join("| " + " | ".join(r) + " |\n" for r in rows)


def _html_table(head: list[str], rows: list[list[Any]]) -> str:
    h = "".join(f"<th>{html.escape(str(c))}</th>" for c in head)
    b = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{h}</tr></thead><tbody>{b}</tbody></table>"


def model_card(
    meta: dict[str, Any], metrics: dict[str, Any], schema: list[Any], explain_info: dict[str, Any]
) -> tuple[str, str]:
    """Model card as Markdown and as standalone HTML."""
    fam = meta["model_name"]
    m = metrics["families"][fam]
    dr = metrics["data_report"]
    fields = [[f.name, f.label_en, f.label_zh, f.type, f.unit, _f(f.min), _f(f.max)] for f in schema]
    md = f"""# Model card — {FAMILY_NAMES.get(fam, fam)} (version {meta.get("model_version", "")})

## Intended use
{meta["intended_use"]}

**Outcome:** {meta["outcome_definition"]}

**Disclaimer:** {meta.get("disclaimer_en") or DISCLAIMER_EN}

**免责声明：** {meta.get("disclaimer_zh") or DISCLAIMER_ZH}

## Development data
{dr["n_rows"]} cases with known outcome ({dr["n_events"]} events, prevalence {dr["prevalence"]:.1%});
{dr["n_candidate_predictors"]} candidate predictors (events per variable {dr["events_per_variable"]:.2f});
stratified split: {metrics["n_train"]} training ({metrics["events_train"]} events) / {metrics["n_test"]} test ({metrics["events_test"]} events).

## Model
Selected: **{FAMILY_NAMES.get(fam, fam)}** — {metrics["selection_reason"]}
Hyper-parameters: `{json.dumps(m["best_params"])}`.
Decision threshold {m["threshold"]:.3f} ({meta["threshold_method"]}).
Risk groups: {", ".join(meta["risk_groups"]["names"])} with cut-offs {meta["risk_groups"]["cutoffs"]} ({meta["risk_groups"]["method"]}).
Explanations at prediction time: {explain_info["method"]}.

## Performance (test set, touched once)
{_md_table(METRIC_HEAD, metrics_rows(metrics))}
★ = deployed model. {"Protocol configuration." if metrics.get("protocol_config") else "NOTE: quick (non-protocol) configuration."}

## Inputs
{_md_table(["field", "label", "标签", "type", "unit", "train min", "train max"], fields)}

## Limitations
- Internal validation only (one random split + bootstrap optimism correction); external validation pending.
- Small sample: events per variable {dr["events_per_variable"]:.2f}; wide confidence intervals are expected.
- Inputs outside the training range are flagged as extrapolation; missing inputs are imputed with training medians/modes.
- Harrell's bootstrap optimism correction can under-state the optimism of flexible models (trees, MLP) whose apparent AUC is near 1; read it together with the held-out test AUC.
"""
    body = _md_to_html(md)
    return md, _page(f"Model card — {fam}", body)


def _md_to_html(md: str) -> str:
    """Minimal Markdown → HTML (headings, tables, paragraphs) for the model card."""
    out, table = [], []
    for line in [*md.splitlines(), ""]:
        if line.startswith("|"):
            table.append([c.strip() for c in line.strip("|").split("|")])
            continue
        if table:
            out.append(_html_table(table[0], [r for r in table[2:]]))
            table = []
        if line.startswith("## "):
            out.append(f"<h2>{html.escape(line[3:])}</h2>")
        elif line.startswith("# "):
            out.append(f"<h1>{html.escape(line[2:])}</h1>")
        elif line.startswith("- "):
            out.append(f"<li>{html.escape(line[2:])}</li>")
        elif line.strip():
            out.append(f"<p>{html.escape(line).replace('**', '')}</p>")
    return "\n".join(out)


CSS = """body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;font-size:12px;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}
th{background:#eee}td:first-child{text-align:left}img{max-width:100%;border:1px solid #ddd;margin:4px}
.grid{display:flex;flex-wrap:wrap}.grid figure{max-width:48%;margin:4px}"""


def _page(title: str, body: str) -> str:
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{CSS}</style></head><body>{body}</body></html>"
    )


TRIPOD_ITEMS = [
    ("1", "Title: identifies the study as developing a prediction model, the population and outcome"),
    ("3a", "Background / intended use of the model"),
    ("5a", "Source of data"),
    ("6a", "Eligibility criteria of participants"),
    ("7a", "Data preparation (pre-processing, harmonisation)"),
    ("8a", "Outcome definition"),
    ("9a", "Predictors: definition and handling"),
    ("10", "Sample size (events per variable)"),
    ("11", "Missing data handling"),
    ("12a", "Analytical methods: model type, predictor selection, tuning, internal validation"),
    ("12b", "Class imbalance handling"),
    ("12c", "Fairness: performance in subgroups"),
    ("12d", "Model output and threshold"),
    ("12e", "Performance measures: discrimination, calibration, clinical utility"),
    ("14", "Open science: code and model availability, model versioning"),
    ("20a", "Participants: flow, outcome events"),
    ("22", "Model specification (available for use)"),
    ("23a", "Model performance with CIs"),
    ("23b", "Subgroup performance"),
    ("26", "Interpretation, limitations"),
]


def tripod_checklist(meta: dict[str, Any], metrics: dict[str, Any]) -> list[dict[str, str]]:
    """TRIPOD+AI items with what this run can state automatically ('to complete' where it cannot)."""
    fam = meta["model_name"]
    m = metrics["families"][fam]
    dr = metrics["data_report"]
    cfg = meta.get("config", {})
    auto = {
        "3a": meta["intended_use"],
        "7a": f"Median imputation, standardisation, one-hot encoding; ComBat harmonisation {'on' if cfg.get('harmonisation', {}).get('enabled') else 'off'}; all fitted within training folds.",
        "8a": meta["outcome_definition"],
        "9a": f"{dr['n_candidate_predictors']} candidate predictors; LASSO stability selection over {cfg.get('selection', {}).get('n_bootstrap')} bootstrap samples, threshold {cfg.get('selection', {}).get('threshold')}.",
        "10": f"{dr['n_events']} events / {dr['n_nonevents']} non-events; EPV {dr['events_per_variable']:.2f} over candidate predictors.",
        "11": f"{dr['n_outcome_missing']} cases without outcome excluded; predictor missingness {dr['overall_missing_fraction']:.1%} imputed within folds (median / mode).",
        "12a": f"Families {', '.join(metrics['families'])}; tuned by {cfg.get('cv_folds')}-fold CV on the training set; {metrics['selection_reason']} Optimism: {m['n_optimism_bootstrap']} bootstrap refits of the whole pipeline.",
        "12b": f"class_weight = {cfg.get('class_weight')}; no resampling.",
        "12c": "Subgroup AUC / sensitivity / specificity by sex and centre on the test set (report table).",
        "12d": f"Predicted probability; threshold {m['threshold']:.3f} ({meta['threshold_method']}); risk groups {meta['risk_groups']['cutoffs']}.",
        "12e": "AUC (DeLong and bootstrap CI), sensitivity, specificity, PPV, NPV, F1, Brier, calibration slope/intercept and plot, decision curve.",
        "14": f"Bundle with SHA-256 manifest; model version {meta.get('model_version')}; library versions recorded in metadata.json.",
        "20a": f"{dr['n_rows']} analysed; train {metrics['n_train']} ({metrics['events_train']} events), test {metrics['n_test']} ({metrics['events_test']} events).",
        "22": "Full fitted pipeline in model.skops; input schema in schema.json.",
        "23a": f"Test AUC {m['test_auc']:.3f} (DeLong 95% CI {m['test_auc_ci_delong'][0]:.3f}–{m['test_auc_ci_delong'][1]:.3f}); optimism-corrected AUC {m['optimism_corrected_auc']:.3f}.",
        "23b": f"{len(m['subgroups'])} subgroup rows reported.",
    }
    return [
        {
            "item": k,
            "description": d,
            "status": "reported" if k in auto else "to complete by authors",
            "text": auto.get(k, ""),
        }
        for k, d in TRIPOD_ITEMS
    ]


def _img(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img src="data:image/png;base64,{data}" alt="{html.escape(path.stem)}">'


def render_report(bundle_dir: str | Path, out: str | Path) -> Path:
    """Self-contained HTML report of a bundle (tables from metrics.json, figures embedded), written atomically."""
    bundle_dir = Path(bundle_dir)
    metrics = json.loads((bundle_dir / "metrics.json").read_text(encoding="utf-8"))
    meta = json.loads((bundle_dir / "metadata.json").read_text(encoding="utf-8"))
    rep = bundle_dir / "report"
    fam = meta["model_name"]
    dr = metrics["data_report"]
    parts = [f"<h1>LBP risk model — training report ({html.escape(meta['outcome'])})</h1>"]
    parts.append(
        f"<p>{html.escape(meta['outcome_definition'])}. Created {html.escape(meta['created'])}. Deployed model: <b>{FAMILY_NAMES.get(fam, fam)}</b>. {html.escape(metrics['selection_reason'])}</p>"
    )
    if not metrics.get("protocol_config"):
        parts.append("<p><b>Quick (non-protocol) configuration — not for reporting.</b></p>")
    parts.append(
        "<h2>Data</h2>"
        + _html_table(
            ["quantity", "value"],
            [[k, _f(v) if not isinstance(v, dict) else json.dumps(v)] for k, v in dr.items()],
        )
    )
    parts.append("<h2>Test-set performance</h2>" + _html_table(METRIC_HEAD, metrics_rows(metrics)))
    if "clinical_only" in metrics:
        c = metrics["clinical_only"]
        parts.append(
            f"<p>Clinical-only logistic regression ({len(c['columns'])} predictors): test AUC {c['test_auc']:.3f} ({c['test_auc_ci_delong'][0]:.3f}–{c['test_auc_ci_delong'][1]:.3f}).</p>"
        )
    parts += _figure_sections(rep, metrics.get("figures", {}))
    parts.append(_subgroup_section(metrics["families"][fam]["subgroups"]))
    parts += _report_file_sections(rep)
    parts.append(
        "<h2>Library versions</h2>" + _html_table(["library", "version"], list(meta["versions"].items()))
    )
    return atomic_write_text(out, _page("LBP risk model report", "\n".join(parts)))


def _figure_sections(rep: Path, figs: dict[str, Any]) -> list[str]:
    """Performance figures (ROC, calibration, decision curve, stability), then SHAP/LIME when present."""
    captions = {
        "roc": "ROC curves (test set)",
        "calibration": "Calibration plot (test set, quintiles of predicted risk)",
        "decision_curve": "Decision curve: net benefit vs treat-all / treat-none",
        "stability": "LASSO stability-selection frequencies",
    }
    grid = "".join(
        f"<figure>{_img(rep / figs[k])}<figcaption>{v}</figcaption></figure>"
        for k, v in captions.items()
        if k in figs
    )
    parts = ["<h2>Figures</h2><div class='grid'>" + grid + "</div>"]
    if "beeswarm" in figs:
        parts.append(
            "<h2>Explanations (SHAP, LIME)</h2><div class='grid'>"
            + _img(rep / figs["beeswarm"])
            + "".join(_img(rep / n) for n in figs.get("waterfall", []) + figs.get("lime", []))
            + "</div>"
        )
    return parts


def _subgroup_section(sub: list[dict[str, Any]]) -> str:
    """Deployed model's test-set AUC, sensitivity and specificity per sex and centre."""
    return "<h2>Subgroups (deployed model, test set)</h2>" + _html_table(
        ["variable", "value", "n", "events", "AUC", "sensitivity", "specificity"],
        [
            [
                r["variable"],
                r["value"],
                r["n"],
                r["events"],
                _f(r["auc"]),
                _f(r["sensitivity"]),
                _f(r["specificity"]),
            ]
            for r in sub
        ],
    )


def _report_file_sections(rep: Path) -> list[str]:
    """Stability-selection top 20 and the TRIPOD+AI checklist, from the bundle's report files if present."""
    parts = []
    freq = rep / "selection_frequencies.csv"
    if freq.is_file():
        lines = freq.read_text(encoding="utf-8").splitlines()[1:21]
        parts.append(
            "<h2>Stability selection (top 20)</h2>"
            + _html_table(["feature", "field", "frequency", "selected"], [ln.rsplit(",", 3) for ln in lines])
        )
    trip = rep / "tripod_ai.json"
    if trip.is_file():
        items = json.loads(trip.read_text(encoding="utf-8"))
        parts.append(
            "<h2>TRIPOD+AI checklist (automatic part)</h2>"
            + _html_table(
                ["item", "description", "status", "what this run states"],
                [[i["item"], i["description"], i["status"], i["text"]] for i in items],
            )
        )
    return parts
