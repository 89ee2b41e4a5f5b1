"""Initial schema: sites, users, sessions, login attempts, list, strata, slots, randomisations,
unblindings, notifications, trial state, audit log and its head row.

Revision ID: 0001
Revises:
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TS = 32


def _ts(name: str) -> sa.Column:
    return sa.Column(name, sa.String(TS), nullable=False)


def upgrade() -> None:
    """Create every table and the audit chain's genesis head row (in foreign-key order)."""
    for create in (
        _create_sites,
        _create_users,
        _create_sessions,
        _create_login_attempts,
        _create_allocation_lists,
        _create_strata,
        _create_slots,
        _create_randomizations,
        _create_unblindings,
        _create_notifications,
        _create_trial_state,
        _create_audit_log,
        _create_audit_head,
    ):
        create()


def _create_sites() -> None:
    """Trial sites (centres), keyed by their code."""
    op.create_table(
        "sites",
        sa.Column("code", sa.String(16), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        _ts("created_at"),
        sa.PrimaryKeyConstraint("code", name="pk_sites"),
    )


def _create_users() -> None:
    """User accounts: role, site (investigators), argon2 password hash."""
    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("username", sa.String(64), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("site_code", sa.String(16), nullable=True),
        sa.Column("password_hash", sa.String(255), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        _ts("created_at"),
        sa.ForeignKeyConstraint(["site_code"], ["sites.code"], name="fk_users_site_code_sites"),
        sa.PrimaryKeyConstraint("id", name="pk_users"),
        sa.UniqueConstraint("username", name="uq_users_username"),
    )


def _create_sessions() -> None:
    """Server-side sessions (the cookie's SHA-256) with their CSRF token."""
    op.create_table(
        "sessions",
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("csrf_token", sa.String(64), nullable=False),
        sa.Column("ip", sa.String(64), nullable=False),
        _ts("created_at"),
        _ts("last_seen"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name="fk_sessions_user_id_users"),
        sa.PrimaryKeyConstraint("token_hash", name="pk_sessions"),
    )


def _create_login_attempts() -> None:
    """Login attempts for the rate limit, indexed by user name and by address."""
    op.create_table(
        "login_attempts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("username", sa.String(64), nullable=False),
        sa.Column("ip", sa.String(64), nullable=False),
        _ts("at"),
        sa.Column("success", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_login_attempts"),
    )
    op.create_index("ix_login_attempts_username_at", "login_attempts", ["username", "at"])
    op.create_index("ix_login_attempts_ip_at", "login_attempts", ["ip", "at"])


def _create_allocation_lists() -> None:
    """The uploaded allocation list: checksum, arms, their letter codes, the CSV itself."""
    op.create_table(
        "allocation_lists",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("filename", sa.String(255), nullable=False),
        sa.Column("uploaded_by", sa.String(64), nullable=False),
        _ts("uploaded_at"),
        sa.Column("arms", sa.Text(), nullable=False),
        sa.Column("arm_codes", sa.Text(), nullable=False),
        sa.Column("code_salt", sa.String(64), nullable=False),
        sa.Column("n_slots", sa.Integer(), nullable=False),
        sa.Column("csv", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_allocation_lists"),
        sa.UniqueConstraint("sha256", name="uq_allocation_lists_sha256"),
    )


def _create_strata() -> None:
    """Strata of the list with their slot counts."""
    op.create_table(
        "strata",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("list_id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(32), nullable=False),
        sa.Column("centre", sa.String(16), nullable=False),
        sa.Column("sex", sa.String(8), nullable=False),
        sa.Column("n_slots", sa.Integer(), nullable=False),
        sa.Column("n_used", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["list_id"], ["allocation_lists.id"], name="fk_strata_list_id_allocation_lists"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_strata"),
        sa.UniqueConstraint("list_id", "code", name="uq_strata_list_code"),
    )


def _create_slots() -> None:
    """One row per slot of the list, unique per stratum and position."""
    op.create_table(
        "slots",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("list_id", sa.Integer(), nullable=False),
        sa.Column("stratum", sa.String(32), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("block_id", sa.String(64), nullable=False),
        sa.Column("block_size", sa.Integer(), nullable=False),
        sa.Column("arm", sa.String(32), nullable=False),
        sa.ForeignKeyConstraint(
            ["list_id"], ["allocation_lists.id"], name="fk_slots_list_id_allocation_lists"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_slots"),
        sa.UniqueConstraint("list_id", "stratum", "seq", name="uq_slots_list_stratum_seq"),
    )


def _create_randomizations() -> None:
    """Randomised participants: one slot, screening ID and participant ID each at most once."""
    op.create_table(
        "randomizations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("participant_id", sa.String(16), nullable=False),
        sa.Column("slot_id", sa.Integer(), nullable=False),
        sa.Column("screening_id", sa.String(32), nullable=False),
        sa.Column("centre", sa.String(16), nullable=False),
        sa.Column("sex", sa.String(8), nullable=False),
        sa.Column("stratum", sa.String(32), nullable=False),
        _ts("randomized_at"),
        sa.Column("randomized_by", sa.String(64), nullable=False),
        sa.Column("eligibility", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["slot_id"], ["slots.id"], name="fk_randomizations_slot_id_slots"),
        sa.PrimaryKeyConstraint("id", name="pk_randomizations"),
        sa.UniqueConstraint("participant_id", name="uq_randomizations_participant_id"),
        sa.UniqueConstraint("slot_id", name="uq_randomizations_slot_id"),
        sa.UniqueConstraint("screening_id", name="uq_randomizations_screening_id"),
    )


def _create_unblindings() -> None:
    """Emergency unblindings of one participant, with the reason."""
    op.create_table(
        "unblindings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("participant_id", sa.String(16), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("by_user", sa.String(64), nullable=False),
        _ts("at"),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["participant_id"],
            ["randomizations.participant_id"],
            name="fk_unblindings_participant_id_randomizations",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_unblindings"),
    )


def _create_notifications() -> None:
    """Notifications written to the outbox."""
    op.create_table(
        "notifications",
        sa.Column("id", sa.Integer(), nullable=False),
        _ts("at"),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("recipients", sa.Text(), nullable=False),
        sa.Column("subject", sa.String(255), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_notifications"),
    )


def _create_trial_state() -> None:
    """Key-value trial state (e.g. trial unblinded)."""
    op.create_table(
        "trial_state",
        sa.Column("key", sa.String(32), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("key", name="pk_trial_state"),
    )


def _create_audit_log() -> None:
    """The hash-chained audit log."""
    op.create_table(
        "audit_log",
        sa.Column("seq", sa.Integer(), autoincrement=False, nullable=False),
        _ts("at"),
        sa.Column("actor", sa.String(64), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("ip", sa.String(64), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("target", sa.String(128), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("before", sa.Text(), nullable=False),
        sa.Column("after", sa.Text(), nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("seq", name="pk_audit_log"),
    )


def _create_audit_head() -> None:
    """The audit chain's head row, with the genesis entry (sequence 0, zero hash)."""
    head = op.create_table(
        "audit_head",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("last_seq", sa.Integer(), nullable=False),
        sa.Column("last_hash", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_audit_head"),
    )
    op.bulk_insert(head, [{"id": 1, "last_seq": 0, "last_hash": "0" * 64}])


def downgrade() -> None:
    """Drop every table (destroys the trial's randomisation record: for development only)."""
    for name in ("audit_head", "audit_log", "trial_state", "notifications", "unblindings", "randomizations",
                 "slots", "strata", "allocation_lists", "login_attempts", "sessions", "users", "sites"):  # fmt: skip
        op.drop_table(name)
