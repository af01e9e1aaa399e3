"""The study HTML report without a browser: content, self-containment, missing inputs, the CLI."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cxraug.cli import app
from cxraug.errors import CxraugError
from cxraug.report import build_report
from report_helpers import ARMS, REGIMES, make_study_dir


class _Collect(HTMLParser):
    """Image sources, summary rows and every external reference of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.rows: set[tuple[str, str]] = set()
        self.external: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "img":
            self.images.append(a.get("src") or "")
        if tag == "tr" and "data-arm" in a:
            self.rows.add((a["data-regime"] or "", a["data-arm"] or ""))
        for key in ("src", "href"):
            value = a.get(key) or ""
            if value and not value.startswith(("data:", "#")):
                self.external.append(value)


def _parse(path: Path) -> _Collect:
    page = _Collect()
    page.feed(path.read_text())
    return page


def test_report_has_every_section_and_is_self_contained(tmp_path: Path) -> None:
    out = make_study_dir(tmp_path / "study")
    html_path = build_report(out)
    page = _parse(html_path)
    assert page.rows == {(r, a) for r in REGIMES for a in ARMS}
    assert not page.external
    assert page.images and all(src.startswith("data:image/png;base64,") for src in page.images)
    # 3 bar charts, 2 confusion figures; per regime: 4 real + 4 synthetic strips, curves, checkpoints, 2 galleries
    assert len(page.images) == 3 + 2 + len(REGIMES) * (8 + 1 + 1 + 2)
    text = html_path.read_text()
    for needle in ("synthetic test data, not medical data", "LEAKAGE: 2 near-duplicate pairs", "broken.png",
                   "truncated PNG", "Wall time per unit", "fraction flagged 0.250", "real (training)",
                   "baseline may be undertrained: none", "added arm &#39;oversample+fedoruk&#39;",
                   "equal budgets: every arm"):
        assert needle in text, needle
    # the headline: the generative arm against the strongest baseline (the fixture marks `none` as strongest)
    headline = re.findall(r'data-headline="([^"]+)"', text)
    assert headline == [f"{r}/dcgan/none" for r in REGIMES]
    assert text.index('id="headline"') < text.index('id="summary"')
    assert not list(out.glob(".report.html.*"))  # atomic write leaves no temporary file


def test_report_without_generators_or_extras(tmp_path: Path) -> None:
    out = make_study_dir(tmp_path / "study", with_generator=False)
    for name in ("comparisons.csv", "skipped.csv", "real_samples.npz", "study.json", "protocol.yaml"):
        (out / name).unlink()
    page = _parse(build_report(out))
    assert page.rows == {(r, a) for r in REGIMES for a in ("none", "classical")}
    text = (out / "report.html").read_text()
    assert "This study trained no generator." in text
    assert "Confusion matrices" in text and "phantom-banner" not in text


def test_generator_units_come_from_generators_csv_with_prdc_columns(tmp_path: Path) -> None:
    out = make_study_dir(tmp_path / "study")
    text = build_report(out).read_text()
    table = text[text.index("<th>prdc_precision</th>"):]
    assert "<th>prdc_recall</th>" in table and "<td>0.710</td><td>0.430</td>" in table  # the fixture's values
    assert "generator dcgan | " + REGIMES[0] in text  # generator units in the wall-time table too


def test_an_old_study_folder_is_refused_with_one_line_saying_rerun(tmp_path: Path) -> None:
    """Before generators.csv, generator rows sat in results.csv (precision/recall meaning PRDC there)."""
    out = make_study_dir(tmp_path / "study")
    results, gens = (out / "results.csv").read_text(), (out / "generators.csv").read_text().splitlines()
    header = results.splitlines()[0].split(",")
    old_rows = [dict(zip(gens[0].split(","), line.split(","))) for line in gens[1:]]
    (out / "results.csv").write_text(results + "".join(",".join(r.get(k, "") for k in header) + "\n"
                                                       for r in old_rows))
    with pytest.raises(CxraugError, match=r"older cxraug .*re-run `cxraug study PROTOCOL --out") as exc:
        build_report(out)
    assert "\n" not in str(exc.value)  # a CxraugError: the CLI prints it as one line


def test_missing_results_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(CxraugError, match="results.csv, summary.csv missing"):
        build_report(tmp_path)


def test_cli_rebuilds_the_report(tmp_path: Path) -> None:
    out = make_study_dir(tmp_path / "study")
    result = CliRunner().invoke(app, ["report", str(out)])
    assert result.exit_code == 0, result.output
    assert re.search(r"<title>cxraug report: report-fixture</title>", (out / "report.html").read_text())
