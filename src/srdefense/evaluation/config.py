"""Experiment configuration: the dataclass, YAML loading and name validation (eps parsing: :mod:`.eps`).

The command line is a thin shell over this module: ``srdefense evaluate`` and ``srdefense demo``
both build an :class:`EvalConfig` and call :func:`run_config`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ..attacks import list_attacks
from ..models import list_classifiers
from ..purification.compose import RESOLUTIONS, resolution_policy
from ..purification.presets import ABLATIONS
from ..purification.registry import create_defense, list_defenses, parse_defense_spec

# the budget parsing and the error live in leaf modules; importable from here as before
from .eps import format_eps as format_eps
from .eps import parse_eps as parse_eps
from .eps import parse_eps_list
from .errors import ConfigError
from .restorers import expand_restorers
from .threats import threat_model_names

SETTINGS = tuple(threat_model_names())
"""Threat models of the harness, read from the registry :mod:`srdefense.evaluation.threats`."""

PAPER_ATTACKS = ("fgsm", "ifgsm", "mifgsm", "deepfool", "cw")
"""The attacks of Mustafa et al. (TIP 2020)."""

DEMO_ATTACKS = ("fgsm", "ifgsm", "mifgsm", "deepfool")
"""The paper's attacks as ``srdefense demo`` runs them on a CPU: all but C&W, whose optimisation
(5 x 100 steps already took ~110 s on 20 photos here) does not fit the demo's budget; the
minimal-norm column is DeepFool's. ``srdefense evaluate --attack paper`` runs all five."""


DEMO_ADAPTIVE_ATTACKS = ("pgd:steps=5:early_stop=true",)
"""The adaptive column of ``srdefense demo``: white-box PGD-5 (step 2.5 eps / 5) through every defense."""
DEMO_EOT_SAMPLES = 5
"""EOT draws per gradient for the demo's randomised defenses (the library default is 20)."""
DEMO_EVAL_DRAWS = 5
"""Scoring draws for the demo's randomised defenses (the library default is 10)."""
DEMO_BATCH_SIZE = 5
"""Images per batch of ``srdefense demo``.

Five, not ten: a white-box step through ``paper`` keeps about 300 MB of activations per image,
and on a virtual machine the first touch of fresh memory is slow (measured on a 2-core AMD
EPYC Zen 3: 1.5 million page faults and 12 s of system time for the first 20 images of steps
in batches of 10, 0.9 million and 3.3 s in batches of 5). The demo, run by
``benchmarks/bench_demo.py``: 166.9 s and 2.4 GB peak in batches of 5, 190.3 s and about
4 GB in batches of 10. EfficientNet-Lite0 runs 224 x 224 images in chunks of 5 anyway
(:attr:`srdefense.models.normalize.NormalizedClassifier.cpu_chunk_pixels`).
"""


def split_names(value: str | Iterable[str] | None) -> list[str]:
    """Split ``"a,b"`` or a list into stripped, non-empty names (order kept, duplicates dropped)."""
    if value is None:
        return []
    items = value.split(",") if isinstance(value, str) else [str(v) for v in value]
    out: list[str] = []
    for v in items:
        v = v.strip()
        if v and v not in out:
            out.append(v)
    return out


_LIST_FIELDS = ("defenses", "attacks", "settings", "adaptive_attacks")


class EvalConfig(BaseModel):
    """Everything that defines an evaluation run (the CLI flags, the YAML keys).

    Values are checked strictly (pydantic): a wrong type is refused with a message naming the
    key and the expected type instead of being coerced (``n: 2.9`` is not 2, ``resume: "ture"``
    is not False, a list is not a data path).

    Attributes:
        data: ``"samples"`` (the embedded photos), a folder, or a CSV file of ``path,label``.
        n: number of images (``None``: all).
        classifier: registered classifier name (or any spec ``create_classifier`` accepts).
        classifier_weights: weight file for a ``module.py:factory``, ``timm:`` or
            ``torchvision:`` classifier (loaded safely).
        defenses: defense specs (``"wd:sigma=0.02"``); ``"all"`` is every registered defense
            that can be built without arguments.
        attacks: attack names (``"pgd"``; parameters as ``"pgd:steps=20"``).
        eps: perturbation budgets in [0, 1] units (one attack configuration per budget;
            minimal-norm attacks such as DeepFool and C&W run once, eps ``None``).
        settings: threat models (``gray-box``, ``white-box``, ``bpda``; YAML key ``setting``
            or ``settings``).
        adaptive_attacks: attacks run in the adaptive settings (``None``: the same as
            ``attacks``), e.g. the paper's attacks gray-box and PGD white-box.
        eot_samples: forward passes averaged per gradient for randomised defenses in the
            adaptive settings (``None``: 20); deterministic defenses always use 1.
        eval_draws: independent draws of a randomised defense when scoring (``None``: 10);
            deterministic defenses are scored once.
        card: run the gradient-masking report card (its extra attacks run on the first batch).
        resolution: ``"purified"`` classifies the purifier's output as is (the 2x image, as
            the paper does); ``"native"`` resizes it back to the input size first.
        batch_size: images per batch.
        device: torch device string.
        seed: seed of every random draw (attacks and randomised defenses).
        out: output folder (``None``: nothing written).
        resume: continue an interrupted run in ``out``.
        cache_dir: where adversarial examples are cached (default ``out/cache``).
        n_examples: images shown in the report's example grid.
        workers: ``DataLoader`` worker processes decoding images ahead of the loop (0: in the
            main process).
        image_size: input size for the data (default: the classifier's).
        max_pixels: refuse images with more pixels (W x H) than this (default: the reader's
            50-megapixel decompression-bomb limit; 0: no limit).
        quiet: terminal output only (not used by the library).
        precision: arithmetic of every defense's super-resolution in the passes that need no
            input gradient (scoring): ``"fp32"`` (default), ``"bf16"``, ``"fp16"`` or ``"auto"``
            (see :mod:`srdefense.purification.precision`); not fp32, results.json records its
            fidelity against fp32 on the first batch.
        attack_precision: the same for white-box attack gradients through the defense
            (default ``"fp32"``: bf16 gradients only when asked for).
    """

    model_config = ConfigDict(strict=True, extra="forbid", validate_assignment=False)

    data: str = "samples"
    n: int | None = None
    classifier: str = "efficientnet_lite0"
    classifier_weights: str | None = None
    defenses: list[str] = Field(default_factory=lambda: ["none", "paper"])
    attacks: list[str] = Field(default_factory=lambda: list(PAPER_ATTACKS))
    eps: list[float] = Field(default_factory=lambda: [4 / 255])
    settings: list[str] = Field(default_factory=lambda: ["gray-box"])
    adaptive_attacks: list[str] | None = None
    eot_samples: int | None = None
    eval_draws: int | None = None
    card: bool = True
    resolution: str = "purified"
    batch_size: int = 16
    device: str = "cpu"
    seed: int = 0
    out: str | None = None
    resume: bool = False
    cache_dir: str | None = None
    n_examples: int = 4
    workers: int = 0
    image_size: int | None = None
    max_pixels: int | None = None
    quiet: bool = False
    precision: str = "fp32"
    attack_precision: str = "fp32"

    @field_validator(*_LIST_FIELDS, mode="before")
    @classmethod
    def _names(cls, value: Any) -> Any:
        if isinstance(value, str):
            return split_names(value)
        if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
            return split_names(value)
        return value

    @field_validator("eps", mode="before")
    @classmethod
    def _eps(cls, value: Any) -> Any:
        if isinstance(value, str | int | float) and not isinstance(value, bool):
            return parse_eps_list(value)
        if isinstance(value, list | tuple) and all(
            isinstance(v, str | int | float) and not isinstance(v, bool) for v in value
        ):
            return parse_eps_list(value)
        return value

    @property
    def setting(self) -> str:
        """The first threat model (kept for callers of the one-setting harness)."""
        return self.settings[0]

    def validate(self) -> EvalConfig:  # type: ignore[override]
        """Check values that need no registry (ranges, settings); returns ``self``.

        Raises:
            ConfigError: with a message naming the bad field.
        """
        for s in self.settings:
            if s not in SETTINGS:
                raise ConfigError(f"setting: unknown threat model {s!r}; known: {', '.join(SETTINGS)}")
        if not self.settings:
            raise ConfigError("setting: expected at least one threat model")
        if self.resolution not in RESOLUTIONS:
            try:  # the old spelling "2x" means "purified"
                self.resolution = resolution_policy(self.resolution)
            except ValueError as exc:
                raise ConfigError(str(exc)) from None
        for key in ("batch_size", "n", "image_size", "eot_samples", "eval_draws"):
            v = getattr(self, key)
            if v is not None and v < 1:
                raise ConfigError(f"{key}: expected an integer >= 1, got {v}")
        if self.max_pixels is not None and self.max_pixels < 0:
            raise ConfigError(f"max_pixels: expected an integer >= 0, got {self.max_pixels}")
        if self.workers < 0:
            raise ConfigError(f"workers: expected an integer >= 0, got {self.workers}")
        if self.n_examples < 0:
            raise ConfigError(f"n_examples: expected an integer >= 0, got {self.n_examples}")
        if not self.defenses:
            raise ConfigError("defenses: expected at least one defense")
        if not self.attacks:
            raise ConfigError("attacks: expected at least one attack")
        from ..purification.precision import PRECISIONS

        for key in ("precision", "attack_precision"):
            v = getattr(self, key)
            if v not in PRECISIONS:
                raise ConfigError(f"{key}: expected one of {', '.join(PRECISIONS)}, got {v!r}")
        if self.resume and not self.out:
            raise ConfigError("resume: needs an output folder (out)")
        return self

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict (the keys of the YAML file)."""
        return self.model_dump()


_FIELDS = set(EvalConfig.model_fields)
_ALIASES = {
    "defense": "defenses",
    "attack": "attacks",
    "setting": "settings",
    "batch-size": "batch_size",
    "cache-dir": "cache_dir",
    "classifier-weights": "classifier_weights",
    "n-examples": "n_examples",
    "image-size": "image_size",
    "max-pixels": "max_pixels",
    "eot-samples": "eot_samples",
    "eval-draws": "eval_draws",
    "adaptive-attack": "adaptive_attacks",
    "adaptive-attacks": "adaptive_attacks",
    "adaptive_attack": "adaptive_attacks",
    "attack-precision": "attack_precision",
}


def normalize_config_keys(values: Mapping[str, Any], source: str = "config") -> dict[str, Any]:
    """Map YAML/CLI keys (``defense``/``defenses``, ``batch-size``/``batch_size``) to field names.

    Raises:
        ConfigError: for an unknown key (the message lists the known ones).
    """
    out: dict[str, Any] = {}
    for key, value in values.items():
        k = _ALIASES.get(str(key), str(key).replace("-", "_"))
        k = _ALIASES.get(k, k)
        if k == "config":
            continue
        if k not in _FIELDS:
            known = ", ".join(sorted(_FIELDS))
            raise ConfigError(f"{source}: unknown key {key!r}; known: {known}")
        out[k] = value
    return out


_EXPECTED = {
    "int_type": "an integer",
    "bool_type": "a boolean (true or false)",
    "string_type": "a string",
    "list_type": "a list or a comma-separated string",
    "float_type": "a number",
}


def _config_error(exc: ValidationError, source: str) -> ConfigError:
    parts = []
    for e in exc.errors():
        key = ".".join(str(p) for p in e["loc"] if not isinstance(p, int)) or "config"
        key = key.split(".")[0]
        expected = _EXPECTED.get(e["type"].split(".")[-1], None)
        got = e.get("input")
        if expected:
            parts.append(f"{key}: expected {expected}, got {got!r} ({type(got).__name__})")
        else:
            msg = str(e["msg"]).removeprefix("Value error, ")
            parts.append(msg if msg.startswith(f"{key}:") else f"{key}: {msg}, got {got!r}")
    text = "; ".join(dict.fromkeys(parts))
    return ConfigError(text if source == "config" else f"{source}: {text}")


def make_config(values: Mapping[str, Any], source: str = "config") -> EvalConfig:
    """Build and validate an :class:`EvalConfig` from field values.

    Raises:
        ConfigError: a wrong type or value, naming the key and what was expected.
    """
    try:
        cfg = EvalConfig.model_validate(dict(values))
    except ValidationError as exc:
        raise _config_error(exc, source) from None
    return cfg.validate()


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML experiment file into a dict of :class:`EvalConfig` field values.

    Keys are the long command-line flags without dashes (``batch-size`` or ``batch_size``;
    ``defense``/``defenses``, ``attack``/``attacks``); list values may be YAML lists or
    comma-separated strings; eps values may be strings such as ``4/255``.

    Raises:
        ConfigError: unreadable file, not a mapping, or unknown keys.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"config {p}: cannot read: {exc}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"config {p}: invalid YAML: {exc}") from None
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise ConfigError(f"config {p}: expected a mapping of options, got {type(raw).__name__}")
    return normalize_config_keys(raw, source=f"config {p}")


def build_config(*layers: Mapping[str, Any] | None) -> EvalConfig:
    """Merge option layers into an :class:`EvalConfig`; later layers win, ``None`` values skip.

    Typical use: ``build_config(load_config_file(path), cli_flags)`` so that command-line
    flags win over the file, and the file over the defaults. Types are checked strictly.

    Raises:
        ConfigError: an unknown key, a wrong type or a bad value.
    """
    merged: dict[str, Any] = {}
    for layer in layers:
        if not layer:
            continue
        for k, v in normalize_config_keys(layer).items():
            if v is not None:
                merged[k] = v
    return make_config(merged)


def resolve_defense_names(specs: Sequence[str]) -> list[str]:
    """Expand ``all`` and check every defense name against the registry.

    ``all`` becomes every registered defense that can be built without arguments (in registry
    order; ``quilting`` needs its patch database: add ``quilting:database=DIR``);
    ``ablations`` becomes the ablations of the paper's pipeline
    (:data:`srdefense.evaluation.comparison.ABLATIONS`); ``restorers[:...]`` becomes the
    pipeline with each restoration network (:mod:`srdefense.evaluation.restorers`); other specs
    are kept as given.

    Raises:
        ConfigError: unknown defense name (the message lists the known ones).
    """
    infos = list_defenses()
    known = [d.name for d in infos]
    out: list[str] = []
    for spec in specs:
        if spec == "ablations":
            out.extend(a for a in ABLATIONS if a not in out)
            continue
        if spec.split(":")[0] == "restorers":  # the restoration networks (evaluation/restorers.py)
            try:
                out.extend(s for s in expand_restorers(spec) if s not in out)
            except ValueError as exc:
                raise ConfigError(str(exc)) from None
            continue
        if spec == "all":
            for name in known:
                try:
                    create_defense(name)
                except Exception:  # noqa: BLE001 - needs arguments or files: not part of "all"
                    continue
                if name not in out:
                    out.append(name)
            continue
        try:
            name, _ = parse_defense_spec(spec)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        if name not in known:
            raise ConfigError(
                f"unknown defense {name!r}; known: {', '.join(known) or '(none)'}, all, ablations, restorers"
            )
        if spec not in out:
            out.append(spec)
    return out


def fast_defense_names() -> list[str]:
    """Registered defenses marked ``fast`` that build without arguments."""
    out = []
    for d in list_defenses():
        if not d.fast:
            continue
        try:
            create_defense(d.name)
        except Exception:  # noqa: BLE001 - needs arguments or files
            continue
        out.append(d.name)
    return out


def check_attack_names(specs: Sequence[str]) -> None:
    """Check every attack name against the registry.

    Raises:
        ConfigError: unknown attack (the message lists the known ones).
    """
    known = attack_names()
    for spec in specs:
        name, _ = parse_defense_spec(spec)
        if name not in known:
            raise ConfigError(f"unknown attack {name!r}; known: {', '.join(known) or '(none)'}")


def attack_names() -> list[str]:
    """Names of the registered attacks."""
    return [a.name for a in list_attacks()]


def classifier_names() -> list[str]:
    """Names of the registered classifiers."""
    return [c.name for c in list_classifiers()]


def check_classifier_name(spec: str) -> None:
    """Check a classifier name; specs with ``:`` (``module.py:factory``, ``timm:NAME``) pass.

    Raises:
        ConfigError: unknown classifier (the message lists the known ones).
    """
    if ":" in spec:
        return
    known = classifier_names()
    if spec not in known:
        raise ConfigError(f"unknown classifier {spec!r}; known: {', '.join(known) or '(none)'}")


def demo_config(out: str | None = None, *, device: str = "cpu", n: int | None = None) -> EvalConfig:
    """The configuration of ``srdefense demo``.

    The embedded sample photos, EfficientNet-Lite0, the paper's attacks but C&W (FGSM, I-FGSM,
    MI-FGSM at Linf 4/255, DeepFool minimal-norm: :data:`DEMO_ATTACKS`), against every fast
    registered defense (one SR network defense, ``paper``; ``sr``, ``paper-faithful`` and
    ``tvm`` cost minutes each on a CPU and are left to ``srdefense evaluate``), gray-box, the
    2x image classified as the paper does; and the adaptive column: white-box PGD-5 at 4/255
    with early stopping through every defense (BPDA only for the stages without a gradient, EOT
    over :data:`DEMO_EOT_SAMPLES` draws for the randomised ones, scored in
    :data:`DEMO_EVAL_DRAWS` draws). The report card is left to ``srdefense evaluate`` (it
    doubles the adaptive cost).

    Args:
        out: output folder (``None``: nothing written).
        device: torch device.
        n: number of sample photos (``None``: all 20).
    """
    known_attacks = set(attack_names())
    attacks = [a for a in DEMO_ATTACKS if a.split(":")[0] in known_attacks] or list(DEMO_ATTACKS)
    return EvalConfig(
        data="samples",
        n=n,
        classifier="efficientnet_lite0",
        defenses=fast_defense_names(),
        attacks=attacks,
        adaptive_attacks=list(DEMO_ADAPTIVE_ATTACKS),
        eps=[4 / 255],
        settings=["gray-box", "white-box"],
        eot_samples=DEMO_EOT_SAMPLES,
        eval_draws=DEMO_EVAL_DRAWS,
        card=False,
        device=device,
        out=out,
        batch_size=DEMO_BATCH_SIZE,
    ).validate()
