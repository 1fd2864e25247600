"""The built-in report sections: each a function ``f(results) -> Section | None``.

:data:`DEFAULT_SECTIONS` lists them in order (with the comparison, ablation and restorer sections of
:mod:`.comparison` and :mod:`.restorers`); :func:`build_sections` runs them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from .comparison import section_ablation, section_paper_comparison
from .document import Figure, Section, Table
from .eps import format_eps
from .fidelity import section_precision
from .metrics import PSNR_MAX_DB
from .plots import plot_accuracy_vs_eps, plot_examples, plot_heatmap
from .restorers import section_restorers
from .results import ROBUST, WORST, Results
from .tables import (
    SETTING_MEANINGS,
    SETTING_TITLES,
    SectionFn,
    _cell,
    _pct,
    accuracy_table,
    aggregate_columns,
)


def section_overview(results: Results) -> Section:
    """What was evaluated, how, and on what."""
    c = results.config
    clf = c["classifier"]
    attacks = ", ".join(a["key"] for a in c["attacks"])
    n = len(results.records)
    text = [
        f"Setting {SETTING_TITLES.get(st, st)}: {SETTING_MEANINGS.get(st, st)}." for st in results.settings
    ]
    text += [
        f"Classifier: {clf['name']}. Samples: {n}. Seed: {c['seed']}. Resolution policy: "
        + (
            "the purifier's output is classified as is (the 2x image for super-resolution, as in the paper)."
            if c["resolution"] == "purified"
            else "the purifier's output is resized back to the input size before classification."
        ),
        f"Defenses: {', '.join(results.defenses)}. Attacks: {attacks}.",
        "Accuracies are percentages with 95% Wilson intervals. The worst case counts a sample as robust "
        "only if it is classified correctly clean and under every attack of the group (per-sample flags, "
        "as in AutoAttack).",
    ]
    randomized = [d["name"] for d in c["defenses"] if d.get("randomized")]
    if randomized:
        d0 = next(d for d in c["defenses"] if d.get("randomized"))
        text.append(
            f"Randomised defenses ({', '.join(randomized)}): attacked with EOT over {d0.get('eot_samples')} "
            f"draws per gradient in the adaptive settings, and scored in {d0.get('eval_draws')} independent "
            "draws; a sample counts as correct only if it is correct in every draw."
        )
    if results.warnings:
        text.append(f"{len(results.warnings)} sanity-check warning(s): see the Warnings section.")
    return Section("Overview", text=text)


def section_accuracy(results: Results) -> Section:
    """Accuracy table per defense x attack, with the heatmap."""
    figs = []
    png = plot_heatmap(results)
    if png is not None:
        figs.append(Figure("heatmap", png, "Accuracy (%) per defense and attack.", "accuracy heatmap"))
    return Section(
        "Accuracy per defense and attack",
        text=["Rows: defenses; columns: clean images, each attack configuration, and the worst cases."],
        tables=[accuracy_table(results)],
        figures=figs,
    )


def section_clean(results: Results) -> Section:
    """Clean accuracy per defense."""
    rows = []
    shade = []
    for d in results.defenses:
        r = results.row(d, "clean")
        lo, hi = r["ci95"]
        rows.append([d, str(r["n"]), _pct(r["accuracy"]), f"[{_pct(lo)}, {_pct(hi)}]"])
        shade.append([None, None, r["accuracy"], None])
    return Section(
        "Clean accuracy",
        text=["Accuracy of the classifier behind each defense on the unperturbed images."],
        tables=[Table(["defense", "n", "accuracy (%)", "95% CI"], rows, shade=shade)],
    )


def section_worst_case(results: Results) -> Section | None:
    """Worst case over attacks per defense and setting, and robust accuracy over every setting."""
    keys = aggregate_columns(results)
    if not keys:
        return None
    return Section(
        "Worst case over attacks",
        text=[
            "A sample is robust only if it is classified correctly clean and under every attack of the "
            "group. 'worst case 4/255' groups the attacks of one setting with that budget; 'worst case' "
            "groups all of them, minimal-norm attacks (DeepFool, C&W: no budget) included. 'robust' "
            "counts a sample only if it survives every attack in every setting that was run "
            "(AutoAttack's rule).",
            "A randomised defense is scored in several independent draws; a sample counts as correct only "
            "if it is correct in all of them (the mean over draws is in results.json, accuracy_mean).",
        ],
        tables=[accuracy_table(results, keys=keys)],
    )


def _worst_column(results: Results, setting: str, eps: float | None) -> str | None:
    for r in results.summary:
        if r["setting"] == setting and r["attack"] == WORST and _eq(r["eps"], eps):
            return str(r["column"])
    return None


def _eq(a: float | None, b: float | None) -> bool:
    return (a is None and b is None) or (a is not None and b is not None and abs(a - b) < 1e-12)


def section_honest(results: Results) -> Section | None:
    """The paper's layout with the honest columns beside it: gray-box, white-box, BPDA, robust."""
    budgets = sorted({r["eps"] for r in results.summary if r["attack"] == ROBUST and r["eps"] is not None})
    groups: list[float | None] = list(budgets) or [None]
    tables = []
    for eps in groups:
        cols: list[tuple[str, str | None]] = [("clean", "clean")]
        for s in ("gray-box", "white-box", "bpda"):
            title = f"{SETTING_TITLES[s]} worst case"
            cols.append((title, _worst_column(results, s, eps) if s in results.settings else None))
        robust = next(
            (r["column"] for r in results.summary if r["attack"] == ROBUST and _eq(r["eps"], eps)), None
        )
        cols.append(("robust accuracy", robust))
        rows, shade = [], []
        for d in results.defenses:
            cells, tints = [d], [None]
            for _, col in cols:
                if col is None:
                    cells.append("not run")
                    tints.append(None)
                else:
                    r = results.row(d, col)
                    cells.append(_cell(r, ci=False))
                    tints.append(r["accuracy"])
            rows.append(cells)
            shade.append(tints)
        cap = "all attacks" if eps is None else f"eps {format_eps(eps)}"
        tables.append(Table(["defense"] + [c for c, _ in cols], rows, cap, shade))  # type: ignore[arg-type]
    text = [
        "Rows are defenses, as in the paper's tables; the columns add what an attacker who knows the "
        "defense achieves. Accuracy (%) of the worst case over the attacks of each setting, and robust "
        "accuracy: correct clean and under every attack of every setting that was run.",
    ]
    text += [
        f"{SETTING_TITLES[s]}: {SETTING_MEANINGS[s]}." for s in results.settings if s in SETTING_MEANINGS
    ]
    return Section("Gray-box against adaptive attacks", text=text, tables=tables)


def section_card(results: Results) -> Section | None:
    """The gradient-masking report card."""
    if not results.checks:
        return None
    rows = []
    shade = []
    for c in results.checks:
        rows.append([c["defense"], c["check"], c["status"], c["message"], c.get("advice", "")])
        tint = {"flag": 0.0, "ok": 1.0}.get(c["status"])
        shade.append([None, None, tint, None, None])
    flagged = sorted({c["defense"] for c in results.checks if c["flag"]})
    text = [
        "Signs that an attack may have been too weak (after Athalye et al. 2018, Carlini et al. 2019 and "
        "AutoAttack's checks): a flag means the number above it may overstate robustness.",
        ("Flagged: " + ", ".join(flagged) + ".") if flagged else "No check raised a flag.",
    ]
    table = Table(
        ["defense", "check", "status", "finding", "what to try next"], rows, shade=shade, text_columns=(3, 4)
    )
    return Section("Report card: gradient masking", text=text, tables=[table])


def section_accuracy_vs_eps(results: Results) -> Section | None:
    """Accuracy against eps per defense, one panel per attack."""
    png = plot_accuracy_vs_eps(results)
    if png is None:
        return None
    return Section(
        "Accuracy against the perturbation budget",
        text=["eps = 0 is the clean accuracy. One panel per attack, one line per defense."],
        figures=[Figure("accuracy_vs_eps", png, "Accuracy (%) against eps.", "accuracy against eps")],
    )


def section_quality(results: Results) -> Section:
    """PSNR and SSIM of purified clean images."""
    rows = []
    for q in results.quality:
        p = q["psnr"]
        ptxt = "-" if p is None else ("inf (identical)" if p >= PSNR_MAX_DB - 1e-9 else f"{p:.2f}")
        s = q["ssim"]
        rows.append([q["defense"], ptxt, "-" if s is None else f"{s:.4f}", q["reference"]])
    return Section(
        "Image quality of purified clean images",
        text=[
            "PSNR (dB) and SSIM (Gaussian window 11, sigma 1.5, as scikit-image) of each defense's "
            "output on clean images. When a defense changes the size (super-resolution x2) the "
            "reference is the clean image upscaled bicubically to the same size."
        ],
        tables=[Table(["defense", "PSNR (dB)", "SSIM", "reference"], rows, text_columns=(3,))],
    )


def section_perturbation(results: Results) -> Section:
    """Perturbation sizes and the undefended classifier's accuracy per attack."""
    rows = []
    for p in results.perturbation:
        label = p["key"] if len(results.settings) == 1 else f"{p.get('setting', '')} {p['key']}"
        if p.get("defense"):
            label += f" ({p['defense']})"
        rows.append(
            [
                label,
                format_eps(p["eps"]),
                "-" if p["linf_mean"] is None else f"{255 * p['linf_mean']:.2f}",
                "-" if p["linf_max"] is None else f"{255 * p['linf_max']:.2f}",
                "-" if p["l2_median"] is None else f"{p['l2_median']:.3f}",
                _pct(p["classifier_accuracy"]),
            ]
        )
    return Section(
        "Perturbations",
        text=[
            "Linf in 1/255 units, L2 in [0, 1] pixel units; accuracy of the undefended classifier on the "
            "adversarial images (in the adaptive settings, one row per defense the examples were made for)."
        ],
        tables=[
            Table(
                ["attack", "eps", "mean Linf (x255)", "max Linf (x255)", "median L2", "undefended acc. (%)"],
                rows,
            )
        ],
    )


def section_examples(results: Results) -> Section | None:
    """Grid of example images with their predictions."""
    png = plot_examples(results)
    if png is None:
        return None
    attack = results.examples[0]["attack"]
    return Section(
        "Examples",
        text=[
            f"Clean image, adversarial image ({attack}) and each defense's output on the adversarial "
            "image, with the predicted class (green: correct, red: wrong)."
        ],
        figures=[Figure("examples", png, "Clean / adversarial / purified.", "example images")],
    )


def section_warnings(results: Results) -> Section:
    """Sanity-check warnings."""
    if not results.warnings:
        return Section("Warnings", text=["No sanity check raised a warning."])
    rows = [[w["check"], w["message"]] for w in results.warnings]
    return Section("Warnings", tables=[Table(["check", "message"], rows, text_columns=(1,))])


def section_config(results: Results) -> Section:
    """The configuration block, to rerun the evaluation."""
    c = results.config
    v = c.get("versions", {})
    rows = [[k, str(val)] for k, val in v.items()]
    rows += [["run id", str(c.get("run_id"))], ["device", str(c.get("device"))]]
    clf = c["classifier"]
    rows += [["classifier parameters sha256", str(clf.get("params_sha256"))]]
    if clf.get("weights_sha256"):
        rows += [["classifier weights sha256", str(clf["weights_sha256"])]]
    rows += [[f"defense {d['name']}", d["repr"]] for d in c["defenses"]]
    for d in c["defenses"]:
        fp = d.get("fingerprint") or {}
        for h in fp.get("weights_sha256", []):
            rows.append([f"defense {d['name']} weights sha256", h])
    rows += [[f"attack {a['key']}", json.dumps(a["config"], sort_keys=True)] for a in c["attacks"]]
    return Section(
        "Configuration",
        text=["Everything needed to rerun is in results.json (config)."],
        tables=[Table(["item", "value"], rows, text_columns=(1,))],
    )


DEFAULT_SECTIONS: tuple[SectionFn, ...] = (
    section_overview,
    section_accuracy,
    section_honest,
    section_card,
    section_paper_comparison,
    section_ablation,
    section_restorers,
    section_clean,
    section_worst_case,
    section_accuracy_vs_eps,
    section_quality,
    section_precision,
    section_perturbation,
    section_examples,
    section_warnings,
    section_config,
)


def build_sections(
    results: Results,
    sections: Sequence[SectionFn] | None = None,
    extra_sections: Sequence[SectionFn] = (),
) -> list[Section]:
    """Run the section functions (default :data:`DEFAULT_SECTIONS`, then ``extra_sections``)."""
    out = []
    for fn in list(sections if sections is not None else DEFAULT_SECTIONS) + list(extra_sections):
        s = fn(results)
        if s is not None:
            out.append(s)
    return out
