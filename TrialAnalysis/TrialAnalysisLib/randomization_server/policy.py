"""Roles, what each may do, and the refusal every forbidden or impossible request ends in.

Roles: ``admin`` (sites and users), ``statistician`` (the unblinded statistician: uploads the list,
sees arms, exports, offline emergency list, trial unblinding), ``investigator`` (randomises and
views participants of their own site), ``monitor`` (monitor/DSMB: read-only dashboard with coded
arms, audit log, emergency unblinding of one participant). Every :class:`RefusedError` is written to the
audit log by the app (outcome ``refused``) before the client gets its answer.
"""

from __future__ import annotations

from typing import Any

from TrialAnalysisLib.randomization_server.audit import Actor

ROLES = ("admin", "statistician", "investigator", "monitor")

PERMISSIONS: dict[str, frozenset[str]] = {
    "manage_users": frozenset({"admin"}),
    "upload_list": frozenset({"statistician"}),
    "randomize": frozenset({"investigator"}),
    "view_participants": frozenset({"admin", "statistician", "investigator", "monitor"}),
    "view_dashboard": frozenset({"admin", "statistician", "monitor"}),
    "view_audit": frozenset({"admin", "statistician", "monitor"}),
    "export_allocation": frozenset({"admin", "statistician", "monitor"}),
    "emergency_unblind": frozenset({"admin", "monitor"}),
    "emergency_list": frozenset({"statistician"}),
    "unblind_trial": frozenset({"statistician"}),
}


class RefusedError(Exception):
    """A request the service refuses: machine code, English message, HTTP status, audit action/target.

    ``audited`` is True when the refusal was already logged inside the refusing transaction.
    """

    def __init__(
        self,
        code: str,
        message: str,
        status: int = 403,
        action: str = "",
        target: str = "",
        extra: dict[str, Any] | None = None,
        audited: bool = False,
    ) -> None:
        super().__init__(message)
        self.code, self.message, self.status = code, message, status
        self.action, self.target = action, target
        self.extra = extra or {}
        self.audited = audited

    def body(self) -> dict[str, Any]:
        """JSON body of the refusal."""
        return {"detail": self.message, "code": self.code, **self.extra}


def require(actor: Actor, permission: str, action: str, target: str = "") -> None:
    """Raise :class:`RefusedError` (401 without a session, 403 for a role without ``permission``)."""
    if actor.role == "-":
        raise RefusedError("no_session", "login required", 401, action, target)
    if actor.role not in PERMISSIONS[permission]:
        raise RefusedError(
            "forbidden_role",
            f"role {actor.role!r} may not {permission.replace('_', ' ')}",
            403,
            action,
            target,
        )


def sees_arms(actor: Actor, trial_unblinded: bool) -> bool:
    """Whether ``actor`` sees real arm names for every participant they may view."""
    return actor.role in ("statistician", "investigator") or trial_unblinded
