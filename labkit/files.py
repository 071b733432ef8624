"""Atomic file writes: the one helper every writer in labkit uses.

A file is written to a temporary name beside its destination and renamed into place
only when the write finished, so a reader (or a crash) never sees half a file.
"""
from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator


@contextmanager
def atomic_path(dest: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """A temporary path beside ``dest``; renamed onto ``dest`` when the block succeeds,
    removed when it raises. ``suffix`` defaults to ``dest``'s (tools such as ORT and
    onnx pick the format from it)."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.",
                               suffix=dest.suffix if suffix is None else suffix, dir=dest.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, dest)
    finally:
        tmp_path.unlink(missing_ok=True)


def write_bytes(dest: str | os.PathLike, data: bytes, mode: int | None = None) -> Path:
    """``data`` into ``dest`` atomically; with ``mode`` (0o600 for a file holding a secret)
    the file has that mode before it appears under its name."""
    with atomic_path(dest) as tmp:
        tmp.write_bytes(data)
        if mode is not None:
            os.chmod(tmp, mode)
    return Path(dest)


def rotate(path: str | os.PathLike, suffix: str = ".1") -> Path:
    """Rename ``path`` to ``path + suffix``, replacing an older one (a log's generation)."""
    path = Path(path)
    old = path.with_name(path.name + suffix)
    os.replace(path, old)
    return old


def write_text(dest: str | os.PathLike, text: str) -> Path:
    with atomic_path(dest) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(dest)


def write_json(dest: str | os.PathLike, obj: Any, **dumps_kw: Any) -> Path:
    dumps_kw.setdefault("indent", 1)
    return write_text(dest, json.dumps(obj, **dumps_kw))
