"""Tests of the evaluation's file writing (`evaluation/io.py`)."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import pytest

from srdefense.evaluation.io import atomic_write_json


def test_atomic_write_keeps_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "results.json"
    atomic_write_json(path, {"summary": [1]})

    def boom(*args: Any, **kwargs: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", boom)  # crash after part of the data is written
    with pytest.raises(OSError, match="disk full"):
        atomic_write_json(path, {"summary": [2] * 10000})
    monkeypatch.undo()
    monkeypatch.setattr(os, "replace", boom)  # crash at the rename
    with pytest.raises(OSError):
        atomic_write_json(path, {"summary": [3]})
    monkeypatch.undo()
    with pytest.raises(ValueError):  # not serialisable: the file is never touched
        atomic_write_json(path, {"summary": [math.nan]})
    assert json.loads(path.read_text()) == {"summary": [1]}
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]  # no temporary files left
