"""User-supplied weights: the loaded modules record the sha256 of the bytes loaded, and a pin
(library parameter or ``--sr-weights-sha256`` / ``--classifier-weights-sha256``) refuses a
different file with a message naming the file and both digests."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import srdefense
from srdefense._weights import WeightsError, load_weights, sha256_file, weights_fingerprint
from srdefense.cli.main import _load_commands, app
from srdefense.models import create_classifier, get_classifier_cfg
from srdefense.purification import paper_defense
from srdefense.purification.sr_models.edsr import EDSR
from srdefense.purification.superres import UPCONV7_WEIGHTS, WEIGHTS_DIR, SuperResolve, create_sr_model

_load_commands()
runner = CliRunner()
WRONG = "0123abcd" * 8


@pytest.fixture(scope="module")
def upconv7_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A user copy of the shipped upconv7 weights, under another name."""
    dst = tmp_path_factory.mktemp("w") / "my_upconv7.safetensors"
    shutil.copy(WEIGHTS_DIR / UPCONV7_WEIGHTS[None][0], dst)
    return dst


@pytest.fixture(scope="module")
def edsr_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    net = EDSR(n_resblocks=1, n_feats=8)
    path = tmp_path_factory.mktemp("w") / "edsr_tiny.pt"  # no hash prefix in the name: unpinned
    torch.save(net.state_dict(), path)
    return path


def _assert_mismatch_message(exc: BaseException | str, path: Path, actual: str) -> None:
    text = str(exc)
    assert str(path) in text and WRONG in text.lower() and actual in text, text


def test_load_weights_returns_the_digest_of_the_bytes_loaded(upconv7_copy: Path) -> None:
    sd, digest = load_weights(upconv7_copy)
    assert digest == sha256_file(upconv7_copy) == UPCONV7_WEIGHTS[None][1]
    assert sd.keys() == load_weights(upconv7_copy, digest[:8])[0].keys()
    with pytest.raises(WeightsError) as info:
        load_weights(upconv7_copy, WRONG)
    _assert_mismatch_message(info.value, upconv7_copy, digest)
    with pytest.raises(ValueError, match="hex digits"):
        load_weights(upconv7_copy, "xyz12345")


def test_upconv7_user_weights_expose_their_sha256_and_can_be_pinned(upconv7_copy: Path) -> None:
    digest = sha256_file(upconv7_copy)
    net = create_sr_model("upconv7", weights=upconv7_copy)
    assert (net.weights_file, net.weights_sha256, net.weights_pinned) == (str(upconv7_copy), digest, None)
    pinned = create_sr_model("upconv7", weights=upconv7_copy, sha256=digest[:12])
    assert pinned.weights_pinned == digest[:12] and pinned.weights_sha256 == digest
    with pytest.raises(WeightsError) as info:
        create_sr_model("upconv7", weights=upconv7_copy, sha256=WRONG)
    _assert_mismatch_message(info.value, upconv7_copy, digest)
    with pytest.raises(ValueError, match="weights=PATH"):
        create_sr_model("upconv7", sha256=digest)  # a pin without a file would be ignored
    # the fingerprint of a whole defense names the file and the digest
    fp = weights_fingerprint(paper_defense(sr_weights=upconv7_copy))
    assert fp == [{"module": "stages.1.net", "file": str(upconv7_copy), "sha256": digest, "pinned": None}]
    fp = weights_fingerprint(paper_defense(sr_weights=upconv7_copy, sr_weights_sha256=digest))
    assert fp[0]["pinned"] == digest
    with pytest.raises(WeightsError) as info:
        paper_defense(sr_weights=upconv7_copy, sr_weights_sha256=WRONG)
    _assert_mismatch_message(info.value, upconv7_copy, digest)
    with pytest.raises(ValueError, match="none was given"):
        paper_defense(sr_weights_sha256=digest)
    # the shipped default is pinned and says so
    (default,) = srdefense.weights_fingerprint(SuperResolve("upconv7"))
    assert default["sha256"] == default["pinned"] == UPCONV7_WEIGHTS[None][1]


def test_edsr_user_weights_expose_their_sha256_and_can_be_pinned(edsr_file: Path) -> None:
    digest = sha256_file(edsr_file)
    (fp,) = weights_fingerprint(SuperResolve("edsr", weights=edsr_file))
    assert (fp["file"], fp["sha256"], fp["pinned"]) == (str(edsr_file), digest, None)
    (fp,) = weights_fingerprint(
        srdefense.create_defense("sr:sr_model=edsr", sr_weights=str(edsr_file), sr_weights_sha256=digest)
    )
    assert fp["pinned"] == digest
    with pytest.raises(WeightsError) as info:
        srdefense.create_defense("paper", sr_model="edsr", sr_weights=str(edsr_file), sr_weights_sha256=WRONG)
    _assert_mismatch_message(info.value, edsr_file, digest)


def test_classifier_user_weights_expose_their_sha256_and_can_be_pinned(tmp_path: Path) -> None:
    cfg = get_classifier_cfg("efficientnet_lite0")
    copy = tmp_path / "lite0_finetuned.pth"
    shutil.copy(cfg.weights_path(), copy)
    digest = sha256_file(copy)
    model = create_classifier("efficientnet_lite0", weights=copy)
    assert model.cfg.weights_file == str(copy) and model.cfg.sha256 == digest
    assert weights_fingerprint(model) == [
        {"module": "model", "file": str(copy), "sha256": digest, "pinned": None}
    ]
    model = create_classifier("efficientnet_lite0", weights=copy, weights_sha256=digest[:10])
    assert weights_fingerprint(model)[0]["pinned"] == digest[:10]
    with pytest.raises(WeightsError) as info:
        create_classifier("efficientnet_lite0", weights=copy, weights_sha256=WRONG)
    _assert_mismatch_message(info.value, copy, digest)
    with pytest.raises(ValueError, match="none was given"):
        create_classifier("efficientnet_lite0", weights_sha256=digest)


def test_user_factory_classifier_weights_are_fingerprinted_and_pinned(tmp_path: Path) -> None:
    module = tmp_path / "tiny_model.py"
    module.write_text(
        "import torch\n"
        "def factory():\n"
        "    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 4 * 4, 10))\n"
    )
    torch.manual_seed(0)
    ref = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 4 * 4, 10))
    weights = tmp_path / "tiny.safetensors"
    from safetensors.torch import save_file

    save_file(ref.state_dict(), str(weights))
    digest = sha256_file(weights)
    model = create_classifier(f"{module}:factory", weights=weights)
    assert model.cfg.sha256 == digest and weights_fingerprint(model)[0]["sha256"] == digest
    with pytest.raises(WeightsError) as info:
        create_classifier(f"{module}:factory", weights=weights, weights_sha256=WRONG)
    _assert_mismatch_message(info.value, weights, digest)


def _one_error_line(output: str) -> str:
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, output
    return errors[0]


def test_cli_pins_sr_and_classifier_weights(upconv7_copy: Path, tmp_path: Path) -> None:
    digest = sha256_file(upconv7_copy)
    image = tmp_path / "in.png"
    srdefense.write_png(image, torch.rand(3, 8, 8, generator=torch.Generator().manual_seed(0)))
    base = ["purify", str(image), "--out", str(tmp_path / "out"), "-q", "--sr", "upconv7"]
    base += ["--sr-weights", str(upconv7_copy)]
    res = runner.invoke(app, [*base, "--sr-weights-sha256", WRONG])
    assert res.exit_code == 2
    line = _one_error_line(res.output)
    assert "sha256 mismatch" in line
    _assert_mismatch_message(line, upconv7_copy, digest)
    assert not (tmp_path / "out").exists()
    res = runner.invoke(app, [*base, "--sr-weights-sha256", digest[:8]])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "out" / "in.png").is_file()
    res = runner.invoke(app, ["purify", str(image), "--out", str(tmp_path), "--sr-weights-sha256", digest])
    assert res.exit_code == 2 and "--sr-weights-sha256" in _one_error_line(res.output)
    lite0 = tmp_path / "lite0.pth"
    shutil.copy(get_classifier_cfg("efficientnet_lite0").weights_path(), lite0)
    res = runner.invoke(
        app,
        ["classify", str(image), "--classifier-weights", str(lite0), "--classifier-weights-sha256", WRONG],
    )
    assert res.exit_code == 2
    _assert_mismatch_message(_one_error_line(res.output), lite0, sha256_file(lite0))
    res = runner.invoke(app, ["classify", str(image), "--classifier-weights-sha256", WRONG])
    assert res.exit_code == 2 and "--classifier-weights" in _one_error_line(res.output)
    assert re.search(r"none was given", res.output)
