"""Tests of the evaluation report (`evaluation/report`): markdown, HTML, extra sections."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

import _eval_helpers
from _eval_helpers import SIZE, CountingFGSM, upscale
from srdefense.evaluation import evaluate
from srdefense.evaluation.results import Results
from srdefense.purification import Identity

# the shared module-scoped fixtures (pytest finds them by name in this module)
_one_thread = _eval_helpers._one_thread
model = _eval_helpers.model
data = _eval_helpers.data


def test_markdown_and_html_reports(model: nn.Module, data: Any, tmp_path: Path) -> None:
    evaluate(
        model,
        {"none": Identity(), "up": upscale()},
        [CountingFGSM(2 / 255), CountingFGSM(4 / 255)],
        data,
        batch_size=7,
        out=tmp_path,
        n_examples=2,
        report=True,
    )
    md = (tmp_path / "report.md").read_text()
    for heading in ("Accuracy per defense and attack", "Clean accuracy", "Worst case", "PSNR"):
        assert heading in md
    assert "| none |" in md and "figures/heatmap.png" in md
    page = (tmp_path / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 3  # heatmap, accuracy vs eps, examples
    assert "http://" not in page and "https://" not in page and "<link" not in page
    assert (tmp_path / "examples" / "examples.json").exists()
    loaded = Results.load(tmp_path)
    assert len(loaded.examples) == 2 and loaded.examples[0]["clean"].shape == (SIZE, SIZE, 3)
    assert loaded.examples[0]["purified"]["up"].dtype == np.uint8

    from srdefense.evaluation.report import Section, accuracy_table, write_report

    def paper_layout(results: Results) -> Section:
        return Section("Comparison in the layout of the paper", tables=[accuracy_table(results, ci=False)])

    write_report(loaded, tmp_path, extra_sections=[paper_layout])
    assert "Comparison in the layout of the paper" in (tmp_path / "report.md").read_text()
