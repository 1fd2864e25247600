"""The gradient-masking report card: per defense, the signs that an attack may have been too weak.

After Athalye et al. (ICML 2018), Carlini et al. ("On Evaluating Adversarial Robustness",
2019) and AutoAttack's ``checks.py``. Each entry says what was measured, whether it raises a
flag, what the flag means and what to try next:

- ``randomness``: several forward passes with different draws disagree, but the defense was not
  declared randomised (or the reverse);
- ``gradients``: share of zero or non-finite input gradients at the clean images, through the
  module each adaptive setting attacks;
- ``eps-sweep``: accuracy must fall as eps grows, and reach at most 1% at a large budget
  (PGD at 64/255 on the card's samples);
- ``iterations``: doubling the iterations of an iterative attack must not lower accuracy by
  more than the 95% interval (else the attack had not converged);
- ``black-box``: a gradient-free attack (Square) succeeds where every gradient attack failed;
- ``gray-vs-white``: a gray-box example fools the defense where the adaptive attack did not.

The checks that need tensors run on the first batch (at most :data:`CARD_SAMPLES` samples);
the others are read off the per-sample records.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from ..attacks import create_attack
from ..purification.base import NoGradientError
from .plan import AttackRun, Plan, _seed_of
from .records import SampleRecord
from .scoring import score, seeded
from .stats import wilson_interval

CARD_SAMPLES = 8
"""Samples of the first batch on which the card's own attacks run."""
LARGE_EPS = 64 / 255
"""The large Linf budget at which accuracy must be at most :data:`LARGE_EPS_MAX_ACCURACY`."""
LARGE_EPS_MAX_ACCURACY = 0.01
CARD_STEPS = 10
"""Steps of the card's PGD at the large budget."""
GRADIENT_FREE = ("square",)
"""Attack names that use no gradient (the black-box check compares them with the others)."""


@dataclass
class CardInputs:
    """What the first batch measured for the card (keys are ``(setting, defense[, key])``)."""

    n: int = 0
    randomness: dict[str, dict[str, Any]] = field(default_factory=dict)
    gradients: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    large_eps: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    iterations: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)


def _adaptive_settings(plan: Plan) -> list[str]:
    return [s for s in plan.settings if plan.adaptive(s)]


def _strict_accuracy(
    plan: Plan, defense: str, scorer: nn.Module, x: Tensor, y: Tensor, ids: list[str], kind: str
) -> float:
    preds, _ = score(plan, defense, scorer, x, ids, kind)
    ok = [all(p == int(t) for p in ps) for ps, t in zip(preds, y.tolist(), strict=True)]
    return sum(ok) / len(ok) if ok else float("nan")


def card_batch_checks(
    plan: Plan,
    attacker: Callable[..., tuple[Tensor, bool]],
    x: Tensor,
    y: Tensor,
    ids: list[str],
) -> CardInputs:
    """The card's measurements on (a part of) the first batch."""
    m = min(CARD_SAMPLES, x.shape[0])
    xs, ys, sids = x[:m], y[:m], ids[:m]
    out = CardInputs(n=m)
    adaptive = _adaptive_settings(plan)
    for name, purifier in plan.defenses.items():
        with torch.no_grad():
            with seeded(purifier, _seed_of("card-a", plan.seed, name), x.device):
                a = purifier(xs)
            with seeded(purifier, _seed_of("card-b", plan.seed, name), x.device):
                b = purifier(xs)
        diff = float((a.double() - b.double()).abs().max()) if a.shape == b.shape else float("inf")
        out.randomness[name] = {"declared": bool(purifier.randomized), "detected": diff > 0, "max_diff": diff}
        for s in adaptive or ["white-box"]:
            target = plan.target(s, name)
            v = xs.detach().clone().requires_grad_(True)
            entry: dict[str, Any] = {"n": m}
            try:
                with (
                    torch.enable_grad(),
                    seeded(target.module, _seed_of("card-g", plan.seed, name, s), x.device),
                ):
                    logits = target.module(v)
                    loss = nn.functional.cross_entropy(logits, ys, reduction="sum")
                    (g,) = torch.autograd.grad(loss, v)
                rows = g.flatten(1)
                entry["zero"] = int((rows.abs().sum(1) == 0).sum())
                entry["nonfinite"] = int((~torch.isfinite(rows)).any(1).sum())
            except (NoGradientError, RuntimeError) as exc:
                entry["error"] = str(exc)
            out.gradients[(s, name)] = entry
        for s in adaptive:
            target = plan.target(s, name)
            big = create_attack("pgd", eps=LARGE_EPS, steps=CARD_STEPS)
            run = AttackRun(key=f"card-pgd@{LARGE_EPS:.6f}", name="pgd", eps=LARGE_EPS, attack=big, spec=None)
            adv, _ = attacker(target, run, xs, ys, sids)
            acc = _strict_accuracy(plan, name, target.scorer, adv, ys, sids, f"card/{s}/large-eps")
            out.large_eps[(s, name)] = {"eps": LARGE_EPS, "steps": CARD_STEPS, "accuracy": acc, "n": m}
            for run0 in plan.runs[s]:
                steps = getattr(run0.attack, "steps", None)
                if not isinstance(steps, int) or steps < 2 or run0.eps is None:
                    continue
                attack2 = copy.copy(run0.attack)
                attack2.steps = 2 * steps
                run2 = AttackRun(
                    key=f"{run0.key}~2x", name=run0.name, eps=run0.eps, attack=attack2, spec=None
                )
                adv1, _ = attacker(target, run0, xs, ys, sids)
                adv2, _ = attacker(target, run2, xs, ys, sids)
                a1 = _strict_accuracy(plan, name, target.scorer, adv1, ys, sids, f"card/{s}/{run0.key}")
                a2 = _strict_accuracy(plan, name, target.scorer, adv2, ys, sids, f"card/{s}/{run2.key}")
                out.iterations[(s, name, run0.key)] = {
                    "steps": steps,
                    "accuracy": a1,
                    "accuracy_2x": a2,
                    "n": m,
                }
    return out


def _entry(
    defense: str, check: str, flag: bool | None, message: str, advice: str = "", **extra: Any
) -> dict[str, Any]:
    return {
        "defense": defense,
        "check": check,
        "status": "not run" if flag is None else ("flag" if flag else "ok"),
        "flag": bool(flag),
        "message": message,
        "advice": advice if flag or flag is None else "",
        **extra,
    }


def report_card(
    plan: Plan, records: list[SampleRecord], inputs: CardInputs, summary: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The card's entries, one per defense and check."""
    out: list[dict[str, Any]] = []
    adaptive = _adaptive_settings(plan)
    by_key = {a["key"]: a for a in plan.config["attacks"]}
    for name in plan.defenses:
        r = inputs.randomness.get(name)
        if r is not None:
            flag = r["declared"] != r["detected"]
            if r["declared"] and not r["detected"]:
                msg = "declared randomised, but two draws gave identical outputs"
                adv = "check that the defense draws from its generator; if it is deterministic, declare it so"
            elif r["detected"] and not r["declared"]:
                msg = f"declared deterministic, but two draws differ (max |diff| {r['max_diff']:.3g})"
                adv = "declare it randomised so that attacks use EOT and scoring uses several draws"
            else:
                msg = (
                    "declared randomised and draws differ" if r["declared"] else "deterministic, as declared"
                )
                adv = ""
            out.append(
                _entry(name, "randomness", flag, msg, adv, declared=r["declared"], detected=r["detected"])
            )
        for (s, d), g in inputs.gradients.items():
            if d != name:
                continue
            if "error" in g:
                out.append(
                    _entry(
                        name,
                        "gradients",
                        True,
                        f"{s}: no input gradient: {g['error']}",
                        "declare a BPDA stand-in",
                        setting=s,
                    )
                )
                continue
            share = (g["zero"] + g["nonfinite"]) / g["n"] if g["n"] else 0.0
            out.append(
                _entry(
                    name,
                    "gradients",
                    share > 0,
                    f"{s}: {g['zero']}/{g['n']} zero and {g['nonfinite']}/{g['n']} non-finite input "
                    "gradients at clean images",
                    "gradient masking: attack with BPDA (--setting bpda) and a gradient-free attack "
                    "(--attack square)",
                    setting=s,
                    share=share,
                )
            )
        out.extend(_eps_sweep(name, adaptive, summary, inputs))
        out.extend(_iterations(name, inputs))
        out.extend(_black_box(name, adaptive, records, by_key, plan))
        out.extend(_gray_vs_white(name, adaptive, records, plan))
    return out


def _eps_sweep(
    name: str, adaptive: list[str], summary: list[dict[str, Any]], inputs: CardInputs
) -> list[dict[str, Any]]:
    if not adaptive:
        return [
            _entry(name, "eps-sweep", None, "no adaptive setting was run", "add --setting white-box,bpda")
        ]
    out = []
    for s in adaptive:
        rows = [r for r in summary if r["defense"] == name and r["setting"] == s and r["eps"] is not None]
        rows = [r for r in rows if r["attack"] not in ("worst-case",)]
        rising = []
        for attack in {r["attack"] for r in rows}:
            seq = sorted((r["eps"], r["accuracy"], r["n"]) for r in rows if r["attack"] == attack)
            for (e0, a0, n0), (e1, a1, _) in zip(seq, seq[1:], strict=False):
                if a0 is not None and a1 is not None and a1 > a0 + 1.0 / max(n0, 1) - 1e-12:
                    rising.append(f"{attack}: {100 * a0:.0f}% at {e0:.4g} -> {100 * a1:.0f}% at {e1:.4g}")
        big = inputs.large_eps.get((s, name))
        too_high = big is not None and big["accuracy"] > LARGE_EPS_MAX_ACCURACY
        parts = []
        if big is not None:
            parts.append(
                f"{s}: PGD-{big['steps']} at eps {big['eps'] * 255:.0f}/255 leaves "
                f"{100 * big['accuracy']:.0f}% "
                f"accuracy on {big['n']} samples (must be <= {100 * LARGE_EPS_MAX_ACCURACY:.0f}%)"
            )
        if rising:
            parts.append("accuracy rises with eps: " + "; ".join(rising))
        if not parts:
            parts.append(f"{s}: accuracy falls as eps grows")
        out.append(
            _entry(
                name,
                "eps-sweep",
                too_high or bool(rising),
                "; ".join(parts),
                "an attack that cannot win at a huge budget is broken or masked: "
                "try BPDA, more steps, EOT, Square",
                setting=s,
                large_eps_accuracy=None if big is None else big["accuracy"],
            )
        )
    return out


def _iterations(name: str, inputs: CardInputs) -> list[dict[str, Any]]:
    out = []
    for (s, d, key), it in inputs.iterations.items():
        if d != name:
            continue
        n = it["n"]
        lo, hi = wilson_interval(round(it["accuracy"] * n), n)
        half = (hi - lo) / 2
        drop = it["accuracy"] - it["accuracy_2x"]
        out.append(
            _entry(
                name,
                "iterations",
                drop > half + 1e-12,
                f"{s}/{key}: {100 * it['accuracy']:.0f}% with {it['steps']} steps, "
                f"{100 * it['accuracy_2x']:.0f}% "
                f"with {2 * it['steps']} on {n} samples (95% half-width {100 * half:.0f} points)",
                "the attack had not converged: run more iterations (or APGD) before trusting the number",
                setting=s,
                attack=key,
            )
        )
    return out


def _black_box(
    name: str, adaptive: list[str], records: list[SampleRecord], by_key: dict[str, Any], plan: Plan
) -> list[dict[str, Any]]:
    pairs = [(s, r.key) for s in adaptive for r in plan.runs[s]]
    free = [(s, k) for s, k in pairs if by_key[k]["name"] in GRADIENT_FREE]
    grad = [(s, k) for s, k in pairs if by_key[k]["name"] not in GRADIENT_FREE]
    if not free or not grad:
        return [
            _entry(
                name,
                "black-box",
                None,
                "needs a gradient-free attack and a gradient attack in an adaptive setting",
                "add --attack square",
            )
        ]
    count = 0
    for rec in records:
        fooled_free = any(not all(rec.correct_adv(s, k, name)) for s, k in free)
        all_grad_failed = all(all(rec.correct_adv(s, k, name)) for s, k in grad)
        if fooled_free and all_grad_failed and all(rec.correct_clean(name)):
            count += 1
    return [
        _entry(
            name,
            "black-box",
            count > 0,
            f"the gradient-free attack succeeded on {count}/{len(records)} samples where every "
            "gradient attack failed",
            "gradient masking is likely: the gradients mislead; use BPDA or EOT, "
            "and keep Square in the ensemble",
            samples=count,
        )
    ]


def _gray_vs_white(
    name: str, adaptive: list[str], records: list[SampleRecord], plan: Plan
) -> list[dict[str, Any]]:
    if "gray-box" not in plan.settings or not adaptive:
        return [
            _entry(
                name,
                "gray-vs-white",
                None,
                "needs the gray-box and an adaptive setting",
                "add --setting gray-box,white-box",
            )
        ]
    out = []
    gray = {r.key for r in plan.runs["gray-box"]}
    for s in adaptive:
        shared = [r.key for r in plan.runs[s] if r.key in gray]
        if not shared:
            out.append(
                _entry(
                    name,
                    "gray-vs-white",
                    None,
                    f"{s}: no attack ran in both settings",
                    "run the same attack in both",
                    setting=s,
                )
            )
            continue
        count = 0
        for rec in records:
            if any(
                not all(rec.correct_adv("gray-box", k, name)) and all(rec.correct_adv(s, k, name))
                for k in shared
            ):
                count += 1
        out.append(
            _entry(
                name,
                "gray-vs-white",
                count > 0,
                f"{s}: a gray-box example fooled the defense where the {s} attack did not, "
                f"on {count}/{len(records)} samples",
                "the adaptive attack is weaker than a blind one: its gradients are poor "
                "(try BPDA, EOT, more steps)",
                setting=s,
                samples=count,
            )
        )
    return out
