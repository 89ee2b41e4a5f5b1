"""Atomic file and folder writing: a temporary sibling, then ``os.replace``, so that a reader (or a
resumed job) never sees a half-written output, whether the writer finished, failed or was killed.
Temporary names carry their writer's process id (``staging.temporary_name``), so ``staging.recover``
removes what a killed writer left; a folder goes through ``staging.staged_dir`` (crash-safe swap).

    atomic_write_text(path, text)                      # text (``newline=""``: written as given)
    atomic_write_bytes(path, data)
    with atomic_path("labels.nii.gz") as tmp:          # any writer that takes a file name; the temporary
        sitk.WriteImage(image, str(tmp))                #   name keeps the suffixes (.nii.gz picks the format)
    with atomic_dir("bundle") as tmp:                  # a whole folder; an existing one is replaced whole
        (tmp / "model.skops").write_bytes(...)
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ParaspinalLBPCore.staging import staged_dir, temporary_name

__all__ = ["atomic_dir", "atomic_path", "atomic_write_bytes", "atomic_write_text"]


@contextmanager
def atomic_path(path: str | Path, mode: int = 0o644) -> Iterator[Path]:
    """Yield a temporary file name beside ``path`` (same suffixes); on success it replaces ``path``.

    The parent folder is created; on an exception the temporary file is removed and ``path`` is untouched.
    ``mode``: permissions of the result (``mkstemp`` would leave 0600).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    prefix, suffix = temporary_name(path)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=prefix, suffix=suffix)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_text(path: str | Path, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` atomically (line ends exactly as given); returns ``path``."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding=encoding, newline="") as fh:
        fh.write(text)
    return Path(path)


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` atomically; returns ``path``."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


@contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``path``; on success it becomes ``path``.

    An existing ``path`` is replaced whole; on an exception inside the block ``path`` is untouched. A kill
    at any moment leaves the old or the new folder once ``staging.recover`` has run (the next write does).
    """
    with staged_dir(path) as tmp:
        yield tmp
