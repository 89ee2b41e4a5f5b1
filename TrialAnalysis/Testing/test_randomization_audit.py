"""Audit chain tamper detection (``trial-analysis audit-verify``), migrations, and the export read by
``trial-analysis validate``: the service randomises a simulated trial's participants in order and the
exported allocation reproduces the simulated arms and passes validation."""

from __future__ import annotations

import contextlib
import io
import shutil
import sqlite3
import subprocess
import sys
import zipfile
from pathlib import Path

import pandas as pd
import pytest
from randomization_support import ELIGIBLE, write_list

from TrialAnalysisLib.randomization_server import accounts, audit, db, exports, lists, service
from TrialAnalysisLib.randomization_server.audit import Actor

ADMIN = Actor("admin", "admin", None, "10.0.0.1")
STAT = Actor("stat", "statistician", None, "10.0.0.2")
VERIFY = [sys.executable, "-m", "TrialAnalysisLib", "audit-verify"]


def build(url: str, list_path: Path, n: int = 12) -> db.Database:
    """A database with sites, a list and ``n`` randomised participants (service functions, no HTTP)."""
    db.migrate(url)
    database = db.Database(url)
    for c in ("C1", "C2", "C3", "C4", "C5"):
        accounts.create_site(database, ADMIN, c, f"Hospital {c}")
    lists.upload_list(
        database, STAT, list_path.read_bytes(), list_path.with_suffix(".sha256").read_text(), "a.csv"
    )
    for i in range(n):
        centre = f"C{i % 5 + 1}"
        inv = Actor(f"inv-{centre}", "investigator", centre, "10.0.1.1")
        service.randomize(
            database, inv, {"screening_id": f"S{i:05d}", "centre": centre, "sex": "FM"[i % 2], **ELIGIBLE}
        )
    return database


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("audit")
    path = tmp / "pristine.db"
    build(str(path), write_list(tmp, per_stratum=6)).dispose()
    return path


def verify(*args: str) -> subprocess.CompletedProcess:
    """``trial-analysis audit-verify ARGS`` in this process (the command's own code; one test runs it as a
    subprocess), as a CompletedProcess."""
    from TrialAnalysisLib.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["audit-verify", *args])
    return subprocess.CompletedProcess(args, code, out.getvalue(), "")


def tampered(pristine: Path, tmp_path: Path, *sql: str) -> str:
    """A copy of the database with ``sql`` executed directly (outside the service)."""
    path = tmp_path / "t.db"
    shutil.copy(pristine, path)
    con = sqlite3.connect(path)
    for s in sql:
        con.execute(s)
    con.commit()
    con.close()
    return str(path)


def forged_tail(path: str) -> str:
    """SQL inserting an entry after the last one with a correctly computed hash (a forger who knows the scheme)."""
    con = sqlite3.connect(path)
    last_seq, last_hash = con.execute("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1").fetchone()
    con.close()
    e = {"seq": last_seq + 1, "at": "2026-01-01T00:00:00.000000Z", "actor": "mallory", "role": "admin", "ip": "-",
         "action": "note", "target": "x", "outcome": "ok", "before": "null", "after": "null"}  # fmt: skip
    h = audit.entry_hash(last_hash, e)
    cols = ", ".join([*e, "prev_hash", "hash"])
    vals = ", ".join(repr(v) for v in [*e.values(), last_hash, h])
    return f"INSERT INTO audit_log ({cols}) VALUES ({vals})"


def test_intact_log_verifies_and_exports(pristine: Path, tmp_path: Path) -> None:
    res = subprocess.run([*VERIFY, "--db", str(pristine)], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and res.stdout.startswith(
        "audit log intact: 18 entries"
    )  # 5 sites + list + 12
    copy = tmp_path / "copy.db"
    shutil.copy(pristine, copy)
    database = db.Database(str(copy))
    text = exports.audit_export(database, ADMIN)  # itself audited: entry #19
    database.dispose()
    (tmp_path / "audit.jsonl").write_text(text)
    assert verify("--file", str(tmp_path / "audit.jsonl")).returncode == 0
    lines = text.splitlines(keepends=True)
    assert '"seq":10,' in lines[9] and '"ip":"10.0.1.1"' in lines[9]
    lines[9] = lines[9].replace('"ip":"10.0.1.1"', '"ip":"10.0.1.2"')
    (tmp_path / "edited.jsonl").write_text("".join(lines))
    res = verify("--file", str(tmp_path / "edited.jsonl"))
    assert res.returncode == 1 and "entry #10: content does not match its hash" in res.stdout
    (tmp_path / "cut.jsonl").write_text("".join(lines[:5] + lines[6:]))
    assert "entry #6: missing (deleted?)" in verify("--file", str(tmp_path / "cut.jsonl")).stdout
    old_head = audit.verify_chain(*audit.read_jsonl(tmp_path / "audit.jsonl")).head_hash
    assert verify("--db", str(copy), "--expect-head", old_head).returncode == 0
    assert verify("--db", str(copy), "--expect-head", "f" * 64).returncode == 1


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        (["UPDATE audit_log SET actor = 'someone' WHERE seq = 9"], "entry #9: content does not match its hash"),
        (["DELETE FROM audit_log WHERE seq = 9"], "entry #9: missing (deleted?); next stored entry is #10"),
        (["DELETE FROM audit_log WHERE seq = 18"], "audit head says entry #18 is the last, the log ends at #17"),
        ([None], "audit head says entry #18 is the last, the log ends at #19"),  # forged, correctly hashed tail
        (["UPDATE slots SET arm = CASE arm WHEN 'exercise' THEN 'control' ELSE 'exercise' END WHERE id = 3"],
         "allocation list #1: slots table differs from the uploaded list"),
        (["UPDATE randomizations SET screening_id = 'S99999' WHERE participant_id = 'P0004'"],
         "randomization P0004: differs from audit entry #10"),
        (["DELETE FROM randomizations WHERE participant_id = 'P0012'"],
         "randomization P0012 of audit entry #18 is missing (deleted)"),
    ],
)  # fmt: skip
def test_direct_database_tampering_is_detected(
    pristine: Path, tmp_path: Path, sql: list, message: str
) -> None:
    statements = [s or forged_tail(str(pristine)) for s in sql]
    path = tampered(pristine, tmp_path, *statements)
    res = verify("--db", path)
    assert res.returncode == 1 and "audit log TAMPERED" in res.stdout
    assert message in res.stdout, res.stdout


def test_migrations_match_the_table_definitions(tmp_path: Path) -> None:
    """Alembic's autogenerate finds no difference between the migrated schema and db.metadata."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    url = str(tmp_path / "m.db")
    db.migrate(url)
    db.migrate(url)  # idempotent
    assert db.schema_revision(url) == "0001"
    engine = db.make_engine(url)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), db.metadata)
    engine.dispose()
    assert diff == []


def test_export_of_a_simulated_trial_passes_validate(tmp_path: Path) -> None:
    """Randomise the simulated participants in their order through the service; the unblinded export,
    merged into the dataset, reproduces the simulated arms and ``trial-analysis validate`` accepts it."""
    from TrialAnalysisLib.schema_validation import validate_trial
    from TrialAnalysisLib.simulate import simulate_trial

    trial = tmp_path / "trial"
    simulate_trial(trial, n=60, seed=5)
    parts = pd.read_csv(trial / "participants.csv", dtype=str)
    screen = pd.read_csv(trial / "screening.csv", dtype=str, keep_default_na=False)
    sid = dict(zip(screen["participant_id"], screen["screening_id"], strict=True))
    db.migrate(str(tmp_path / "s.db"))
    database = db.Database(str(tmp_path / "s.db"))
    for c in sorted(parts["centre"].unique()):
        accounts.create_site(database, ADMIN, c, c)
    alloc = trial / "allocation.csv"
    lists.upload_list(
        database, STAT, alloc.read_bytes(), alloc.with_suffix(".sha256").read_text(), alloc.name
    )
    for p in parts.itertuples():
        inv = Actor(f"inv-{p.centre}", "investigator", p.centre, "10.0.0.9")
        req = {**ELIGIBLE, "screening_id": sid[p.participant_id], "centre": p.centre, "sex": p.sex, "age": int(p.age),
               "odi": float(p.odi_baseline), "goutallier_grade": int(p.goutallier_grade)}  # fmt: skip
        assert service.randomize(database, inv, req)["participant_id"] == p.participant_id
    data, manifest = exports.allocation_export(database, STAT)
    assert manifest["mode"] == "unblinded" and manifest["n_randomized"] == 60
    out = tmp_path / "merged"
    shutil.copytree(trial, out)
    z = zipfile.ZipFile(io.BytesIO(data))
    for name in ("allocation.csv", "allocation.sha256"):
        (out / name).write_bytes(z.read(name))
    rand = pd.read_csv(io.BytesIO(z.read("randomized.csv")), dtype=str).set_index("participant_id")
    assert (rand["arm"] == parts.set_index("participant_id")["arm"]).all()  # same list, same order: same arms
    merged = parts.set_index("participant_id")
    for col in ("arm", "block_id", "stratum", "randomization_date"):
        merged[col] = rand[col]
    merged.reset_index().to_csv(out / "participants.csv", index=False, lineterminator="\n")
    report = validate_trial(out)
    assert report.ok, report.summary()
    proc = subprocess.run([sys.executable, "-m", "TrialAnalysisLib", "validate", "--data", str(out)],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stdout
    # a participant moved to the other arm is caught by validate's cross-check against the exported list
    merged.loc["P0001", "arm"] = "control" if merged.loc["P0001", "arm"] == "exercise" else "exercise"
    merged.reset_index().to_csv(out / "participants.csv", index=False, lineterminator="\n")
    assert validate_trial(out).has("randomization", "participants.csv", "arm")


@pytest.mark.slow
def test_demo_step_randomises_the_simulated_cohort(tmp_path: Path) -> None:
    """The ``make demo`` step: every enrolled participant gets the simulated arm, screen failures are refused."""
    from TrialAnalysisLib.randomization_server import demo_run
    from TrialAnalysisLib.simulate import simulate_trial

    simulate_trial(tmp_path / "trial", n=40, seed=2)
    info = demo_run.run(tmp_path / "trial", tmp_path / "out")
    assert info["randomised"] == info["arms_equal_to_simulation"] == 40
    assert info["refused_as_expected"] == sum(info["refused"].values()) > 0 and info["audit_verified"]
    assert (tmp_path / "out" / "export" / "allocation.csv").read_bytes() == (
        tmp_path / "trial" / "allocation.csv"
    ).read_bytes()


def test_unusable_database_is_a_one_line_user_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from TrialAnalysisLib.cli import main

    assert main(["audit-verify", "--db", str(tmp_path / "absent.db")]) == 2
    assert "absent.db: no such database file" in capsys.readouterr().err
    assert main(["randomization-admin", "--db", "mysql://h/db", "migrate"]) == 2
    assert "only SQLite and PostgreSQL are supported" in capsys.readouterr().err
    port = __import__("randomization_support").free_port()  # nothing listens there
    assert main(["audit-verify", "--db", f"postgresql://nobody@127.0.0.1:{port}/x"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot open the database" in err and "Traceback" not in err
