"""``srdefense.classify``: the library function behind ``srdefense classify``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import srdefense
from srdefense import ClassifyResult, Prediction, classify, create_classifier, create_defense
from srdefense.cli.main import _load_commands, app
from srdefense.data import read_image
from srdefense.data.samples import embedded_samples

torch.set_num_threads(2)


@pytest.fixture(scope="module")
def clf():
    return create_classifier("efficientnet_lite0")


def test_classify_files_with_typed_predictions_and_skips_bad_inputs(tmp_path: Path, clf) -> None:
    yurt, label = embedded_samples()[8]
    bad = tmp_path / "notes.png"
    bad.write_text("not an image")
    res = classify([yurt, bad], classifier=clf, defense="none", top_k=3)
    assert isinstance(res, ClassifyResult) and res.defense == "none"
    assert res.classifier == "efficientnet_lite0"
    assert [e.source for e in res.errors] == [str(bad)] and res.errors[0].error
    (r,) = res.results
    assert r.source == str(yurt)
    assert all(isinstance(p, Prediction) for p in r.predictions)
    assert [p.rank for p in r.predictions] == [1, 2, 3]
    assert r.predictions[0].index == label
    probs = [p.probability for p in r.predictions]
    assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-6
    assert r.predictions[0].wnid.startswith("n") and r.predictions[0].name


def test_tensor_input_spec_and_built_defense_agree(clf) -> None:
    yurt, _ = embedded_samples()[8]
    image = read_image(yurt)
    by_file = classify([yurt], classifier=clf, defense="jpeg", top_k=5)
    by_tensor = classify([image], classifier=clf, defense=create_defense("jpeg"), top_k=5)
    assert by_tensor.results[0].source == "<tensor 0>" and by_tensor.defense == "JPEG"
    a, b = by_file.results[0].predictions, by_tensor.results[0].predictions
    assert [p.index for p in a] == [p.index for p in b]
    torch.testing.assert_close(
        torch.tensor([p.probability for p in a]), torch.tensor([p.probability for p in b]), atol=1e-6, rtol=0
    )
    bad = classify([torch.rand(4, 8, 8)], classifier=clf)
    assert bad.results == [] and "(3, H, W)" in bad.errors[0].error


def test_bad_arguments_are_named(clf) -> None:
    with pytest.raises(ValueError, match="top_k"):
        classify([], classifier=clf, top_k=0)
    with pytest.raises(KeyError, match="unknown defense 'nope'"):
        classify([], classifier=clf, defense="nope")
    with pytest.raises(ValueError, match="classifier_weights"):
        classify([], classifier=clf, classifier_weights="w.safetensors")
    with pytest.raises(TypeError, match="cfg"):
        classify([], classifier=torch.nn.Identity())


def test_the_command_prints_what_the_function_returns(clf) -> None:
    yurt, _ = embedded_samples()[8]
    _load_commands()
    res = CliRunner().invoke(app, ["classify", str(yurt), "--json", "-k", "4", "--defense", "bit-depth"])
    assert res.exit_code == 0, res.output
    (r,) = json.loads(res.stdout)["results"]
    lib = classify([yurt], classifier=clf, defense="bit-depth", top_k=4).results[0]
    assert r["file"] == lib.source and r["defense"] == "bit-depth"
    assert [p["index"] for p in r["predictions"]] == [p.index for p in lib.predictions]
    assert [p["probability"] for p in r["predictions"]] == pytest.approx(
        [p.probability for p in lib.predictions], abs=1e-5
    )
    assert srdefense.classify is classify
