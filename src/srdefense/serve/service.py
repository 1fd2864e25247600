"""The service's work, kept out of the route functions: decode, validate, batch, compute, answer.

:class:`Engine` owns the classifier and the loaded defenses and computes whole batches; only
the worker thread calls it. :class:`PurificationService` is what the routes call: it checks
the parameters against the limits, decodes the upload in a thread pool, queues the job on the
:class:`~srdefense.serve.batching.BatchWorker` and builds the typed response.

How images of different sizes are batched:

- ``/v1/classify`` and ``/v1/attack`` preprocess every image to the classifier's input size
  (resize the shorter side, centre crop, as ``srdefense classify`` does), so any mix of sizes
  shares one batch (per defense and parameters).
- ``/v1/purify`` returns the purified image at the upload's own size (2x for the paper
  defense), so its batches are grouped by image size: only equal-sized images share a batch.
"""

from __future__ import annotations

import base64
import inspect
import math
import time
from collections.abc import Hashable
from typing import TYPE_CHECKING, Any, cast

import torch
from starlette.concurrency import run_in_threadpool
from torch import Tensor, nn

from .._eps import parse_fraction
from ..data.io import ImageReadError, ImageTooLargeError, NotAnImageError, decode_image, encode_png
from ..data.transforms import preprocess
from ..models import create_classifier
from ..models.imagenet import imagenet_classes, imagenet_wnids
from ..purification.compose import RESOLUTION_ALIASES
from ..purification.compose import RESOLUTIONS as _RESOLUTIONS
from ..purification.registry import DEFENSES, list_defenses, parse_defense_spec
from .batching import BatchWorker, WorkerStoppedError
from .config import SERVICE_ATTACKS, ServeConfig
from .engine import (
    AttackKey,
    ClassifyKey,
    Engine,
    PurifyKey,
    _AttackJob,
    _ClassifyJob,
    _grid,
    kind_of,
    quantize_within,  # noqa: F401  (re-exported: its tests import it from here)
)
from .errors import ServiceError
from .schemas import (
    AttackResponse,
    ClassifierInfo,
    ClassifyResponse,
    DefenseEntry,
    Health,
    Limits,
    ModelsResponse,
    Prediction,
    PredictionPair,
    Timings,
    Verdict,
)

if TYPE_CHECKING:
    from ..models.cfg import ClassifierCfg

RESOLUTIONS = (*_RESOLUTIONS, *RESOLUTION_ALIASES)  # "purified", "native", and "2x" (alias of "purified")


def _b64png(image: Tensor) -> str:
    return base64.b64encode(encode_png(image)).decode("ascii")


def parse_eps(text: str) -> float:
    """Parse ``eps`` given as a number (``0.0157``) or a fraction (``4/255``).

    Raises:
        ServiceError: 422 when it is neither.
    """
    try:
        value = parse_fraction(text)
    except (ValueError, ZeroDivisionError):
        raise ServiceError(
            422, "invalid_parameter", f"eps: expected a number such as 0.0157 or 4/255, got {text!r}"
        ) from None
    return value


class PurificationService:
    """The purification service: what the HTTP routes call.

    Args:
        config: the settings.
        classifier: a classifier to use instead of building ``config.classifier`` (tests
            pass a small stand-in); it needs a ``.cfg`` like :func:`srdefense.create_classifier`'s.
    """

    def __init__(self, config: ServeConfig, classifier: nn.Module | None = None) -> None:
        self.config = config
        self._given_classifier = classifier
        self.device = torch.device(config.device)
        self.engine: Engine | None = None
        self.worker: BatchWorker | None = None
        self.metrics: Any = None
        self._names: list[str] = []
        self._wnids: list[str] = []
        self.stopping = False

    # -- life cycle
    def start(self, metrics: Any = None) -> None:
        """Load the classifier and the default defense once, then start the worker thread.

        Raises:
            ValueError: naming ``--defense`` when the default defense cannot be built.
        """
        self.metrics = metrics
        model = self._given_classifier
        if model is None:
            model = create_classifier(self.config.classifier, weights=self.config.classifier_weights)
        model = model.to(self.device).eval()
        cfg = cast("ClassifierCfg", model.cfg)  # a classifier carries its ClassifierCfg
        if cfg.label_set == "imagenet" and cfg.num_classes == 1000:
            self._names, self._wnids = imagenet_classes(), imagenet_wnids()
        self.engine = Engine(model, self.config, self.device)
        try:
            self.check_defense(self.config.defense, None)
            self.engine.defense(self.config.defense, None)  # loaded now, not on the first request
        except ServiceError as exc:
            raise ValueError(f"--defense {self.config.defense}: {exc.message}") from None

        def on_batch(key: Hashable, size: int, seconds: float) -> None:
            if self.metrics is not None:
                self.metrics.observe_batch(kind_of(key), size, seconds)

        self.worker = BatchWorker(
            self.engine.run,
            max_batch=self.config.max_batch,
            max_wait_s=self.config.max_wait_ms / 1000,
            on_batch=on_batch,
        )
        self.worker.start()

    def stop(self) -> None:
        """Finish the queued jobs and stop the worker."""
        self.stopping = True
        if self.worker is not None:
            self.worker.stop()

    @property
    def queue_length(self) -> int:
        """Jobs waiting for the worker."""
        return 0 if self.worker is None else self.worker.queue_length

    @property
    def classifier_cfg(self) -> Any:
        """The loaded classifier's metadata."""
        assert self.engine is not None, "the service is not started"
        return self.engine.classifier.cfg

    # -- checks (cheap, before anything is queued)
    def check_defense(self, spec: str, resolution: str | None) -> str:
        """Check that ``spec`` names a registered defense that takes ``resolution``; return it.

        Raises:
            ServiceError: 422 naming the known defenses or the accepted parameters.
        """
        spec = spec.strip()
        try:
            name, params = parse_defense_spec(spec)
            info = DEFENSES.get(name)
        except KeyError as exc:
            raise ServiceError(422, "unknown_defense", exc.args[0]) from None
        except ValueError as exc:
            raise ServiceError(422, "bad_defense", str(exc)) from None
        accepted = inspect.signature(info.factory).parameters
        unknown = [k for k in params if k not in accepted]
        if unknown:
            known = ", ".join(accepted) or "(none)"
            raise ServiceError(
                422, "bad_defense", f"defense {name!r}: unknown parameter(s) {unknown}; accepted: {known}"
            )
        if resolution is not None:
            if resolution not in RESOLUTIONS:
                raise ServiceError(
                    422,
                    "invalid_parameter",
                    f"resolution: expected one of {', '.join(RESOLUTIONS)}, got {resolution!r}",
                )
            if "resolution" not in accepted:
                raise ServiceError(
                    422,
                    "bad_defense",
                    f"resolution: defense {name!r} has no resolution policy (it keeps the input size)",
                )
        return spec

    def _check_top_k(self, top_k: int) -> int:
        if not 1 <= top_k <= self.config.max_top_k:
            raise ServiceError(
                422,
                "invalid_parameter",
                f"top_k: expected 1..{self.config.max_top_k} (the server's limit), got {top_k}",
            )
        return top_k

    def _check_attack(self, method: str, eps: float, steps: int) -> tuple[str, float, int]:
        c = self.config
        if method not in SERVICE_ATTACKS:
            raise ServiceError(
                422,
                "invalid_parameter",
                f"method: expected one of {', '.join(SERVICE_ATTACKS)}, got {method!r}",
            )
        if not math.isfinite(eps) or not 0 < eps <= c.max_eps + 1e-12:
            raise ServiceError(
                422,
                "limit_exceeded",
                f"eps: expected 0 < eps <= {c.max_eps:.6g} ({c.max_eps * 255:g}/255, the server's "
                f"--max-eps), got {eps:.6g}",
            )
        if method == "fgsm":
            return method, eps, 1
        if not 1 <= steps <= c.max_steps:
            raise ServiceError(
                422,
                "limit_exceeded",
                f"steps: expected 1..{c.max_steps} (the server's --max-steps), got {steps}",
            )
        return method, eps, steps

    # -- the steps of a request
    def _decode(self, data: bytes) -> Tensor:
        try:
            return decode_image(data, name="upload", max_pixels=self.config.max_pixels)
        except ImageTooLargeError as exc:
            raise ServiceError(413, "image_too_large", str(exc)) from None
        except NotAnImageError:
            raise ServiceError(
                415,
                "unsupported_media_type",
                "the upload is not an image: expected an image file Pillow reads "
                "(PNG, JPEG, WebP, GIF, BMP, TIFF, ...)",
            ) from None
        except ImageReadError as exc:
            raise ServiceError(422, "unreadable_image", str(exc)) from None

    def _preprocess(self, data: bytes) -> Tensor:
        cfg = self.classifier_cfg
        image = self._decode(data)
        return preprocess(image, cfg.input_size[-1], cfg.crop_pct, interpolation=cfg.interpolation)

    async def _submit(self, key: Hashable, payload: Any) -> tuple[dict[str, Any], float]:
        if self.worker is None or self.stopping:
            raise ServiceError(503, "unavailable", "the server is shutting down")
        t0 = time.monotonic()
        try:
            result = await self.worker.submit(key, payload)
        except ServiceError:
            raise
        except WorkerStoppedError:
            raise ServiceError(503, "unavailable", "the server is shutting down") from None
        except Exception as exc:
            raise ServiceError(500, "internal_error", f"{type(exc).__name__}: {exc}") from exc
        return result, max(0.0, (result["started"] - t0) * 1000)

    def _top(self, probs: Tensor, k: int) -> list[Prediction]:
        top = probs.topk(min(k, probs.numel()))
        named = len(self._names) == probs.numel()
        return [
            Prediction(
                rank=r,
                index=i,
                name=self._names[i] if named else str(i),
                wnid=self._wnids[i] if named else None,
                probability=round(float(p), 6),
            )
            for r, (p, i) in enumerate(zip(top.values.tolist(), top.indices.tolist(), strict=True), 1)
        ]

    def _prediction(self, probs: Tensor, index: int) -> Prediction:
        named = len(self._names) == probs.numel()
        rank = int((probs > probs[index]).sum()) + 1
        return Prediction(
            rank=rank,
            index=index,
            name=self._names[index] if named else str(index),
            wnid=self._wnids[index] if named else None,
            probability=round(float(probs[index]), 6),
        )

    # -- endpoints
    async def purify(
        self, data: bytes, defense: str | None, resolution: str | None
    ) -> tuple[bytes, dict[str, str]]:
        """Purify an uploaded image; return the PNG and response headers (sizes, timings)."""
        spec = self.check_defense(defense or self.config.defense, resolution)
        t0 = time.perf_counter()
        image = await run_in_threadpool(self._decode, data)
        decode_ms = (time.perf_counter() - t0) * 1000
        key = PurifyKey(spec, resolution, (int(image.shape[1]), int(image.shape[2])))
        result, queue_ms = await self._submit(key, image)
        png = await run_in_threadpool(encode_png, result["image"])
        h, w = result["image"].shape[-2:]
        timing = f"decode;dur={decode_ms:.1f}, queue;dur={queue_ms:.1f}, purify;dur={result['purify_ms']:.1f}"
        return png, {
            "X-Defense": spec,
            "X-Image-Size": f"{image.shape[2]}x{image.shape[1]}",
            "X-Purified-Size": f"{w}x{h}",
            "X-Batch-Size": str(result["batch_size"]),
            "Server-Timing": timing,
        }

    async def classify(
        self, data: bytes, defense: str | None, resolution: str | None, top_k: int, images: bool
    ) -> ClassifyResponse:
        """Top-k predictions of an uploaded image without and with the defense."""
        spec = self.check_defense(defense or self.config.defense, resolution)
        k = self._check_top_k(top_k)
        t0 = time.perf_counter()
        x = await run_in_threadpool(self._preprocess, data)
        decode_ms = (time.perf_counter() - t0) * 1000
        r, queue_ms = await self._submit(ClassifyKey(spec, resolution), _ClassifyJob(x, images))
        input_png = purified_png = None
        if images:
            input_png = await run_in_threadpool(_b64png, x)
            purified_png = await run_in_threadpool(_b64png, r["purified"])
        return ClassifyResponse(
            classifier=self.classifier_cfg.name,
            defense=spec,
            input_size=r["input_size"],
            purified_size=r["purified_size"],
            without_defense=self._top(r["plain"], k),
            with_defense=self._top(r["defended"], k),
            timings=Timings(
                decode_ms=round(decode_ms, 2),
                queue_ms=round(queue_ms, 2),
                classify_ms=round(r["classify_ms"], 2),
                purify_ms=round(r["purify_ms"], 2),
                classify_defended_ms=round(r["classify_defended_ms"], 2),
                batch_size=r["batch_size"],
                total_ms=round((time.perf_counter() - t0) * 1000, 2),
            ),
            input_png=input_png,
            purified_png=purified_png,
        )

    async def attack(
        self,
        data: bytes,
        *,
        defense: str | None,
        resolution: str | None,
        method: str,
        eps: str,
        steps: int,
        top_k: int,
        label: int | None,
        seed: int,
    ) -> AttackResponse:
        """Attack the undefended classifier on an upload; classify both images without and with defense."""
        spec = self.check_defense(defense or self.config.defense, resolution)
        k = self._check_top_k(top_k)
        method, eps_value, steps = self._check_attack(method, parse_eps(eps), steps)
        n_classes = self.classifier_cfg.num_classes
        if label is not None and not 0 <= label < n_classes:
            raise ServiceError(
                422, "invalid_parameter", f"label: expected a class index 0..{n_classes - 1}, got {label}"
            )
        t0 = time.perf_counter()
        x = await run_in_threadpool(lambda: _grid(self._preprocess(data)))
        decode_ms = (time.perf_counter() - t0) * 1000
        key = AttackKey(spec, resolution, method, eps_value, steps, seed)
        r, queue_ms = await self._submit(key, _AttackJob(x, label))
        delta = r["adversarial"] - r["image"]

        def encode() -> tuple[str, str, str]:
            return _b64png(r["image"]), _b64png(r["adversarial"]), _b64png(0.5 + delta / (2 * eps_value))

        input_png, adv_png, pert_png = await run_in_threadpool(encode)
        ref = r["label"]
        adv_plain_top = int(r["adv_plain"].argmax())
        adv_def_top = int(r["adv_defended"].argmax())
        return AttackResponse(
            classifier=self.classifier_cfg.name,
            defense=spec,
            method=method,  # type: ignore[arg-type]
            eps=eps_value,
            steps=steps,
            reference=self._prediction(r["clean_plain"], ref),
            reference_source="label" if label is not None else "clean prediction",
            linf=round(float(delta.abs().max()), 6),
            clean=PredictionPair(
                without_defense=self._top(r["clean_plain"], k), with_defense=self._top(r["clean_defended"], k)
            ),
            adversarial=PredictionPair(
                without_defense=self._top(r["adv_plain"], k), with_defense=self._top(r["adv_defended"], k)
            ),
            undefended=Verdict(
                correct=adv_plain_top == ref, predicted=self._prediction(r["adv_plain"], adv_plain_top)
            ),
            defended=Verdict(
                correct=adv_def_top == ref, predicted=self._prediction(r["adv_defended"], adv_def_top)
            ),
            input_png=input_png,
            adversarial_png=adv_png,
            perturbation_png=pert_png,
            timings=Timings(
                decode_ms=round(decode_ms, 2),
                queue_ms=round(queue_ms, 2),
                attack_ms=round(r["attack_ms"], 2),
                purify_ms=round(r["purify_ms"], 2),
                classify_defended_ms=round(r["classify_defended_ms"], 2),
                batch_size=r["batch_size"],
                total_ms=round((time.perf_counter() - t0) * 1000, 2),
            ),
        )

    def models(self) -> ModelsResponse:
        """The classifier, the defenses and the limits."""
        cfg = self.classifier_cfg
        c = self.config
        return ModelsResponse(
            classifier=ClassifierInfo(
                name=cfg.name,
                architecture=cfg.architecture,
                input_size=cfg.input_size,
                num_classes=cfg.num_classes,
                label_set=cfg.label_set,
                source=cfg.source,
                license=cfg.license,
            ),
            default_defense=c.defense,
            defenses=[
                DefenseEntry(
                    name=d.name,
                    description=d.description,
                    differentiable=d.differentiable,
                    randomized=d.randomized,
                    parameters={k: repr(v) for k, v in d.defaults.items()},
                )
                for d in list_defenses()
            ],
            resolutions=list(RESOLUTIONS),
            limits=Limits(
                max_upload_mb=c.max_upload_mb,
                max_pixels=c.max_pixels,
                max_batch=c.max_batch,
                max_wait_ms=c.max_wait_ms,
                max_eps=c.max_eps,
                max_eps_255=round(c.max_eps * 255, 4),
                max_steps=c.max_steps,
                max_top_k=c.max_top_k,
                attacks=list(SERVICE_ATTACKS),
            ),
            device=str(self.device),
        )

    def health(self) -> Health:
        """Liveness and queue length."""
        alive = self.worker is not None and self.worker.running
        return Health(
            status="stopping" if self.stopping else "ok",
            worker=alive,
            queue_length=self.queue_length,
            api_key_required=bool(self.config.api_key),
        )
