"""The attack contract shared by every attack, and the helpers they are built from.

An attack is configured once (keyword-only hyperparameters, ``eps`` in the units of the
images, which are floats in [0, 1], NCHW) and then called with a model::

    attack = PGD(eps=4 / 255)
    adv = attack(model, images, labels, generator=torch.Generator().manual_seed(0))

The model is any ``nn.Module`` mapping images to logits (foolbox 3 style: one attack object
serves every model). Attacks have no side effects: they never modify their inputs, never
switch the model between train and eval mode, never print and never remember a device.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor, nn

from .._random import rand_like, randn_like
from .._validation import check_image_batch, check_labels

TargetMode = Literal["random", "least-likely"]
TARGET_MODES: tuple[str, ...] = ("random", "least-likely")


class Attack:
    """Base class of every attack.

    Subclasses set the class attributes and implement :meth:`_run`.

    Attributes:
        name: registry name of the attack.
        distance: the norm the attack bounds or minimises (``"linf"`` or ``"l2"``).
        reference: the paper the attack comes from.
        supports_targets: whether a targeted variant exists in the literature.
        eps: the perturbation bound in image units, or ``None`` for an unbounded
            minimal-norm attack.
        target: ``None`` (untargeted), ``"random"`` (a uniformly drawn wrong class) or
            ``"least-likely"`` (the class with the smallest clean logit, Kurakin et al. 2017).
        seed: seed of the random draws used when the call gives no generator.
        eot_samples: Expectation over Transformation: when > 1, the model is wrapped in
            :class:`EOT` with this many draws at every step (for randomised models; gradient
            attacks average the loss and its gradient, score-based ones the logits).
    """

    name: ClassVar[str] = "attack"
    # the norm; a class attribute, which an attack with a ``norm`` parameter sets per instance
    distance: str = "linf"
    reference: ClassVar[str] = ""
    supports_targets: ClassVar[bool] = True

    def __init__(
        self,
        *,
        eps: float | None,
        target: TargetMode | None = None,
        seed: int | None = None,
        eot_samples: int = 1,
    ):
        if eps is not None:
            eps = float(eps)
            if not math.isfinite(eps) or eps < 0:
                raise ValueError(f"eps: expected a finite number >= 0, got {eps}")
            if self.distance == "linf" and eps > 1:
                raise ValueError(f"eps: expected a Linf bound in [0, 1] (e.g. 4 / 255), got {eps}")
        if target is not None and target not in TARGET_MODES:
            raise ValueError(f"target: expected None, 'random' or 'least-likely', got {target!r}")
        if target is not None and not self.supports_targets:
            raise ValueError(f"{self.name}: has no targeted variant (target must be None)")
        if seed is not None and not isinstance(seed, int):
            raise TypeError(f"seed: expected an int or None, got {type(seed).__name__}")
        if isinstance(eot_samples, bool) or not isinstance(eot_samples, int) or eot_samples < 1:
            raise ValueError(f"eot_samples: expected an int >= 1, got {eot_samples!r}")
        self.eot_samples = eot_samples
        self.eps = eps
        self.target = target
        self.seed = seed

    # ------------------------------------------------------------------ public contract
    @property
    def norm(self) -> str | None:
        """The norm in which ``||adv - images|| <= eps`` is guaranteed, ``None`` if unbounded."""
        return None if self.eps is None else self.distance

    @property
    def deterministic(self) -> bool:
        """Whether the result depends only on (model, images, labels): no random draws."""
        return self.target != "random"

    def config(self) -> dict[str, Any]:
        """JSON-able description of the attack (name and every hyperparameter).

        Two attacks with equal configs produce equal results on equal inputs (given the same
        generator for non-deterministic ones), so the dict can serve as a cache key.
        """
        cfg = {"name": self.name, "distance": self.distance, **self._params()}
        if self.eot_samples != 1:  # only when set, so the configs (cache keys) of plain runs stay as before
            cfg["eot_samples"] = self.eot_samples
        return cfg

    def _params(self) -> dict[str, Any]:
        return {"eps": self.eps, "target": self.target, "seed": self.seed}

    def __repr__(self) -> str:
        params = self._params()
        if self.eot_samples != 1:
            params["eot_samples"] = self.eot_samples
        args = ", ".join(f"{k}={v!r}" for k, v in params.items())
        return f"{type(self).__name__}({args})"

    def __call__(
        self,
        model: nn.Module,
        images: Tensor,
        labels: Tensor,
        *,
        generator: torch.Generator | None = None,
        target_labels: Tensor | None = None,
    ) -> Tensor:
        """Attack ``model`` on ``images`` with true ``labels``.

        Args:
            model: an ``nn.Module`` mapping images (N, C, H, W) in [0, 1] to logits (N, K).
                Its train/eval mode is left as it is.
            images: float tensor (N, C, H, W) with values in [0, 1]; not modified.
            labels: integer tensor (N,) of true classes.
            generator: source of the random draws (random start, random targets). Without
                one, a generator seeded with ``seed`` is used, or torch's global generator
                when ``seed`` is ``None``. Draws are made on the generator's device.
            target_labels: classes to reach (N,); makes the attack targeted whatever its
                ``target`` setting.

        Returns:
            Adversarial images, same shape, dtype and device as ``images``, values in [0, 1],
            and ``||adv - images|| <= eps`` in the attack's norm when ``eps`` is set.

        Raises:
            TypeError, ValueError: for malformed inputs, or an :class:`EOT` model given to an
                attack that has ``eot_samples > 1`` itself (give one or the other).
        """
        model, x, y, target_labels, generator = self._prepare(model, images, labels, generator, target_labels)
        if x.shape[0] == 0:
            return x.clone()
        with torch.enable_grad(), input_gradients_only(model):
            if target_labels is None and self.target is not None:
                target_labels = choose_targets(model, x, y, self.target, generator)
            adv = self._run(model, x, y, target_labels, generator)
        return self._finish(adv, x)

    def _prepare(
        self,
        model: nn.Module,
        images: Tensor,
        labels: Tensor,
        generator: torch.Generator | None,
        target_labels: Tensor | None,
    ) -> tuple[nn.Module, Tensor, Tensor, Tensor | None, torch.Generator | None]:
        """Check the inputs; detach them; default the generator; wrap the model for EOT."""
        check_image_batch(images, "images", channels=None)
        check_labels(labels, images.shape[0], "labels")
        x = images.detach()
        if x.numel() and (x.min() < 0 or x.max() > 1):
            raise ValueError(
                f"images: expected values in [0, 1], got range [{x.min().item():.4g}, {x.max().item():.4g}]"
            )
        y = labels.detach().to(device=x.device, dtype=torch.long)
        if target_labels is not None:
            if not self.supports_targets:
                raise ValueError(f"{self.name}: has no targeted variant (target_labels must be None)")
            check_labels(target_labels, x.shape[0], "target_labels")
            target_labels = target_labels.detach().to(device=x.device, dtype=torch.long)
        if generator is None and self.seed is not None:
            generator = torch.Generator().manual_seed(self.seed)
        if self.eot_samples > 1:
            if isinstance(model, EOT):
                raise ValueError(
                    f"{self.name}: the model is already an EOT wrapper (n={model.n}) and the attack has "
                    f"eot_samples={self.eot_samples}; give one or the other"
                )
            model = EOT(model, self.eot_samples)
        return model, x, y, target_labels, generator

    def _finish(self, adv: Tensor, x: Tensor) -> Tensor:
        """Detach and enforce the bound exactly."""
        adv = adv.detach()
        if self.eps is not None:
            adv = clip_perturbation(adv, x, self.eps, self.distance)
        return adv

    def _run(
        self, model: nn.Module, x: Tensor, y: Tensor, targets: Tensor | None, gen: torch.Generator | None
    ) -> Tensor:
        raise NotImplementedError


@contextmanager
def input_gradients_only(model: nn.Module) -> Iterator[None]:
    """Within the block, ``model``'s parameters do not require grad (each is restored after).

    An attack differentiates its input only. Parameters that require grad make the autograd
    graph record what only their gradients need: in this package, EfficientNet-Lite's batch
    norm folded into its convolutions at every forward pass (in the graph, so that gradients
    could reach the parameters) in place of the cached folded weights (2% of the demo's time).
    Input gradients are the same either way.
    """
    switched = [p for p in model.parameters() if p.requires_grad]
    for p in switched:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in switched:
            p.requires_grad_(True)


# ---------------------------------------------------------------------------- targets
def choose_targets(
    model: nn.Module, x: Tensor, labels: Tensor, mode: str, generator: torch.Generator | None = None
) -> Tensor:
    """Choose target classes for a targeted attack.

    Args:
        model: the classifier (one forward pass, without gradient, gives the number of classes
            and the clean logits).
        x: images (N, C, H, W).
        labels: true classes (N,).
        mode: ``"random"``: uniformly among the classes other than the true one;
            ``"least-likely"``: the class with the smallest clean logit (Kurakin et al.,
            "Adversarial Machine Learning at Scale", ICLR 2017).
        generator: source of the random draw (on its own device).

    Returns:
        Target classes (N,), never equal to ``labels``.
    """
    with torch.no_grad():
        logits = model(x)
    k = logits.shape[1]
    if k < 2:
        raise ValueError("targeted attacks need at least 2 classes")
    if mode == "least-likely":
        masked = logits.detach().float().clone()
        masked.scatter_(1, labels[:, None], math.inf)
        return masked.argmin(1)
    if mode == "random":
        dev = generator.device if generator is not None else x.device
        shift = torch.randint(1, k, (x.shape[0],), generator=generator, device=dev).to(x.device)
        return (labels + shift) % k
    raise ValueError(f"target: expected 'random' or 'least-likely', got {mode!r}")


# ---------------------------------------------------------------------------- random draws
rand = rand_like  # the attacks' names for the shared draws of srdefense._random
randn = randn_like


# ---------------------------------------------------------------------------- norms
def _rows(t: Tensor) -> Tensor:
    return t.reshape(t.shape[0], -1)


def _bcast(v: Tensor, like: Tensor) -> Tensor:
    return v.reshape((-1,) + (1,) * (like.ndim - 1))


def l2_norms(t: Tensor) -> Tensor:
    """Per-sample L2 norm of a batch (N, ...) -> (N,)."""
    return _rows(t).norm(p=2, dim=1)


def linf_norms(t: Tensor) -> Tensor:
    """Per-sample Linf norm of a batch (N, ...) -> (N,)."""
    return _rows(t).abs().amax(dim=1)


def project_linf(delta: Tensor, eps: float) -> Tensor:
    """Project perturbations onto the Linf ball of radius ``eps``."""
    return delta.clamp(-eps, eps)


def project_l2(delta: Tensor, eps: float) -> Tensor:
    """Project perturbations onto the L2 ball of radius ``eps`` (per sample)."""
    norms = l2_norms(delta)
    factor = torch.where(norms > eps, eps / norms.clamp_min(1e-30), torch.ones_like(norms))
    return delta * _bcast(factor, delta)


def clip_perturbation(adv: Tensor, x: Tensor, eps: float, distance: str) -> Tensor:
    """Make ``adv`` satisfy the bound exactly: ``||adv - x|| <= eps`` and ``0 <= adv <= 1``.

    The projection inside an attack loop is done in the images' precision, where
    ``x + clamp(adv - x, -eps, eps)`` can land one rounding step outside the ball. This final
    pass clamps ``adv`` to ``[x - b, x + b]`` rounded inwards to representable numbers, where
    ``b`` is the largest representable number ``<= eps``; the exact difference (float64, where
    the difference of two float32 numbers is exact) is then ``<= eps``, so the bound holds
    whether it is checked in float32 or in float64. For the L2 norm, rows over the bound are
    rescaled to norm ``eps`` in float64 and rounded entry by entry towards ``x``, so no entry
    grows and the norm stays ``<= eps`` up to float64 rounding.

    Args:
        adv: candidate adversarial images.
        x: the clean images.
        eps: the bound.
        distance: ``"linf"`` or ``"l2"``.

    Returns:
        The corrected images (a new tensor).
    """
    adv = adv.clamp(0, 1)
    if distance == "linf":
        # largest number of adv's dtype that is <= eps
        bound_t = torch.tensor(eps, dtype=adv.dtype)
        if float(bound_t) > eps:
            bound_t = torch.nextafter(bound_t, torch.tensor(-math.inf, dtype=adv.dtype))
        bound = float(bound_t)
        # the float32 interval [lo, hi] inside [x - bound, x + bound], rounded inwards
        xd = x.double()
        hi_d, lo_d = xd + bound, xd - bound
        hi, lo = hi_d.to(adv.dtype), lo_d.to(adv.dtype)
        hi = torch.where(hi.double() > hi_d, torch.nextafter(hi, torch.full_like(hi, -math.inf)), hi)
        lo = torch.where(lo.double() < lo_d, torch.nextafter(lo, torch.full_like(lo, math.inf)), lo)
        adv = torch.minimum(torch.maximum(adv, lo), hi).clamp(0, 1)
        return adv
    if distance == "l2":
        xd = x.double()
        d = adv.double() - xd
        n = l2_norms(d)
        over = n > eps
        if not over.any():
            return adv
        factor = torch.where(over, eps / n.clamp_min(1e-30), torch.ones_like(n))
        t = (xd + d * _bcast(factor, d)).clamp(0, 1)
        r = t.to(adv.dtype)
        # round towards x, so that no entry of the perturbation grows in magnitude
        r = torch.where((r.double() - xd).abs() > (t - xd).abs(), torch.nextafter(r, x), r)
        return torch.where(_bcast(over, adv), r, adv)
    raise ValueError(f"distance: expected 'linf' or 'l2', got {distance!r}")


# ---------------------------------------------------------------------------- gradients
LossFn = Callable[[nn.Module, Tensor], tuple[Tensor, Tensor]]


def value_and_grad(
    model: nn.Module, var: Tensor, fn: LossFn, needed: Callable[[Tensor], Tensor] | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    """Per-sample loss, logits and gradient of the summed loss with respect to ``var``.

    The loss is summed over the batch before differentiation, so each row's gradient depends
    on that row only (no ``1 / N`` factor). When ``model`` is an :class:`EOT` wrapper, the loss
    is averaged over its ``n`` forward passes of the randomised inner model, so the gradient is
    the Expectation over Transformation of Athalye et al. (ICML 2018); one backward pass per
    draw keeps the memory of a single pass.

    Args:
        model: the classifier.
        var: the variable to differentiate (images, or C&W's tanh-space variable).
        fn: ``fn(model, v) -> (loss (N,), logits (N, K))`` computing the loss of ``v``.
        needed: for a model that is not an :class:`EOT` wrapper, ``needed(logits) -> (N,) bool``
            says which rows' gradients the caller will use; when it marks none, the backward
            pass (about 2.5 forward passes through a super-resolution defense) is skipped and
            the gradient returned is zeros. An early-stopping attack passes "not yet fooled".

    Returns:
        ``(loss, logits, grad)``, detached, averaged over EOT draws.
    """
    inner, n = (model.model, model.n) if isinstance(model, EOT) else (model, 1)
    loss_sum: Tensor | None = None
    logit_sum: Tensor | None = None
    grad_sum: Tensor | None = None
    for _ in range(n):
        v = var.detach().requires_grad_(True)
        loss, logits = fn(inner, v)
        if n == 1 and needed is not None and not bool(needed(logits.detach()).any()):
            return loss.detach(), logits.detach(), torch.zeros_like(var)
        (g,) = torch.autograd.grad(loss.sum(), v)
        loss, logits = loss.detach(), logits.detach()
        if loss_sum is None or logit_sum is None or grad_sum is None:
            loss_sum, logit_sum, grad_sum = loss, logits, g
        else:
            loss_sum, logit_sum, grad_sum = loss_sum + loss, logit_sum + logits, grad_sum + g
    assert loss_sum is not None and logit_sum is not None and grad_sum is not None
    if n == 1:
        return loss_sum, logit_sum, grad_sum
    return loss_sum / n, logit_sum / n, grad_sum / n


class EOT(nn.Module):
    """Expectation over Transformation (Athalye, Engstrom, Ilyas, Kwok, ICML 2018) as a model wrapper.

    ``forward`` returns the logits averaged over ``n`` forward passes of a randomised model
    (foolbox 3's ``ExpectationOverTransformationWrapper``), so any library can attack it. The
    attacks of this package recognise the wrapper and average the *loss* over the ``n`` passes
    instead (one backward pass per draw), which is the exact EOT gradient
    ``E_t[grad L(f(t(x)))]``; for DeepFool, whose quantities are linear in the logits, both
    coincide.

    Args:
        model: the randomised model (e.g. ``Defended(random_resize_pad, classifier)``).
        n: number of forward passes averaged.

    Example:
        >>> adv = PGD(eps=4 / 255)(EOT(defended, n=10), images, labels)
    """

    def __init__(self, model: nn.Module, n: int = 10) -> None:
        super().__init__()
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"n: expected an int >= 1, got {n!r}")
        self.model = model
        self.n = n

    def forward(self, x: Tensor) -> Tensor:
        """Mean logits over ``n`` passes."""
        out = self.model(x)
        for _ in range(self.n - 1):
            out = out + self.model(x)
        return out / self.n

    def extra_repr(self) -> str:
        """Shown by ``repr``."""
        return f"n={self.n}"
