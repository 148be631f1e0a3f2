"""The HTML/Markdown report writer and its tables (below the tracks: tests/test_architecture.py)."""

from __future__ import annotations

import base64
import math
import re

import numpy as np
import pytest

from fracdet.report import (
    FOOTER,
    Section,
    ci_cell,
    estimate_cell,
    format_value,
    html_table,
    markdown_table,
    number_cell,
    plot_roc,
    write_report,
)


@pytest.mark.parametrize(
    "value, text",
    [
        (None, "–"),
        (math.nan, "–"),
        (0.87654321, "0.8765"),
        (np.float32(0.5), "0.5"),
        (2000, "2000"),
        (np.int64(7), "7"),
        (12345.67, "12,346"),
        (True, "True"),
        ([0.81234, 0.9], "0.8123–0.9"),
        ((0.1, None), "0.1; –"),
        ([[2, 1], [1, 2]], "[[2, 1], [1, 2]]"),
        (["one note", "two"], "one note; two"),
        ({"auroc": 0.91234, "support": 3}, "auroc: 0.9123, support: 3"),
    ],
)
def test_format_value(value, text):
    assert format_value(value) == text


def test_write_report_html_and_markdown(tmp_path):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 120)
    p = np.clip(0.35 * y + 0.65 * rng.random(120), 0.0, 1.0)
    figures = tmp_path / "figures"
    roc = plot_roc(y, p, figures / "roc.png", operating_point=0.4)
    sections = [
        Section(
            "Test metrics <held out>",
            text='Threshold tuned on "val" & frozen.\n\nSecond paragraph.',
            table={"auroc": 0.912345, "ci95 auroc": [0.88123, 0.94], "n": 120, "notes": []},
            figures=[roc],
        ),
        Section(
            "Per class",
            table=[
                {"class": "fractured", "f1": 0.8, "support": 50},
                {"class": "a|b", "auroc": None, "support": 70},
            ],
        ),
    ]
    html_path, md_path = write_report(
        tmp_path / "out" / "report.html", title="Eval <cls>", sections=sections
    )
    assert md_path == tmp_path / "out" / "report.md"

    page = html_path.read_text(encoding="utf-8")
    assert "<title>Eval &lt;cls&gt;</title>" in page and "<style>" in page
    assert "<h2>Test metrics &lt;held out&gt;</h2>" in page and "<h2>Per class</h2>" in page
    assert "Threshold tuned on &quot;val&quot; &amp; frozen." in page
    assert page.count("<p>") >= 3  # two paragraphs plus the footer
    assert "0.9123" in page and "0.8812–0.94" in page and ">120<" in page
    assert "<th>class</th><th>f1</th><th>support</th><th>auroc</th>" in page
    assert FOOTER in page
    embedded = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(embedded) == 1 and base64.b64decode(embedded[0]) == roc.read_bytes()
    assert "<held out>" not in page and "<cls>" not in page  # nothing unescaped

    markdown = md_path.read_text(encoding="utf-8")
    assert markdown.startswith("# Eval <cls>\n")
    assert "## Test metrics <held out>" in markdown and "## Per class" in markdown
    assert "](../figures/roc.png)" in markdown
    assert "| auroc | 0.9123 |" in markdown and "a\\|b" in markdown
    assert FOOTER in markdown
    assert not list((tmp_path / "out").glob(".*tmp*"))


def test_write_report_notes_missing_figure(tmp_path):
    sections = [Section("Figures", figures=[tmp_path / "nope.png"])]
    html_path, md_path = write_report(tmp_path / "r.html", title="t", sections=sections)
    assert "figure missing: nope.png" in html_path.read_text(encoding="utf-8")
    assert "](nope.png)" in md_path.read_text(encoding="utf-8")


def test_write_report_rejects_md_suffix(tmp_path):
    with pytest.raises(ValueError, match="suffix"):
        write_report(tmp_path / "r.md", title="t", sections=[])


def test_links_are_relative_to_the_report(tmp_path):
    target = tmp_path / "stage a" / "report.html"
    target.parent.mkdir()
    target.write_text("x")
    html_path, md_path = write_report(
        tmp_path / "r.html", title="t", sections=[Section("Stages", links=[("stage <a>", target)])]
    )
    assert '<a href="stage a/report.html">stage &lt;a&gt;</a>' in html_path.read_text(
        encoding="utf-8"
    )
    assert "- [stage <a>](stage a/report.html)" in md_path.read_text(encoding="utf-8")


def test_markdown_table_escapes_orders_and_aligns_numbers():
    text = markdown_table([{"a": 1, "b": "x|y"}, {"b": None, "c": 2}])
    assert text.splitlines() == [
        "| a | b | c |",
        "| --- | --- | --- |",
        "| 1 | x\\|y | – |",
        "| – | – | 2 |",
    ]
    assert markdown_table([{"n": 3, "p": 0.5}], columns=["p"]).splitlines() == [
        "| p |",
        "| ---: |",
        "| 0.5 |",
    ]
    assert markdown_table([]) == ""
    assert html_table({"n": 3}) == (
        "<table><thead><tr><th>name</th><th>value</th></tr></thead>"
        '<tbody><tr><td>n</td><td class="num">3</td></tr></tbody></table>'
    )


def test_cells_with_and_without_ci():
    assert ci_cell(0.81234, [0.7, 0.9]) == "0.812 [0.700–0.900]"
    assert ci_cell(0.81234, None) == "0.812" and ci_cell(None, [0.1, 0.2]) == "–"
    assert estimate_cell({"mean": 0.25, "ci95": [0.125, 0.5]}, digits=1, scale=100) == (
        "25.0 [12.5–50.0]"
    )
    assert estimate_cell({"value": 0.5}, "value") == "0.500" and estimate_cell(None) == "–"
    assert number_cell(None) == "–" and number_cell(None, missing="n/a") == "n/a"
    assert number_cell(0.0625, 1, scale=100) == "6.2"
