"""Stratified permuted-block randomization (METNLBP: blocks of 4 and 6 in random order, strata centre × sex).

The list is generated before the trial: for every stratum, blocks whose sizes are drawn at random from
``block_sizes`` are appended until the stratum's capacity is reached; inside a block the arms are
permuted so that every block is exactly balanced for the allocation ratio. The exported CSV is canonical
(fixed column order, ``\\n`` line ends) so its SHA-256 checksum identifies the list.

Table columns (contract C6 ``allocation.csv``): stratum ("C1-F", factor levels joined by "-"),
sequence_in_stratum (1-based), block_id ("C1-F-B01"), block_size, arm.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ParaspinalLBPCore.atomic import atomic_write_bytes
from ParaspinalLBPCore.errors import BadInputError, MissingInputError, MissingKeyError

ALLOCATION_COLUMNS = ("stratum", "sequence_in_stratum", "block_id", "block_size", "arm")
DEFAULT_STRATA: dict[str, tuple[str, ...]] = {
    "centre": ("C1", "C2", "C3", "C4", "C5"),
    "sex": ("F", "M"),
}
DEFAULT_ARMS = ("exercise", "control")


def stratum_code(*levels: str) -> str:
    """Stratum label used in every table: factor levels joined by '-', e.g. ``stratum_code('C1', 'F') == 'C1-F'``."""
    return "-".join(str(v) for v in levels)


def canonical_csv(table: pd.DataFrame) -> bytes:
    """Canonical CSV bytes of an allocation table (fixed columns, ``\\n`` line ends) used for the checksum."""
    return table.loc[:, list(ALLOCATION_COLUMNS)].to_csv(index=False, lineterminator="\n").encode("utf-8")


def sha256_of_table(table: pd.DataFrame) -> str:
    """SHA-256 hex digest of the canonical CSV of an allocation table."""
    return hashlib.sha256(canonical_csv(table)).hexdigest()


@dataclass
class RandomizationResult:
    """A generated allocation list with its parameters, checksum and balance report."""

    table: pd.DataFrame
    seed: int
    block_sizes: tuple[int, ...]
    ratio: tuple[int, ...]
    arms: tuple[str, ...]
    strata: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def checksum(self) -> str:
        """SHA-256 of the canonical CSV of ``table``."""
        return sha256_of_table(self.table)

    def balance(self) -> pd.DataFrame:
        """Balance report: one row per stratum plus 'overall' (arm counts, final and max running imbalance)."""
        return balance_report(self.table, self.arms)

    def max_imbalance(self) -> int:
        """Largest running |difference| between the first two arms inside any stratum."""
        return int(self.balance().query("stratum != 'overall'")["max_running_imbalance"].max())

    def summary(self) -> str:
        """Readable summary: parameters, checksum, block-size use and the balance table."""
        t = self.table
        n_blocks = t.drop_duplicates("block_id")["block_size"].value_counts().sort_index()
        lines = [
            "Stratified permuted-block randomization",
            f"  seed: {self.seed}   arms: {' : '.join(self.arms)}   ratio: {':'.join(map(str, self.ratio))}",
            f"  strata: {' x '.join(f'{k} ({len(v)})' for k, v in self.strata.items()) or 'none'}"
            f"   allocations: {len(t)}   blocks: {int(n_blocks.sum())}",
            "  blocks by size: " + ", ".join(f"{int(s)}: {int(c)}" for s, c in n_blocks.items()),
            f"  max running imbalance within a stratum: {self.max_imbalance()}"
            f" (bound: half the largest block = {max(self.block_sizes) // 2})",
            f"  sha256: {self.checksum}",
            "",
            self.balance().to_string(index=False),
        ]
        return "\n".join(lines)

    def to_csv(self, path: str | Path) -> Path:
        """Write the list (canonical CSV), ``<stem>.sha256`` (sha256sum format) and ``<stem>.json`` (parameters)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        data = canonical_csv(self.table)
        _atomic_write(path, data)
        digest = hashlib.sha256(data).hexdigest()
        _atomic_write(path.with_suffix(".sha256"), f"{digest}  {path.name}\n".encode())
        meta = {
            "seed": self.seed,
            "block_sizes": list(self.block_sizes),
            "ratio": list(self.ratio),
            "arms": list(self.arms),
            "strata": {k: list(v) for k, v in self.strata.items()},
            "n_allocations": len(self.table),
            "sha256": digest,
        }
        _atomic_write(path.with_suffix(".json"), (json.dumps(meta, indent=2) + "\n").encode())
        return path


def _atomic_write(path: Path, data: bytes) -> None:
    atomic_write_bytes(path, data)


def _block_arms(size: int, ratio: Sequence[int], arms: Sequence[str]) -> list[str]:
    unit = sum(ratio)
    reps = size // unit
    return [arm for arm, r in zip(arms, ratio, strict=True) for _ in range(r * reps)]


def block_randomization(
    n: int | Mapping[str, int],
    strata: Mapping[str, Sequence[str]] | None = None,
    block_sizes: Sequence[int] = (4, 6),
    ratio: Sequence[int] = (1, 1),
    seed: int = 20240101,
    arms: Sequence[str] = DEFAULT_ARMS,
) -> RandomizationResult:
    """Generate a stratified permuted-block allocation list.

    ``n`` is the capacity per stratum (int) or ``{stratum_code: capacity}``; each stratum receives whole
    blocks until it holds at least its capacity. ``strata`` maps factor -> levels (default centre C1..C5
    × sex F/M); ``{}`` gives a single unstratified list (stratum "all"). Every block size must be a
    multiple of ``sum(ratio)``.
    """
    strata = dict(DEFAULT_STRATA if strata is None else {k: tuple(v) for k, v in strata.items()})
    block_sizes = tuple(int(b) for b in block_sizes)
    ratio = tuple(int(r) for r in ratio)
    arms = tuple(arms)
    if len(arms) != len(ratio) or len(arms) < 2:
        raise BadInputError(f"arms {arms} and ratio {ratio} must have the same length (≥ 2)")
    if any(r <= 0 for r in ratio):
        raise BadInputError(f"ratio {ratio}: every part must be a positive integer")
    if not block_sizes or any(b <= 0 or b % sum(ratio) for b in block_sizes):
        raise BadInputError(
            f"block_sizes {block_sizes}: each must be a positive multiple of sum(ratio) = {sum(ratio)}"
        )
    codes = [stratum_code(*combo) for combo in itertools.product(*strata.values())] if strata else ["all"]
    if isinstance(n, Mapping):
        unknown = sorted(set(n) - set(codes))
        if unknown:
            raise MissingKeyError(f"n: unknown strata {unknown}; known: {codes}")
        capacity = {c: int(n.get(c, 0)) for c in codes}
    else:
        capacity = dict.fromkeys(codes, int(n))
    if any(v < 0 for v in capacity.values()):
        raise BadInputError("n: capacities must be ≥ 0")

    rng = np.random.default_rng(seed)
    rows: list[tuple[str, int, str, int, str]] = []
    for code in codes:
        seq, b = 0, 0
        while seq < capacity[code]:
            b += 1
            size = int(rng.choice(block_sizes))
            block = _block_arms(size, ratio, arms)
            order = rng.permutation(len(block))
            block_id = f"{code}-B{b:02d}"
            for i in order:
                seq += 1
                rows.append((code, seq, block_id, size, block[i]))
    table = pd.DataFrame(rows, columns=list(ALLOCATION_COLUMNS))
    table["sequence_in_stratum"] = table["sequence_in_stratum"].astype("int64")
    table["block_size"] = table["block_size"].astype("int64")
    return RandomizationResult(table, int(seed), block_sizes, ratio, arms, strata)


def running_imbalance(arms_in_order: Sequence[str], arm_a: str, arm_b: str) -> np.ndarray:
    """Running n(arm_a) − n(arm_b) after each allocation of a sequence."""
    a = np.asarray(arms_in_order)
    return np.cumsum((a == arm_a).astype(int) - (a == arm_b).astype(int))


def balance_report(table: pd.DataFrame, arms: Sequence[str] = DEFAULT_ARMS) -> pd.DataFrame:
    """Arm counts per stratum and overall, with the final and the largest running imbalance (first two arms)."""
    arms = tuple(arms)
    out = []
    for code, g in table.sort_values(["stratum", "sequence_in_stratum"]).groupby("stratum", sort=True):
        counts = g["arm"].value_counts()
        run = running_imbalance(g["arm"].tolist(), arms[0], arms[1])
        row = {"stratum": code, "n": len(g)}
        row.update({f"n_{a}": int(counts.get(a, 0)) for a in arms})
        row["final_imbalance"] = int(abs(run[-1])) if len(run) else 0
        row["max_running_imbalance"] = int(np.abs(run).max()) if len(run) else 0
        out.append(row)
    counts = table["arm"].value_counts()
    total = {"stratum": "overall", "n": len(table)}
    total.update({f"n_{a}": int(counts.get(a, 0)) for a in arms})
    total["final_imbalance"] = int(abs(total[f"n_{arms[0]}"] - total[f"n_{arms[1]}"]))
    total["max_running_imbalance"] = max((r["max_running_imbalance"] for r in out), default=0)
    out.append(total)
    return pd.DataFrame(out)


def read_allocation(path: str | Path, verify: bool = True) -> pd.DataFrame:
    """Read an allocation CSV; with ``verify`` check it against ``<stem>.sha256`` when that file exists."""
    path = Path(path)
    if not path.exists():
        raise MissingInputError(f"allocation list not found: {path}")
    data = path.read_bytes()
    sha = path.with_suffix(".sha256")
    if verify and sha.exists():
        expected = sha.read_text().split()[0] if sha.read_text().strip() else ""
        actual = hashlib.sha256(data).hexdigest()
        if expected != actual:
            raise BadInputError(
                f"{path.name}: checksum mismatch with {sha.name} (file {actual[:12]}…, recorded {expected[:12]}…)"
            )
    return pd.read_csv(path, dtype={"stratum": str, "block_id": str, "arm": str})
