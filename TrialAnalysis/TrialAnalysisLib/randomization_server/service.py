"""Randomising a participant, what each role sees of the allocations, emergency and trial unblinding.

``randomize`` takes the next free slot of the participant's stratum (centre-sex) in one serialised
transaction that also numbers the participant (P0001, P0002, … in commit order) and appends the
audit entry, so a crash leaves either all of it or none. Randomisations are never edited. Arms are
shown by name to the statistician and to the investigator of the participant's site (who delivers
the intervention); other roles see the list's letter code until the trial is unblinded or that one
participant is unblinded in an emergency, which is logged and notified (outbox, no network).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, func, insert, select, update

from TrialAnalysisLib.randomization_server import audit, db
from TrialAnalysisLib.randomization_server.audit import Actor
from TrialAnalysisLib.randomization_server.eligibility import failed_criteria
from TrialAnalysisLib.randomization_server.lists import active_list
from TrialAnalysisLib.randomization_server.policy import RefusedError, require, sees_arms


def randomize(database: db.Database, actor: Actor, request: dict[str, Any]) -> dict[str, Any]:
    """Randomise one eligible participant of the investigator's own site; returns number, arm, slot."""
    sid, centre, sex = request["screening_id"], request["centre"], request["sex"]
    _check_request(actor, request)
    code = f"{centre}-{sex}"
    with database.write() as conn:
        _refuse_if_randomized(conn, actor, sid)
        lst, st, slot = _next_slot(conn, code, sid)
        number = conn.execute(select(func.count()).select_from(db.randomizations)).scalar_one() + 1
        pid, now = f"P{number:04d}", db.utcnow()
        answers = {k: request[k] for k in request if k not in ("screening_id", "centre", "sex")}
        conn.execute(
            insert(db.randomizations).values(
                participant_id=pid,
                slot_id=slot.id,
                screening_id=sid,
                centre=centre,
                sex=sex,
                stratum=code,
                randomized_at=now,
                randomized_by=actor.username,
                eligibility=json.dumps(answers, sort_keys=True),
            )
        )
        conn.execute(update(db.strata).where(db.strata.c.id == st.id).values(n_used=st.n_used + 1))
        record = {
            "screening_id": sid,
            "stratum": code,
            "sequence_in_stratum": slot.seq,
            "block_id": slot.block_id,
            "arm_code": lst["arm_codes"][slot.arm],
            "randomized_at": now,
            "eligibility": answers,
        }
        audit.append(conn, actor, "randomize", pid, after=record)
    return {
        "participant_id": pid,
        "screening_id": sid,
        "centre": centre,
        "sex": sex,
        "stratum": code,
        "sequence_in_stratum": slot.seq,
        "block_id": slot.block_id,
        "arm": slot.arm,
        "randomized_at": now,
    }


def _check_request(actor: Actor, request: dict[str, Any]) -> None:
    """Refuse before any database work: wrong role, another site's participant, a failed criterion."""
    sid, centre = request["screening_id"], request["centre"]
    require(actor, "randomize", "randomize", sid)
    if centre != actor.site:
        raise RefusedError(
            "wrong_site",
            f"investigators randomise for their own site ({actor.site}) only",
            403,
            "randomize",
            sid,
            {"centre": centre},
        )
    failed = failed_criteria(request)
    if failed:
        raise RefusedError(
            "ineligible",
            "not eligible: " + "; ".join(f["criterion"] for f in failed),
            422,
            "randomize",
            sid,
            {"failed": failed},
        )


def _refuse_if_randomized(conn: Connection, actor: Actor, sid: str) -> None:
    """Refuse a screening ID randomised before (its participant ID only to an investigator of its site)."""
    done = conn.execute(select(db.randomizations).where(db.randomizations.c.screening_id == sid)).first()
    if done is not None:
        extra = {"participant_id": done.participant_id} if done.centre == actor.site else {}
        raise RefusedError(
            "already_randomized", f"screening ID {sid} is already randomised", 409, "randomize", sid, extra
        )


def _next_slot(conn: Connection, code: str, sid: str) -> tuple[dict, Any, Any]:
    """(active list, locked stratum row, its next free slot); refused without a list or a free slot."""
    lst = active_list(conn)
    if lst is None:
        raise RefusedError("no_list", "no allocation list has been uploaded", 409, "randomize", sid)
    st = conn.execute(
        select(db.strata).where(db.strata.c.list_id == lst["id"], db.strata.c.code == code).with_for_update()
    ).one_or_none()
    if st is None or st.n_used >= st.n_slots:
        raise RefusedError(
            "list_exhausted",
            f"the list has no free slot left in stratum {code}",
            409,
            "randomize",
            sid,
            {"stratum": code},
        )
    slot = conn.execute(
        select(db.slots).where(
            db.slots.c.list_id == lst["id"], db.slots.c.stratum == code, db.slots.c.seq == st.n_used + 1
        )
    ).one()
    return lst, st, slot


def is_trial_unblinded(conn: Connection) -> bool:
    """Whether the statistician has unblinded the whole trial."""
    return (
        conn.execute(select(db.trial_state.c.key).where(db.trial_state.c.key == "unblinded")).first()
        is not None
    )


def _rows(conn: Connection, where: Any = None) -> list[Any]:
    r, s = db.randomizations, db.slots
    q = (
        select(r, s.c.seq, s.c.block_id, s.c.block_size, s.c.arm)
        .join(s, s.c.id == r.c.slot_id)
        .order_by(r.c.id)
    )
    return conn.execute(q if where is None else q.where(where)).all()


def _unblinded_pids(conn: Connection) -> set[str]:
    return set(conn.execute(select(db.unblindings.c.participant_id)).scalars())


def _view(row: Any, actor: Actor, codes: dict[str, str], trial_unblinded: bool, unblinded: set[str]) -> dict:
    """One participant as ``actor`` may see it: arm by name or by code."""
    show = sees_arms(actor, trial_unblinded) or row.participant_id in unblinded
    return {
        "participant_id": row.participant_id,
        "screening_id": row.screening_id,
        "centre": row.centre,
        "sex": row.sex,
        "stratum": row.stratum,
        "sequence_in_stratum": row.seq,
        "block_id": row.block_id,
        "randomized_at": row.randomized_at,
        "randomized_by": row.randomized_by,
        "arm": row.arm if show else None,
        "arm_code": codes.get(row.arm, "?"),
        "unblinded": row.participant_id in unblinded,
    }


def participants(database: db.Database, actor: Actor) -> list[dict[str, Any]]:
    """Randomised participants visible to ``actor`` (investigators: their own site only)."""
    require(actor, "view_participants", "list_participants")
    with database.read() as conn:
        lst = active_list(conn)
        where = db.randomizations.c.centre == actor.site if actor.role == "investigator" else None
        codes = lst["arm_codes"] if lst else {}
        blind = is_trial_unblinded(conn), _unblinded_pids(conn)
        return [_view(r, actor, codes, *blind) for r in _rows(conn, where)]


def participant(database: db.Database, actor: Actor, pid: str) -> dict[str, Any]:
    """One participant; another site's participant is refused to an investigator (and logged)."""
    require(actor, "view_participants", "view_participant", pid)
    with database.read() as conn:
        rows = _rows(conn, db.randomizations.c.participant_id == pid)
        if not rows:
            raise RefusedError("not_found", f"no participant {pid}", 404, "view_participant", pid)
        if actor.role == "investigator" and rows[0].centre != actor.site:
            raise RefusedError(
                "wrong_site", "this participant belongs to another site", 403, "view_participant", pid
            )
        lst = active_list(conn)
        return _view(rows[0], actor, lst["arm_codes"], is_trial_unblinded(conn), _unblinded_pids(conn))


def dashboard(database: db.Database, actor: Actor) -> dict[str, Any]:
    """Per-stratum use of the list and counts by arm (by code for blinded roles)."""
    require(actor, "view_dashboard", "view_dashboard")
    with database.read() as conn:
        lst = active_list(conn)
        if lst is None:
            return {"list": None, "strata": [], "arms": {}, "n_randomized": 0, "trial_unblinded": False}
        unblinded = is_trial_unblinded(conn)
        by_name = sees_arms(actor, unblinded)
        arms: dict[str, int] = {}
        for r in _rows(conn):
            key = r.arm if by_name else lst["arm_codes"][r.arm]
            arms[key] = arms.get(key, 0) + 1
        strata = [
            {"stratum": s.code, "centre": s.centre, "sex": s.sex, "used": s.n_used, "slots": s.n_slots}
            for s in conn.execute(select(db.strata).order_by(db.strata.c.id))
        ]
        info = {k: lst[k] for k in ("sha256", "filename", "uploaded_by", "uploaded_at", "n_slots")}
        if actor.role == "statistician":
            info["arm_codes"] = lst["arm_codes"]
        return {
            "list": info,
            "strata": strata,
            "arms": dict(sorted(arms.items())),
            "n_randomized": sum(arms.values()),
            "trial_unblinded": unblinded,
        }


def check_code(salt: str, pid: str, arm: str) -> str:
    """The offline emergency list's check code of one participant (proves the envelope was opened)."""
    digest = hashlib.sha256(f"{salt}|{pid}|{arm}".encode()).hexdigest()[:12].upper()
    return "-".join(digest[i : i + 4] for i in range(0, 12, 4))


def unblind(
    database: db.Database, actor: Actor, pid: str, reason: str, outbox: Path | None, code: str | None = None
) -> dict[str, Any]:
    """Emergency unblinding of one participant (reason required), or recording an offline code break
    from the sealed list (``code`` given: must match). Logged and notified to statisticians and admins."""
    kind = "offline" if code is not None else "emergency"
    action = "offline_unblinding" if code is not None else "unblind"
    require(actor, "emergency_unblind", action, pid)
    if len(reason.strip()) < 10:
        raise RefusedError(
            "reason_required", "give the clinical reason (at least 10 characters)", 422, action, pid
        )
    with database.write() as conn:
        rows = _rows(conn, db.randomizations.c.participant_id == pid)
        if not rows:
            raise RefusedError("not_found", f"no participant {pid}", 404, action, pid)
        lst = active_list(conn)
        arm = rows[0].arm
        if code is not None and code.strip().upper() != check_code(lst["code_salt"], pid, arm):
            raise RefusedError(
                "bad_code", "the check code does not match this participant's envelope", 422, action, pid
            )
        now = db.utcnow()
        conn.execute(
            insert(db.unblindings).values(
                participant_id=pid, kind=kind, by_user=actor.username, at=now, reason=reason.strip()
            )
        )
        recipients = sorted(
            conn.execute(
                select(db.users.c.username).where(
                    db.users.c.role.in_(("statistician", "admin")), db.users.c.active.is_(True)
                )
            ).scalars()
        )
        subject = f"{kind} unblinding of {pid} by {actor.username}"
        body = f"{subject} at {now} (role {actor.role}, IP {actor.ip}). Reason: {reason.strip()}"
        note = {
            "at": now,
            "kind": f"{kind}_unblinding",
            "recipients": json.dumps(recipients),
            "subject": subject,
            "body": body,
        }
        conn.execute(insert(db.notifications).values(**note))
        audit.append(conn, actor, action, pid, after={"reason": reason.strip(), "notified": recipients})
    if outbox is not None:
        outbox.mkdir(parents=True, exist_ok=True)
        with open(outbox / "notifications.jsonl", "a", encoding="utf-8") as fh:
            fh.write(audit.canonical({**note, "recipients": recipients}) + "\n")
    return {"participant_id": pid, "arm": arm, "kind": kind, "at": now, "notified": recipients}


def unblind_trial(database: db.Database, actor: Actor, confirm: str) -> dict[str, Any]:
    """End-of-trial unblinding by the statistician (after database lock): every role then sees arms."""
    require(actor, "unblind_trial", "unblind_trial")
    if confirm != "UNBLIND TRIAL":
        raise RefusedError("confirm", "type UNBLIND TRIAL to confirm", 422, "unblind_trial")
    with database.write() as conn:
        if is_trial_unblinded(conn):
            raise RefusedError("already_unblinded", "the trial is already unblinded", 409, "unblind_trial")
        value = {"by": actor.username, "at": db.utcnow()}
        conn.execute(insert(db.trial_state).values(key="unblinded", value=json.dumps(value)))
        audit.append(conn, actor, "unblind_trial", "trial", before={"unblinded": False}, after=value)
    return value


def notifications(database: db.Database, actor: Actor) -> list[dict[str, Any]]:
    """Notifications addressed to ``actor`` (newest first)."""
    with database.read() as conn:
        rows = conn.execute(select(db.notifications).order_by(db.notifications.c.id.desc())).all()
    return [dict(r._mapping) for r in rows if actor.username in json.loads(r.recipients)]
