"""Reduced-precision super-resolution: the ``precision`` option, its hardware check, its fidelity.

``precision`` is one of ``"fp32"`` (default, exact), ``"bf16"``, ``"fp16"`` or ``"auto"``. A
reduced precision runs the super-resolution network under ``torch.autocast`` (convolutions in
bf16/fp16 with float32 accumulation inside oneDNN / cuDNN); the stage's input and output stay
float32 [0, 1], and wavelet denoising and the classifier are not affected.

``"auto"`` picks bf16 only where the hardware has bf16 arithmetic (a CPU with AVX512-BF16 or
AMX, as reported by PyTorch's own CPU feature check, or a CUDA GPU that supports bf16) and only
for passes that do not need an input gradient: white-box attacks differentiate an fp32 network
unless ``"bf16"``/``"fp16"`` is asked for explicitly. fp16 is meant for GPUs; on a CPU without
AVX512-FP16 it runs, slowly.

:func:`precision_fidelity` measures what a precision costs: PSNR of the reduced-precision
purified images against fp32 ones, and the agreement of a defended classifier's top-1 between
the two precisions. This module is written here because no library offers the policy; the
arithmetic itself is PyTorch's autocast.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import asdict, dataclass
from typing import Any, Literal, TypeVar

import torch
from torch import Tensor, nn

from .._onednn import bf16_conv_kernels

Precision = Literal["fp32", "bf16", "fp16", "auto"]
PRECISIONS: tuple[str, ...] = ("fp32", "bf16", "fp16", "auto")

_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def check_precision(precision: str) -> str:
    """Return ``precision`` if it is known, else raise ``ValueError`` listing the known ones."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision: expected one of {', '.join(PRECISIONS)}, got {precision!r}")
    return precision


def cpu_bf16_hardware() -> dict[str, bool]:
    """This CPU's bf16 features as PyTorch detects them (CPUID through its cpuinfo library).

    Returns:
        ``{"avx512_bf16": ..., "amx": ..., "onednn_bf16": ...}``; ``onednn_bf16`` is oneDNN's
        own verdict that bf16 kernels run natively (False where PyTorch was built without it).
    """
    cpu = getattr(torch, "cpu", None)

    def flag(name: str) -> bool:
        fn = getattr(cpu, name, None)
        try:
            return bool(fn()) if fn is not None else False
        except RuntimeError:
            return False

    onednn = bf16_conv_kernels()
    return {
        "avx512_bf16": flag("_is_avx512_bf16_supported"),
        "amx": flag("_is_amx_tile_supported"),
        "onednn_bf16": onednn,
    }


def bf16_is_fast(device: torch.device | str) -> bool:
    """Whether ``device`` has bf16 arithmetic in hardware (what ``"auto"`` picks bf16 on).

    CUDA: ``torch.cuda.is_bf16_supported()`` (Ampere and newer). CPU: AVX512-BF16 or AMX,
    and oneDNN agreeing that its bf16 kernels run natively.
    """
    dev = torch.device(device)
    if dev.type == "cuda":
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    if dev.type == "cpu":
        hw = cpu_bf16_hardware()
        return (hw["avx512_bf16"] or hw["amx"]) and hw["onednn_bf16"]
    return False


def resolve_precision(precision: str, device: torch.device | str, *, needs_grad: bool = False) -> torch.dtype:
    """The compute dtype that ``precision`` means on ``device`` for one pass.

    Args:
        precision: ``"fp32"``, ``"bf16"``, ``"fp16"`` or ``"auto"``.
        device: where the pass runs.
        needs_grad: whether the pass must return an input gradient; ``"auto"`` then stays fp32.

    Returns:
        ``torch.float32``, ``torch.bfloat16`` or ``torch.float16``.

    Example:
        >>> resolve_precision("fp32", "cpu")
        torch.float32
    """
    check_precision(precision)
    if precision == "auto":
        if needs_grad or not bf16_is_fast(device):
            return torch.float32
        return torch.bfloat16
    return _DTYPES[precision]


@contextmanager
def _autocast_without_onednn(device_type: str, dtype: torch.dtype) -> Iterator[None]:
    # oneDNN refuses bf16 convolutions on CPUs without AVX-512 (or AVX-NE-CONVERT): use
    # PyTorch's own (slow, exact-bf16) kernels there, so an explicit bf16 request still works
    with torch.backends.mkldnn.flags(enabled=False), torch.autocast(device_type, dtype=dtype):
        yield


def autocast_for(dtype: torch.dtype, device: torch.device | str) -> Any:
    """``torch.autocast`` to ``dtype`` on ``device``'s type, or a no-op context for float32.

    bf16 on a CPU whose oneDNN has no bf16 kernels runs on PyTorch's native kernels instead.
    """
    dev = torch.device(device)
    if dtype == torch.float32:
        return nullcontext()
    if dev.type == "cpu" and dtype == torch.bfloat16 and not bf16_conv_kernels():
        return _autocast_without_onednn(dev.type, dtype)
    return torch.autocast(dev.type, dtype=dtype)


class PrecisionStage:
    """Marks a module whose compute precision is its ``precision`` attribute (``SuperResolve``).

    :func:`set_precision` and :func:`precision_fidelity` switch every such stage of a model;
    the marker keeps this module below the stages it switches (no import of them here).
    """

    precision: str


_M = TypeVar("_M", bound=nn.Module)


def set_precision(module: _M, precision: str) -> _M:
    """Set ``precision`` on every super-resolution stage inside ``module`` (in place).

    Handy for a defense built elsewhere, e.g. ``set_precision(create_defense("paper"), "bf16")``.

    Args:
        module: a purifier, a ``Defended`` model or any module containing ``SuperResolve`` stages.
        precision: ``"fp32"``, ``"bf16"``, ``"fp16"`` or ``"auto"``.

    Returns:
        ``module`` itself.
    """
    check_precision(precision)
    for m in module.modules():
        if isinstance(m, PrecisionStage):
            m.precision = precision
    return module


@contextmanager
def stage_precision(module: nn.Module, precision: str) -> Iterator[None]:
    """Run every super-resolution stage inside ``module`` in ``precision`` within the block.

    The stages' own settings are restored on exit (e.g. fp32 attack gradients through a
    defense that scores in bf16).
    """
    check_precision(precision)
    stages = [m for m in module.modules() if isinstance(m, PrecisionStage)]
    old = [m.precision for m in stages]
    for m in stages:
        m.precision = precision
    try:
        yield
    finally:
        for m, p in zip(stages, old, strict=True):
            m.precision = p


_precision = stage_precision


@dataclass(frozen=True)
class PrecisionFidelity:
    """How far a reduced precision moves the purified images and the defended predictions.

    Attributes:
        precision: the precision compared against fp32 (``"auto"`` resolved: see ``dtype``).
        dtype: the dtype it ran in on this device (``"bfloat16"``, ``"float16"`` or ``"float32"``).
        n: number of images.
        psnr_db: PSNR of the reduced-precision purified images against the fp32 ones, over
            all images (peak 1; ``inf`` when identical).
        psnr_min_db: the lowest per-image PSNR.
        max_abs_diff: largest pixel difference.
        mean_abs_diff: mean pixel difference.
        top1_agreement: share of images whose defended top-1 is the same in both precisions
            (``None`` when no classifier was given).
    """

    precision: str
    dtype: str
    n: int
    psnr_db: float
    psnr_min_db: float
    max_abs_diff: float
    mean_abs_diff: float
    top1_agreement: float | None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (``inf`` PSNR kept as ``float('inf')``)."""
        return asdict(self)


def _psnr(mse: float) -> float:
    return math.inf if mse == 0 else -10.0 * math.log10(mse)


@torch.no_grad()
def precision_fidelity(
    defense: nn.Module,
    images: Tensor,
    classifier: nn.Module | None = None,
    *,
    precision: str = "bf16",
    batch_size: int = 8,
    context: Callable[[], AbstractContextManager[Any]] | None = None,
) -> PrecisionFidelity:
    """Compare a defense (and the defended classifier) in ``precision`` against fp32.

    The defense is run twice on the same images, once with every super-resolution stage in
    fp32 and once in ``precision`` (the stages' own setting is restored afterwards). A
    randomised defense is compared draw against draw only if it is seeded identically by the
    caller; the built-in SR defenses are deterministic.

    Args:
        defense: a purifier containing ``SuperResolve`` stages (e.g. ``paper_defense()``).
        images: (N, 3, H, W) float [0, 1] on the device to measure on (clean or adversarial).
        classifier: if given, ``top1_agreement`` of ``classifier(defense(x))`` is measured.
        precision: ``"bf16"``, ``"fp16"`` or ``"auto"``.
        batch_size: images per forward.
        context: a factory of a context entered around each of the two passes over a batch
            (e.g. one that seeds a randomised defense's draws identically for both).

    Returns:
        A :class:`PrecisionFidelity`.

    Example:
        >>> from srdefense.purification import paper_defense
        >>> f = precision_fidelity(paper_defense(), torch.rand(1, 3, 16, 16))
        >>> f.psnr_db > 30
        True
    """
    check_precision(precision)
    if images.ndim != 4 or images.shape[0] == 0:
        raise ValueError(f"images: expected a non-empty (N, C, H, W) batch, got shape {tuple(images.shape)}")
    dtype = resolve_precision(precision, images.device)
    was_training = defense.training
    defense.eval()
    if classifier is not None:
        cls_training = classifier.training
        classifier.eval()
    sq_sum = 0.0
    count = 0
    max_abs = 0.0
    abs_sum = 0.0
    per_image: list[float] = []
    agree = 0
    try:
        for i in range(0, images.shape[0], batch_size):
            x = images[i : i + batch_size]
            with _precision(defense, "fp32"), (context or nullcontext)():
                ref = defense(x).float()
            with _precision(defense, precision), (context or nullcontext)():
                low = defense(x).float()
            d = low - ref
            sq = d.square().flatten(1).mean(1)
            per_image += [_psnr(float(v)) for v in sq]
            sq_sum += float(d.square().sum())
            count += d.numel()
            abs_sum += float(d.abs().sum())
            max_abs = max(max_abs, float(d.abs().max()))
            if classifier is not None:
                agree += int((classifier(ref).argmax(1) == classifier(low).argmax(1)).sum())
    finally:
        defense.train(was_training)
        if classifier is not None:
            classifier.train(cls_training)
    n = images.shape[0]
    return PrecisionFidelity(
        precision=precision,
        dtype=str(dtype).removeprefix("torch."),
        n=n,
        psnr_db=_psnr(sq_sum / count),
        psnr_min_db=min(per_image),
        max_abs_diff=max_abs,
        mean_abs_diff=abs_sum / count,
        top1_agreement=None if classifier is None else agree / n,
    )
