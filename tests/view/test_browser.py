"""The viewer in a real headless chromium (Debian's, driven by playwright; no browser is downloaded).

docs/viewer.png is made by `write_screenshot`:
    .venv/bin/python -c "from tests.view.test_browser import write_screenshot; write_screenshot('docs/viewer.png')"
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from action100m.cli import main
from tests.view.conftest import HOSTILE

CHROMIUM = Path("/usr/bin/chromium")
# no network, no background services: pages open from file:// only
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOT_UID = "synth-000001"


def _missing() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install -e '.[dev]')"
    if not CHROMIUM.is_file():
        return f"no chromium at {CHROMIUM} (apt-get install chromium)"
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator:
    missing = _missing()
    if missing:
        if os.environ.get("CI"):  # CI installs chromium: a missing browser there is a broken setup
            pytest.fail(missing)
        pytest.skip(missing)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


def open_page(browser, path: Path):
    """The page at `path` and the console messages and page errors it produced (as strings)."""
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    problems: list[str] = []
    page.on("console", lambda message: problems.append(f"console {message.type}: {message.text}"))
    page.on("pageerror", lambda error: problems.append(f"pageerror: {error}"))
    page.on("dialog", lambda dialog: problems.append(f"dialog: {dialog.message}"))
    page.goto(path.resolve().as_uri())
    page.wait_for_selector(".bar" if "pages" in path.parts else "table.index")
    return page, problems


def page_nodes(page) -> list[dict]:
    return json.loads(page.locator("#data").text_content())["nodes"]


def select(page, node: dict) -> None:
    """Click `node`'s bar and wait until the player stands at its start."""
    page.locator(f'.bar[data-id="{node["id"]}"]').click()
    page.wait_for_function(
        "start => Math.abs(document.querySelector('video').currentTime - start) < 0.05", arg=node["start"]
    )


def annotated_with_next_sibling(nodes: list[dict]) -> tuple[dict, dict]:
    for node, after in zip(nodes, nodes[1:], strict=False):
        if node["annotation"] and after["level"] == node["level"]:
            return node, after
    raise AssertionError("no annotated node with a right-hand sibling")


def test_index_lists_the_videos(browser, demo_site):
    page, problems = open_page(browser, demo_site / "index.html")
    links = page.locator("table.index td.uid a").all_text_contents()
    assert links == sorted(p.stem for p in (demo_site / "pages").glob("*.html"))
    assert not [p for p in problems if "error" in p]
    page.close()


def test_a_click_seeks_and_shows_the_node_and_arrows_move(browser, demo_site):
    page, problems = open_page(browser, demo_site / "pages" / f"{SCREENSHOT_UID}.html")
    node, after = annotated_with_next_sibling(page_nodes(page))
    select(page, node)
    detail = page.locator("#detail").inner_text()
    assert node["annotation"]["action"]["detailed"] in detail
    assert node["annotation"]["summary"]["brief"] in detail
    assert page.locator(".bar.selected").get_attribute("data-id") == node["id"]
    page.keyboard.press("ArrowRight")
    assert page.locator(".bar.selected").get_attribute("data-id") == after["id"]
    page.wait_for_function(
        "start => Math.abs(document.querySelector('video').currentTime - start) < 0.05", arg=after["start"]
    )
    page.keyboard.press("ArrowUp")
    assert page.locator(".bar.selected").get_attribute("data-id") == after["parent"]
    page.keyboard.press("ArrowDown")
    first_child = min(
        (n for n in page_nodes(page) if n["parent"] == after["parent"]), key=lambda n: n["start"]
    )
    assert page.locator(".bar.selected").get_attribute("data-id") == first_child["id"]
    assert not [p for p in problems if "error" in p], problems
    page.close()


def test_hostile_text_shows_as_text(browser, hostile_release, tmp_path):
    assert main(["view", "--annotations", str(hostile_release), "--out", str(tmp_path / "site")]) == 0
    page, problems = open_page(browser, tmp_path / "site" / "pages" / "hostile.html")
    page.locator('.bar[data-id="a"]').click()
    assert HOSTILE in page.locator("#detail").inner_text()
    assert page.locator("#detail img:not(.thumb), #detail script, #detail b").count() == 0
    assert page.title().startswith(HOSTILE)
    assert not problems, problems
    page.close()


def write_screenshot(png: str | os.PathLike) -> Path:
    """A 1280x800 PNG of a SynthActions video page with an annotated node selected (docs/viewer.png)."""
    from playwright.sync_api import sync_playwright

    from action100m.synth.generate import generate_dataset
    from tests.train.data.shardset import build_shards

    with tempfile.TemporaryDirectory() as scratch, sync_playwright() as playwright:
        work = Path(scratch)
        generate_dataset(work / "synth", videos=2, seed=3, overwrite=True)
        build_shards(work / "synth", work / "shards", "samples_per_shard=1")
        assert main(["view", str(work / "shards"), "--out", str(work / "site")]) == 0
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page, _ = open_page(browser, work / "site" / "pages" / f"{SCREENSHOT_UID}.html")
        nodes = page_nodes(page)
        deepest = max(n["level"] for n in nodes if n["annotation"])
        select(page, next(n for n in nodes if n["annotation"] and n["level"] == deepest))
        # the frame at the node, not the player's seeking spinner
        page.wait_for_function("(v => v.readyState >= 2 && !v.seeking)(document.querySelector('video'))")
        page.screenshot(path=str(png))
        browser.close()
    return Path(png)
