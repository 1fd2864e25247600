"""The purify, classify and list commands, through typer's runner."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

import srdefense
from srdefense.cli.main import _load_commands, app
from srdefense.data.samples import embedded_samples

_load_commands()
runner = CliRunner()


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two small real photos, a corrupt file, a text file and a missing path."""
    d = tmp_path_factory.mktemp("inputs")
    (jeep, _), (mastiff, _) = embedded_samples()[7], embedded_samples()[0]
    out = {}
    for name, src in (("jeep", jeep), ("mastiff", mastiff)):
        im = Image.open(src).convert("RGB").resize((40, 32), Image.BICUBIC)
        out[name] = d / f"{name}.jpg"
        im.save(out[name], quality=95)
    out["truncated"] = d / "broken.jpg"
    out["truncated"].write_bytes(out["jeep"].read_bytes()[:200])
    out["text"] = d / "notes.png"
    out["text"].write_text("not an image")
    out["missing"] = d / "missing.png"
    return out


def test_purify_writes_2x_images_and_reports_each_bad_input(photos: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "purified"
    args = ["purify", str(photos["jeep"]), str(photos["truncated"]), str(photos["text"])]
    args += [str(photos["missing"]), str(photos["mastiff"]), "--out", str(out), "--quiet"]
    res = runner.invoke(app, args)
    assert res.exit_code == 1, res.output
    assert sorted(p.name for p in out.iterdir()) == ["jeep.png", "mastiff.png"]  # no partial files
    for name in ("broken.jpg", "notes.png", "missing.png"):
        assert name in res.output
    assert "wrote 2 purified image(s)" in res.output
    written = srdefense.read_image(out / "jeep.png")
    assert written.shape == (3, 64, 80)  # the paper defense returns the 2x image
    expected = srdefense.paper_defense()(srdefense.read_image(photos["jeep"])[None])[0]
    assert (written - expected).abs().max().item() <= 0.5 / 255 + 1e-6  # only uint8 rounding
    mode = stat.S_IMODE(os.stat(out / "jeep.png").st_mode)
    umask = os.umask(0)
    os.umask(umask)
    assert mode == 0o666 & ~umask


def _small_images(folder: Path, names: list[str]) -> dict[str, Path]:
    """Small distinct images (4x6, a different constant per file) at ``folder/NAME``."""
    out = {}
    for k, name in enumerate(names):
        p = folder / name
        p.parent.mkdir(parents=True, exist_ok=True)
        arr = np.full((4, 6, 3), 20 + 30 * k, dtype=np.uint8)
        arr[0, 0] = (k, 255 - k, 7)
        Image.fromarray(arr).save(p, quality=100) if p.suffix == ".jpg" else Image.fromarray(arr).save(p)
        out[name] = p
    return out


def test_purify_output_names_are_unique_and_predictable(tmp_path: Path) -> None:
    src = _small_images(tmp_path / "in", ["a.png", "a.jpg", "b.png", "x/c.png", "y/c.png", "y/z/c.png"])
    out = tmp_path / "out"
    args = ["purify", *map(str, src.values()), "--out", str(out), "--defense", "none", "-q"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    expected = {
        "a.png": "a.png.png",
        "a.jpg": "a.jpg.png",
        "b.png": "b.png",
        "x/c.png": "x/c.png",
        "y/c.png": "y/c.png",
        "y/z/c.png": "y/z/c.png",
    }
    got = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert got == sorted(expected.values())
    for name, dst in expected.items():  # each output holds its own input ("none" returns it)
        assert torch.equal(srdefense.read_image(out / dst), srdefense.read_image(src[name])), name
    assert "wrote 6 purified image(s)" in res.output


def test_purify_output_names_rule_and_clashes(tmp_path: Path) -> None:
    from srdefense.cli.commands import output_names

    out = Path("out")
    names = output_names([Path("p/a.png"), Path("p/A.jpg"), Path("q/b.tif"), Path("r/b.tif")], out)
    assert names == [out / "a.png.png", out / "A.jpg.png", out / "q/b.png", out / "r/b.png"]
    assert output_names([Path("a.b.c.jpg")], out) == [out / "a.b.c.png"]
    with pytest.raises(ValueError, match="A.png and p/a.png: would be written to the same output"):
        output_names([Path("p/A.png"), Path("p/a.png")], out)
    # a flat output name that is also a folder of kept sub-paths
    with pytest.raises(ValueError, match="same output"):
        output_names([Path("x.png/c.png"), Path("t/c.png"), Path("x.jpg")], out)
    src = _small_images(tmp_path, ["A.png", "a.png"])
    res = runner.invoke(app, ["purify", *map(str, src.values()), "--out", str(tmp_path / "o"), "-q"])
    assert res.exit_code == 2 and "rename one of them" in res.output and not (tmp_path / "o").exists()


def test_purify_same_input_twice_is_purified_once(tmp_path: Path) -> None:
    src = _small_images(tmp_path, ["a.png"])["a.png"]
    out = tmp_path / "out"
    res = runner.invoke(app, ["purify", str(src), str(src), "--out", str(out), "--defense", "none", "-q"])
    assert res.exit_code == 0, res.output
    assert [p.name for p in out.iterdir()] == ["a.png"] and "wrote 1 " in res.output
    assert "given more than once" in res.output


def test_purify_refuses_to_replace_an_existing_file_without_overwrite(tmp_path: Path) -> None:
    src = _small_images(tmp_path / "in", ["a.png", "b.png"])
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.png").write_bytes(b"keep me")
    args = ["purify", str(src["a.png"]), str(src["b.png"]), "--out", str(out), "--defense", "none", "-q"]
    res = runner.invoke(app, args)
    assert res.exit_code == 1, res.output
    assert (out / "a.png").read_bytes() == b"keep me"
    assert f"{out / 'a.png'} exists" in res.output and "--overwrite" in res.output
    assert "wrote 1 purified image(s)" in res.output  # b.png only
    res = runner.invoke(app, [*args, "--overwrite"])
    assert res.exit_code == 0, res.output
    assert "wrote 2 purified image(s)" in res.output
    assert torch.equal(srdefense.read_image(out / "a.png"), srdefense.read_image(src["a.png"]))
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "b.png"]  # no temporary files left


def test_purify_never_replaces_an_input_even_with_overwrite(tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    src = _small_images(folder, ["p.png", "q.jpg"])
    before = {n: p.read_bytes() for n, p in src.items()}
    linked = tmp_path / "linked"
    linked.mkdir()
    (linked / "p.png").symlink_to(src["p.png"])  # an output name that leads to an input
    os.link(src["p.png"], linked / "q.png")  # a hard link to an input
    for out in (folder, linked):
        for flags in ([], ["--overwrite"]):
            args = ["purify", str(src["p.png"]), str(src["q.jpg"]), "--out", str(out), "--defense", "none"]
            res = runner.invoke(app, [*args, "-q", *flags])
            assert res.exit_code == 1, res.output
            assert "is an input file" in res.output and "choose another --out" in res.output
            assert {n: p.read_bytes() for n, p in src.items()} == before
    # the jpg's output (q.png) sits beside the sources; only p.png was refused
    assert torch.equal(srdefense.read_image(folder / "q.png"), srdefense.read_image(src["q.jpg"]))


def test_purify_reports_a_malformed_tiff_and_goes_on(tmp_path: Path) -> None:
    from test_data import _tiff_with_bad_tag_type

    bad = tmp_path / "bad.tif"
    bad.write_bytes(_tiff_with_bad_tag_type())
    good = _small_images(tmp_path, ["good.png"])["good.png"]
    out = tmp_path / "out"
    res = runner.invoke(app, ["purify", str(bad), str(good), "--out", str(out), "--defense", "none", "-q"])
    assert res.exit_code == 1, res.output
    assert res.exception is None or isinstance(res.exception, SystemExit)  # no traceback
    assert f"failed {bad}: cannot read image" in res.output and "wrote 1 purified image(s)" in res.output
    assert [p.name for p in out.iterdir()] == ["good.png"]


def test_max_pixels_option_of_purify_and_classify(tmp_path: Path) -> None:
    img = _small_images(tmp_path, ["a.png"])["a.png"]  # 6 x 4 = 24 pixels
    out = tmp_path / "out"
    args = ["purify", str(img), "--out", str(out), "--defense", "none", "--max-pixels"]
    res = runner.invoke(app, [*args, "20"])
    assert res.exit_code == 1 and "exceeds max_pixels=20" in res.output and "--max-pixels" in res.output
    res = runner.invoke(app, [*args, "24"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["classify", str(img), "--max-pixels", "20", "--json"])
    assert res.exit_code == 1 and "exceeds max_pixels=20" in json.loads(res.stdout)["errors"][0]["error"]
    res = runner.invoke(app, ["classify", str(img), "--max-pixels", "0", "--json"])  # 0: no limit
    assert res.exit_code == 0, res.output


def test_purify_with_a_named_defense_and_parameters(photos: dict[str, Path], tmp_path: Path) -> None:
    res = runner.invoke(
        app, ["purify", str(photos["jeep"]), "--out", str(tmp_path), "--defense", "bit-depth:bits=1", "-q"]
    )
    assert res.exit_code == 0, res.output
    values = np.unique(np.asarray(Image.open(tmp_path / "jeep.png")))
    assert set(values.tolist()) <= {0, 255}


def test_purify_sr_backend_option_and_errors(photos: dict[str, Path], tmp_path: Path) -> None:
    res = runner.invoke(
        app,
        ["purify", str(photos["jeep"]), "--out", str(tmp_path), "--defense", "sr", "--sr", "nearest", "-q"],
    )
    assert res.exit_code == 0, res.output
    got = srdefense.read_image(tmp_path / "jeep.png")
    src = srdefense.read_image(photos["jeep"])
    torch.testing.assert_close(
        got, src.repeat_interleave(2, 1).repeat_interleave(2, 2), atol=0.5 / 255, rtol=0
    )
    res = runner.invoke(app, ["purify", str(photos["jeep"]), "--out", str(tmp_path), "--defense", "nope"])
    assert res.exit_code == 2 and "unknown defense 'nope'" in res.output and "paper" in res.output
    res = runner.invoke(
        app, ["purify", str(photos["jeep"]), "--out", str(tmp_path), "--defense", "jpeg", "--sr", "edsr"]
    )
    assert res.exit_code == 2 and "no super-resolution stage" in res.output
    res = runner.invoke(app, ["purify", str(photos["jeep"]), "--out", str(tmp_path), "--sr", "edsr"])
    assert res.exit_code == 2 and "edsr_baseline_x2" in res.output


def test_a_bad_option_combination_prints_one_error_line(photos: dict[str, Path], tmp_path: Path) -> None:
    for extra in (["--sr-weights", str(photos["jeep"])], ["--sr", "edsr"]):
        args = ["purify", str(photos["jeep"]), "--out", str(tmp_path), "--defense", "jpeg", *extra]
        res = runner.invoke(app, args)
        assert res.exit_code == 2
        errors = [line for line in res.output.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and "has no super-resolution stage" in errors[0], res.output
        assert list(tmp_path.iterdir()) == []


def test_classify_json_names_the_true_class(photos: dict[str, Path]) -> None:
    jeep, label = embedded_samples()[8]  # a yurt, classified correctly with or without defense
    res = runner.invoke(app, ["classify", str(jeep), str(photos["text"]), "--json", "--top-k", "3"])
    assert res.exit_code == 1  # the text file failed
    out = json.loads(res.stdout)
    assert [e["file"] for e in out["errors"]] == [str(photos["text"])]
    (r,) = out["results"]
    preds = r["predictions"]
    assert [p["rank"] for p in preds] == [1, 2, 3]
    assert label in [p["index"] for p in preds]
    probs = [p["probability"] for p in preds]
    assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-6
    assert preds[0]["wnid"].startswith("n") and preds[0]["name"]


def test_classify_behind_the_paper_defense_and_table_output() -> None:
    jeep, label = embedded_samples()[8]  # a yurt, classified correctly with or without defense
    res = runner.invoke(
        app, ["classify", str(jeep), "--defense", "paper:resolution=native", "--json", "-k", "5"]
    )
    assert res.exit_code == 0, res.output
    preds = json.loads(res.stdout)["results"][0]["predictions"]
    assert label in [p["index"] for p in preds]
    res = runner.invoke(app, ["classify", str(jeep), "-k", "2"])
    assert res.exit_code == 0 and "probability" in res.output
    res = runner.invoke(app, ["classify", str(jeep), "--classifier", "resnet9000"])
    assert res.exit_code == 2 and "efficientnet_lite0" in res.output


def test_list_shows_every_registry() -> None:
    res = runner.invoke(app, ["list"], env={"COLUMNS": "250"})
    assert res.exit_code == 0, res.output
    for name in (
        "efficientnet_lite0",
        "upconv7",
        "edsr",
        "bicubic",
        "paper",
        "paper-faithful",
        "pixel-deflection",
    ):
        assert name in res.output
    res = runner.invoke(app, ["list", "defenses"], env={"COLUMNS": "250"})
    assert "no (BPDA)" in res.output and "efficientnet_lite0" not in res.output
    res = runner.invoke(app, ["list", "bogus"])
    assert res.exit_code == 2 and "classifiers" in res.output


def _registry_names() -> dict[str, list[str]]:
    from srdefense.attacks import list_attacks
    from srdefense.evaluation.threats import list_threat_models
    from srdefense.models import list_classifiers
    from srdefense.purification import list_defenses
    from srdefense.purification.learned_denoise import list_denoisers
    from srdefense.purification.superres import list_sr_models

    return {
        "classifiers": [c.name for c in list_classifiers()],
        "sr": [i.name for i in list_sr_models()],
        "denoisers": [d.name for d in list_denoisers()],
        "defenses": [d.name for d in list_defenses()],
        "attacks": [a.name for a in list_attacks()],
        "settings": [t.name for t in list_threat_models()],
    }


def _assert_names_whole(text: str, width: int) -> None:
    import re

    lines = text.splitlines()
    assert "\u2026" not in text  # nothing cut with an ellipsis
    assert max(len(line) for line in lines) <= width
    for names in _registry_names().values():
        for name in names:
            # the name whole, between spaces or table borders, on one line
            pattern = re.compile(rf"(^|[\s\u2502\u2503]){re.escape(name)}($|[\s\u2502\u2503])")
            assert any(pattern.search(line) for line in lines), (name, width)


@pytest.mark.parametrize("width", [60, 80, 200])
def test_list_never_cuts_names_at_any_width(width: int) -> None:
    res = runner.invoke(app, ["list"], env={"COLUMNS": str(width)})
    assert res.exit_code == 0, res.output
    _assert_names_whole(res.stdout, width)
    for header in ("gradient", "random", "description"):
        assert header in res.stdout
    if width == 200:  # the long reference columns are shown where they fit
        assert "reference" in res.stdout and "Mustafa et al." in res.stdout
    if width == 60:
        assert "Mustafa et al." not in res.stdout


def test_list_piped_has_whole_names() -> None:
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    env["PYTHONPATH"] = os.pathsep.join([str(Path(srdefense.__file__).parents[1]), env.get("PYTHONPATH", "")])
    res = subprocess.run(
        [sys.executable, "-m", "srdefense.cli.main", "list", "defenses"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    assert "pixel-deflection" in res.stdout and "random-resize-pad" in res.stdout
    assert "\u2026" not in res.stdout
    assert max(len(line) for line in res.stdout.splitlines()) <= 80  # rich's width for a pipe


def test_list_json_has_every_registry_entry() -> None:
    res = runner.invoke(app, ["list", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    names = _registry_names()
    assert {k: [r["name"] for r in v] for k, v in out.items()} == names
    d = {r["name"]: r for r in out["defenses"]}
    assert d["jpeg"]["differentiable"] is False and d["paper"]["differentiable"] is True
    assert d["tvm"]["randomized"] is True and "Mustafa" in d["paper"]["reference"]
    a = {r["name"]: r for r in out["attacks"]}
    assert a["pgd"]["norm"] == "linf" and a["pgd"]["default_eps"] == pytest.approx(4 / 255)
    assert a["cw"]["default_eps"] is None and a["cw"]["distance"] == "l2"
    assert out["classifiers"][0]["input"] == "3x224x224"
    res = runner.invoke(app, ["list", "attacks", "--json"])
    assert list(json.loads(res.stdout)) == ["attacks"]


def test_demo_per_image_table_shows_labels_predictions_and_psnr() -> None:
    from rich.console import Console

    from srdefense.attacks import create_attack
    from srdefense.cli.demo import per_image_table
    from srdefense.evaluation import evaluate
    from srdefense.models import imagenet_classes

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
    model = torch.nn.Sequential(model, torch.nn.Linear(4, 1000)).eval()
    x = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([1, 2, 3])
    res = evaluate(model, ["none", "paper"], [create_attack("fgsm")], (x, y, ["a", "b", "c"]))
    console = Console(record=True, width=200)
    console.print(per_image_table(res))
    text = console.export_text()
    names = imagenet_classes()
    for rec in res.records:
        line = next(row for row in text.splitlines() if row.strip().startswith(rec.id + " "))
        assert names[rec.label] in line and names[rec.clean["paper"][0]] in line
        assert f"{rec.quality['paper'].psnr:.2f}" in line


@pytest.mark.parametrize("width", [60, 80])
def test_demo_per_image_table_never_cuts_sample_ids(width: int) -> None:
    from rich.console import Console

    from srdefense.attacks import create_attack
    from srdefense.cli.demo import per_image_table
    from srdefense.evaluation import evaluate

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
    model = torch.nn.Sequential(model, torch.nn.Linear(4, 1000)).eval()
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    ids = ["ILSVRC2012_val_00000001", "b"]
    res = evaluate(model, ["none", "paper"], [create_attack("fgsm")], (x, torch.tensor([1, 2]), ids))
    console = Console(record=True, width=width)
    console.print(per_image_table(res))
    text = console.export_text()
    assert "\u2026" not in text
    assert any(line.split()[:1] == [ids[0]] for line in text.splitlines())


def test_malloc_tuning_applies_on_glibc_and_can_be_turned_off() -> None:
    import platform
    import subprocess
    import sys

    code = "from srdefense._malloc import tune_malloc; print(tune_malloc())"
    env = {**os.environ, "SRDEFENSE_MALLOC_TUNING": "0"}
    off = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert off.stdout.strip() == "False"
    on = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    glibc = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"
    assert on.stdout.strip() == str(glibc)
