"""Typed request parameters and response bodies of the service (pydantic models)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

Resolution = Literal["purified", "native", "2x"]  # "2x": the old name of "purified"
AttackMethod = Literal["fgsm", "pgd"]


class ErrorDetail(BaseModel):
    """What went wrong."""

    status: int = Field(description="HTTP status")
    code: str = Field(description="stable machine-readable code, e.g. unknown_defense")
    message: str = Field(description="what went wrong and what was expected")


class ErrorResponse(BaseModel):
    """The body of every error response."""

    error: ErrorDetail


class Prediction(BaseModel):
    """One class of a top-k list."""

    rank: int
    index: int
    name: str
    wnid: str | None
    probability: float


class Timings(BaseModel):
    """Milliseconds per stage. Stages run in batches: their time is that of the whole batch."""

    decode_ms: float = Field(description="reading the upload and preprocessing it")
    queue_ms: float = Field(description="waiting for the worker and the batch to fill")
    classify_ms: float | None = Field(default=None, description="the undefended classifier (whole batch)")
    purify_ms: float | None = Field(default=None, description="the defense (whole batch)")
    classify_defended_ms: float | None = Field(default=None, description="the classifier on purified images")
    attack_ms: float | None = Field(default=None, description="crafting the attack (whole batch)")
    batch_size: int = Field(description="images in the batch this request ran in")
    total_ms: float


class ClassifyResponse(BaseModel):
    """Top-k predictions without and with the defense."""

    classifier: str
    defense: str
    input_size: tuple[int, int] = Field(description="(H, W) the classifier was given without the defense")
    purified_size: tuple[int, int] = Field(description="(H, W) of the purified image")
    without_defense: list[Prediction]
    with_defense: list[Prediction]
    timings: Timings
    input_png: str | None = Field(None, description="the preprocessed input, base64 PNG (images=true)")
    purified_png: str | None = Field(None, description="the purified input, base64 PNG (images=true)")


class PredictionPair(BaseModel):
    """Top-k predictions of one image, without and with the defense."""

    without_defense: list[Prediction]
    with_defense: list[Prediction]


class Verdict(BaseModel):
    """Whether a classifier still gives the reference class on the adversarial image."""

    correct: bool
    predicted: Prediction


class AttackResponse(BaseModel):
    """An attack on the undefended classifier, and what the defense does to it."""

    classifier: str
    defense: str
    method: AttackMethod
    eps: float
    steps: int
    reference: Prediction = Field(
        description="the class the attack moves away from: the given label, else the undefended "
        "classifier's top-1 on the clean image"
    )
    reference_source: Literal["label", "clean prediction"]
    linf: float = Field(description="Linf norm of the perturbation actually applied (8-bit image)")
    clean: PredictionPair
    adversarial: PredictionPair
    undefended: Verdict = Field(description="the undefended classifier on the adversarial image")
    defended: Verdict = Field(description="the defended classifier on the adversarial image")
    input_png: str = Field(description="the clean preprocessed input (8-bit), base64 PNG")
    adversarial_png: str = Field(description="the adversarial image (8-bit, as classified), base64 PNG")
    perturbation_png: str = Field(description="0.5 + perturbation / (2 eps): the perturbation amplified")
    timings: Timings


class DefenseEntry(BaseModel):
    """A registered defense."""

    name: str
    description: str
    differentiable: bool
    randomized: bool
    parameters: dict[str, str] = Field(description="parameter defaults, as text")


class ClassifierInfo(BaseModel):
    """The classifier the server loaded."""

    name: str
    architecture: str
    input_size: tuple[int, int, int]
    num_classes: int
    label_set: str
    source: str
    license: str


class Limits(BaseModel):
    """The server's limits."""

    max_upload_mb: float
    max_pixels: int
    max_batch: int
    max_wait_ms: float
    max_eps: float
    max_eps_255: float = Field(description="max_eps in 0..255 units")
    max_steps: int
    max_top_k: int
    attacks: list[str]


class ModelsResponse(BaseModel):
    """What ``GET /v1/models`` reports."""

    classifier: ClassifierInfo
    default_defense: str
    defenses: list[DefenseEntry]
    resolutions: list[str]
    limits: Limits
    device: str


class Health(BaseModel):
    """What ``GET /healthz`` reports."""

    status: Literal["ok", "stopping"]
    worker: bool
    queue_length: int
    api_key_required: bool
