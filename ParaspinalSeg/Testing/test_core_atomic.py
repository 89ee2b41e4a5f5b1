"""ParaspinalLBPCore.atomic: outputs appear whole or not at all; failures leave the old output and no debris."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from ParaspinalLBPCore.atomic import atomic_dir, atomic_path, atomic_write_bytes, atomic_write_text


def _siblings(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_text_and_bytes_replace_whole_files(tmp_path: Path) -> None:
    out = tmp_path / "sub" / "table.csv"
    assert atomic_write_text(out, "a,b\r\n1,2\n") == out  # parent created, line ends kept as given
    assert out.read_bytes() == b"a,b\r\n1,2\n"
    assert stat.S_IMODE(out.stat().st_mode) == 0o644
    atomic_write_bytes(out, b"new")
    assert out.read_bytes() == b"new" and _siblings(out.parent) == ["table.csv"]


def test_failed_writer_keeps_the_old_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    out = tmp_path / "labels.nii.gz"
    out.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_path(out) as tmp:
        assert tmp.parent == tmp_path and tmp.name.endswith(".nii.gz")  # writers pick the format by suffix
        tmp.write_bytes(b"half")
        raise RuntimeError("writer died")
    assert out.read_bytes() == b"old" and _siblings(tmp_path) == ["labels.nii.gz"]


def test_directory_is_swapped_whole(tmp_path: Path) -> None:
    out = tmp_path / "bundle"
    with atomic_dir(out) as tmp:
        (tmp / "a.txt").write_text("1")
        assert not out.exists()  # nothing visible before the block ends
    assert (out / "a.txt").read_text() == "1"
    with atomic_dir(out) as tmp:
        (tmp / "b.txt").write_text("2")
    assert _siblings(out) == ["b.txt"] and _siblings(tmp_path) == ["bundle"]
    with pytest.raises(KeyboardInterrupt), atomic_dir(out) as tmp:
        (tmp / "c.txt").write_text("3")
        raise KeyboardInterrupt
    assert _siblings(out) == ["b.txt"] and _siblings(tmp_path) == ["bundle"]
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o755
