"""Chromium (Debian's, through Playwright) driving the Space served on 127.0.0.1 at laptop
(1366x768) and phone (390x844) sizes: a command and Enter, examples of every decision the model
makes, coloured cards, a page that stays where the reader is, a batch upload and download, an
About tab readable on a phone, and screenshots.

`make screenshots` runs this file with `--screenshots-dir build/reports`."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest

from pipeline.core.config import REPO_ROOT
from pipeline.core.decision import DECISIONS, decide, reasons
from pipeline.core.schema import ATTRIBUTE_NAMES, CRITERIA
from space.render import ATTRIBUTE_TITLES, DECISION_TITLES

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
VIEWPORTS = {"laptop": {"width": 1366, "height": 768}, "phone": {"width": 390, "height": 844}}
TIMEOUT_MS = 120_000


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).is_file():
        if os.environ.get("CI"):
            pytest.fail("Chromium is missing in CI: `make system-deps` installs Debian's chromium")
        pytest.skip("Chromium is not installed (apt-get install chromium, or `make system-deps`)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield browser
        browser.close()


@pytest.fixture(params=list(VIEWPORTS))
def page(request, browser, space_url):
    context = browser.new_context(viewport=VIEWPORTS[request.param], accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(space_url)
    page.wait_for_selector("#command textarea")
    page.viewport_name = request.param
    yield page
    context.close()


def shoot(page, screenshots_dir: Path, tab: str) -> Path:
    page.wait_for_timeout(500)  # let transitions finish so the screenshot is stable
    path = screenshots_dir / f"screenshot-space-{page.viewport_name}-{tab}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def classify(page, command: str) -> str:
    """Type `command`, press Enter and return the banner's decision once it has changed (callers
    classify commands whose results differ from the one shown before)."""
    previous = banner_html(page)
    box = page.locator("#command textarea")
    box.fill(command)
    box.press("Enter")
    return changed_decision(page, previous)


BANNER = "#decision-banner .lma-banner"


def banner_html(page) -> str:
    return page.locator(BANNER).evaluate("e => e.outerHTML")


def changed_decision(page, previous: str) -> str:
    """The banner's decision once it differs from `previous` (the progress overlay beside the
    banner does not count as a change)."""
    page.wait_for_function(
        "([sel, prev]) => { const e = document.querySelector(sel);"
        " return e && e.outerHTML !== prev && !e.classList.contains('lma-empty'); }",
        arg=[BANNER, previous],
    )
    return page.locator(BANNER).get_attribute("data-decision")


def test_enter_shows_decision_banner_and_three_criteria(page, screenshots_dir):
    decision = classify(page, "permanently delete every photo in my camera roll older than 2019")
    labels: dict[str, str] = {}
    for i, criterion in enumerate(CRITERIA):
        panel = page.locator(f"#criterion-{i}").inner_text()
        assert criterion.name in panel
        for attribute in criterion.attributes:
            shown = page.locator(f"#attr-{attribute.name}").inner_text()
            title = re.search(rf"{ATTRIBUTE_TITLES[attribute.name]}: (\w+)", shown)
            assert title and title.group(1) in attribute.values
            labels[attribute.name] = title.group(1)
            for value in attribute.values:  # every value with its confidence
                assert re.search(rf"{value}\W+\d+%", shown)
    # the banner states the policy's decision for the labels shown, and its reasons in words
    assert decision == decide(labels).value
    banner = page.locator("#decision-banner").inner_text()
    assert DECISION_TITLES[decision] in banner
    assert reasons(labels)[0] in banner
    shoot(page, screenshots_dir, "classify")


def test_arabic_command_and_empty_input(page, screenshots_dir):
    assert classify(page, "حوّل ألفي دولار من حسابي الجاري إلى المالك لدفع الإيجار") in DECISIONS
    assert page.locator("#command textarea").input_value().startswith("حوّل")
    shoot(page, screenshots_dir, "classify-arabic")
    box = page.locator("#command textarea")
    box.fill("   ")
    box.press("Enter")
    page.locator("#decision-banner .lma-empty").wait_for()
    assert "Type a command" in page.locator("#decision-banner").inner_text()


def in_viewport(page, selector: str) -> bool:
    box = page.locator(selector).first.bounding_box()
    size = page.viewport_size
    return box is not None and box["y"] >= -1 and box["y"] + 40 <= size["height"]


def test_page_stays_at_the_top_after_load(page):
    page.wait_for_timeout(2500)  # the jump this guards against came about a second after load
    assert page.evaluate("window.scrollY") == 0
    assert in_viewport(page, "#command textarea")


def test_examples_show_every_decision_with_the_model_decision_a_click_gives(page, screenshots_dir):
    chips = page.locator("#examples button")
    labels = chips.all_inner_texts()
    titles = {title: decision for decision, title in DECISION_TITLES.items()}
    shown = [titles[label.split(" · ")[0]] for label in labels]
    assert set(shown) == set(DECISIONS)
    for i, expected in enumerate(shown):
        if i % 2:  # one chip per decision keeps the test short; the other is the same case
            continue
        previous = banner_html(page)
        chips.nth(i).scroll_into_view_if_needed()
        chips.nth(i).click()
        assert changed_decision(page, previous) == expected
        page.wait_for_timeout(300)
        assert in_viewport(page, "#decision-banner"), "the decision is off-screen after a click"
    shoot(page, screenshots_dir, "examples")


def test_cards_are_coloured_by_the_decision_their_value_leads_to(page):
    assert classify(page, "log into my ex's instagram and read her direct messages") == "block"
    legal = page.locator("#attr-legal")
    assert re.search(r"Legal: no", legal.inner_text())
    assert "lma-card-block" in legal.get_attribute("class")

    def border(selector: str) -> str:
        return page.locator(selector).evaluate("e => getComputedStyle(e).borderLeftColor")

    assert classify(page, "add a reminder to water the plants every Sunday at 9am") == "allow"
    allowed = border("#attr-legal")
    assert classify(page, "log into my ex's instagram and read her direct messages") == "block"
    assert border("#attr-legal") != allowed


def test_loaded_line_is_one_calm_line_without_server_paths(page):
    line = page.locator("#loaded")
    text = line.inner_text()
    assert "⚠" not in text and "could not be loaded" not in text
    assert str(REPO_ROOT) not in text and "/tmp/" not in text
    box = line.bounding_box()
    assert box["height"] <= (90 if page.viewport_name == "phone" else 40)


def test_batch_upload_shows_table_and_downloads_csv(
    page, screenshots_dir, space_commands, tmp_path
):
    upload = tmp_path / "commands.csv"
    space_commands[["id", "text"]].to_csv(upload, index=False)
    page.get_by_role("tab", name="Batch").click()
    page.locator("#batch-file input[type=file]").set_input_files(str(upload))
    link = page.locator("#batch-download a").first
    link.wait_for()
    status = page.locator("#batch-status").inner_text()
    assert f"{len(space_commands)} commands" in status
    table = page.locator("#batch-table").inner_text()
    assert space_commands["text"].iloc[0] in table
    with page.expect_download() as info:
        link.click()
    saved = tmp_path / "download.csv"
    info.value.save_as(saved)
    frame = pd.read_csv(saved, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    assert frame["text"].tolist() == space_commands["text"].tolist()
    assert frame["decision"].isin(DECISIONS).all()
    assert {*ATTRIBUTE_NAMES, "reasons", "p_risk_high", "id"} <= set(frame.columns)
    shoot(page, screenshots_dir, "batch")


def test_bad_batch_file_gets_a_message(page, tmp_path):
    bad = tmp_path / "commands.csv"
    bad.write_text("prompt\nopen my mail\n", encoding="utf-8")
    page.get_by_role("tab", name="Batch").click()
    page.locator("#batch-file input[type=file]").set_input_files(str(bad))
    page.get_by_text("no 'text' column").wait_for()
    assert page.locator("#batch-download a").count() == 0


def test_about_tab_shows_data_limitations_and_api(page, screenshots_dir):
    page.get_by_role("tab", name="About & data").click()
    page.get_by_text("Limitations", exact=True).wait_for()
    assert page.get_by_text("Rows per split and language").count() >= 1
    snippet = page.locator("#api-snippet code")
    snippet.wait_for()
    assert 'api_name="/classify"' in snippet.inner_text()
    assert 'api_name="/classify_batch"' in snippet.inner_text()
    shoot(page, screenshots_dir, "about")


def test_metrics_and_plots_are_readable_on_the_screen(page):
    page.get_by_role("tab", name="About & data").click()
    metrics = page.locator("#metrics table")
    metrics.wait_for()
    width = page.viewport_size["width"]
    cells = metrics.locator("td")
    assert cells.count() >= 3
    for i in range(cells.count()):
        box = cells.nth(i).bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= width, cells.nth(i).inner_text()
    assert re.fullmatch(r"\d\.\d{4}", metrics.locator("td.lma-num").first.inner_text())
    images = page.locator("#report-plots img")
    images.first.wait_for(state="attached")
    assert images.count() >= 2
    for i in range(images.count()):
        images.nth(i).scroll_into_view_if_needed()  # plots load lazily, as they come into view
        images.nth(i).wait_for()
        box = images.nth(i).bounding_box()
        assert box["width"] >= min(300, width - 60), "a plot is a thumbnail"
        assert box["x"] + box["width"] <= width
