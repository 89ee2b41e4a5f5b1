"""Sample size: the protocol's 157/arm reproduced and what it implies (d = 1/3, ~5 ODI points)."""

from __future__ import annotations

import pytest

from TrialAnalysisLib import sample_size
from TrialAnalysisLib.cli import main
from TrialAnalysisLib.sample_size import detectable_delta, n_per_arm, power, protocol_statement


def test_protocol_157_per_arm_is_a_third_of_an_sd() -> None:
    r = sample_size(delta=5, sd=15, alpha=0.025, sides=1, power=0.8, dropout=0.10)
    assert r.info["n_per_arm"] == 157
    assert r.row("total")["estimate"] == 314
    assert r.row("evaluable per arm (unrounded)")["estimate"] == pytest.approx(141.28, abs=0.01)
    implied = sample_size(n_per_arm_total=157, sd=15)
    assert implied.row("detectable difference")["estimate"] == pytest.approx(5.0, abs=0.01)
    assert implied.row("standardised difference")["estimate"] == pytest.approx(1 / 3, abs=0.001)
    assert n_per_arm(15, 15) == pytest.approx(15.70, abs=0.01)  # the stated 15 points needs ~16/arm


def test_power_inverts_n_and_t_is_conservative() -> None:
    n = n_per_arm(5, 15)
    assert power(n, 5, 15) == pytest.approx(0.80, abs=1e-9)
    nt = n_per_arm(5, 15, method="t")
    assert nt > n and nt - n < 2
    assert power(nt, 5, 15, method="t") == pytest.approx(0.80, abs=1e-6)
    assert detectable_delta(n, 15) == pytest.approx(5.0, rel=1e-6)
    assert sample_size(delta=5, sides=2, alpha=0.05).info["n_per_arm"] == 157  # same as one-sided 0.025


def test_statement_says_it_plainly_with_numbers() -> None:
    s = protocol_statement()
    for needle in ("157", "1/3", "141.3", "5.0 ODI points", "not 15 points", "15.7"):
        assert needle in s


def test_cli_and_errors(tmp_path, capsys) -> None:
    png = tmp_path / "power.png"
    assert main(["sample-size", "--n-per-arm", "157", "--plot", str(png)]) == 0
    assert "detectable difference" in capsys.readouterr().out and png.stat().st_size > 5000
    assert main(["sample-size", "--dropout", "1.5"]) == 2
    assert "dropout" in capsys.readouterr().err
    with pytest.raises(ValueError, match="sd"):
        sample_size(delta=5, sd=0)
