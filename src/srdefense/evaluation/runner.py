"""The evaluation harness: craft adversarial examples, purify, classify, record, summarise.

Gray-box protocol (Mustafa et al. 2020, final version): adversarial examples are crafted on
the classifier alone, then every defense is applied to the clean and to the adversarial images
and the result is classified. The other settings (white-box through :class:`Defended`, BPDA,
EOT) have their place in the design (``setting``) but are not implemented yet.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import platform
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..purification.base import Purifier
from .checks import check_classifier
from .config import IMPLEMENTED_SETTINGS, SETTINGS, ConfigError, format_eps
from .examples import save_examples, thumbnail
from .io import JsonlWriter, read_jsonl
from .metrics import finite_or_none, psnr, quality_reference, ssim
from .results import Results, record_warnings, summarize

CACHE_VERSION = 2
"""Part of every cache key: bump it when the way adversarial examples are produced changes."""


@dataclass(frozen=True)
class ProgressEvent:
    """What :func:`evaluate` reports to its ``progress`` callback.

    Attributes:
        stage: ``"start"``, ``"attack"`` (one attack configuration done on a batch),
            ``"defense"`` (one defense done on a batch), ``"batch"`` (a batch recorded),
            ``"skip"`` (a batch already recorded, on resume) or ``"done"``.
        batch: index of the batch (0-based).
        n_batches: number of batches, when the data size is known.
        done: samples recorded so far (including resumed ones).
        total: number of samples, when known.
        attack: attack key for ``"attack"`` events.
        defense: defense name for ``"defense"`` events.
        cached: for ``"attack"`` events, whether the examples came from the cache.
        n_attacks: number of attack configurations.
        n_defenses: number of defenses.
    """

    stage: str
    batch: int = 0
    n_batches: int | None = None
    done: int = 0
    total: int | None = None
    attack: str | None = None
    defense: str | None = None
    cached: bool = False
    n_attacks: int = 0
    n_defenses: int = 0


ProgressCallback = Callable[[ProgressEvent], None]


@dataclass
class AttackRun:
    """One attack configuration (an attack at one eps).

    Attributes:
        key: unique column label, e.g. ``fgsm@4/255`` or ``deepfool`` (the full spec, e.g.
            ``pgd:steps=50@4/255``, only where two configurations would share a label).
        name: attack name.
        eps: perturbation budget (``None`` for minimal-norm attacks).
        attack: the callable attack object.
        spec: the spec it was made from, if any.
    """

    key: str
    name: str
    eps: float | None
    attack: Any
    spec: str | None = None

    def describe(self) -> dict[str, Any]:
        """JSON-able description for the ``config`` block and the cache key."""
        cfg_fn = getattr(self.attack, "config", None)
        cfg = cfg_fn() if callable(cfg_fn) else {"repr": repr(self.attack)}
        return {
            "key": self.key,
            "name": self.name,
            "eps": self.eps,
            "norm": getattr(self.attack, "norm", None),
            "spec": self.spec,
            "deterministic": bool(getattr(self.attack, "deterministic", True)),
            "config": json.loads(json.dumps(cfg, default=str)),
        }


# ---------------------------------------------------------------------------- resolution
def build_attack_runs(attacks: Iterable[Any], eps: Sequence[float] | None = None) -> list[AttackRun]:
    """Expand attack names (or ``name:key=value`` specs) and objects into configurations.

    A name of an Linf attack becomes one configuration per eps; an L2 attack keeps its own
    budget (give it in the spec, ``pgd-l2:eps=0.5``); a minimal-norm attack (``eps`` ``None`` when
    created without one, e.g. DeepFool, C&W) becomes a single configuration with eps
    ``None``; an explicit ``eps=`` parameter in the spec is kept as is. Attack objects are
    used as given.

    Raises:
        ConfigError: unknown attack name (listing the known ones) or bad parameters.
    """
    from ..purification.registry import parse_defense_spec

    eps_list = list(eps or [])
    runs: list[AttackRun] = []
    for item in attacks:
        if isinstance(item, str):
            from ..attacks import create_attack

            name, params = parse_defense_spec(item)
            try:
                if "eps" in params:
                    objs = [create_attack(name, **params)]
                else:
                    probe = create_attack(name, **params)
                    distance = getattr(probe, "distance", getattr(probe, "norm", None))
                    if getattr(probe, "eps", None) is None or not eps_list or distance != "linf":
                        objs = [probe]
                    else:
                        objs = [create_attack(name, eps=e, **params) for e in eps_list]
            except KeyError as exc:
                raise ConfigError(exc.args[0] if exc.args else str(exc)) from None
            except (TypeError, ValueError) as exc:
                raise ConfigError(f"attack {item!r}: {exc}") from None
            for obj in objs:
                runs.append(_make_run(obj, spec=item))
        else:
            runs.append(_make_run(item, spec=None))
    # keys: "name@eps" (or "name"); the full spec only where two configurations would collide
    counts: dict[str, int] = {}
    for r in runs:
        counts[r.key] = counts.get(r.key, 0) + 1
    for r in runs:
        if counts[r.key] > 1 and r.spec is not None and ":" in r.spec:
            r.key = _key(r.spec, r.eps)
    seen: dict[str, int] = {}
    for r in runs:
        k = seen.get(r.key, 0)
        seen[r.key] = k + 1
        if k:
            r.key = f"{r.key}#{k + 1}"
    return runs


def _key(base: str, eps: float | None) -> str:
    return base if eps is None else f"{base}@{format_eps(eps)}"


def _make_run(obj: Any, spec: str | None) -> AttackRun:
    name = str(getattr(obj, "name", type(obj).__name__))
    e = getattr(obj, "eps", None)
    e = None if e is None else float(e)
    return AttackRun(key=_key(name, e), name=name, eps=e, attack=obj, spec=spec)


def build_defenses(defenses: Mapping[str, Purifier | str] | Iterable[Purifier | str]) -> dict[str, Purifier]:
    """Resolve defenses: a mapping name -> purifier or spec, or a list of specs/purifiers.

    Raises:
        ConfigError: unknown defense (listing the known ones) or bad parameters.
    """
    from ..purification.registry import create_defense

    items: list[tuple[str, Purifier | str]]
    if isinstance(defenses, Mapping):
        items = list(defenses.items())
    else:
        items = []
        for d in defenses:
            items.append((d if isinstance(d, str) else _purifier_name(d), d))
    out: dict[str, Purifier] = {}
    for name, d in items:
        if name in out:
            raise ConfigError(f"defense {name!r} given twice")
        if isinstance(d, str):
            try:
                d = create_defense(d)
            except KeyError as exc:
                raise ConfigError(exc.args[0] if exc.args else str(exc)) from None
            except (TypeError, ValueError) as exc:
                raise ConfigError(f"defense {d!r}: {exc}") from None
        if not isinstance(d, Purifier):
            raise TypeError(f"defense {name!r}: expected a Purifier or a spec string, got {type(d).__name__}")
        out[name] = d
    if not out:
        raise ConfigError("defenses: expected at least one defense")
    return out


def _purifier_name(p: Any) -> str:
    return str(getattr(p, "name", None) or type(p).__name__.lower())


def _jsonable(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        obj = dataclasses.asdict(obj)
    return json.loads(json.dumps(obj, default=str))


def classifier_fingerprint(model: nn.Module) -> dict[str, Any]:
    """Identity of a classifier: its name and ``cfg`` (when it has one), class, parameter hash.

    The sha256 over the state dict makes the adversarial-example cache safe against changed
    weights under the same name.
    """
    cfg = getattr(model, "cfg", None)
    h = hashlib.sha256()
    for k, v in model.state_dict().items():
        h.update(k.encode())
        t = v.detach().cpu().contiguous()
        h.update(str(t.dtype).encode() + str(tuple(t.shape)).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    name = getattr(cfg, "name", None) or getattr(model, "name", None) or type(model).__name__
    return {
        "name": str(name),
        "class": f"{type(model).__module__}.{type(model).__qualname__}",
        "cfg": _jsonable(cfg) if cfg is not None else None,
        "params_sha256": h.hexdigest(),
    }


def _versions() -> dict[str, str]:
    from .. import __version__

    return {
        "srdefense": __version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
    }


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def _seed_of(*parts: Any) -> int:
    return int(_digest(parts)[:15], 16)


# ---------------------------------------------------------------------------- data
@dataclass
class _Batch:
    index: int
    start: int
    ids: list[str]
    images: Tensor
    labels: Tensor


def _iter_samples(data: Any, errors: list[dict[str, str]]) -> Iterator[tuple[str, Tensor, int]]:
    if isinstance(data, tuple | list) and len(data) in (2, 3) and isinstance(data[0], Tensor):
        images, labels = data[0], data[1]
        ids = list(data[2]) if len(data) == 3 else [str(i) for i in range(images.shape[0])]
        for i in range(images.shape[0]):
            yield str(ids[i]), images[i], int(labels[i])
        return
    for item in _items(data):
        if isinstance(item, BaseException):
            errors.append({"check": "data", "message": f"skipped an unreadable sample: {item}"})
            continue
        if (
            isinstance(item, tuple)
            and len(item) == 2
            and (item[0] is None or isinstance(item[1], BaseException))
        ):
            errors.append({"check": "data", "message": f"skipped an unreadable sample: {item[1]}"})
            continue
        err = getattr(item, "error", None)
        if err is not None:
            errors.append({"check": "data", "message": f"skipped sample {getattr(item, 'id', '?')}: {err}"})
            continue
        yield str(item.id), item.image, int(item.label)


def _items(data: Any) -> Iterator[Any]:
    # Index-based when possible, so that one unreadable file is reported and skipped instead
    # of ending the iteration.
    if hasattr(data, "__getitem__") and hasattr(data, "__len__"):
        for i in range(len(data)):
            try:
                yield data[i]
            except Exception as exc:  # noqa: BLE001 - any per-item failure is reported and skipped
                ids = getattr(data, "ids", None)
                name = ids[i] if ids is not None else i
                yield RuntimeError(f"sample {name}: {exc}")
    else:
        yield from data


def _batches(data: Any, batch_size: int, errors: list[dict[str, str]]) -> Iterator[_Batch]:
    buf: list[tuple[str, Tensor, int]] = []
    index = start = 0
    for sample in _iter_samples(data, errors):
        buf.append(sample)
        if len(buf) == batch_size:
            yield _make_batch(index, start, buf)
            index, start, buf = index + 1, start + len(buf), []
    if buf:
        yield _make_batch(index, start, buf)


def _make_batch(index: int, start: int, buf: list[tuple[str, Tensor, int]]) -> _Batch:
    images = torch.stack([b[1].float() for b in buf])
    return _Batch(index, start, [b[0] for b in buf], images, torch.tensor([b[2] for b in buf]))


def _data_size(data: Any) -> int | None:
    if isinstance(data, tuple | list) and len(data) in (2, 3) and isinstance(data[0], Tensor):
        return int(data[0].shape[0])
    try:
        return len(data)
    except TypeError:
        return None


def _data_ids(data: Any) -> list[str] | None:
    if isinstance(data, tuple | list) and len(data) in (2, 3) and isinstance(data[0], Tensor):
        return [str(i) for i in data[2]] if len(data) == 3 else [str(i) for i in range(data[0].shape[0])]
    ids = getattr(data, "ids", None)
    return [str(i) for i in ids] if ids is not None else None


# ---------------------------------------------------------------------------- cache
class AdversarialCache:
    """Adversarial examples on disk, one file per (classifier, attack, batch, seed).

    The key hashes the classifier fingerprint, the attack configuration, the setting, the
    sample ids, a hash of the clean pixels and labels, and the seed, so a cached batch is
    reused exactly when it would be recomputed identically (adding a defense never recomputes
    an attack). Files are written atomically and read with ``weights_only=True``.

    Args:
        root: cache folder, or ``None`` for no caching.
    """

    def __init__(self, root: str | Path | None) -> None:
        self.root = Path(root) if root is not None else None
        self.hits = 0
        self.misses = 0

    def path(self, key: str) -> Path | None:
        """File of a key (``None`` without a cache folder)."""
        return None if self.root is None else self.root / "adv" / key[:2] / f"{key}.pt"

    def get(self, key: str, like: Tensor) -> Tensor | None:
        """The cached batch for ``key`` (checked against the shape of ``like``), or ``None``."""
        p = self.path(key)
        if p is None or not p.exists():
            return None
        try:
            obj = torch.load(p, map_location="cpu", weights_only=True)
            adv = obj["adv"]
        except Exception:  # noqa: BLE001 - a corrupt cache file is recomputed
            return None
        if not isinstance(adv, Tensor) or adv.shape != like.shape:
            return None
        return adv.to(device=like.device, dtype=like.dtype)

    def put(self, key: str, adv: Tensor) -> None:
        """Store a batch atomically."""
        p = self.path(key)
        if p is None:
            return
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_name(f".{p.name}.{os.getpid()}.tmp")
        try:
            torch.save({"adv": adv.detach().cpu().contiguous()}, tmp)
            os.replace(tmp, p)
        finally:
            if tmp.exists():
                tmp.unlink()


# ---------------------------------------------------------------------------- evaluate
def evaluate(
    classifier: nn.Module | str,
    defenses: Mapping[str, Purifier | str] | Iterable[Purifier | str],
    attacks: Iterable[Any],
    data: Any,
    *,
    eps: Sequence[float] | None = (4 / 255,),
    setting: str = "gray-box",
    resolution: str = "purified",
    batch_size: int = 16,
    device: str | torch.device = "cpu",
    seed: int = 0,
    out: str | Path | None = None,
    resume: bool = False,
    progress: ProgressCallback | None = None,
    cache_dir: str | Path | None = None,
    n_examples: int = 4,
    class_names: Sequence[str] | None = None,
    experiment: Mapping[str, Any] | None = None,
    report: bool = False,
) -> Results:
    """Evaluate defenses against attacks on a classifier (gray-box protocol).

    For every batch: each attack configuration crafts adversarial examples on the classifier
    alone (or reads them from the cache); every defense purifies the clean and the adversarial
    images; the purified images are classified. One record per sample is appended to
    ``out/samples.jsonl`` as soon as its batch is done; at the end the summary (accuracy with
    95% Wilson intervals, clean accuracy, worst case over attacks, PSNR/SSIM) is computed from
    the records and written to ``out/results.json`` atomically.

    Randomness is derived from ``seed`` and the sample ids of each batch (never from a running
    generator), and drawn from CPU generators whatever the device, so the same seed gives the
    same numbers (up to floating-point differences between devices), and a resumed run gives
    exactly the numbers of an uninterrupted one.

    Args:
        classifier: the model (float [0, 1] NCHW -> logits) or a name for ``create_classifier``.
        defenses: mapping name -> :class:`Purifier` or spec string (``"wd:sigma=0.02"``), or
            a list of spec strings.
        attacks: attack objects, or names / ``name:key=value`` specs expanded over ``eps``.
        data: a dataset yielding samples with ``id``, ``image`` (3, H, W) and ``label``
            (unreadable items are skipped with a warning), or a tuple ``(images, labels[, ids])``.
        eps: budgets for attacks given by name (one configuration per eps).
        setting: threat model; only ``"gray-box"`` is implemented.
        resolution: ``"purified"`` classifies the purifier's output as is (the 2x image, as the
            paper does); ``"native"`` resizes it back to the input size (antialiased bilinear).
        batch_size: images per batch.
        device: where to compute.
        seed: seed of every random draw.
        out: folder for ``samples.jsonl``, ``results.json``, the examples (and the reports
            when ``report``); ``None`` keeps everything in memory.
        resume: continue the run recorded in ``out/samples.jsonl`` (it must be the same run:
            same classifier, defenses, attacks, data order, batch size, seed); without it an
            existing ``samples.jsonl`` is started afresh.
        progress: callback receiving :class:`ProgressEvent`; an exception raised there stops
            the run with every finished batch recorded.
        cache_dir: adversarial-example cache (default ``out/cache``; none without ``out``).
        n_examples: samples of the first batch kept as report examples.
        class_names: names of the classes for the examples (default: ImageNet names when the
            classifier has 1000 outputs).
        experiment: the experiment options, stored in ``config`` to rerun it.
        report: also write ``report.md`` and ``report.html`` into ``out``.

    Returns:
        The :class:`Results`.

    Raises:
        NotImplementedError: for settings other than ``"gray-box"``.
        ConfigError: unknown names, bad values, or ``resume`` on a different run.
    """
    if setting not in SETTINGS:
        raise ConfigError(f"setting: expected one of {', '.join(SETTINGS)}, got {setting!r}")
    if setting not in IMPLEMENTED_SETTINGS:
        raise NotImplementedError(
            f"setting {setting!r} is not implemented yet; implemented: {', '.join(IMPLEMENTED_SETTINGS)} "
            "(white-box attacks Defended(purifier, classifier); bpda and eot wrap the purifier)"
        )
    if resolution not in ("purified", "native"):
        raise ConfigError(f"resolution: expected 'purified' or 'native', got {resolution!r}")
    if batch_size < 1:
        raise ConfigError(f"batch_size: expected >= 1, got {batch_size}")
    if resume and out is None:
        raise ConfigError("resume: needs an output folder (out)")
    dev = torch.device(device)
    if isinstance(classifier, str):
        from ..models import create_classifier

        try:
            classifier = create_classifier(classifier, device=dev)
        except KeyError as exc:
            raise ConfigError(exc.args[0] if exc.args else str(exc)) from None
    classifier = classifier.to(dev)
    purifiers = {k: p.to(dev) for k, p in build_defenses(defenses).items()}
    runs = build_attack_runs(attacks, eps)
    if not runs:
        raise ConfigError("attacks: expected at least one attack")
    out_dir = Path(out) if out is not None else None
    cache = AdversarialCache(cache_dir if cache_dir is not None else (out_dir / "cache" if out_dir else None))
    fingerprint = classifier_fingerprint(classifier)
    ids_all = _data_ids(data)
    config: dict[str, Any] = {
        "setting": setting,
        "resolution": resolution,
        "seed": seed,
        "batch_size": batch_size,
        "classifier": fingerprint,
        "defenses": [
            {
                "name": k,
                "repr": repr(p),
                "class": f"{type(p).__module__}.{type(p).__qualname__}",
                "differentiable": bool(p.differentiable),
                "randomized": bool(p.randomized),
                "scale": int(p.scale),
            }
            for k, p in purifiers.items()
        ],
        "attacks": [r.describe() for r in runs],
        "data": {
            "n": len(ids_all) if ids_all is not None else _data_size(data),
            "ids_sha256": _digest(ids_all) if ids_all is not None else None,
        },
    }
    run_id = _digest(config)[:16]
    config["run_id"] = run_id
    config["device"] = str(dev)
    config["versions"] = _versions()
    if experiment is not None:
        config["experiment"] = _jsonable(dict(experiment))

    records: list[dict[str, Any]] = []
    done_ids: set[str] = set()
    writer: JsonlWriter | None = None
    resumed = 0
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        log = out_dir / "samples.jsonl"
        truncate_to: int | None = 0
        if resume:
            old, valid = read_jsonl(log)
            other = {r.get("run") for r in old} - {run_id}
            if other:
                raise ConfigError(
                    f"resume: {log} holds records of a different run (classifier, defenses, attacks, data, "
                    "batch size or seed changed); use a new output folder or run without resume"
                )
            records = old
            done_ids = {r["id"] for r in old}
            resumed = len(old)
            truncate_to = valid
        writer = JsonlWriter(log, truncate_to=truncate_to)

    names = list(class_names) if class_names is not None else None
    total = _data_size(data)
    n_batches = None if total is None else (total + batch_size - 1) // batch_size
    timing = {k: 0.0 for k in purifiers} | {"attacks": 0.0}
    warnings: list[dict[str, str]] = []
    data_warnings: list[dict[str, str]] = []
    examples: list[dict[str, Any]] = []
    ev_common = {"n_batches": n_batches, "total": total, "n_attacks": len(runs), "n_defenses": len(purifiers)}

    def emit(stage: str, **kw: Any) -> None:
        if progress is not None:
            progress(ProgressEvent(stage=stage, **ev_common, **kw))

    t_start = time.perf_counter()
    saved_generators = [
        (m, m.generator) for p in purifiers.values() for m in p.modules() if isinstance(m, Purifier)
    ]
    try:
        emit("start", done=len(done_ids))
        for batch in _batches(data, batch_size, data_warnings):
            x = batch.images.to(dev)
            y = batch.labels.to(dev)
            first = batch.index == 0
            if first:
                warnings.extend(check_classifier(classifier, x, y))
                if names is None:
                    names = _default_class_names(classifier, x)
            if all(i in done_ids for i in batch.ids) and not (first and n_examples > 0):
                emit("skip", batch=batch.index, done=len(done_ids))
                continue
            batch_done = all(i in done_ids for i in batch.ids)
            advs: dict[str, Tensor] = {}
            for run in runs:
                t0 = time.perf_counter()
                adv, cached = _adversarial(
                    run, classifier, x, y, batch.ids, fingerprint, setting, seed, cache
                )
                timing["attacks"] += time.perf_counter() - t0
                advs[run.key] = adv
                emit("attack", batch=batch.index, done=len(done_ids), attack=run.key, cached=cached)
            if first and n_examples > 0:
                examples = _make_examples(
                    classifier, purifiers, runs, x, y, advs, batch.ids, n_examples, resolution, seed, names
                )
                if out_dir is not None:
                    save_examples(out_dir, examples)
            if batch_done:
                emit("skip", batch=batch.index, done=len(done_ids))
                continue
            new = _evaluate_batch(
                classifier,
                purifiers,
                runs,
                batch,
                x,
                y,
                advs,
                resolution,
                seed,
                run_id,
                timing,
                emit,
                len(done_ids),
            )
            if writer is not None:
                writer.write(new)
            records.extend(new)
            done_ids.update(batch.ids)
            emit("batch", batch=batch.index, done=len(done_ids))
    finally:
        if writer is not None:
            writer.close()
        for m, g in saved_generators:
            m.generator = g

    records.sort(key=lambda r: r["index"])
    tables = summarize(config, records)
    results = Results(
        config=config,
        records=records,
        summary=tables["summary"],
        quality=tables["quality"],
        perturbation=tables["perturbation"],
        warnings=warnings + data_warnings + record_warnings(config, records),
        run={
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "seconds": time.perf_counter() - t_start,
            "seconds_per_stage": timing,
            "resumed_samples": resumed,
            "attack_cache_hits": cache.hits,
            "attack_cache_misses": cache.misses,
        },
        examples=examples,
    )
    if out_dir is not None:
        results.save(out_dir)
        if report:
            from .report import write_report

            write_report(results, out_dir)
    emit("done", done=len(records))
    return results


def _default_class_names(classifier: nn.Module, x: Tensor) -> list[str] | None:
    cfg = getattr(classifier, "cfg", None)
    if (
        cfg is None
        or getattr(cfg, "label_set", None) != "imagenet"
        or getattr(cfg, "num_classes", None) != 1000
    ):
        return None
    try:
        from ..models.imagenet import imagenet_classes

        return list(imagenet_classes())
    except Exception:  # noqa: BLE001 - names are cosmetic
        return None


def _set_generators(purifier: Purifier, seed: int, device: torch.device) -> None:
    # CPU generators on every device: the draws (and so the numbers) do not depend on the device
    for m in purifier.modules():
        if isinstance(m, Purifier):
            m.generator = torch.Generator().manual_seed(seed)


def _purify(purifier: Purifier, x: Tensor, seed: int, device: torch.device) -> Tensor:
    _set_generators(purifier, seed, device)
    with torch.random.fork_rng(devices=[] if device.type == "cpu" else [device]):
        torch.manual_seed(seed)
        with torch.no_grad():
            return purifier(x)


def _classify(classifier: nn.Module, xp: Tensor, native: tuple[int, int], resolution: str) -> Tensor:
    if resolution == "native" and tuple(xp.shape[-2:]) != native:
        xp = nn.functional.interpolate(xp, size=native, mode="bilinear", antialias=True).clamp(0, 1)
    with torch.no_grad():
        return classifier(xp).argmax(1)


def _adversarial(
    run: AttackRun,
    classifier: nn.Module,
    x: Tensor,
    y: Tensor,
    ids: list[str],
    fingerprint: dict[str, Any],
    setting: str,
    seed: int,
    cache: AdversarialCache,
) -> tuple[Tensor, bool]:
    desc = run.describe()
    key = _digest(
        {
            "v": CACHE_VERSION,
            "setting": setting,
            "classifier": fingerprint,
            "attack": {k: desc[k] for k in ("name", "eps", "norm", "config")},
            "ids": ids,
            "pixels": hashlib.sha256(x.detach().cpu().float().contiguous().numpy().tobytes()).hexdigest(),
            "labels": y.tolist(),
            "seed": seed,
        }
    )
    hit = cache.get(key, x)
    if hit is not None:
        cache.hits += 1
        return hit, True
    cache.misses += 1
    # a CPU generator on every device, so random starts and targets do not depend on the device
    gen = torch.Generator().manual_seed(_seed_of("attack", seed, desc["config"], ids))
    with torch.random.fork_rng(devices=[] if x.device.type == "cpu" else [x.device]):
        torch.manual_seed(_seed_of("attack-global", seed, desc["config"], ids))
        adv = run.attack(classifier, x, y, generator=gen)
    adv = adv.detach().to(dtype=x.dtype)
    if adv.shape != x.shape:
        raise RuntimeError(f"attack {run.key}: returned shape {tuple(adv.shape)}, expected {tuple(x.shape)}")
    cache.put(key, adv)
    return adv, False


def _evaluate_batch(
    classifier: nn.Module,
    purifiers: dict[str, Purifier],
    runs: list[AttackRun],
    batch: _Batch,
    x: Tensor,
    y: Tensor,
    advs: dict[str, Tensor],
    resolution: str,
    seed: int,
    run_id: str,
    timing: dict[str, float],
    emit: Callable[..., None],
    done: int,
) -> list[dict[str, Any]]:
    n = x.shape[0]
    native = (int(x.shape[-2]), int(x.shape[-1]))
    recs: list[dict[str, Any]] = [
        {
            "run": run_id,
            "index": batch.start + i,
            "id": batch.ids[i],
            "label": int(batch.labels[i]),
            "clean": {},
            "adv": {r.key: {} for r in runs},
            "perturbation": {},
            "classifier_clean": None,
            "quality": {},
        }
        for i in range(n)
    ]
    clean_pred = _classify(classifier, x, native, "purified").tolist()
    for i in range(n):
        recs[i]["classifier_clean"] = clean_pred[i]
    for run in runs:
        adv = advs[run.key]
        delta = (adv - x).flatten(1).double()
        linf = delta.abs().amax(1).tolist()
        l2 = delta.norm(dim=1).tolist()
        pred = _classify(classifier, adv, native, "purified").tolist()
        for i in range(n):
            recs[i]["perturbation"][run.key] = {"linf": linf[i], "l2": l2[i], "pred": pred[i]}
    for name, p in purifiers.items():
        t0 = time.perf_counter()
        xp = _purify(p, x, _seed_of("defense", seed, name, "clean", batch.ids), x.device)
        pc = _classify(classifier, xp, native, resolution).tolist()
        ref = quality_reference(x, (int(xp.shape[-2]), int(xp.shape[-1])))
        ps = psnr(xp, ref).tolist()
        try:
            ss = ssim(xp, ref).tolist()
        except ValueError:  # images smaller than the 11x11 window
            ss = [float("nan")] * n
        for i in range(n):
            recs[i]["clean"][name] = pc[i]
            recs[i]["quality"][name] = {"psnr": finite_or_none(ps[i]), "ssim": finite_or_none(ss[i])}
        for run in runs:
            xa = _purify(p, advs[run.key], _seed_of("defense", seed, name, run.key, batch.ids), x.device)
            pa = _classify(classifier, xa, native, resolution).tolist()
            for i in range(n):
                recs[i]["adv"][run.key][name] = pa[i]
        timing[name] += time.perf_counter() - t0
        emit("defense", batch=batch.index, done=done, defense=name)
    return recs


def _make_examples(
    classifier: nn.Module,
    purifiers: dict[str, Purifier],
    runs: list[AttackRun],
    x: Tensor,
    y: Tensor,
    advs: dict[str, Tensor],
    ids: list[str],
    k: int,
    resolution: str,
    seed: int,
    names: list[str] | None,
) -> list[dict[str, Any]]:
    bounded = [r for r in runs if r.eps is not None]
    run = max(bounded, key=lambda r: r.eps or 0.0) if bounded else runs[0]
    k = min(k, x.shape[0])
    xs, xa = x[:k], advs[run.key][:k]
    native = (int(x.shape[-2]), int(x.shape[-1]))
    clean_pred = _classify(classifier, xs, native, "purified").tolist()
    adv_pred = _classify(classifier, xa, native, "purified").tolist()
    purified: dict[str, Tensor] = {}
    purified_pred: dict[str, list[int]] = {}
    for name, p in purifiers.items():
        xp = _purify(p, xa, _seed_of("example", seed, name, run.key, ids[:k]), x.device)
        purified[name] = xp
        purified_pred[name] = _classify(classifier, xp, native, resolution).tolist()

    def nm(c: int) -> str:
        return names[c] if names is not None and 0 <= c < len(names) else str(c)

    out = []
    for i in range(k):
        preds = {n: purified_pred[n][i] for n in purifiers}
        out.append(
            {
                "id": ids[i],
                "label": int(y[i]),
                "label_name": nm(int(y[i])),
                "attack": run.key,
                "clean_pred": clean_pred[i],
                "clean_pred_name": nm(clean_pred[i]),
                "adversarial_pred": adv_pred[i],
                "adversarial_pred_name": nm(adv_pred[i]),
                "purified_pred": preds,
                "purified_pred_name": {n: nm(c) for n, c in preds.items()},
                "clean": thumbnail(xs[i]),
                "adversarial": thumbnail(xa[i]),
                "purified": {n: thumbnail(purified[n][i]) for n in purifiers},
            }
        )
    return out
