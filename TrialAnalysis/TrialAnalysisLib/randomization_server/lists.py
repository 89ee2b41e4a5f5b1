"""The allocation list: upload by the unblinded statistician with its checksum verified, storage as slots.

The list is the canonical CSV that ``trial-analysis randomize`` writes (columns stratum,
sequence_in_stratum, block_id, block_size, arm; strata ``<centre>-<sex>``) and its SHA-256 is the
first word of the ``.sha256`` file written beside it. The upload is refused unless the bytes hash to
that checksum, the file is canonical (so the stored slots reproduce it exactly), every stratum's
sequence runs 1..n, every centre is a registered site and no participant has been randomised yet.
Arms get random letter codes (A, B, …) shown to blinded roles.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import secrets

import pandas as pd
from sqlalchemy import Connection, delete, func, insert, select

from TrialAnalysisLib.randomization import ALLOCATION_COLUMNS, canonical_csv
from TrialAnalysisLib.randomization_server import audit, db
from TrialAnalysisLib.randomization_server.audit import Actor
from TrialAnalysisLib.randomization_server.policy import RefusedError, require

SEXES = ("F", "M")
HEX64 = re.compile(r"^[0-9a-f]{64}$")


def _bad(message: str, code: str = "bad_list", status: int = 422) -> RefusedError:
    return RefusedError(code, message, status, "upload_list")


def parse_checksum(text: str) -> str:
    """The hex digest from a ``.sha256`` file's text (``<hex>  <name>``) or a bare digest."""
    words = (text or "").strip().split()
    digest = words[0].lower() if words else ""
    if not HEX64.match(digest):
        raise _bad(
            "checksum: expected the 64 hex digits of the list's SHA-256 (its .sha256 file)", "bad_checksum"
        )
    return digest


def parse_list(data: bytes, expected_sha256: str) -> pd.DataFrame:
    """Check checksum, columns, canonical form and sequences of an uploaded list; return the table."""
    actual = hashlib.sha256(data).hexdigest()
    if actual != parse_checksum(expected_sha256):
        raise _bad(
            f"checksum mismatch: the file hashes to {actual[:12]}…, the checksum given is "
            f"{expected_sha256.strip()[:12]}… (wrong or altered file)",
            "checksum_mismatch",
        )
    try:
        table = pd.read_csv(io.BytesIO(data), dtype={"stratum": str, "block_id": str, "arm": str})
    except (ValueError, UnicodeDecodeError) as exc:
        raise _bad(f"not a CSV list: {exc}") from None
    if tuple(table.columns) != ALLOCATION_COLUMNS:
        raise _bad(
            f"columns must be {', '.join(ALLOCATION_COLUMNS)}; got {', '.join(map(str, table.columns))}"
        )
    if table.empty or table.isna().any().any():
        raise _bad("the list is empty or has empty fields")
    for col in ("sequence_in_stratum", "block_size"):
        if not pd.api.types.is_integer_dtype(table[col]):
            raise _bad(f"column {col}: whole numbers expected")
    if canonical_csv(table) != data:
        raise _bad("not in the canonical form written by `trial-analysis randomize` (re-export it unchanged)")
    for code, g in table.groupby("stratum", sort=False):
        centre, _, sex = str(code).rpartition("-")
        if not centre or sex not in SEXES:
            raise _bad(f"stratum {code!r}: expected <centre>-<sex> with sex F or M")
        if g["sequence_in_stratum"].tolist() != list(range(1, len(g) + 1)):
            raise _bad(f"stratum {code}: sequence_in_stratum must run 1..{len(g)} in order")
    if table["arm"].nunique() < 2:
        raise _bad("the list must allocate at least two arms")
    return table


def upload_list(database: db.Database, actor: Actor, data: bytes, checksum: str, filename: str) -> dict:
    """Verify and store a list (statistician); replaces a list only while nobody is randomised."""
    require(actor, "upload_list", "upload_list", filename[:128])
    table = parse_list(data, checksum)
    digest = hashlib.sha256(data).hexdigest()
    arms = list(dict.fromkeys(table["arm"]))
    letters = [chr(ord("A") + i) for i in range(len(arms))]
    secrets.SystemRandom().shuffle(letters)
    codes = dict(zip(arms, letters, strict=True))
    with database.write() as conn:
        if conn.execute(select(func.count()).select_from(db.randomizations)).scalar_one():
            raise _bad(
                "participants are already randomised on the current list: it cannot be replaced",
                "list_in_use",
                409,
            )
        known = set(conn.execute(select(db.sites.c.code)).scalars())
        centres = sorted({str(s).rpartition("-")[0] for s in table["stratum"]})
        missing = [c for c in centres if c not in known]
        if missing:
            raise _bad(
                f"centre(s) {', '.join(missing)} of the list are not registered sites (admin: add them)"
            )
        old = conn.execute(select(db.allocation_lists.c.id, db.allocation_lists.c.sha256)).all()
        for t in (db.slots, db.strata, db.allocation_lists):
            conn.execute(delete(t))
        list_id = conn.execute(
            insert(db.allocation_lists).values(
                sha256=digest,
                filename=filename[:255] or "allocation.csv",
                uploaded_by=actor.username,
                uploaded_at=db.utcnow(),
                arms=json.dumps(arms),
                arm_codes=json.dumps(codes),
                code_salt=secrets.token_hex(32),
                n_slots=len(table),
                csv=data.decode("utf-8"),
            )
        ).inserted_primary_key[0]
        _store_slots(conn, list_id, table)
        summary = {
            "sha256": digest,
            "n_slots": len(table),
            "filename": filename[:255],
            "strata": {str(k): int(v) for k, v in table.groupby("stratum", sort=False).size().items()},
        }
        audit.append(
            conn, actor, "upload_list", digest, before={"replaced": [o.sha256 for o in old]}, after=summary
        )
    return summary


def _store_slots(conn: Connection, list_id: int, table: pd.DataFrame) -> None:
    rows = [
        {
            "list_id": list_id,
            "stratum": str(r.stratum),
            "seq": int(r.sequence_in_stratum),
            "block_id": str(r.block_id),
            "block_size": int(r.block_size),
            "arm": str(r.arm),
        }
        for r in table.itertuples(index=False)
    ]
    for row in rows:  # one by one: ids follow the file order on every backend
        conn.execute(insert(db.slots).values(**row))
    for code, g in table.groupby("stratum", sort=False):
        centre, _, sex = str(code).rpartition("-")
        conn.execute(
            insert(db.strata).values(
                list_id=list_id, code=str(code), centre=centre, sex=sex, n_slots=len(g), n_used=0
            )
        )


def active_list(conn: Connection, with_csv: bool = False) -> dict | None:
    """The stored list's row (arms and codes decoded; the CSV text only ``with_csv``), or None before any upload."""
    t = db.allocation_lists
    cols = [c for c in t.c if with_csv or c.name != "csv"]
    row = conn.execute(select(*cols).order_by(t.c.id.desc())).first()
    if row is None:
        return None
    out = dict(row._mapping)
    out["arms"], out["arm_codes"] = json.loads(out["arms"]), json.loads(out["arm_codes"])
    return out
