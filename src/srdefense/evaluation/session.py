"""Run an :class:`EvalConfig` end to end (what ``srdefense evaluate`` and ``srdefense demo`` call)."""

from __future__ import annotations

from typing import Any

import torch

from ..data import load_dataset
from ..models import create_classifier
from .config import (
    ConfigError,
    EvalConfig,
    check_attack_names,
    check_classifier_name,
    resolve_defense_names,
)
from .results import Results
from .runner import ProgressCallback, evaluate


def validate_names(cfg: EvalConfig) -> EvalConfig:
    """Check classifier, defense and attack names against the registries; expand ``all``.

    Returns:
        A copy of ``cfg`` with the defense list expanded.

    Raises:
        ConfigError: for an unknown name (the message lists the known ones).
    """
    cfg.validate()
    check_classifier_name(cfg.classifier)
    defenses = resolve_defense_names(cfg.defenses)
    if not defenses:
        raise ConfigError("defenses: no defense left after expanding 'all'")
    check_attack_names(cfg.attacks)
    if cfg.adaptive_attacks is not None:
        check_attack_names(cfg.adaptive_attacks)
    return EvalConfig(**{**cfg.to_dict(), "defenses": defenses})


def run_config(cfg: EvalConfig, progress: ProgressCallback | None = None, *, report: bool = True) -> Results:
    """Build everything an :class:`EvalConfig` names and run :func:`evaluate`.

    Loads the classifier, the data (at the classifier's input size and crop fraction unless
    ``image_size`` is set), resolves the defenses and attacks, evaluates, and writes
    ``results.json``, ``samples.jsonl``, ``report.md`` and ``report.html`` into ``cfg.out``
    (when set).

    Args:
        cfg: the experiment.
        progress: callback for :class:`~srdefense.evaluation.runner.ProgressEvent`.
        report: write the Markdown and HTML reports.

    Raises:
        ConfigError: unknown names or bad values.
    """
    cfg = validate_names(cfg)
    device = torch.device(cfg.device)
    try:
        classifier = create_classifier(cfg.classifier, weights=cfg.classifier_weights, device=device)
    except KeyError as exc:
        raise ConfigError(exc.args[0] if exc.args else str(exc)) from None
    ccfg: Any = getattr(classifier, "cfg", None)
    size = cfg.image_size
    if size is None:
        input_size = getattr(ccfg, "input_size", 224)
        size = int(input_size[-1]) if isinstance(input_size, tuple | list) else int(input_size)
    crop_pct = float(getattr(ccfg, "crop_pct", 0.875))
    limit: dict[str, Any] = {} if cfg.max_pixels is None else {"max_pixels": cfg.max_pixels or None}
    data = load_dataset(cfg.data, size=size, crop_pct=crop_pct, n=cfg.n, seed=cfg.seed, **limit)
    experiment = {k: v for k, v in cfg.to_dict().items() if k not in ("resume", "quiet")}
    return evaluate(
        classifier,
        cfg.defenses,
        cfg.attacks,
        data,
        eps=cfg.eps,
        setting=cfg.settings,
        adaptive_attacks=cfg.adaptive_attacks,
        eot_samples=cfg.eot_samples,
        eval_draws=cfg.eval_draws,
        card=cfg.card,
        resolution=cfg.resolution,
        batch_size=cfg.batch_size,
        device=device,
        seed=cfg.seed,
        out=cfg.out,
        resume=cfg.resume,
        progress=progress,
        cache_dir=cfg.cache_dir,
        n_examples=cfg.n_examples,
        workers=cfg.workers,
        precision=cfg.precision,
        attack_precision=cfg.attack_precision,
        experiment=experiment,
        report=report and cfg.out is not None,
    )
