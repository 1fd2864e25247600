"""Crash-safe file writing and the JSON-lines record log."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..data.io import default_file_mode


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically: a temporary file in the same folder, then ``os.replace``.

    A crash at any point leaves either the old file or the new one, never a truncated file,
    and no temporary file behind when the failure is an exception.
    """
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    try:
        os.fchmod(fd, default_file_mode())  # mkstemp's 0600 would hide results from the group
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    """UTF-8 text version of :func:`atomic_write_bytes`."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any) -> None:
    """Serialise ``obj`` (strict JSON: no NaN) and write it atomically.

    The object is serialised completely before the file is touched.
    """
    atomic_write_text(path, json.dumps(obj, indent=2, allow_nan=False) + "\n")


def read_jsonl(path: str | Path) -> tuple[list[dict[str, Any]], int]:
    """Read a JSON-lines file, tolerating a torn last line (from a crash mid-write).

    Returns:
        The parsed records and the byte length of the valid prefix (to truncate the rest).
    """
    p = Path(path)
    if not p.exists():
        return [], 0
    records: list[dict[str, Any]] = []
    valid = 0
    with p.open("rb") as f:
        for raw in f:
            if not raw.endswith(b"\n"):
                break
            try:
                obj = json.loads(raw)
            except json.JSONDecodeError:
                break
            records.append(obj)
            valid += len(raw)
    return records, valid


def jsonl_line(record: dict[str, Any]) -> str:
    """One line of a JSON-lines log: compact strict JSON (no NaN) and a newline."""
    return json.dumps(record, allow_nan=False, separators=(",", ":")) + "\n"


class JsonlWriter:
    """Append records to a JSON-lines file, flushed and fsynced after each group.

    Args:
        path: the file.
        truncate_to: byte length to keep (``0`` starts a new file; ``None`` appends).
    """

    def __init__(self, path: str | Path, truncate_to: int | None = 0) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if truncate_to is not None:
            with self.path.open("ab") as f:
                f.truncate(truncate_to)
        self._f = self.path.open("ab")

    def write(self, records: Iterable[dict[str, Any]]) -> None:
        """Append ``records`` (one line each) and make them durable."""
        data = b"".join(jsonl_line(r).encode("utf-8") for r in records)
        self._f.write(data)
        self._f.flush()
        os.fsync(self._f.fileno())

    def close(self) -> None:
        """Close the file."""
        self._f.close()

    def __enter__(self) -> JsonlWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
