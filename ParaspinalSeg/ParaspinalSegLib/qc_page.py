"""The cohort's QC flags and contact sheet (``qc.html``): flagged cases first, one image per case and level.

Flags (thresholds in :class:`QCThresholds`, defaults and reasons there and in docs/cohort.md):

- ``failed``: the case did not run through (the reason is shown);
- ``asymmetry``: left/right CSA of a muscle at a level differs by more than ``asymmetry`` (fraction of
  the mean of both sides, the measurement table's ``asymmetry_index``);
- ``ff_outlier``: a muscle's FF at a level is a robust outlier in the cohort: |modified z| =
  |FF − median| / (1.4826 · MAD) above ``ff_robust_z`` (Iglewicz & Hoaglin 1993), with the MAD scale
  floored at ``ff_scale_floor_pct`` and only with at least ``ff_min_cases`` cases;
- ``border``: label voxels on the in-plane image border (the muscle is cut by the field of view, or
  the segmentation leaked into the background) — at least ``border_voxels`` voxels;
- ``seed_outside``: a seed does not lie in its own label after segmentation;
- ``warning``: the segmenter's own warnings.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ParaspinalLBPCore.atomic import atomic_write_text
from ParaspinalLBPCore.errors import BadInputError
from ParaspinalLBPCore.structures import LEVELS

FLAG_COLUMNS = ("case_id", "kind", "structure", "level", "value", "message")
#: Measurement columns shown in the captions when the table has them (name → caption label).
CAPTION_COLUMNS = {
    "csa_cm2": "CSA cm²",
    "fat_fraction_pct": "FF %",
    "lean_csa_cm2": "lean CSA cm²",
    "imat_cm2": "IMAT cm²",
}


@dataclass(frozen=True)
class QCThresholds:
    """When a case is flagged for review (see the module docstring and docs/cohort.md)."""

    # Healthy lumbar multifidus sides differ by less than ~10 % (Hides et al. 1994, Spine 19:165);
    # twice that is worth a look (true asymmetry at a symptomatic level, or a leak / under-segmentation).
    asymmetry: float = 0.20
    # Iglewicz & Hoaglin (1993) recommend |modified z| > 3.5 as the outlier rule.
    ff_robust_z: float = 3.5
    # FF differences below ~1 percentage point are within Dixon FF's repeatability, never outliers.
    ff_scale_floor_pct: float = 1.0
    # A median and MAD of fewer cases say little about the cohort.
    ff_min_cases: int = 5
    # Any muscle voxel on the in-plane border: the field of view cuts the muscle or the label leaked.
    border_voxels: int = 1

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if not np.isfinite(value) or value < 0:
                raise BadInputError(f"QC threshold {name}: {value} must be a finite number ≥ 0")


def _level_rows(table: pd.DataFrame) -> pd.DataFrame:
    """Per-level rows (slice empty); ``all`` only where a case has no level rows."""
    if table.empty:
        return table
    rows = table[table["slice"].isna()] if "slice" in table else table
    has_levels = rows[rows["level"] != "all"].groupby("case_id").size()
    return rows[(rows["level"] != "all") | ~rows["case_id"].isin(has_levels.index)]


def _flag(case_id: str, kind: str, structure: str, level: str, value: float, message: str) -> dict:
    return dict(zip(FLAG_COLUMNS, (case_id, kind, structure, level, value, message), strict=True))


def asymmetry_flags(rows: pd.DataFrame, th: QCThresholds) -> list[dict]:
    """One flag per muscle pair × level whose asymmetry index exceeds the threshold."""
    out = []
    sel = rows[rows["asymmetry_index"].astype(float) > th.asymmetry]
    sel = sel.assign(muscle=sel["structure"].str.replace(r"_(left|right)$", "", regex=True))
    for r in sel.drop_duplicates(["case_id", "muscle", "level"]).itertuples():
        out.append(
            _flag(r.case_id, "asymmetry", r.muscle, r.level, float(r.asymmetry_index),
                  f"{r.muscle} {r.level}: L/R CSA asymmetry {r.asymmetry_index:.0%} > {th.asymmetry:.0%}")
        )  # fmt: skip
    return out


def ff_outlier_flags(rows: pd.DataFrame, th: QCThresholds) -> list[dict]:
    """Robust-z outliers of FF per structure × level across the cohort's cases."""
    out = []
    ff = rows.dropna(subset=["fat_fraction_pct"])
    for (structure, level), grp in ff.groupby(["structure", "level"]):
        if grp["case_id"].nunique() < th.ff_min_cases:
            continue
        x = grp["fat_fraction_pct"].astype(float).to_numpy()
        med = float(np.median(x))
        scale = max(1.4826 * float(np.median(np.abs(x - med))), th.ff_scale_floor_pct)
        for case_id, value in zip(grp["case_id"], x, strict=True):
            z = (value - med) / scale
            if abs(z) > th.ff_robust_z:
                out.append(
                    _flag(case_id, "ff_outlier", structure, level, round(z, 2),
                          f"{structure} {level}: FF {value:.1f} % vs cohort median {med:.1f} % (robust z {z:+.1f})")
                )  # fmt: skip
    return out


def case_flags(case_id: str, facts: Mapping, th: QCThresholds) -> list[dict]:
    """Border, seed and segmenter-warning flags from one case's ``qc.json``."""
    out = []
    for name, n in facts.get("border_voxels", {}).items():
        if n >= max(th.border_voxels, 1):
            out.append(_flag(case_id, "border", name, "", n, f"{name}: {n} voxels on the image border"))
    for s in facts.get("seeds_outside", []):
        out.append(
            _flag(case_id, "seed_outside", s["structure"], s["level"], np.nan,
                  f"seed {s['structure']} {s['level']} lies in {s['found']}, not in its own label")
        )  # fmt: skip
    for w in facts.get("warnings", []):
        out.append(_flag(case_id, "warning", "", "", np.nan, str(w)))
    return out


def cohort_flags(
    table: pd.DataFrame, facts: Mapping[str, Mapping], status: pd.DataFrame, th: QCThresholds
) -> pd.DataFrame:
    """Every flag of every case (FLAG_COLUMNS)."""
    flags: list[dict] = []
    for r in status[status["status"] != "ok"].itertuples():
        flags.append(_flag(r.case_id, "failed", "", "", np.nan, f"failed: {r.reason or r.status}"))
    rows = _level_rows(table)
    if not rows.empty:
        flags += asymmetry_flags(rows, th) + ff_outlier_flags(rows, th)
    for case_id, f in facts.items():
        flags += case_flags(case_id, f, th)
    return pd.DataFrame(flags, columns=list(FLAG_COLUMNS))


def read_facts(cases_dir: Path, case_ids: list[str]) -> dict[str, dict]:
    """``qc.json`` of every case that has one."""
    out = {}
    for case_id in case_ids:
        p = cases_dir / case_id / "qc.json"
        if p.is_file():
            out[case_id] = json.loads(p.read_text(encoding="utf-8"))
    return out


def order_cases(status: pd.DataFrame, flags: pd.DataFrame) -> list[tuple[str, list[str]]]:
    """``[(section, [case ids])]``: needs review (flagged, not accepted; failed first, most flags next),
    not flagged, accepted."""
    n = flags.groupby("case_id").size()
    failed = set(flags.loc[flags["kind"] == "failed", "case_id"])
    accepted = set(status.loc[status["decision"] == "accept", "case_id"]) - failed
    ids = list(status["case_id"])
    review = sorted((c for c in ids if c in n.index and c not in accepted),
                    key=lambda c: (c not in failed, -int(n[c]), ids.index(c)))  # fmt: skip
    clean = [c for c in ids if c not in n.index and c not in accepted]
    return [("Needs review", review), ("Not flagged", clean), ("Accepted", [c for c in ids if c in accepted])]


_CSS = """body{font-family:sans-serif;margin:1em 2em;color:#222}h2{border-bottom:2px solid #ccc}
section.case{border:1px solid #ccc;border-radius:6px;margin:.8em 0;padding:.4em .8em}
section.flagged{border-color:#c62828;background:#fff5f5}section.accepted{opacity:.85}
ul.flags li{color:#b71c1c;font-weight:bold}figure{display:inline-block;vertical-align:top;margin:.3em}
figure img{display:block;width:320px;background:#000}figcaption table{font-size:12px;border-collapse:collapse}
figcaption td,figcaption th{padding:0 4px;text-align:right}td.warn,th.warn{background:#ffcdd2;color:#b71c1c}
.badge{font-size:12px;padding:1px 6px;border-radius:8px;background:#eee;margin-left:.5em}
.badge.failed{background:#c62828;color:#fff}.badge.accept{background:#2e7d32;color:#fff}
.badge.redo{background:#ef6c00;color:#fff}#decide{position:sticky;top:0;background:#fafafa;padding:.4em;
border-bottom:1px solid #ccc;z-index:1}table.th td{padding:0 8px}"""

_JS = """const existing = JSON.parse(document.getElementById('existing').textContent);
function q(v){return '"' + String(v).replace(/"/g,'""') + '"';}
function decisionsCsv(){
  const reviewer = document.getElementById('reviewer').value.trim();
  const stamp = new Date().toISOString();
  const rows = existing.map(r => [r.case_id, r.decision, r.reviewer, r.timestamp, r.note, r.run]);
  let added = 0;
  for (const s of document.querySelectorAll('section.case')) {
    const c = s.dataset.case, pick = s.querySelector('input[type=radio]:checked');
    if (!pick) continue;
    rows.push([c, pick.value, reviewer, stamp, s.querySelector('input.note').value, s.dataset.run]); added++;
  }
  return {added, reviewer, csv: ['case_id,decision,reviewer,timestamp,note,run'].concat(rows.map(r => r.map(q).join(','))).join('\\n') + '\\n'};
}
document.getElementById('download').addEventListener('click', () => {
  const d = decisionsCsv(), msg = document.getElementById('message');
  if (!d.reviewer) { msg.textContent = 'Enter the reviewer name first.'; return; }
  if (!d.added) { msg.textContent = 'Choose accept or redo for at least one case.'; return; }
  const a = document.createElement('a');
  a.href = URL.createObjectURL(new Blob([d.csv], {type: 'text/csv'}));
  a.download = 'DECISIONS_FILE'; document.body.appendChild(a); a.click(); a.remove();
  msg.textContent = d.added + ' decision(s) added: save the file as DECISIONS_FILE in the batch folder.';
});"""


def _caption(case_id: str, level: str, table: pd.DataFrame, flags: pd.DataFrame) -> str:
    """Caption of one image: the level's rows (CSA, FF, … of each structure), flagged cells highlighted."""
    rows = table[(table["case_id"] == case_id) & (table["level"] == level)]
    if "slice" in rows:
        rows = rows[rows["slice"].isna()]
    cols = [c for c in CAPTION_COLUMNS if c in rows.columns]
    f = flags[flags["case_id"] == case_id]
    head = "".join(f"<th>{html.escape(CAPTION_COLUMNS[c])}</th>" for c in cols)
    body = []
    for r in rows.itertuples():
        muscle = r.structure.rsplit("_", 1)[0] if r.side else r.structure
        mine = f[(f["structure"].isin([r.structure, muscle])) & (f["level"].isin([level, ""]))]
        warn = {
            "csa_cm2": (mine["kind"] == "asymmetry").any(),
            "fat_fraction_pct": ((mine["kind"] == "ff_outlier") & (mine["structure"] == r.structure)).any(),
        }
        name_warn = mine["kind"].isin(["border", "seed_outside"]).any()
        cells = "".join(f"<td{' class=warn' if warn.get(c) else ''}>{_fmt(getattr(r, c))}</td>" for c in cols)
        label = html.escape(r.structure.replace("_", " "))
        body.append(f"<tr><th{' class=warn' if name_warn else ''}>{label}</th>{cells}</tr>")
    return f"<b>{html.escape(level)}</b><table><tr><th></th>{head}</tr>{''.join(body)}</table>"


def _fmt(value: object) -> str:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return html.escape(str(value))
    return "–" if not np.isfinite(v) else f"{v:.1f}"


def _case_html(case_id: str, section: str, status: pd.Series, table: pd.DataFrame, flags: pd.DataFrame,
               levels: list[str]) -> str:  # fmt: skip
    f = flags[flags["case_id"] == case_id]
    kind = {"Needs review": "flagged", "Not flagged": "clean", "Accepted": "accepted"}[section]
    badges = f'<span class="badge {"failed" if status["status"] != "ok" else ""}">{html.escape(status["status"])}</span>'
    if status["decision"]:
        who = html.escape(f"{status['decision']} · {status['reviewer']} · {status['decided_at'][:16]}")
        badges += f'<span class="badge {html.escape(status["decision"])}">{who}</span>'
    if bool(status["inputs_changed"]) and status["status"] == "ok":
        badges += '<span class="badge redo">inputs changed since this run</span>'
    items = "".join(f'<li class="flag kind-{html.escape(k)}">{html.escape(m)}</li>'
                    for k, m in zip(f["kind"], f["message"], strict=True))  # fmt: skip
    figs = "".join(
        f'<figure><img src="cases/{html.escape(case_id)}/qc/{html.escape(lv)}.png" alt="{html.escape(case_id)} '
        f'{html.escape(lv)}"><figcaption>{_caption(case_id, lv, table, flags)}</figcaption></figure>'
        for lv in levels
    )
    cid = html.escape(case_id)
    run = "" if pd.isna(status["run_number"]) else int(status["run_number"])  # the run the reviewer sees
    decide = (
        f'<div class="choice"><label><input type="radio" name="d-{cid}" value="accept"> accept</label> '
        f'<label><input type="radio" name="d-{cid}" value="redo"> redo</label> '
        f'<input class="note" placeholder="note" size="40"></div>'
    )
    return (
        f'<section class="case {kind}" id="case-{cid}" data-case="{cid}" data-run="{run}" data-flags="{len(f)}">'
        f"<h3>{cid}{badges}</h3><ul class=flags>{items}</ul><div>{figs}</div>{decide}</section>"
    )


def write_page(
    out_dir: str | Path,
    status: pd.DataFrame,
    table: pd.DataFrame,
    flags: pd.DataFrame,
    facts: Mapping[str, Mapping],
    decisions_rows: list[dict],
    th: QCThresholds,
    decisions_file: str = "qc_decisions.csv",
    path: str | Path | None = None,
) -> Path:
    """Write ``qc.html`` (atomically) in the batch folder; image paths are relative to it.

    ``path``: where to write the page instead (a staging folder whose content will join the batch folder).
    """
    out = Path(out_dir)
    sections = []
    for name, ids in order_cases(status, flags):
        by_id = status.set_index("case_id")
        cases = "".join(
            _case_html(c, name, by_id.loc[c], table, flags, _png_levels(out, c, facts.get(c, {})))
            for c in ids
        )
        sections.append(f'<h2 id="{name.split()[0].lower()}">{name} ({len(ids)})</h2>{cases}')
    ths = "".join(f"<tr><td>{k}</td><td>{v}</td></tr>" for k, v in asdict(th).items())
    n_fail = int((status["status"] != "ok").sum())
    script = _JS.replace("DECISIONS_FILE", decisions_file)
    existing = json.dumps(decisions_rows).replace("</", "<\\/")
    page = f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Segmentation QC</title>
<style>{_CSS}</style></head><body><h1>Segmentation QC contact sheet</h1>
<p>{len(status)} cases, {n_fail} failed, {flags["case_id"].nunique()} flagged. Tables: <a href="status.csv">status.csv</a>,
<a href="measurements.csv">measurements.csv</a>. Outlines on each level's middle slice (radiological view: patient's right on
the left); + seed, red × seed outside its label; highlighted cells are the flagged values.</p>
<details><summary>Thresholds</summary><table class="th">{ths}</table></details>
<div id="decide">Reviewer <input id="reviewer" size="16"> <button id="download">Download {decisions_file}</button>
<span id="message"></span></div>{"".join(sections)}
<script type="application/json" id="existing">{existing}</script><script>{script}</script></body></html>"""
    return atomic_write_text(Path(path) if path is not None else out / "qc.html", page)


def _png_levels(out: Path, case_id: str, facts: Mapping) -> list[str]:
    """Levels with an image, cranial first (L1 … L5), or ``all`` for a case without levels."""

    folder = out / "cases" / case_id / "qc"
    names = sorted(facts.get("levels", {}), key=lambda lv: (LEVELS.index(lv) if lv in LEVELS else 99, lv))
    names = names or ["all"]
    return [lv for lv in names if (folder / f"{lv}.png").is_file()]
