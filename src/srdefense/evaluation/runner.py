"""The evaluation harness: one batch loop over a :class:`~srdefense.evaluation.plan.Plan`.

For every batch window of the data: for every setting (threat model) and defense, the attack
configurations of that setting craft adversarial examples on the module the threat model
names (the classifier alone in the gray-box setting, the defended model in the adaptive ones)
or read them from the cache; each purified clean and adversarial image is classified through
the defended model (one code path for attack and score); one :class:`SampleRecord` per sample
is appended to the process's record log (``samples.jsonl``, or ``samples-RANK-of-WORLD.jsonl``
for a rank of a sharded run, :mod:`.shards`) when its batch is done. At the end the summary,
the gradient-masking report card and ``results.json`` are written (:mod:`.merge`).

Randomness is derived from the seed and the sample ids (never from a running generator) and
drawn from CPU generators whatever the device (:mod:`.scoring`). A randomised defense is scored
with its own draw per sample and draw index, so its numbers do not depend on loop order, batch
composition, the other defenses of the run or the rank that evaluated the batch; a resumed or
sharded run gives exactly the numbers of an uninterrupted single process.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..models import create_classifier
from ..models.imagenet import imagenet_classes
from ..purification.base import Purifier
from .cache import AdversarialCache
from .card import CardInputs, card_batch_checks
from .checks import check_classifier
from .distributed import (
    Shard,
    barrier,
    destroy_process_group,
    init_process_group,
    resolve_shard_device,
    shard_from_env,
)
from .errors import ConfigError
from .examples import make_examples, save_examples
from .loader import Batch, data_ids, data_size, first_batch, iter_stream, iter_windows
from .merge import EmptyEvaluationError, build_results, merge_run
from .metrics import finite_or_none, psnr, quality_reference, ssim
from .plan import (
    AttackRun,
    Plan,
    _jsonable,
    build_attack_runs,
    build_defenses,
    build_plan,
    classifier_fingerprint,
)
from .records import Perturbation, Quality, SampleRecord
from .results import Results
from .scoring import Attacker, score
from .shards import ShardLog, write_run_file

__all__ = [
    "AdversarialCache",
    "AttackRun",
    "EmptyEvaluationError",
    "ProgressEvent",
    "build_attack_runs",
    "build_defenses",
    "classifier_fingerprint",
    "evaluate",
    "run_plan",
]


@dataclass(frozen=True)
class ProgressEvent:
    """What :func:`evaluate` reports to its ``progress`` callback.

    Attributes:
        stage: ``"start"``, ``"attack"`` (one attack configuration done on a batch for one
            setting, and one defense in the adaptive settings), ``"defense"`` (one defense scored
            on a batch), ``"batch"`` (a batch recorded), ``"skip"`` (a batch already recorded,
            on resume), ``"card"`` (a report-card check done) or ``"done"``.
        batch: index of the batch (0-based).
        n_batches: number of batches, when the data size is known.
        done: samples recorded so far (including resumed ones).
        total: number of samples, when known.
        attack: attack key for ``"attack"`` events (``setting/key``).
        defense: defense name for ``"defense"`` and adaptive ``"attack"`` events.
        cached: for ``"attack"`` events, whether the examples came from the cache.
        n_attacks: attack units per batch (setting x attack, x defense where adaptive).
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


# ---------------------------------------------------------------------------- evaluate
def evaluate(
    classifier: nn.Module | str,
    defenses: Mapping[str, Purifier | str] | Iterable[Purifier | str],
    attacks: Iterable[Any],
    data: Any,
    *,
    eps: Sequence[float] | None = (4 / 255,),
    setting: str | Sequence[str] = "gray-box",
    adaptive_attacks: Iterable[Any] | None = None,
    eot_samples: int | None = None,
    eval_draws: int | None = None,
    card: bool = True,
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
    workers: int = 0,
    shard: Shard | None = None,
    precision: str = "fp32",
    attack_precision: str = "fp32",
) -> Results:
    """Evaluate defenses against attacks on a classifier, in one or more threat models.

    For every batch: in each setting, each attack configuration crafts adversarial examples on
    the module the setting names (``gray-box``: the classifier alone, once for all defenses;
    ``white-box``: the defended model with true gradients and per-stage BPDA where a stage has
    none; ``bpda``: identity backward through the purifier; EOT over randomised defenses in the
    adaptive settings) or reads them from the cache; every purified clean and adversarial image
    is classified through the defended model. Records are appended to ``out/samples.jsonl`` as
    soon as their batch is done; at the end the summary (accuracy with 95% Wilson intervals per
    setting, worst case per setting, robust accuracy over every setting and attack), the
    gradient-masking report card and ``results.json`` (atomically) are written.

    Args:
        classifier: the model (float [0, 1] NCHW -> logits) or a name for ``create_classifier``.
        defenses: mapping name -> :class:`Purifier` or spec string (``"wd:sigma=0.02"``), or
            a list of spec strings.
        attacks: attack objects, or names / ``name:key=value`` specs expanded over ``eps``.
        data: a dataset yielding samples with ``id``, ``image`` (3, H, W) and ``label``
            (unreadable items are skipped with a warning), or a tuple ``(images, labels[, ids])``.
        eps: budgets for attacks given by name (one configuration per eps).
        setting: one threat model or several (``"gray-box"``, ``"white-box"``, ``"bpda"``).
        adaptive_attacks: the attacks of the adaptive settings (default: ``attacks``).
        eot_samples: forward passes averaged per gradient for randomised defenses (default 20).
        eval_draws: independent draws per sample when scoring a randomised defense (default 10);
            the summary reports the worst of them (correct in every draw) and their mean.
        card: run the gradient-masking report card (checks in ``results.checks``).
        resolution: ``"purified"`` classifies the purifier's output as is (the 2x image, as the
            paper does); ``"native"`` resizes it back to the input size (antialiased bilinear).
        batch_size: images per batch window.
        device: where to compute.
        seed: seed of every random draw.
        out: folder for ``samples.jsonl``, ``results.json``, the examples (and the reports
            when ``report``); ``None`` keeps everything in memory.
        resume: continue the run recorded in ``out/samples.jsonl`` (it must be the same run);
            a torn last line and the records of an incomplete batch are dropped and redone.
        progress: callback receiving :class:`ProgressEvent`; an exception raised there stops
            the run with every finished batch recorded.
        cache_dir: adversarial-example cache (default ``out/cache``; none without ``out``).
        n_examples: samples of the first batch kept as report examples.
        class_names: names of the classes for the examples (default: ImageNet names when the
            classifier has 1000 outputs).
        experiment: the experiment options, stored in ``config`` to rerun it.
        report: also write ``report.md`` and ``report.html`` into ``out``.
        workers: ``DataLoader`` worker processes decoding the images ahead of the loop (0: in
            this process); batches are pinned in memory when ``device`` is a GPU.
        shard: this process's share of a sharded run (default: read from the torchrun
            environment, ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``; a single process without it).
            Under torchrun the ranks join a process group (NCCL on GPUs, gloo on the CPU) for
            the final barrier only, ``device="cuda"`` means ``cuda:LOCAL_RANK``, each rank
            writes ``out/samples-RANK-of-WORLD.jsonl``, and rank 0 merges them.
        precision: arithmetic of every defense's super-resolution stages in the passes without
            an input gradient (scoring): ``"fp32"``, ``"bf16"``, ``"fp16"`` or ``"auto"`` (set
            on the stages of the defenses, given objects included). Not fp32, the fidelity
            against fp32 on the first batch is recorded in ``config["precision_fidelity"]``.
        attack_precision: the same for white-box attack gradients through a defense (default
            fp32; ``"auto"`` is fp32 for gradients).

    Returns:
        The :class:`Results` (on every rank of a sharded run, the merged ones).

    Raises:
        ConfigError: unknown names, bad values, or ``resume`` on a different run.
        EmptyEvaluationError: no sample could be evaluated.
    """
    if resume and out is None:
        raise ConfigError("resume: needs an output folder (out)")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size: expected an integer >= 1, got {batch_size!r}")
    shard = shard if shard is not None else shard_from_env()
    dev = resolve_shard_device(shard, device)
    created = init_process_group(shard, dev)
    try:
        return _evaluate(
            classifier,
            defenses,
            attacks,
            data,
            eps=eps,
            setting=setting,
            adaptive_attacks=adaptive_attacks,
            eot_samples=eot_samples,
            eval_draws=eval_draws,
            card=card,
            resolution=resolution,
            batch_size=batch_size,
            device=dev,
            seed=seed,
            out=out,
            resume=resume,
            progress=progress,
            cache_dir=cache_dir,
            n_examples=n_examples,
            class_names=class_names,
            experiment=experiment,
            report=report,
            workers=workers,
            shard=shard,
            precision=precision,
            attack_precision=attack_precision,
        )
    finally:
        if created:
            destroy_process_group()


def _evaluate(
    classifier: nn.Module | str,
    defenses: Mapping[str, Purifier | str] | Iterable[Purifier | str],
    attacks: Iterable[Any],
    data: Any,
    *,
    device: torch.device,
    setting: str | Sequence[str],
    experiment: Mapping[str, Any] | None,
    out: str | Path | None,
    resume: bool,
    progress: ProgressCallback | None,
    cache_dir: str | Path | None,
    n_examples: int,
    class_names: Sequence[str] | None,
    report: bool,
    workers: int,
    shard: Shard,
    **plan_kw: Any,
) -> Results:
    dev = device
    if isinstance(classifier, str):
        try:
            classifier = create_classifier(classifier, device=dev)
        except KeyError as exc:
            raise ConfigError(exc.args[0] if exc.args else str(exc)) from None
    settings = [setting] if isinstance(setting, str) else list(setting)
    plan = build_plan(
        classifier,
        defenses,
        attacks,
        data_ids=data_ids(data),
        data_n=data_size(data),
        settings=settings,
        device=dev,
        **plan_kw,
    )
    if experiment is not None:
        plan.config["experiment"] = _jsonable(dict(experiment))
    return run_plan(
        plan,
        data,
        out=out,
        resume=resume,
        progress=progress,
        cache_dir=cache_dir,
        n_examples=n_examples,
        class_names=class_names,
        report=report,
        workers=workers,
        shard=shard,
    )


def run_plan(
    plan: Plan,
    data: Any,
    *,
    out: str | Path | None = None,
    resume: bool = False,
    progress: ProgressCallback | None = None,
    cache_dir: str | Path | None = None,
    n_examples: int = 4,
    class_names: Sequence[str] | None = None,
    report: bool = False,
    workers: int = 0,
    shard: Shard | None = None,
) -> Results:
    """The batch loop of :func:`evaluate` over a built :class:`Plan`, for one rank's share.

    ``shard`` (default: a single process) names the batch windows this process evaluates; rank
    0 also does the first-batch work (classifier checks, report examples, the card's inputs),
    and, after a barrier, merges every rank's records into ``results.json`` (:mod:`.merge`).
    Other ranks wait for that merge and return the merged results; without a process group
    (ranks run one after another) they return the results of their own share.
    """
    shard = shard or Shard()
    if shard.world > 1 and out is None:
        raise ConfigError("a sharded evaluation (world size > 1) needs an output folder (out)")
    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 0:
        raise ConfigError(f"workers: expected an integer >= 0, got {workers!r}")
    out_dir = Path(out) if out is not None else None
    cache = AdversarialCache(cache_dir if cache_dir is not None else (out_dir / "cache" if out_dir else None))
    log = ShardLog(out_dir, plan.run_id, shard, resume=resume)
    if out_dir is not None and shard.leader:
        write_run_file(out_dir, plan.config, shard.world)
    names = list(class_names) if class_names is not None else None
    total = data_size(data)
    n_windows = None if total is None else (total + plan.batch_size - 1) // plan.batch_size
    timing: dict[str, float] = {k: 0.0 for k in plan.defenses} | {"attacks": 0.0, "card": 0.0}
    warnings: list[dict[str, str]] = []  # this rank's own (cache); the classifier's are rank 0's
    class_warnings: list[dict[str, str]] = []
    examples: list[dict[str, Any]] = []
    attacker = Attacker(plan, cache, timing)
    n_units = sum(len(plan.runs[s]) * (len(plan.defenses) if plan.adaptive(s) else 1) for s in plan.settings)
    mine = shard.windows(n_windows) if n_windows is not None else None
    ev_common: dict[str, Any] = {
        "n_batches": len(mine) if mine is not None else None,
        "total": total,
        "n_attacks": n_units,
        "n_defenses": len(plan.defenses),
    }
    card_inputs = CardInputs()

    def emit(stage: str, **kw: Any) -> None:
        if progress is not None:
            progress(ProgressEvent(stage=stage, **ev_common, **kw))

    t_start = time.perf_counter()
    try:
        emit("start", done=len(log.done_ids))
        if shard.leader:
            first = first_batch(data, plan.batch_size)
            if first is not None:
                attacker.enter(first.index)
                x = first.images.to(plan.device)
                y = first.labels.to(plan.device)
                class_warnings = check_classifier(plan.classifier, x, y)
                if plan.precision != "fp32":  # what the reduced precision costs, on this batch
                    from .fidelity import measure_fidelity

                    plan.config["precision_fidelity"] = measure_fidelity(plan, attacker, x, y, first.ids)
                names = names if names is not None else _default_class_names(plan.classifier)
                if n_examples > 0:
                    examples = make_examples(plan, attacker, first, x, y, n_examples, names)
                    if out_dir is not None:
                        save_examples(out_dir, examples)
                if plan.card:
                    t0 = time.perf_counter()
                    card_inputs = card_batch_checks(plan, attacker, x, y, first.ids)
                    timing["card"] += time.perf_counter() - t0
                    emit("card", batch=first.index, done=len(log.done_ids))
                if out_dir is not None:
                    write_run_file(
                        out_dir, plan.config, shard.world, class_warnings, card_inputs, first_batch=True
                    )
        pin = plan.device.type == "cuda"
        if mine is None:  # an iterable without a length: read it all, keep this rank's windows
            source = iter_stream(data, plan.batch_size, lambda w: shard.owns(w) and not log.done(w))
        else:
            for w in mine:
                if log.done(w):
                    emit("skip", batch=w, done=len(log.done_ids))
            todo = [w for w in mine if not log.done(w)]
            source = iter_windows(data, plan.batch_size, todo, workers=workers, pin_memory=pin)
        for batch in source:
            if not batch.ids:
                log.skip(batch.skipped)
                continue
            attacker.enter(batch.index)
            x = batch.images.to(plan.device, non_blocking=pin)
            y = batch.labels.to(plan.device, non_blocking=pin)
            new = _evaluate_batch(plan, attacker, batch, x, y, plan.run_id, timing, emit, len(log.done_ids))
            log.add(new, batch.skipped)
            emit("batch", batch=batch.index, done=len(log.done_ids))
        for path, reason in cache.rejected:
            warnings.append(
                {"check": "cache", "message": f"cache entry {path} rejected ({reason}); recomputed"}
            )
        run = {
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "seconds": time.perf_counter() - t_start,
            "seconds_per_stage": timing,
            "resumed_samples": log.resumed,
            "attack_cache_hits": cache.hits,
            "attack_cache_misses": cache.misses,
        }
        log.save_state(warnings, run, complete=True)
    finally:
        log.close()

    if out_dir is None or not (shard.leader or shard.group):
        # in memory: no run folder, or a rank without a process group (the results of its share)
        data_warnings = [{"check": "data", "message": m} for _, m in sorted(log.state.skipped.items())]
        results = build_results(
            plan.config,
            log.records,
            card=card_inputs if plan.card else None,
            warnings=class_warnings + log.resume_warnings + warnings,
            data_warnings=data_warnings,
            run=run,
            examples=examples,
        )
    else:
        barrier(shard, plan.device)
        if shard.leader:
            results = merge_run(out_dir, report=report, examples=examples)
        barrier(shard, plan.device)
        if not shard.leader:
            results = Results.load(out_dir)
    emit("done", done=len(results.records))
    return results


def _default_class_names(classifier: nn.Module) -> list[str] | None:
    cfg = getattr(classifier, "cfg", None)
    if (
        cfg is None
        or getattr(cfg, "label_set", None) != "imagenet"
        or getattr(cfg, "num_classes", None) != 1000
    ):
        return None
    try:
        return list(imagenet_classes())
    except Exception:  # noqa: BLE001 - names are cosmetic
        return None


def _evaluate_batch(
    plan: Plan,
    attacker: Attacker,
    batch: Batch,
    x: Tensor,
    y: Tensor,
    run_id: str,
    timing: dict[str, float],
    emit: Callable[..., None],
    done: int,
) -> list[SampleRecord]:
    n = x.shape[0]
    with torch.no_grad():
        clean_pred = plan.classifier(x).argmax(1).tolist()
    recs = [
        SampleRecord(
            run=run_id,
            index=batch.positions[i],
            id=batch.ids[i],
            label=int(batch.labels[i]),
            batch=batch.index,
            batch_n=n,
            classifier_clean=int(clean_pred[i]),
            adv={s: {r.key: {} for r in plan.runs[s]} for s in plan.settings},
            perturbation={s: {r.key: {} for r in plan.runs[s]} for s in plan.settings},
        )
        for i in range(n)
    ]
    # clean images through every defense
    for name in plan.defenses:
        t0 = time.perf_counter()
        scorer = plan.target(plan.settings[0], name).scorer
        preds, xp = score(plan, name, scorer, x, batch.ids, "clean")
        if xp.numel():
            ref = quality_reference(x, (int(xp.shape[-2]), int(xp.shape[-1])))
            ps = psnr(xp, ref).tolist()
            try:
                ss = ssim(xp, ref).tolist()
            except ValueError:  # images smaller than the 11x11 window
                ss = [float("nan")] * n
        else:  # a randomised defense whose draws differ in size: no pixel comparison
            ps = ss = [float("nan")] * n
        for i in range(n):
            recs[i].clean[name] = preds[i]
            recs[i].quality[name] = Quality(finite_or_none(ps[i]), finite_or_none(ss[i]))
        timing[name] += time.perf_counter() - t0
    # adversarial images, per setting
    for setting in plan.settings:
        for run in plan.runs[setting]:
            bare: tuple[Tensor, list[float], list[float], list[int]] | None = None  # norms, bare prediction
            for name in plan.defenses:
                target = plan.target(setting, name)
                adv, cached = attacker(target, run, x, y, batch.ids)
                if plan.adaptive(setting) or name == next(iter(plan.defenses)):
                    emit(
                        "attack",
                        batch=batch.index,
                        done=done,
                        attack=f"{setting}/{run.key}",
                        defense=name if plan.adaptive(setting) else None,
                        cached=cached,
                    )
                t0 = time.perf_counter()
                if bare is None or bare[0] is not adv:  # a gray-box example serves every defense
                    delta = (adv - x).flatten(1).double()
                    with torch.no_grad():
                        undefended_pred = plan.classifier(adv).argmax(1).tolist()
                    bare = (adv, delta.abs().amax(1).tolist(), delta.norm(dim=1).tolist(), undefended_pred)
                _, linf, l2, undefended = bare
                preds, _ = score(plan, name, target.scorer, adv, batch.ids, f"{setting}/{run.key}")
                for i in range(n):
                    recs[i].adv[setting][run.key][name] = preds[i]
                    recs[i].perturbation[setting][run.key][name] = Perturbation(
                        linf[i], l2[i], int(undefended[i])
                    )
                timing[name] += time.perf_counter() - t0
    for name in plan.defenses:
        emit("defense", batch=batch.index, done=done, defense=name)
    return recs
