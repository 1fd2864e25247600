"""Evaluation harness: gray-box evaluation of defenses against attacks, results and reports.

Example:
    >>> from srdefense.evaluation import evaluate
    >>> results = evaluate(classifier, {"none": Identity(), "paper": paper}, ["fgsm", "pgd"],
    ...                    dataset, eps=[4 / 255], out="runs/exp")  # doctest: +SKIP
    >>> results.accuracy("paper", "fgsm", 4 / 255)  # doctest: +SKIP
"""

from .checks import check_classifier
from .config import (
    DEMO_ATTACKS,
    PAPER_ATTACKS,
    SETTINGS,
    ConfigError,
    EvalConfig,
    build_config,
    demo_config,
    format_eps,
    load_config_file,
    parse_eps,
    parse_eps_list,
    resolve_defense_names,
)
from .io import atomic_write_json, atomic_write_text
from .metrics import psnr, ssim
from .results import Results, summarize
from .runner import AdversarialCache, AttackRun, ProgressEvent, build_attack_runs, build_defenses, evaluate
from .session import run_config
from .stats import wilson_interval

__all__ = [
    "DEMO_ATTACKS",
    "PAPER_ATTACKS",
    "SETTINGS",
    "AdversarialCache",
    "AttackRun",
    "ConfigError",
    "EvalConfig",
    "ProgressEvent",
    "Results",
    "atomic_write_json",
    "atomic_write_text",
    "build_attack_runs",
    "build_config",
    "build_defenses",
    "check_classifier",
    "demo_config",
    "evaluate",
    "format_eps",
    "load_config_file",
    "parse_eps",
    "parse_eps_list",
    "psnr",
    "resolve_defense_names",
    "run_config",
    "ssim",
    "summarize",
    "wilson_interval",
]
