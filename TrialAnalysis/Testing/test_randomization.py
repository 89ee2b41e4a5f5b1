"""Stratified permuted-block randomizer: block structure, balance, determinism, checksum, CLI."""

from __future__ import annotations

import hashlib
import itertools

import numpy as np
import pandas as pd
import pytest

from ParaspinalLBPCore.cli import run_cli
from TrialAnalysisLib.randomization import (
    balance_report,
    block_randomization,
    read_allocation,
    running_imbalance,
    sha256_of_table,
)


@pytest.fixture(scope="module")
def result():
    return block_randomization(40, seed=2024)


def test_block_structure(result):
    t = result.table
    assert list(t.columns) == ["stratum", "sequence_in_stratum", "block_id", "block_size", "arm"]
    assert t["stratum"].nunique() == 10
    for block_id, g in t.groupby("block_id"):
        size = int(g["block_size"].iloc[0])
        assert size in (4, 6), block_id
        assert len(g) == size, block_id
        assert (g["arm"] == "exercise").sum() == (g["arm"] == "control").sum() == size // 2
        assert g["stratum"].nunique() == 1
        seq = g["sequence_in_stratum"].to_numpy()
        assert np.array_equal(seq, np.arange(seq[0], seq[0] + size))  # blocks are contiguous
    sizes = t.drop_duplicates("block_id")["block_size"]
    assert set(sizes) == {4, 6}  # both sizes occur
    for _stratum, g in t.groupby("stratum"):
        assert np.array_equal(g["sequence_in_stratum"].to_numpy(), np.arange(1, len(g) + 1))
        assert 40 <= len(g) < 46  # capacity reached with whole blocks


def test_balance_within_strata_at_every_point(result):
    t = result.table
    for _stratum, g in t.groupby("stratum"):
        run = running_imbalance(g["arm"].tolist(), "exercise", "control")
        assert np.abs(run).max() <= 3  # half the largest block
        ends = g.groupby("block_id", sort=False)["sequence_in_stratum"].max().to_numpy() - 1
        assert np.all(run[ends] == 0)  # exactly balanced at every block end
    bal = result.balance()
    overall = bal.set_index("stratum").loc["overall"]
    assert overall["n_exercise"] == overall["n_control"] == len(t) // 2
    assert overall["final_imbalance"] == 0
    assert result.max_imbalance() <= 3
    assert (bal["final_imbalance"] == 0).all()


def test_sequence_is_not_trivially_alternating(result):
    arms = result.table.query("stratum == 'C1-F'")["arm"].tolist()
    alternating = all(a != b for a, b in itertools.pairwise(arms))
    assert not alternating
    # both arms start blocks in some stratum
    first = result.table.drop_duplicates("block_id")["arm"]
    assert set(first) == {"exercise", "control"}


def test_determinism_and_seed_sensitivity():
    a = block_randomization(30, seed=7)
    b = block_randomization(30, seed=7)
    c = block_randomization(30, seed=8)
    pd.testing.assert_frame_equal(a.table, b.table)
    assert a.checksum == b.checksum
    assert a.checksum != c.checksum


def test_checksum_changes_when_one_allocation_changes(result):
    t = result.table.copy()
    before = sha256_of_table(t)
    t.loc[5, "arm"] = "control" if t.loc[5, "arm"] == "exercise" else "exercise"
    assert sha256_of_table(t) != before


def test_to_csv_writes_checksum_and_meta(tmp_path, result):
    path = result.to_csv(tmp_path / "allocation.csv")
    data = path.read_bytes()
    recorded = (tmp_path / "allocation.sha256").read_text().split()
    assert recorded == [hashlib.sha256(data).hexdigest(), "allocation.csv"]
    assert recorded[0] == result.checksum
    meta = pd.read_json(tmp_path / "allocation.json", typ="series")
    assert meta["seed"] == 2024
    back = read_allocation(path)
    pd.testing.assert_frame_equal(back, result.table)
    # tamper: one allocation flipped -> checksum mismatch is reported with the file names
    text = data.decode().replace("exercise", "controlX", 1).replace("controlX", "control", 1)
    path.write_text(text)
    with pytest.raises(ValueError, match=r"allocation.csv: checksum mismatch with allocation.sha256"):
        read_allocation(path)


def test_per_stratum_capacities_ratio_and_unstratified():
    r = block_randomization({"C1-F": 10, "C2-M": 4}, seed=1)
    counts = r.table["stratum"].value_counts()
    assert set(counts.index) == {"C1-F", "C2-M"}
    assert counts["C1-F"] >= 10 and counts["C2-M"] >= 4
    r2 = block_randomization(60, strata={}, block_sizes=(3, 6), ratio=(2, 1), seed=3)
    assert set(r2.table["stratum"]) == {"all"}
    assert (r2.table["arm"] == "exercise").sum() == 2 * (r2.table["arm"] == "control").sum()
    bal = balance_report(r2.table)
    assert bal.iloc[-1]["stratum"] == "overall"
    with pytest.raises(ValueError, match="block_sizes"):
        block_randomization(10, block_sizes=(4, 5), seed=1)
    with pytest.raises(KeyError, match="unknown strata"):
        block_randomization({"C9-F": 3}, seed=1)


def test_summary_mentions_seed_and_checksum(result):
    s = result.summary()
    assert "seed: 2024" in s and result.checksum in s and "C5-M" in s


def test_cli(tmp_path, capsys):
    cmds = {"randomize": "TrialAnalysisLib.randomization_cli:add_cli"}
    out = tmp_path / "alloc" / "allocation.csv"
    rc = run_cli("trial-analysis", "", cmds,
                 ["randomize", "--centres", "C1..C2", "--per-stratum", "12", "--seed", "9", "--out", str(out)])  # fmt: skip
    assert rc == 0
    t = pd.read_csv(out)
    assert set(t["stratum"]) == {"C1-F", "C1-M", "C2-F", "C2-M"}
    assert sha256_of_table(t) == (out.parent / "allocation.sha256").read_text().split()[0]
    assert "seed: 9" in capsys.readouterr().out


def test_centre_range_notation():
    from TrialAnalysisLib.randomization_cli import expand_codes

    assert expand_codes(["C1..C5"]) == ["C1", "C2", "C3", "C4", "C5"]
    assert expand_codes(["C1-C3"]) == ["C1", "C2", "C3"]
    assert expand_codes(["C1", "C7"]) == ["C1", "C7"]
    assert expand_codes(["A,B"]) == ["A", "B"]
    with pytest.raises(ValueError, match="duplicate"):
        expand_codes(["C1..C2", "C2"])
