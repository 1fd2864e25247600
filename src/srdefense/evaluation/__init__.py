"""Evaluation harness: gray-box evaluation of defenses against attacks, results and reports.

Example:
    >>> from srdefense.evaluation import evaluate
    >>> results = evaluate(classifier, {"none": Identity(), "paper": paper}, ["fgsm", "pgd"],
    ...                    dataset, eps=[4 / 255], out="runs/exp")  # doctest: +SKIP
    >>> results.accuracy("paper", "fgsm", 4 / 255)  # doctest: +SKIP
"""

from .cache import AdversarialCache
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
from .distributed import Shard, shard_from_env
from .io import atomic_write_json, atomic_write_text
from .merge import MergeError, merge_run
from .metrics import psnr, ssim
from .plan import AttackRun, Plan, build_attack_runs, build_defenses, build_plan
from .records import DuplicateSampleError, SampleRecord
from .results import Results, summarize
from .runner import EmptyEvaluationError, ProgressEvent, evaluate, run_plan
from .session import run_config
from .stats import wilson_interval
from .threats import create_threat_model, list_threat_models

__all__ = [
    "DEMO_ATTACKS",
    "PAPER_ATTACKS",
    "SETTINGS",
    "AdversarialCache",
    "AttackRun",
    "ConfigError",
    "DuplicateSampleError",
    "EmptyEvaluationError",
    "Plan",
    "SampleRecord",
    "EvalConfig",
    "MergeError",
    "Shard",
    "merge_run",
    "shard_from_env",
    "ProgressEvent",
    "Results",
    "atomic_write_json",
    "atomic_write_text",
    "build_attack_runs",
    "build_config",
    "build_plan",
    "create_threat_model",
    "list_threat_models",
    "run_plan",
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
