"""Reliability of slot assignment on SQLite and PostgreSQL, over real HTTP on loopback:

- 20 concurrent investigators (4 per site) randomise 314 participants across 10 strata: no slot given
  twice, none lost, and within every stratum the allocations follow the uploaded list's order;
- a server killed with SIGKILL while requests are in flight loses no committed randomisation and
  double-allocates nothing: after a restart every participant ends up randomised exactly once.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pandas as pd
import pytest
from randomization_support import Client, cohort, running_server, setup_trial, start_server, write_list

from TrialAnalysisLib.randomization_server.audit import verify_database

BACKENDS = pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)


def queues(participants: list[dict], investigators: dict[str, list[str]]) -> dict[str, list[dict]]:
    """Each site's participants in screening order, dealt round-robin to the site's investigators."""
    out: dict[str, list[dict]] = {u: [] for users in investigators.values() for u in users}
    for site, users in investigators.items():
        mine = [p for p in participants if p["centre"] == site]
        for k, p in enumerate(mine):
            out[users[k % len(users)]].append(p)
    return out


def run_clients(
    base: str, work: dict[str, list[dict]], stop: threading.Event | None = None
) -> dict[str, dict]:
    """All investigators at once (each logged in before any starts); result per screening ID:
    {"status": HTTP status or None when the connection broke, "body": JSON}."""
    results: dict[str, dict] = {}
    ready = threading.Barrier(len(work))

    def investigator(user: str) -> None:
        client = Client(base, user)
        ready.wait()
        try:
            for p in work[user]:
                if stop is not None and stop.is_set():
                    return
                try:
                    r = client.post("/api/randomize", p)
                except httpx.TransportError:
                    results[p["screening_id"]] = {"status": None, "body": None}
                    return  # the server is gone
                results[p["screening_id"]] = {"status": r.status_code, "body": r.json()}
        finally:
            client.close()

    with ThreadPoolExecutor(len(work)) as pool:
        for f in [pool.submit(investigator, u) for u in work]:
            f.result()
    return results


def check_allocation(url: str, base: str, list_path: object, n: int) -> pd.DataFrame:
    """Every invariant on the server's own record: returns the allocations (as the statistician sees them)."""
    stat = Client(base, "stat")
    got = pd.DataFrame(stat.get("/api/participants").json())
    stat.close()
    table = pd.read_csv(list_path, dtype={"stratum": str, "block_id": str, "arm": str})
    assert len(got) == n and got["screening_id"].is_unique
    assert sorted(got["participant_id"]) == [f"P{i:04d}" for i in range(1, n + 1)]  # numbered without gaps
    assert not got.duplicated(["stratum", "sequence_in_stratum"]).any()  # no slot given twice
    for stratum, g in got.groupby("stratum"):
        g = g.sort_values("participant_id")  # commit order
        assert g["sequence_in_stratum"].tolist() == list(range(1, len(g) + 1)), (
            stratum
        )  # none lost, in list order
        ref = table[table["stratum"] == stratum].set_index("sequence_in_stratum")
        assert (g["arm"].to_numpy() == ref.loc[g["sequence_in_stratum"], "arm"].to_numpy()).all()
        assert (g["block_id"].to_numpy() == ref.loc[g["sequence_in_stratum"], "block_id"].to_numpy()).all()
    res = verify_database(url)
    assert res.ok and res.n_entries > n, res.summary()
    return got


@BACKENDS
def test_20_concurrent_investigators_314_participants(database_url, tmp_path) -> None:  # type: ignore[no-untyped-def]
    url = database_url()
    list_path = write_list(tmp_path, per_stratum=50)
    participants = cohort(314, seed=17)
    with running_server(url) as server:
        setup = setup_trial(url, server.url, list_path, per_site=4)
        results = run_clients(server.url, queues(participants, setup.investigators))
        assert sorted({r["status"] for r in results.values()}) == [201] and len(results) == 314
        got = check_allocation(url, server.url, list_path, 314)
    assert got["stratum"].nunique() == 10
    by_sid = {r["body"]["screening_id"]: r["body"] for r in results.values()}
    for row in got.itertuples():  # what each investigator was told is what the server recorded
        told = by_sid[row.screening_id]
        assert (told["participant_id"], told["arm"], told["sequence_in_stratum"]) == (
            row.participant_id, row.arm, row.sequence_in_stratum)  # fmt: skip


@pytest.mark.parametrize(
    "database_url", ["sqlite", pytest.param("postgresql", marks=pytest.mark.slow)], indirect=True
)
def test_server_killed_mid_request_loses_and_duplicates_nothing(database_url, tmp_path) -> None:  # type: ignore[no-untyped-def]
    url = database_url()
    list_path = write_list(tmp_path, per_stratum=24)
    participants = cohort(100, seed=23)
    server = start_server(url)
    try:
        setup = setup_trial(
            url, server.url, list_path, per_site=2
        )  # 10 investigators keep ~10 requests in flight
        work = queues(participants, setup.investigators)
        done = threading.Event()

        def killer() -> None:  # SIGKILL once 30 randomisations are confirmed, with up to 10 more in flight
            while not done.is_set():
                if server.log_text().count("POST /api/randomize 201") >= 30:
                    server.kill()
                    return
                done.wait(0.01)

        t = threading.Thread(target=killer)
        t.start()
        first = run_clients(server.url, work)
        done.set()
        t.join()
        assert server.process.poll() is not None, "the server was not killed"
    finally:
        if server.process.poll() is None:
            server.kill()
    confirmed = {s: r["body"] for s, r in first.items() if r["status"] == 201}
    in_doubt = [s for s, r in first.items() if r["status"] is None]
    assert len(confirmed) >= 30 and in_doubt, (len(confirmed), in_doubt)  # killed mid-request
    with running_server(url) as server:  # restart on the same database
        stat = Client(server.url, "stat")
        after = {p["screening_id"]: p for p in stat.get("/api/participants").json()}
        for sid, told in confirmed.items():  # nothing confirmed was lost or changed
            assert (after[sid]["participant_id"], after[sid]["arm"]) == (told["participant_id"], told["arm"])
        committed_in_doubt = [s for s in in_doubt if s in after]
        assert len(after) == len(confirmed) + len(committed_in_doubt)
        # investigators retry what was in doubt and carry on: committed ones are refused as duplicates
        rest = {u: [p for p in q if p["screening_id"] not in confirmed] for u, q in work.items()}
        second = run_clients(server.url, {u: q for u, q in rest.items() if q})
        for sid in in_doubt:
            expect = (409, "already_randomized") if sid in committed_in_doubt else (201, None)
            assert (second[sid]["status"], second[sid]["body"].get("code")) == expect, sid
        check_allocation(url, server.url, list_path, len(participants))
    print(f"\nkill test ({url.split(':')[0]}): {len(confirmed)} confirmed before SIGKILL, {len(in_doubt)} in flight, "
          f"{len(committed_in_doubt)} of them committed; after restart {len(participants)} randomised once each")  # fmt: skip
