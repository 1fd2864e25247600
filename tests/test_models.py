"""Classifier registry, adapters, user models and ImageNet labels."""

from __future__ import annotations

import shutil
import sys
import textwrap
import types
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from srdefense._weights import WeightsError, sha256_file
from srdefense.data import EmbeddedSamples, collate, preprocess
from srdefense.models import (
    ClassifierCfg,
    ClassifierLoadError,
    MissingDependencyError,
    Normalize,
    NormalizedClassifier,
    create_classifier,
    get_classifier_cfg,
    imagenet_classes,
    imagenet_wnids,
    list_classifiers,
    wnid_to_index,
    wrap_classifier,
)

torch.set_num_threads(2)

NAMES = [c.name for c in list_classifiers()]


@pytest.fixture(scope="module", params=NAMES)
def clf(request: pytest.FixtureRequest) -> NormalizedClassifier:
    return create_classifier(request.param)


@pytest.fixture(scope="module")
def samples_224() -> tuple[torch.Tensor, torch.Tensor]:
    images, labels, _ = collate(list(EmbeddedSamples(transform=lambda x: preprocess(x, 224, 0.875))))
    return images, labels


# ---------------------------------------------------------------- registry contract


def test_default_is_registered() -> None:
    assert "efficientnet_lite0" in NAMES


def test_contract_shape_eval_untouched_batch_consistent(clf: NormalizedClassifier) -> None:
    assert not clf.training
    assert isinstance(clf.cfg, ClassifierCfg)
    assert clf.cfg == get_classifier_cfg(clf.cfg.name)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(4, 3, 224, 224, generator=g)
    x0 = x.clone()
    with torch.no_grad():
        out = clf(x)
        one = clf(x[2:3])
    assert out.shape == (4, clf.cfg.num_classes)
    assert torch.equal(x, x0)
    assert torch.allclose(one[0], out[2], atol=1e-5, rtol=0)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("size", [224, 448, 237])
def test_contract_input_sizes(clf: NormalizedClassifier, size: int) -> None:
    with torch.no_grad():
        out = clf(torch.rand(2, 3, size, size))
    assert out.shape == (2, 1000)
    assert torch.isfinite(out).all()


def test_contract_rejects_bad_input(clf: NormalizedClassifier) -> None:
    with pytest.raises(ValueError, match=r"expected shape \(N, C, H, W\)"):
        clf(torch.rand(3, 64, 64))
    with pytest.raises(TypeError, match="floating"):
        clf(torch.zeros(1, 3, 64, 64, dtype=torch.uint8))


def test_input_gradient_flows(clf: NormalizedClassifier) -> None:
    x = torch.rand(1, 3, 64, 64, requires_grad=True)
    clf(x)[0, 0].backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


@pytest.mark.parametrize("name", NAMES)
def test_sha256_pin_matches(name: str) -> None:
    cfg = get_classifier_cfg(name)
    assert cfg.sha256 is not None and len(cfg.sha256) == 64
    assert sha256_file(cfg.weights_path()) == cfg.sha256


@pytest.mark.parametrize("name", NAMES)
def test_tampered_weights_raise(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = get_classifier_cfg(name)
    bad = tmp_path / cfg.weights_file
    shutil.copy(cfg.weights_path(), bad)
    data = bytearray(bad.read_bytes())
    data[len(data) // 2] ^= 0x01
    bad.write_bytes(bytes(data))
    monkeypatch.setattr(ClassifierCfg, "weights_path", lambda self: bad)
    with pytest.raises(WeightsError, match="sha256 mismatch"):
        create_classifier(name)


@pytest.fixture(scope="module")
def lite0() -> NormalizedClassifier:
    return create_classifier("efficientnet_lite0")


def test_user_weights_for_registered_model(lite0: NormalizedClassifier, tmp_path: Path) -> None:
    ref = lite0
    f = tmp_path / "lite0.safetensors"
    save_file({k: v.contiguous() for k, v in ref.model.state_dict().items()}, str(f))
    other = create_classifier("efficientnet_lite0", weights=f)
    x = torch.rand(1, 3, 96, 96)
    with torch.no_grad():
        assert torch.equal(ref(x), other(x))


def test_unknown_name_lists_known() -> None:
    with pytest.raises(KeyError, match="efficientnet_lite0") as exc:
        create_classifier("resnet9000")
    assert "resnet9000" in str(exc.value)
    with pytest.raises(KeyError, match="known: .*efficientnet_lite0"):
        get_classifier_cfg("resnet9000")


def test_lite0_cfg_values() -> None:
    cfg = get_classifier_cfg("efficientnet_lite0")
    assert cfg.input_size == (3, 224, 224)
    assert cfg.mean == (0.5, 0.5, 0.5) and cfg.std == (0.5, 0.5, 0.5)
    assert cfg.crop_pct == 0.875 and cfg.interpolation == "bicubic"
    assert cfg.num_classes == 1000 and cfg.label_set == "imagenet"
    assert cfg.sha256 == "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"


def test_lite0_normalisation_is_2x_minus_1(lite0: NormalizedClassifier) -> None:
    clf = lite0
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(clf(x), clf.model(x * 2 - 1), atol=1e-5)


# ---------------------------------------------------------------- accuracy on the embedded samples


def test_top1_on_embedded_samples(clf: NormalizedClassifier) -> None:
    # efficientnet_lite0 measured: 18/20 = 0.90 (lite1, lite2 at their own sizes: 0.90 too)
    cfg = clf.cfg
    name = cfg.name
    size = cfg.input_size[1]
    ds = EmbeddedSamples(transform=lambda x: preprocess(x, size, cfg.crop_pct))
    images, labels, _ = collate(list(ds))
    with torch.no_grad():
        pred = clf(images).argmax(1)
    top1 = (pred == labels).float().mean().item()
    assert top1 >= 0.80, f"{name}: top-1 {top1:.2f} on the embedded samples"


@pytest.mark.slow
def test_lite0_on_2x_upscaled_samples(
    lite0: NormalizedClassifier, samples_224: tuple[torch.Tensor, torch.Tensor]
) -> None:
    # the defense classifies the 2x image: global pooling must keep the model usable at 448
    # (the 448 code path itself is covered by test_contract_input_sizes in the default run)
    images, labels = samples_224
    up = nn.functional.interpolate(images, scale_factor=2, mode="bicubic", align_corners=False).clamp(0, 1)
    with torch.no_grad():
        pred = lite0(up).argmax(1)
    top1 = (pred == labels).float().mean().item()
    assert top1 >= 0.60  # measured 0.70 (0.90 at 224)


# ---------------------------------------------------------------- wrap_classifier and user models


class TinyNet(nn.Module):
    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.fc = nn.Linear(8, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.conv(x).relu().mean((2, 3)))


def test_wrap_classifier_normalises_inside() -> None:
    torch.manual_seed(0)
    net = TinyNet(10).train()
    clf = wrap_classifier(net, mean=(0.4, 0.5, 0.6), std=0.25, input_size=(3, 32, 32), num_classes=10)
    assert not clf.training and not net.training
    assert clf.cfg.mean == (0.4, 0.5, 0.6) and clf.cfg.std == (0.25, 0.25, 0.25)
    x = torch.rand(2, 3, 32, 32)
    m = torch.tensor([0.4, 0.5, 0.6]).view(1, 3, 1, 1)
    with torch.no_grad():
        assert torch.allclose(clf(x), net((x - m) / 0.25), atol=1e-6)
    with pytest.raises(TypeError, match="nn.Module"):
        wrap_classifier(lambda x: x)  # type: ignore[arg-type]


def test_normalize_layer() -> None:
    layer = Normalize((0.5, 0.25, 0.0), (0.5, 0.5, 1.0))
    x = torch.rand(2, 3, 4, 4, dtype=torch.float64)
    y = layer(x)
    assert y.dtype == torch.float64
    assert torch.allclose(y[:, 1], (x[:, 1] - 0.25) / 0.5)
    with pytest.raises(ValueError, match="std"):
        Normalize(0.5, (0.5, 0.0, 0.5))
    with pytest.raises(ValueError, match="mean"):
        Normalize((0.1, 0.2), 1.0)


MODULE_SRC = textwrap.dedent(
    """
    import torch
    from torch import nn
    from srdefense.models import wrap_classifier


    class TinyNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 3, padding=1)
            self.fc = nn.Linear(8, 1000)

        def forward(self, x):
            return self.fc(self.conv(x).relu().mean((2, 3)))


    def make():
        return TinyNet()


    def make_wrapped():
        return wrap_classifier(TinyNet(), mean=0.5, std=0.5, input_size=(3, 64, 64), name="tiny")


    def not_a_model():
        return 42


    def broken():
        raise RuntimeError("boom")
    """
)


@pytest.fixture()
def user_module(tmp_path: Path) -> Path:
    f = tmp_path / "my_models.py"
    f.write_text(MODULE_SRC)
    return f


def _tiny_weights(tmp_path: Path, fmt: str) -> tuple[Path, dict[str, torch.Tensor]]:
    torch.manual_seed(1)
    sd = {k: v.clone() for k, v in TinyNet().state_dict().items()}
    if fmt == "safetensors":
        f = tmp_path / "tiny.safetensors"
        save_file(sd, str(f))
    else:
        f = tmp_path / "tiny.pt"
        torch.save(sd, f)
    return f, sd


@pytest.mark.parametrize("fmt", ["safetensors", "pt"])
def test_user_model_from_file_spec(user_module: Path, tmp_path: Path, fmt: str) -> None:
    wfile, sd = _tiny_weights(tmp_path, fmt)
    clf = create_classifier(f"{user_module}:make", weights=wfile)
    assert isinstance(clf, NormalizedClassifier) and not clf.training
    assert clf.cfg.mean == (0.0, 0.0, 0.0) and clf.cfg.std == (1.0, 1.0, 1.0)
    assert clf.cfg.weights_file == str(wfile)
    ref = TinyNet()
    ref.load_state_dict(sd)
    x = torch.rand(3, 3, 40, 40)
    with torch.no_grad():
        assert torch.allclose(clf(x), ref(x), atol=1e-6)


def test_user_model_wrapped_factory_keeps_normalisation(user_module: Path, tmp_path: Path) -> None:
    wfile, sd = _tiny_weights(tmp_path, "safetensors")
    clf = create_classifier(f"{user_module}:make_wrapped", weights=wfile)
    assert clf.cfg.name == "tiny" and clf.cfg.mean == (0.5, 0.5, 0.5)
    ref = TinyNet()
    ref.load_state_dict(sd)
    x = torch.rand(1, 3, 40, 40)
    with torch.no_grad():
        assert torch.allclose(clf(x), ref(x * 2 - 1), atol=1e-6)


def test_user_model_dotted_module(user_module: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "my_models", raising=False)
    clf = create_classifier("my_models:make")
    assert clf(torch.rand(1, 3, 16, 16)).shape == (1, 1000)


def test_user_model_errors(user_module: Path, tmp_path: Path) -> None:
    missing = tmp_path / "nope.py"
    with pytest.raises(ClassifierLoadError, match="nope.py"):
        create_classifier(f"{missing}:make")
    with pytest.raises(ClassifierLoadError, match=r"no factory 'mak'.*make, make_wrapped"):
        create_classifier(f"{user_module}:mak")
    with pytest.raises(ClassifierLoadError, match=r"'not_a_model'.*returned int"):
        create_classifier(f"{user_module}:not_a_model")
    with pytest.raises(ClassifierLoadError, match=r"'broken'.*RuntimeError: boom"):
        create_classifier(f"{user_module}:broken")
    bad_src = tmp_path / "bad_syntax.py"
    bad_src.write_text("def make(:\n")
    with pytest.raises(ClassifierLoadError, match="bad_syntax.py.*SyntaxError"):
        create_classifier(f"{bad_src}:make")
    with pytest.raises(ClassifierLoadError, match="no_such_pkg_xyz"):
        create_classifier("no_such_pkg_xyz.mod:make")


def test_user_model_bad_weights(user_module: Path, tmp_path: Path) -> None:
    wrong = tmp_path / "wrong.safetensors"
    save_file({"conv.weight": torch.zeros(8, 3, 3, 3)}, str(wrong))
    with pytest.raises(WeightsError, match=r"wrong.safetensors does not fit .*'make'"):
        create_classifier(f"{user_module}:make", weights=wrong)
    with pytest.raises(WeightsError, match="not found"):
        create_classifier(f"{user_module}:make", weights=tmp_path / "absent.pt")
    pickled = tmp_path / "pickled.pt"
    torch.save({"model": TinyNet()}, pickled)  # a whole pickled module: refused by weights_only
    with pytest.raises(WeightsError, match="pickled.pt"):
        create_classifier(f"{user_module}:make", weights=pickled)


# ---------------------------------------------------------------- timm / torchvision adapters


def _importable(name: str) -> bool:
    try:
        __import__(name)
    except Exception:
        return False
    return True


HAS_TIMM = _importable("timm")
HAS_TV = _importable("torchvision")


@pytest.mark.skipif(HAS_TIMM, reason="timm is installed: the missing-package message cannot be seen")
def test_timm_missing_message() -> None:
    with pytest.raises(
        MissingDependencyError, match=r"'timm:resnet18' needs the package timm.*pip install timm"
    ):
        create_classifier("timm:resnet18")


@pytest.mark.skipif(HAS_TV, reason="torchvision is installed: the missing-package message cannot be seen")
def test_torchvision_missing_message() -> None:
    with pytest.raises(ImportError, match=r"needs the package torchvision.*pip install torchvision"):
        create_classifier("torchvision:resnet18")


def test_timm_adapter_with_fake_package(monkeypatch: pytest.MonkeyPatch) -> None:
    # the metadata mapping, without the (heavy, network-bound) real package
    fake = types.ModuleType("timm")
    fake.__version__ = "0.fake"  # type: ignore[attr-defined]

    def create_model(name: str, pretrained: bool = False) -> nn.Module:
        assert pretrained
        m = TinyNet()
        m.pretrained_cfg = {  # type: ignore[assignment]
            "architecture": "tinynet",
            "input_size": (3, 288, 288),
            "mean": (0.1, 0.2, 0.3),
            "std": (0.4, 0.5, 0.6),
            "interpolation": "bilinear",
            "crop_pct": 0.95,
            "license": "apache-2.0",
            "hf_hub_id": "timm/tinynet.fake",
        }
        return m

    fake.create_model = create_model  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "timm", fake)
    clf = create_classifier("timm:tinynet.fake")
    c = clf.cfg
    assert c.name == "timm:tinynet.fake" and c.input_size == (3, 288, 288)
    assert c.mean == (0.1, 0.2, 0.3) and c.std == (0.4, 0.5, 0.6)
    assert c.interpolation == "bilinear" and c.crop_pct == 0.95 and c.license == "apache-2.0"
    assert "timm/tinynet.fake" in c.source and not clf.training


def test_torchvision_adapter_with_fake_package(monkeypatch: pytest.MonkeyPatch) -> None:
    class Mode:
        value = "bilinear"

    class Tf:
        crop_size = [224]
        resize_size = [232]
        mean = [0.485, 0.456, 0.406]
        std = [0.229, 0.224, 0.225]
        interpolation = Mode()

    class W:
        url = "https://download.pytorch.org/models/tiny-fake.pth"
        meta = {"categories": [str(i) for i in range(1000)]}

        def transforms(self) -> Tf:
            return Tf()

    class Enum:
        DEFAULT = W()

    tv = types.ModuleType("torchvision")
    tvm = types.ModuleType("torchvision.models")
    tvm.get_model_weights = lambda name: Enum  # type: ignore[attr-defined]
    tvm.get_model = lambda name, weights=None: TinyNet()  # type: ignore[attr-defined]
    tv.models = tvm  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "torchvision", tv)
    monkeypatch.setitem(sys.modules, "torchvision.models", tvm)
    clf = create_classifier("torchvision:tiny")
    c = clf.cfg
    assert c.input_size == (3, 224, 224) and c.crop_pct == pytest.approx(224 / 232)
    assert c.mean == (0.485, 0.456, 0.406) and c.interpolation == "bilinear" and c.num_classes == 1000


def test_adapter_build_failure_is_clear(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = types.ModuleType("timm")

    def create_model(name: str, pretrained: bool = False) -> nn.Module:
        raise RuntimeError(f"Unknown model ({name})")

    fake.create_model = create_model  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "timm", fake)
    with pytest.raises(ClassifierLoadError, match="timm cannot build 'nonet'.*Unknown model"):
        create_classifier("timm:nonet")


@pytest.mark.skipif(not HAS_TIMM, reason="timm not installed (it pulls torchvision; not installed here)")
def test_timm_real_resnet18_offline(tmp_path: Path) -> None:
    import timm

    ref = timm.create_model("resnet18", pretrained=False).eval()
    sd = ref.state_dict()
    f = tmp_path / "r18.safetensors"
    save_file({k: v.contiguous() for k, v in sd.items()}, str(f))
    clf = create_classifier("timm:resnet18", weights=f)
    assert clf.cfg.mean == pytest.approx((0.485, 0.456, 0.406))
    x = torch.rand(2, 3, 224, 224)
    mean = torch.tensor(clf.cfg.mean).view(1, 3, 1, 1)
    std = torch.tensor(clf.cfg.std).view(1, 3, 1, 1)
    with torch.no_grad():  # the adapter = timm's model behind timm's normalisation
        torch.testing.assert_close(clf(x), ref((x - mean) / std), rtol=1e-4, atol=1e-4)


@pytest.mark.skipif(not HAS_TV, reason="torchvision not installed (its wheel pulls a CUDA torch)")
def test_torchvision_real_resnet18_offline(tmp_path: Path) -> None:
    import torchvision

    ref = torchvision.models.resnet18().eval()
    sd = ref.state_dict()
    f = tmp_path / "r18.safetensors"
    save_file({k: v.contiguous() for k, v in sd.items()}, str(f))
    clf = create_classifier("torchvision:resnet18", weights=f)
    assert clf.cfg.crop_pct == pytest.approx(224 / 256)
    assert clf.cfg.mean == pytest.approx((0.485, 0.456, 0.406))
    x = torch.rand(2, 3, 224, 224)
    mean = torch.tensor(clf.cfg.mean).view(1, 3, 1, 1)
    std = torch.tensor(clf.cfg.std).view(1, 3, 1, 1)
    with torch.no_grad():  # the adapter = torchvision's model behind its normalisation
        torch.testing.assert_close(clf(x), ref((x - mean) / std), rtol=1e-4, atol=1e-4)


# ---------------------------------------------------------------- ImageNet labels

SAMPLE_NAMES = {
    243: "bull mastiff",
    559: "folding chair",
    438: "beaker",
    990: "buckeye",
    949: "strawberry",
    853: "thatch",
    609: "jeep",
    915: "yurt",
    455: "bottlecap",
    541: "drum",
    630: "Loafer",
    741: "prayer rug",
    471: "cannon",
    129: "spoonbill",
    99: "goose",
    251: "dalmatian",
    22: "bald eagle",
    317: "leafhopper",
    305: "dung beetle",
}


def test_imagenet_labels() -> None:
    wnids = imagenet_wnids()
    names = imagenet_classes()
    full = imagenet_classes(full=True)
    assert len(wnids) == len(set(wnids)) == 1000 and len(names) == 1000
    assert wnids[0] == "n01440764" and names[0] == "tench" and full[0] == "tench, Tinca tinca"
    assert wnids[999] == "n15075141" and names[999] == "toilet tissue"
    idx = wnid_to_index()
    assert all(idx[w] == i for i, w in enumerate(wnids))
    idx["n01440764"] = 5  # a copy: the shipped table is not modified
    assert wnid_to_index()["n01440764"] == 0
    for _, label in [(s.id, s.label) for s in EmbeddedSamples()]:
        assert names[label] == SAMPLE_NAMES[label]


def test_cpu_chunking_and_channels_last_do_not_change_the_logits(monkeypatch: pytest.MonkeyPatch) -> None:
    from srdefense.models.normalize import NormalizedClassifier

    clf = create_classifier("efficientnet_lite0")
    assert clf.channels_last and clf.cfg.channels_last
    x = torch.rand(3, 3, 96, 80, generator=torch.Generator().manual_seed(0))
    seen: list[int] = []
    handle = clf.model.register_forward_pre_hook(lambda m, a: seen.append(a[0].shape[0]))
    with torch.no_grad():
        whole = clf(x)
        monkeypatch.setattr(NormalizedClassifier, "cpu_chunk_pixels", 2 * 96 * 80)
        chunked = clf(x)
    handle.remove()
    assert seen == [3, 2, 1]
    with torch.no_grad():
        plain = NormalizedClassifier(clf.model.to(memory_format=torch.contiguous_format), clf.cfg)(x)
    torch.testing.assert_close(chunked, whole, rtol=0, atol=1e-4)
    torch.testing.assert_close(plain, whole, rtol=0, atol=1e-4)
    clf.train()  # train mode: one piece, batch statistics must see the whole batch
    seen.clear()
    handle = clf.model.register_forward_pre_hook(lambda m, a: seen.append(a[0].shape[0]))
    clf(x)
    handle.remove()
    assert seen == [3]
