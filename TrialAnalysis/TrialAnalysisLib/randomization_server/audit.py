"""Append-only, hash-chained audit log: append inside the acting transaction, export, verify.

Each entry's ``hash`` is SHA-256 over the previous entry's hash, a newline and the canonical JSON
(sorted keys, no spaces, UTF-8) of its fields ``seq, at, actor, role, ip, action, target, outcome,
before, after``; the first entry chains from 64 zeros. ``audit_head`` keeps the last sequence number
and hash, so a deleted tail is detected too. Verification also checks that every randomisation and
unblinding in the database has its audit entry with the same values, and that the stored list still
has the checksum it was uploaded with. Anyone can re-verify an exported JSON-lines file.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy import Connection, func, insert, select, update

from ParaspinalLBPCore.errors import BadInputError
from TrialAnalysisLib.randomization import ALLOCATION_COLUMNS, canonical_csv
from TrialAnalysisLib.randomization_server import db

FIELDS = ("seq", "at", "actor", "role", "ip", "action", "target", "outcome", "before", "after")


def canonical(obj: Any) -> str:
    """Canonical JSON text: sorted keys, no whitespace, non-ASCII kept (hashed as UTF-8)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def entry_hash(prev_hash: str, entry: Mapping[str, Any]) -> str:
    """Hash of one entry chained to ``prev_hash`` (``before``/``after`` as their stored JSON text)."""
    body = canonical({k: entry[k] for k in FIELDS})
    return hashlib.sha256(f"{prev_hash}\n{body}".encode()).hexdigest()


@dataclass(frozen=True)
class Actor:
    """Who acts: username ('anonymous' without a session), role ('-' without one), site and IP."""

    username: str = "anonymous"
    role: str = "-"
    site: str | None = None
    ip: str = "-"


def append(
    conn: Connection,
    actor: Actor,
    action: str,
    target: str = "",
    outcome: str = "ok",
    before: Any = None,
    after: Any = None,
) -> dict[str, Any]:
    """Append one entry in the caller's (serialised, writing) transaction; returns it with its hash."""
    head = conn.execute(select(db.audit_head).where(db.audit_head.c.id == 1)).one()
    entry = {
        "seq": head.last_seq + 1,
        "at": db.utcnow(),
        "actor": actor.username,
        "role": actor.role,
        "ip": actor.ip,
        "action": action,
        "target": str(target)[:128],
        "outcome": outcome,
        "before": canonical(before),
        "after": canonical(after),
    }
    entry["prev_hash"] = head.last_hash
    entry["hash"] = entry_hash(head.last_hash, entry)
    conn.execute(insert(db.audit_log).values(**entry))
    conn.execute(
        update(db.audit_head)
        .where(db.audit_head.c.id == 1)
        .values(last_seq=entry["seq"], last_hash=entry["hash"])
    )
    return entry


def entries(conn: Connection, after_seq: int = 0, limit: int | None = None) -> list[dict[str, Any]]:
    """Audit rows in sequence order (as stored), from ``after_seq`` + 1."""
    q = select(db.audit_log).where(db.audit_log.c.seq > after_seq).order_by(db.audit_log.c.seq)
    if limit is not None:
        q = q.limit(limit)
    return [dict(r._mapping) for r in conn.execute(q)]


def export_jsonl(conn: Connection) -> str:
    """The whole log as JSON lines (one stored row per line) followed by the head line."""
    out = io.StringIO()
    for row in entries(conn):
        out.write(canonical(row) + "\n")
    head = conn.execute(select(db.audit_head).where(db.audit_head.c.id == 1)).one()
    out.write(canonical({"head": {"last_seq": head.last_seq, "last_hash": head.last_hash}}) + "\n")
    return out.getvalue()


@dataclass
class Verification:
    """Result of a verification: entries checked, head hash, and the problems found (empty = intact)."""

    n_entries: int = 0
    head_hash: str = db.GENESIS_HASH
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when no problem was found."""
        return not self.problems

    def summary(self) -> str:
        """One line when intact, else one line per problem."""
        if self.ok:
            return f"audit log intact: {self.n_entries} entries, head {self.head_hash}"
        return "\n".join([f"audit log TAMPERED: {len(self.problems)} problem(s)", *self.problems])


def verify_chain(rows: Iterable[Mapping[str, Any]], head: Mapping[str, Any] | None) -> Verification:
    """Check sequence continuity, each prev_hash link and each hash; then the head row."""
    res = Verification()
    prev_hash, expect_seq = db.GENESIS_HASH, 1
    for row in rows:
        seq = int(row["seq"])
        if seq != expect_seq:
            what = "missing (deleted?)" if seq > expect_seq else "out of order or duplicated"
            res.problems.append(f"entry #{expect_seq}: {what}; next stored entry is #{seq}")
        if row["prev_hash"] != prev_hash:
            res.problems.append(f"entry #{seq}: prev_hash does not link to the entry before it")
        if entry_hash(row["prev_hash"], row) != row["hash"]:
            res.problems.append(f"entry #{seq}: content does not match its hash (modified or inserted)")
        prev_hash, expect_seq = row["hash"], seq + 1
        res.n_entries += 1
    res.head_hash = prev_hash
    if head is not None and (int(head["last_seq"]) != expect_seq - 1 or head["last_hash"] != prev_hash):
        res.problems.append(
            f"audit head says entry #{head['last_seq']} is the last, the log ends at #{expect_seq - 1}"
            " (entries deleted or appended outside the service)"
        )
    return res


def _audited(conn: Connection, action: str) -> dict[str, dict[str, Any]]:
    q = select(db.audit_log.c.seq, db.audit_log.c.target, db.audit_log.c.after).where(
        db.audit_log.c.action == action, db.audit_log.c.outcome == "ok"
    )
    return {r.target: {"seq": r.seq, **json.loads(r.after)} for r in conn.execute(q)}


def _check_randomizations(conn: Connection, res: Verification) -> None:
    logged = _audited(conn, "randomize")
    lst = conn.execute(
        select(db.allocation_lists.c.arm_codes).order_by(db.allocation_lists.c.id.desc())
    ).first()
    codes = json.loads(lst.arm_codes) if lst else {}
    q = select(db.randomizations, db.slots.c.seq, db.slots.c.arm, db.slots.c.block_id).join(
        db.slots, db.slots.c.id == db.randomizations.c.slot_id
    )
    seen = set()
    for r in conn.execute(q):
        seen.add(r.participant_id)
        entry = logged.get(r.participant_id)
        now = {
            "screening_id": r.screening_id,
            "stratum": r.stratum,
            "sequence_in_stratum": r.seq,
            "block_id": r.block_id,
            "arm_code": codes.get(r.arm),
            "randomized_at": r.randomized_at,
        }
        if entry is None:
            res.problems.append(
                f"randomization {r.participant_id}: no audit entry (inserted outside the service)"
            )
        elif any(entry.get(k) != v for k, v in now.items()):
            res.problems.append(f"randomization {r.participant_id}: differs from audit entry #{entry['seq']}")
    for pid in sorted(set(logged) - seen):
        res.problems.append(f"randomization {pid} of audit entry #{logged[pid]['seq']} is missing (deleted)")


def _check_unblindings(conn: Connection, res: Verification) -> None:
    logged = conn.execute(
        select(func.count()).where(
            db.audit_log.c.action.in_(("unblind", "offline_unblinding")), db.audit_log.c.outcome == "ok"
        )
    ).scalar_one()
    n_rows = conn.execute(select(func.count()).select_from(db.unblindings)).scalar_one()
    if n_rows != logged:
        res.problems.append(f"unblindings: {n_rows} recorded but {logged} in the audit log")


def slots_csv(conn: Connection, list_id: int) -> bytes:
    """The canonical CSV rebuilt from the stored slots (equals the uploaded bytes when untouched)."""
    s = db.slots
    rows = conn.execute(
        select(s.c.stratum, s.c.seq, s.c.block_id, s.c.block_size, s.c.arm)
        .where(s.c.list_id == list_id)
        .order_by(s.c.id)
    ).all()
    return canonical_csv(pd.DataFrame([tuple(r) for r in rows], columns=list(ALLOCATION_COLUMNS)))


def _check_list(conn: Connection, res: Verification) -> None:
    for lst in conn.execute(select(db.allocation_lists)):
        if hashlib.sha256(lst.csv.encode()).hexdigest() != lst.sha256:
            res.problems.append(f"allocation list #{lst.id}: stored CSV no longer has its uploaded checksum")
        elif hashlib.sha256(slots_csv(conn, lst.id)).hexdigest() != lst.sha256:
            res.problems.append(f"allocation list #{lst.id}: slots table differs from the uploaded list")


def verify_database(url: str) -> Verification:
    """Verify the chain, the head and the randomisation tables of the database at ``url``."""
    database = db.Database(url)
    try:
        with database.read() as conn:
            head = conn.execute(select(db.audit_head).where(db.audit_head.c.id == 1)).one_or_none()
            res = verify_chain(entries(conn), None if head is None else dict(head._mapping))
            if head is None:
                res.problems.append("audit head row missing")
            _check_randomizations(conn, res)
            _check_unblindings(conn, res)
            _check_list(conn, res)
        return res
    finally:
        database.dispose()


def read_jsonl(path: str | Path) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """Rows and head of an exported log (ValueError naming the line when a line is not JSON)."""
    rows: list[dict[str, Any]] = []
    head = None
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise BadInputError(f"{path}: line {n} is not JSON ({exc.msg})") from None
        if "head" in obj:
            head = obj["head"]
        elif not set(FIELDS) | {"prev_hash", "hash"} <= set(obj):
            raise BadInputError(f"{path}: line {n} lacks audit fields")
        else:
            rows.append(obj)
    return rows, head
