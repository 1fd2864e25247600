"""What a reduced ``precision`` costs an evaluation, measured in the run itself.

When an evaluation scores its defenses with the super-resolution in bf16 or fp16
(``precision``), :func:`measure_fidelity` compares, on the first batch, every defense that has
a super-resolution stage in that precision against fp32: the PSNR of the purified images
(over the batch and the worst image) and the top-1 agreement of the defended classifier, on the
clean images and on the adversarial images of the first attack of the first setting. The
numbers go to ``results.json`` (``config["precision_fidelity"]``) and :func:`section_precision`
shows them in the report. The comparison itself is
:func:`srdefense.purification.precision.precision_fidelity`.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from ..purification.precision import precision_fidelity, resolve_precision
from ..purification.superres import SuperResolve
from .document import Section, Table
from .plan import Plan, _seed_of
from .scoring import Attacker, seeded

__all__ = ["measure_fidelity", "section_precision"]


class _AtSize(nn.Module):
    """The classifier of a ``native`` resolution evaluation: the purified image resized back first."""

    def __init__(self, classifier: nn.Module, size: tuple[int, int]) -> None:
        super().__init__()
        self.classifier = classifier
        self.size = size

    def forward(self, x: Tensor) -> Tensor:
        if tuple(x.shape[-2:]) != self.size:
            x = nn.functional.interpolate(x, size=self.size, mode="bilinear", antialias=True).clamp(0, 1)
        return self.classifier(x)


def _finite(v: float | None) -> float | None:
    return None if v is None or not math.isfinite(v) else float(v)


def measure_fidelity(plan: Plan, attacker: Attacker, x: Tensor, y: Tensor, ids: list[str]) -> dict[str, Any]:
    """Fidelity of ``plan.precision`` against fp32 on one batch, per defense with super-resolution.

    Args:
        plan: the evaluation (its defenses' stages are in ``plan.precision``).
        attacker: the batch's attacker (the adversarial images are the run's own, memoised).
        x: the clean images of the batch.
        y: their labels.
        ids: their sample ids.

    Returns:
        ``{"precision", "dtype", "n", "attack", "defenses": {name: {...}}}``: per defense
        ``psnr_db`` / ``psnr_min_db`` (purified clean images, reduced precision against fp32;
        ``None`` when identical), ``max_abs_diff``, ``top1_agreement_clean``, and the same on
        the adversarial images (``psnr_adv_db``, ``psnr_adv_min_db``, ``top1_agreement_adv``).
    """
    setting = plan.settings[0]
    run = plan.runs[setting][0]
    size = (int(x.shape[-2]), int(x.shape[-1]))
    classifier = plan.classifier if plan.resolution == "purified" else _AtSize(plan.classifier, size)
    out: dict[str, Any] = {
        "precision": plan.precision,
        "dtype": str(resolve_precision(plan.precision, x.device)).removeprefix("torch."),
        "n": int(x.shape[0]),
        "attack": f"{setting}/{run.key}",
        "defenses": {},
    }
    for name, defense in plan.defenses.items():
        if not any(isinstance(m, SuperResolve) for m in defense.modules()):
            continue
        adv, _ = attacker(plan.target(setting, name), run, x, y, ids)
        row: dict[str, Any] = {}
        for kind, images in (("clean", x), ("adv", adv)):
            seed = _seed_of("fidelity", plan.seed, name, kind, ids)

            def same_draws(seed: int = seed, defense: nn.Module = defense) -> Any:
                return seeded(defense, seed, x.device)

            with torch.no_grad():
                f = precision_fidelity(
                    defense,
                    images,
                    classifier,
                    precision=plan.precision,
                    batch_size=plan.batch_size,
                    context=same_draws,
                )
            suffix = "" if kind == "clean" else "_adv"
            row[f"psnr{suffix}_db"] = _finite(f.psnr_db)
            row[f"psnr{suffix}_min_db"] = _finite(f.psnr_min_db)
            row[f"max_abs_diff{suffix}"] = f.max_abs_diff
            row[f"top1_agreement_{kind}"] = f.top1_agreement
        out["defenses"][name] = row
    return out


def _db(v: Any) -> str:
    return "identical" if v is None else f"{v:.1f}"


def section_precision(results: Any) -> Section | None:
    """The report section of a run's precision fidelity (``None`` for an fp32 run).

    Returns:
        A :class:`~srdefense.evaluation.report.Section` with one row per defense, or ``None``.
    """
    block = results.config.get("precision_fidelity")
    if not block or not block.get("defenses"):
        return None
    rows = [
        [
            name,
            f"{_db(r['psnr_db'])} / {_db(r['psnr_min_db'])}",
            f"{_db(r['psnr_adv_db'])} / {_db(r['psnr_adv_min_db'])}",
            f"{r['top1_agreement_clean']:.0%}",
            f"{r['top1_agreement_adv']:.0%}",
        ]
        for name, r in block["defenses"].items()
    ]
    table = Table(
        [
            "defense",
            "PSNR clean, mean / worst (dB)",
            "PSNR adv, mean / worst (dB)",
            "top-1 agree clean",
            "top-1 agree adv",
        ],
        rows,
    )
    text = (
        f"Super-resolution scored in {block['precision']} ({block['dtype']}), compared with fp32 on the "
        f"first batch ({block['n']} images) and on its adversarial images of {block['attack']}: PSNR of "
        "the purified images against the fp32 ones, and how often the defended top-1 is the same. "
        f"Attack gradients: {results.config.get('attack_precision', 'fp32')}."
    )
    return Section(f"Precision: {block['precision']} against fp32", text=[text], tables=[table])
