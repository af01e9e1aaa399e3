"""The study report in headless Chromium: no console errors, every arm x regime row, table values equal
summary.csv, every image decodes. The browser comes from Debian's chromium + chromium-driver (.ci/run installs
them); without them the test skips, except under CI=true where it fails."""

from __future__ import annotations

import math
import os
import shutil
from pathlib import Path

import pytest

from cxraug.report import build_report
from cxraug.report.study_dir import num, read_csv
from report_helpers import ARMS, REGIMES, make_study_dir

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1280,2400")


def _browser() -> tuple[str, str]:
    binary = next((shutil.which(b) for b in BROWSERS if shutil.which(b)), None)
    driver = shutil.which("chromedriver")
    if binary and driver:
        return binary, driver
    reason = "no headless browser: install Debian chromium and chromium-driver (.ci/run does)"
    if os.environ.get("CI") == "true":
        pytest.fail(reason + " - required under CI=true")
    pytest.skip(reason)


@pytest.fixture
def chromium(tmp_path: Path):  # noqa: ANN201 - selenium WebDriver
    binary, driver_path = _browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'chrome-profile'}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    try:
        yield driver
    finally:
        driver.quit()


_CELLS_JS = """
return Array.from(document.querySelectorAll('table.summary td[data-metric]')).map(td => {
  const tr = td.parentElement;
  return [tr.dataset.regime, tr.dataset.classifier, tr.dataset.arm, td.dataset.metric,
          td.querySelector('.mean').textContent, td.querySelector('.ci').textContent];
});
"""


def _check_report(driver, out: Path, title: str, pairs: set[tuple[str, str]], shot: Path) -> None:  # noqa: ANN001
    """Render OUT/report.html and check console, rows, values and images; save a screenshot."""
    driver.get((out / "report.html").resolve().as_uri())
    assert driver.title == f"cxraug report: {title}"

    errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert not errors, errors

    summary = read_csv(out / "summary.csv")
    cells = {tuple(c[:4]): (c[4], c[5]) for c in driver.execute_script(_CELLS_JS)}
    assert {(regime, arm) for regime, _, arm, _ in cells} == pairs
    for row in summary:
        mean, ci = cells[(row["regime"], row["classifier"], row["arm"], row["metric"])]
        assert mean == f"{num(row, 'mean'):.3f}"
        lo, hi = num(row, "ci_low"), num(row, "ci_high")
        assert ci == ("" if math.isnan(lo) else f"[{lo:.3f}, {hi:.3f}]")
    assert len(cells) == len(summary)

    images = driver.execute_script("return Array.from(document.images).map(i => [i.alt, i.complete, i.naturalWidth]);")
    assert len(images) >= 5
    assert all(complete and width > 0 for _, complete, width in images), images

    assert driver.find_element("id", "phantom-banner").is_displayed()
    assert driver.save_screenshot(str(shot))
    assert shot.stat().st_size > 10_000


def test_report_renders_in_headless_chromium(chromium, tmp_path: Path) -> None:  # noqa: ANN001
    out = make_study_dir(tmp_path / "study")
    build_report(out)
    pairs = {(r, a) for r in REGIMES for a in ARMS}
    _check_report(chromium, out, "report-fixture", pairs, tmp_path / "report.png")


@pytest.mark.slow
def test_tiny_real_study_report_renders(chromium, tmp_path: Path) -> None:  # noqa: ANN001
    from cxraug.study.baselines import complete_arms
    from cxraug.study.protocol import Protocol
    from cxraug.study.runner import run_study
    from study_tiny import tiny_protocol

    raw = tiny_protocol(tmp_path / "cache")
    raw["metrics"] = {"image_metrics": True, "features": "domain", "encoder": {"epochs": 1, "size": 32},
                      "samples": 16, "bootstrap": 50}
    raw["generators"]["dcgan"]["config"]["keep_steps"] = [12, 24]
    proto = Protocol(**raw)
    out = run_study(proto, tmp_path / "study")  # the study writes report.html at its end
    full, added = complete_arms(proto, proto.data.classes)  # the study adds classical and oversample baselines
    assert added
    pairs = {(r.name, a.name) for r in full.regimes for a in full.arms}
    _check_report(chromium, out, "tiny", pairs, tmp_path / "tiny.png")
