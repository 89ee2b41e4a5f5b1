"""Exports: the allocation in the trial dataset's schema (zip), the audit log, the offline emergency list.

The allocation export holds ``allocation.csv`` + ``allocation.sha256`` (table ``allocation`` of the
trial schema), ``arm_coding.csv`` (table ``arm_coding``: unblinded, or coded with the two letter codes),
``randomized.csv`` (one row per participant with the ``participants.csv`` columns participant_id,
centre, sex, stratum, block_id, arm, randomization_date, plus screening_id, sequence_in_stratum,
randomized_at, randomized_by), and ``export.json``. Unblinded (statistician, or anyone after trial
unblinding) ``allocation.csv`` is the uploaded list byte for byte, so its checksum is the uploaded one;
coded, it holds only the used slots and arms are the list's letter codes (future allocations stay
concealed). Either way ``trial-analysis merge-allocation`` puts it into a trial dataset that
``validate`` and ``analyze`` read directly (coded: the blinded report).
"""

from __future__ import annotations

import hashlib
import html
import io
import json
import zipfile
from typing import Any

import pandas as pd
from sqlalchemy import select

from TrialAnalysisLib.randomization import ALLOCATION_COLUMNS, canonical_csv
from TrialAnalysisLib.randomization_server import audit, db
from TrialAnalysisLib.randomization_server.audit import Actor
from TrialAnalysisLib.randomization_server.lists import active_list
from TrialAnalysisLib.randomization_server.policy import RefusedError, require, sees_arms
from TrialAnalysisLib.randomization_server.service import _rows, check_code, is_trial_unblinded
from TrialAnalysisLib.schema import arm_coding_table, format_table

RANDOMIZED_COLUMNS = (
    "participant_id",
    "screening_id",
    "centre",
    "sex",
    "stratum",
    "sequence_in_stratum",
    "block_id",
    "arm",
    "randomization_date",
    "randomized_at",
    "randomized_by",
)


def _frame(rows: list[Any], arm_of: Any) -> pd.DataFrame:
    recs = [
        (
            r.participant_id,
            r.screening_id,
            r.centre,
            r.sex,
            r.stratum,
            r.seq,
            r.block_id,
            arm_of(r.arm),
            r.randomized_at[:10],
            r.randomized_at,
            r.randomized_by,
        )
        for r in rows
    ]
    return pd.DataFrame(recs, columns=list(RANDOMIZED_COLUMNS))


def allocation_export(database: db.Database, actor: Actor) -> tuple[bytes, dict[str, Any]]:
    """The export zip and its manifest; audited. Coded unless ``actor`` sees arms."""
    require(actor, "export_allocation", "export_allocation")
    with database.write() as conn:  # a write: the export itself is audited in the same snapshot
        lst = active_list(conn, with_csv=True)
        if lst is None:
            raise RefusedError("no_list", "no allocation list has been uploaded", 409, "export_allocation")
        unblinded = sees_arms(actor, is_trial_unblinded(conn))
        rows = _rows(conn)
        codes = lst["arm_codes"]
        randomized = _frame(rows, (lambda a: a) if unblinded else codes.__getitem__)
        if unblinded:
            alloc = lst["csv"].encode("utf-8")
        else:
            used = pd.DataFrame(
                [(r.stratum, r.seq, r.block_id, r.block_size, codes[r.arm]) for r in rows],
                columns=list(ALLOCATION_COLUMNS),
            ).sort_values(["stratum", "sequence_in_stratum"])
            alloc = canonical_csv(used)
        digest = hashlib.sha256(alloc).hexdigest()
        coding = arm_coding_table(digest, () if unblinded else sorted(codes.values()))
        manifest = {
            "mode": "unblinded" if unblinded else "coded",
            "list_sha256": lst["sha256"],
            "allocation_sha256": digest,
            "n_randomized": len(rows),
            "generated_at": db.utcnow(),
            "generated_by": actor.username,
        }
        entry = audit.append(conn, actor, "export_allocation", manifest["mode"], after=manifest)
        manifest["audit_seq"], manifest["audit_hash"] = entry["seq"], entry["hash"]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("allocation.csv", alloc)
        zf.writestr("allocation.sha256", f"{digest}  allocation.csv\n")
        zf.writestr(
            "arm_coding.csv", format_table(coding, "arm_coding").to_csv(index=False, lineterminator="\n")
        )
        zf.writestr("randomized.csv", randomized.to_csv(index=False, lineterminator="\n"))
        zf.writestr("export.json", json.dumps(manifest, indent=2) + "\n")
    return buf.getvalue(), manifest


def audit_export(database: db.Database, actor: Actor) -> str:
    """The audit log as JSON lines (blinded by construction: it records arm codes, never arm names)."""
    require(actor, "view_audit", "export_audit")
    with database.write() as conn:
        audit.append(conn, actor, "export_audit", "audit_log")
        return audit.export_jsonl(conn)


def audit_page(database: db.Database, actor: Actor, after_seq: int = 0, limit: int = 200) -> list[dict]:
    """Audit entries after ``after_seq`` (at most ``limit``), for the web view and the API."""
    require(actor, "view_audit", "view_audit")
    with database.read() as conn:
        rows = audit.entries(conn, after_seq, max(1, min(limit, 1000)))
    for r in rows:
        r["before"], r["after"] = json.loads(r["before"]), json.loads(r["after"])
    return rows


ENVELOPE_CSS = (
    "body{font-family:sans-serif}.env{page-break-after:always;border:2px dashed #444;padding:1em;margin:1em 0}"
    ".seal{border-top:2px solid #000;margin-top:1em;padding-top:1em}"
)


def emergency_list(database: db.Database, actor: Actor) -> str:
    """Printable sealed code-break list for outages: one page per randomised participant, the arm and
    a check code below the fold. Recording the code later proves which envelope was opened."""
    require(actor, "emergency_list", "emergency_list")
    with database.write() as conn:
        lst = active_list(conn)
        if lst is None:
            raise RefusedError("no_list", "no allocation list has been uploaded", 409, "emergency_list")
        rows = _rows(conn)
        audit.append(conn, actor, "emergency_list", lst["sha256"], after={"n_participants": len(rows)})
    e = html.escape
    pages = [
        f"<section class='env'><h2>{e(r.participant_id)}</h2><p>centre {e(r.centre)} · stratum {e(r.stratum)}"
        f" · randomised {e(r.randomized_at[:10])}</p><p>Open only in an emergency when the randomisation"
        f" service is unreachable; afterwards record the opening with the check code.</p>"
        f"<div class='seal'><p>Arm: <b class='arm'>{e(r.arm)}</b></p><p>Check code:"
        f" <code>{check_code(lst['code_salt'], r.participant_id, r.arm)}</code></p></div></section>"
        for r in rows
    ]
    head = (
        f"<h1>Emergency code-break list</h1><p>List {lst['sha256'][:16]}…, {len(rows)} participants, "
        f"generated {db.utcnow()} by {e(actor.username)}. Keep sealed.</p>"
    )
    return (
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>Emergency list</title>"
        f"<style>{ENVELOPE_CSS}</style></head><body>{head}{''.join(pages)}</body></html>"
    )


def site_names(database: db.Database) -> dict[str, str]:
    """Site code -> name."""
    with database.read() as conn:
        return {r.code: r.name for r in conn.execute(select(db.sites))}
