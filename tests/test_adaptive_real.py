"""Adaptive attacks on the embedded classifier (EfficientNet-Lite0) and photos, at Linf 4/255.

Few images and few steps keep these to seconds each; the full-strength runs are the CLI's and
the benchmarks'.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from srdefense.data import load_dataset
from srdefense.evaluation import evaluate
from srdefense.models import create_classifier

EPS = 4 / 255


@pytest.fixture(scope="module")
def classifier() -> Any:
    return create_classifier("efficientnet_lite0")


def photos(n: int) -> Any:
    return load_dataset("samples", size=224, crop_pct=0.875, n=n, seed=0)


def test_white_box_pgd_through_paper_breaks_it(classifier: Any) -> None:
    res = evaluate(
        classifier,
        ["paper"],
        ["pgd:steps=5"],
        photos(4),
        eps=[EPS],
        setting=["white-box"],
        batch_size=4,
        n_examples=0,
        card=False,
    )
    assert res.accuracy("paper") >= 0.5  # the defense keeps clean accuracy...
    assert res.accuracy("paper", "pgd", EPS) <= 0.10  # ...and falls to gradients through it


@pytest.mark.parametrize("defense", ["jpeg", "bit-depth"])
def test_bpda_pgd_breaks_jpeg_and_bit_depth(classifier: Any, defense: str) -> None:
    res = evaluate(
        classifier,
        [defense],
        ["pgd:steps=10"],
        photos(10),
        eps=[EPS],
        setting=["gray-box", "bpda"],
        batch_size=10,
        n_examples=0,
        card=False,
    )
    assert res.accuracy(defense, "pgd", EPS, setting="bpda") <= 0.10
    assert res.accuracy(defense, "pgd", EPS, setting="bpda") <= res.accuracy(
        defense, "pgd", EPS, setting="gray-box"
    )


def test_eot_pgd_beats_pgd_without_eot_on_random_resize_pad(classifier: Any) -> None:
    # one PGD step: strong enough to show the difference, weak enough that a single draw's
    # gradient does not already win everywhere (PGD-5 takes both to 0 on these photos)
    kw: dict[str, Any] = {
        "eps": [EPS],
        "setting": ["white-box"],
        "batch_size": 10,
        "n_examples": 0,
        "card": False,
        "eval_draws": 4,
    }
    plain = evaluate(classifier, ["random-resize-pad"], ["pgd:steps=1"], photos(10), eot_samples=1, **kw)
    eot = evaluate(classifier, ["random-resize-pad"], ["pgd:steps=1"], photos(10), eot_samples=8, **kw)
    row_plain = plain.row("random-resize-pad", "pgd@4/255")
    row_eot = eot.row("random-resize-pad", "pgd@4/255")
    assert row_plain["draws"] == row_eot["draws"] == 4
    assert row_eot["accuracy_mean"] < row_plain["accuracy_mean"]
    assert row_eot["accuracy"] <= row_plain["accuracy"]


def test_resume_of_a_white_box_run_on_the_real_model(classifier: Any, tmp_path: Path) -> None:
    kw: dict[str, Any] = {
        "eps": [EPS],
        "setting": ["gray-box", "white-box"],
        "batch_size": 2,
        "n_examples": 0,
        "card": False,
    }
    full = evaluate(classifier, ["none", "jpeg"], ["pgd:steps=3"], photos(4), out=tmp_path / "full", **kw)

    class Stop(Exception):
        pass

    def stop(ev: Any) -> None:
        if ev.stage == "batch":
            raise Stop

    with pytest.raises(Stop):
        evaluate(
            classifier,
            ["none", "jpeg"],
            ["pgd:steps=3"],
            photos(4),
            out=tmp_path / "part",
            progress=stop,
            **kw,
        )
    res = evaluate(
        classifier, ["none", "jpeg"], ["pgd:steps=3"], photos(4), out=tmp_path / "part", resume=True, **kw
    )
    assert res.run["resumed_samples"] == 2
    assert res.summary == full.summary
    assert torch.tensor([r.index for r in res.records]).tolist() == [0, 1, 2, 3]
