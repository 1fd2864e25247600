"""Experiment configuration: the dataclass, YAML loading, eps parsing and name validation.

The command line is a thin shell over this module: ``srdefense evaluate`` and ``srdefense demo``
both build an :class:`EvalConfig` and call :func:`run_config`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SETTINGS = ("gray-box", "white-box", "bpda", "eot")
"""Threat models known to the harness (only ``gray-box`` is implemented so far)."""

IMPLEMENTED_SETTINGS = ("gray-box",)

PAPER_ATTACKS = ("fgsm", "ifgsm", "mifgsm", "deepfool", "cw")
"""The attacks of Mustafa et al. (TIP 2020)."""

DEMO_ATTACKS = ("fgsm", "ifgsm", "mifgsm", "deepfool", "cw:steps=100:binary_search_steps=5")
"""The paper's attacks as ``srdefense demo`` runs them on a CPU: C&W with 5 x 100 steps instead
of the default 9 x 10000 (the reduction is recorded in results.json)."""


class ConfigError(ValueError):
    """An invalid experiment configuration (unknown name, bad value); the message says why."""


def parse_eps(value: str | float | int) -> float:
    """Parse one perturbation budget: ``"4/255"``, ``"0.01"``, ``0.01`` or ``4`` (4 is not 4/255).

    Raises:
        ConfigError: if the value is not a finite non-negative number or fraction.
    """
    if isinstance(value, bool):
        raise ConfigError(f"eps: expected a number such as 4/255 or 0.01, got {value!r}")
    if isinstance(value, int | float):
        out = float(value)
    else:
        text = str(value).strip()
        try:
            if "/" in text:
                a, _, b = text.partition("/")
                out = float(a) / float(b)
            else:
                out = float(text)
        except (ValueError, ZeroDivisionError):
            raise ConfigError(f"eps: expected a number such as 4/255 or 0.01, got {value!r}") from None
    if not math.isfinite(out) or out < 0:
        raise ConfigError(f"eps: expected a finite value >= 0, got {value!r}")
    return out


def parse_eps_list(value: str | float | Iterable[str | float] | None) -> list[float]:
    """Parse a comma-separated string (``"2/255,4/255"``) or a list of budgets."""
    if value is None:
        return []
    if isinstance(value, str):
        items: list[Any] = [v for v in value.split(",") if v.strip()]
    elif isinstance(value, int | float):
        items = [value]
    else:
        items = list(value)
    return [parse_eps(v) for v in items]


def format_eps(eps: float | None) -> str:
    """Readable budget: ``4/255`` when it is a whole number of 255ths, else ``%g``; ``-`` for None."""
    if eps is None:
        return "-"
    k = eps * 255
    if eps > 0 and abs(k - round(k)) < 1e-6:
        return f"{round(k)}/255"
    return f"{eps:g}"


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


@dataclass
class EvalConfig:
    """Everything that defines an evaluation run (the CLI flags, the YAML keys).

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
        setting: threat model; only ``"gray-box"`` is implemented.
        resolution: ``"purified"`` classifies the purifier's output as is (the 2x image, as
            the paper does); ``"native"`` resizes it back to the input size first.
        batch_size: images per batch.
        device: torch device string.
        seed: seed of every random draw (attacks and randomised defenses).
        out: output folder (``None``: nothing written).
        resume: continue an interrupted run in ``out``.
        cache_dir: where adversarial examples are cached (default ``out/cache``).
        n_examples: images shown in the report's example grid.
        image_size: input size for the data (default: the classifier's).
        quiet: terminal output only (not used by the library).
    """

    data: str = "samples"
    n: int | None = None
    classifier: str = "efficientnet_lite0"
    classifier_weights: str | None = None
    defenses: list[str] = field(default_factory=lambda: ["none", "paper"])
    attacks: list[str] = field(default_factory=lambda: list(PAPER_ATTACKS))
    eps: list[float] = field(default_factory=lambda: [4 / 255])
    setting: str = "gray-box"
    resolution: str = "purified"
    batch_size: int = 16
    device: str = "cpu"
    seed: int = 0
    out: str | None = None
    resume: bool = False
    cache_dir: str | None = None
    n_examples: int = 4
    image_size: int | None = None
    quiet: bool = False

    def validate(self) -> EvalConfig:
        """Check values that need no registry (types, ranges, settings); returns ``self``.

        Raises:
            ConfigError: with a message naming the bad field.
        """
        if self.setting not in SETTINGS:
            raise ConfigError(f"setting: expected one of {', '.join(SETTINGS)}, got {self.setting!r}")
        if self.resolution not in ("purified", "native"):
            raise ConfigError(f"resolution: expected 'purified' or 'native', got {self.resolution!r}")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size: expected >= 1, got {self.batch_size}")
        if self.n is not None and self.n < 1:
            raise ConfigError(f"n: expected >= 1, got {self.n}")
        if not self.defenses:
            raise ConfigError("defenses: expected at least one defense")
        if not self.attacks:
            raise ConfigError("attacks: expected at least one attack")
        if self.resume and not self.out:
            raise ConfigError("resume: needs an output folder (out)")
        return self

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict (the keys of the YAML file)."""
        return dataclasses.asdict(self)


_FIELDS = {f.name for f in dataclasses.fields(EvalConfig)}
_ALIASES = {
    "defense": "defenses",
    "attack": "attacks",
    "batch-size": "batch_size",
    "cache-dir": "cache_dir",
    "classifier-weights": "classifier_weights",
    "n-examples": "n_examples",
    "image-size": "image_size",
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


def _coerce(key: str, value: Any) -> Any:
    try:
        if key in ("defenses", "attacks"):
            return split_names(value)
        if key == "eps":
            return parse_eps_list(value)
        if key in ("n", "image_size"):
            return None if value is None else int(value)
        if key in ("batch_size", "seed", "n_examples"):
            return int(value)
        if key in ("resume", "quiet"):
            if isinstance(value, str):
                return value.strip().lower() in ("1", "true", "yes", "on")
            return bool(value)
        if key in (
            "data",
            "classifier",
            "classifier_weights",
            "setting",
            "resolution",
            "device",
            "out",
            "cache_dir",
        ):
            return None if value is None else str(value)
    except (TypeError, ValueError) as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"{key}: invalid value {value!r} ({exc})") from None
    return value


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML experiment file into a dict of :class:`EvalConfig` field values.

    Keys are the long command-line flags without dashes (``batch-size`` or ``batch_size``;
    ``defense``/``defenses``, ``attack``/``attacks``); list values may be YAML lists or
    comma-separated strings; eps values may be strings such as ``4/255``.

    Raises:
        ConfigError: unreadable file, not a mapping, or unknown keys.
    """
    import yaml

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
    flags win over the file, and the file over the defaults.
    """
    merged: dict[str, Any] = {}
    for layer in layers:
        if not layer:
            continue
        for k, v in normalize_config_keys(layer).items():
            if v is not None:
                merged[k] = _coerce(k, v)
    return EvalConfig(**merged).validate()


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
    from ..purification.registry import create_defense, list_defenses, parse_defense_spec

    infos = list_defenses()
    known = [d.name for d in infos]
    out: list[str] = []
    from .comparison import ABLATIONS

    for spec in specs:
        if spec == "ablations":
            out.extend(a for a in ABLATIONS if a not in out)
            continue
        if spec.split(":")[0] == "restorers":  # the restoration networks (evaluation/restorers.py)
            from .restorers import expand_restorers

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
    from ..purification.registry import create_defense, list_defenses

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
    from ..purification.registry import parse_defense_spec

    known = attack_names()
    for spec in specs:
        name, _ = parse_defense_spec(spec)
        if name not in known:
            raise ConfigError(f"unknown attack {name!r}; known: {', '.join(known) or '(none)'}")


def attack_names() -> list[str]:
    """Names of the registered attacks."""
    from ..attacks import list_attacks

    return [a if isinstance(a, str) else a.name for a in list_attacks()]


def classifier_names() -> list[str]:
    """Names of the registered classifiers."""
    from ..models import list_classifiers

    return [c if isinstance(c, str) else c.name for c in list_classifiers()]


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

    The embedded sample photos, EfficientNet-Lite0, the paper's attacks (FGSM, I-FGSM, MI-FGSM,
    DeepFool, C&W) at Linf 4/255 (DeepFool and C&W are minimal-norm: no budget; C&W with
    5 x 100 optimisation steps, :data:`DEMO_ATTACKS`), against every fast registered defense,
    gray-box, the 2x image classified as the paper does.

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
        eps=[4 / 255],
        setting="gray-box",
        device=device,
        out=out,
        batch_size=10,
    ).validate()
