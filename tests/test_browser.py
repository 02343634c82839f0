"""The web page in a real browser (headless Chromium driven by Playwright) against the API
served over the indexed demo collection: query, region, side-by-side view, keyboard and a
narrow screen."""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageOps

from conftest import TINY_COPIES, write_tiny_folder
from lookalike.catalog.lock import writer_lock
from lookalike.collection import Collection
from lookalike.demo import DemoCollection

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT_MS = 90_000  # searches run a CNN on the CPU, next to whatever else the machine runs
ORIGINAL = "originals/chelsea.jpg"
EXIF_ORIENTATION = 0x0112


def _unavailable(reason: str) -> None:
    """Skip, or fail under CI=true, when the browser cannot run here."""
    message = f"browser test needs {reason}"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="module")
def sync_api() -> Any:
    try:
        from playwright import sync_api
    except ImportError:
        _unavailable("the playwright package (pip install playwright)")
    if not CHROMIUM.is_file():
        _unavailable(f"Chromium at {CHROMIUM}")
    return sync_api


@contextlib.contextmanager
def serving(app: Any) -> Iterator[str]:
    """`app` served by uvicorn on a free port of 127.0.0.1, at the URL given."""
    import uvicorn

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            pytest.fail(f"uvicorn did not start on 127.0.0.1:{port}")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def server_url(demo_collection: Collection) -> Iterator[str]:
    """The API and page over the demo collection."""
    from lookalike.server.app import ServerSettings, create_app

    with serving(create_app(demo_collection, ServerSettings())) as url:
        yield url


def make_query(demo: DemoCollection, folder: Path) -> tuple[Path, tuple[int, int]]:
    """A new view of `ORIGINAL` — cropped, turned 8 degrees, shrunk — saved as a JPEG whose
    pixels are stored on their side with EXIF orientation 6, so that it is upright only when
    the orientation is applied. Returns the path and the (width, height) as seen."""
    with Image.open(demo.root / ORIGINAL) as source:
        image = source.convert("RGB")
    w, h = image.size
    image = image.crop((int(0.08 * w), int(0.06 * h), int(0.94 * w), int(0.92 * h)))
    fill = tuple(int(v) for v in np.asarray(image).reshape(-1, 3).mean(axis=0))
    image = image.rotate(8, resample=Image.Resampling.BICUBIC, fillcolor=fill)
    image = image.resize(
        (int(image.width * 0.85), int(image.height * 0.85)), Image.Resampling.LANCZOS
    )
    seen = image.size
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = 6  # "rotate 90 degrees clockwise to display"
    path = folder / "query, chélsea (turned).jpg"
    image.transpose(Image.Transpose.ROTATE_90).save(path, quality=90, exif=exif)
    with Image.open(path) as check:
        assert ImageOps.exif_transpose(check).size == seen
    return path, seen


def wait_for_search(page: Any, count: int) -> None:
    """Until the page has rendered its `count`-th search answer."""
    page.wait_for_function(
        "n => { const r = document.querySelector('#results');"
        " return r.dataset.state === 'done' && Number(r.dataset.search) >= n; }",
        arg=count,
        timeout=TIMEOUT_MS,
    )


def searched_page(browser: Any, server_url: str, query: Path) -> Any:
    """A new desktop-sized page of the server that has searched `query` once."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(server_url + "/")
    page.set_input_files("#query-file", str(query))
    wait_for_search(page, 1)
    return page


def hit_paths(page: Any) -> list[str]:
    return page.locator("#results .hit").evaluate_all("cards => cards.map(c => c.dataset.path)")


CANVAS_SPREAD = """c => {
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  const seen = new Set();
  for (let i = 0; i < d.length; i += 4 * 97) {
    seen.add(((d[i] >> 3) << 10) | ((d[i + 1] >> 3) << 5) | (d[i + 2] >> 3));
  }
  return {width: c.width, height: c.height, colours: seen.size};
}"""


def test_web_page_searches_compares_and_adapts(
    sync_api: Any,
    server_url: str,
    demo: DemoCollection,
    tmp_path: Path,
) -> None:
    expect = sync_api.expect
    expect.set_options(timeout=TIMEOUT_MS)
    same_scene = {ORIGINAL} | {
        copy for copy, original in demo.originals.items() if original == ORIGINAL
    }
    query, (seen_w, seen_h) = make_query(demo, tmp_path)

    with sync_api.sync_playwright() as p:
        browser = launch(sync_api, p)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(server_url + "/")
            expect(page.locator("#status")).to_contain_text(f"{len(demo.images)} images")

            # a new query image searches at once; the scene's original (or a copy of it) is first
            page.set_input_files("#query-file", str(query))
            wait_for_search(page, 1)
            results = page.locator("#results")
            assert results.get_attribute("data-query-size") == f"{seen_w},{seen_h}"
            assert results.get_attribute("data-region") == ""
            first = hit_paths(page)
            assert first and first[0] in same_scene, first[:5]
            expect(page.locator("#message")).to_be_hidden()

            # a box drawn on the query (shown upright) is sent in the image's pixels as seen
            canvas = page.locator("#query-area canvas")
            box = canvas.bounding_box()
            assert box is not None and box["width"] > 100
            page.mouse.move(box["x"] + 0.15 * box["width"], box["y"] + 0.10 * box["height"])
            page.mouse.down()
            page.mouse.move(box["x"] + 0.5 * box["width"], box["y"] + 0.5 * box["height"], steps=5)
            page.mouse.move(
                box["x"] + 0.85 * box["width"], box["y"] + 0.90 * box["height"], steps=5
            )
            page.mouse.up()
            page.click("#search-region")
            wait_for_search(page, 2)
            x, y, w, h = (float(v) for v in results.get_attribute("data-region").split(","))
            expected = (0.15 * seen_w, 0.10 * seen_h, 0.70 * seen_w, 0.80 * seen_h)
            assert np.allclose((x, y, w, h), expected, atol=0.02 * max(seen_w, seen_h)), (
                (x, y, w, h),
                expected,
            )
            region_hits = hit_paths(page)
            assert region_hits and region_hits[0] in same_scene, region_hits[:5]

            # clicking the first hit opens the side-by-side view, drawn with its matches
            hit = page.locator("#results .hit").first
            assert hit.locator(".inliers").count() == 1, "the first hit should be verified"
            hit.click()
            dialog = page.locator("#compare")
            expect(dialog).to_be_visible()
            compare = page.locator("#compare-canvas")
            expect(compare).to_have_attribute("data-drawn", "true")
            assert int(compare.get_attribute("data-lines")) > 0
            drawn = compare.evaluate(CANVAS_SPREAD)
            assert drawn["width"] > 200 and drawn["height"] > 100 and drawn["colours"] > 200, drawn
            screenshot = tmp_path / "browser.png"
            page.screenshot(path=str(screenshot))
            assert screenshot.is_file()
            with Image.open(screenshot) as shot:
                assert shot.size == (1280, 900)
            page.click("#compare-close")
            expect(dialog).to_be_hidden()

            # keyboard: Enter on a focused result opens it, Escape closes it, focus comes back
            second = page.locator("#results .hit").nth(1)
            second.focus()
            page.keyboard.press("Enter")
            expect(dialog).to_be_visible()
            expect(page.locator("#compare-close")).to_be_focused()
            expect(compare).to_have_attribute("data-drawn", "true")
            page.keyboard.press("Escape")
            expect(dialog).to_be_hidden()
            expect(second).to_be_focused()
            # Tab from a result reaches its "Find similar" button, which searches by id
            page.keyboard.press("Tab")
            similar = second.locator(".find-similar")
            expect(similar).to_be_focused()
            page.keyboard.press("Enter")
            wait_for_search(page, 3)
            by_id = hit_paths(page)
            assert by_id and by_id[0] in same_scene, by_id[:5]

            # a fast user closes the view and opens another hit in the same moment: the dialog's
            # late "close" event must not drop the new hit (its image is not loaded yet)
            page.locator("#results .hit").first.click()
            expect(compare).to_have_attribute("data-drawn", "true")
            page.evaluate(
                "() => { document.querySelector('#compare-close').click();"
                " const cards = document.querySelectorAll('#results .hit');"
                " cards[cards.length - 1].click(); }"
            )
            expect(dialog).to_be_visible()
            expect(page.locator("#compare-caption")).to_contain_text(by_id[-1])
            expect(compare).to_have_attribute("data-drawn", "true")
            page.keyboard.press("Escape")
            expect(dialog).to_be_hidden()

            # an image the browser shows but the server cannot read: the API's error is shown
            svg = tmp_path / "drawing.svg"
            svg.write_text(
                '<svg xmlns="http://www.w3.org/2000/svg" width="40" height="30">'
                '<rect width="40" height="30" fill="teal"/></svg>'
            )
            page.set_input_files("#query-file", str(svg))
            expect(page.locator("#results")).to_have_attribute("data-state", "error")
            alert = page.get_by_role("alert")
            expect(alert).to_be_visible()
            expect(alert).to_contain_text("HTTP 4")
            assert not errors, errors
            page.close()

            # a narrow screen: one column of results, nothing wider than the screen
            narrow = browser.new_page(viewport={"width": 360, "height": 740})
            narrow.goto(server_url + "/")
            narrow.set_input_files("#query-file", str(query))
            wait_for_search(narrow, 1)
            cards = narrow.locator("#results .hit")
            a, b = cards.nth(0).bounding_box(), cards.nth(1).bounding_box()
            assert a is not None and b is not None
            assert abs(a["x"] - b["x"]) < 1 and b["y"] >= a["y"] + a["height"] - 1, (a, b)
            assert narrow.evaluate("document.documentElement.scrollWidth") <= 360
            cards.nth(0).focus()
            narrow.keyboard.press(" ")
            expect(narrow.locator("#compare")).to_be_visible()
            expect(narrow.locator("#compare-canvas")).to_have_attribute("data-drawn", "true")
            narrow_canvas = narrow.locator("#compare-canvas").bounding_box()
            assert narrow_canvas is not None and narrow_canvas["width"] <= 360
            narrow.screenshot(path=str(tmp_path / "browser-narrow.png"))
            narrow.keyboard.press("Escape")
            expect(narrow.locator("#compare")).to_be_hidden()
        finally:
            browser.close()


def launch(sync_api: Any, p: Any) -> Any:
    return p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)


def watched(page: Any, origin: str) -> list[str]:
    """What goes wrong on `page`, as it happens: script errors, console errors, and requests
    to anywhere but `origin` (nothing may be fetched elsewhere)."""
    problems: list[str] = []
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on(
        "console",
        lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None,
    )
    page.on(
        "request",
        lambda r: (
            None
            if r.url.startswith((origin + "/", "data:", "blob:"))
            else problems.append(f"request elsewhere: {r.url}")
        ),
    )
    return problems


def test_the_api_docs_show_the_operations_with_nothing_fetched_elsewhere(
    sync_api: Any, server_url: str
) -> None:
    expect = sync_api.expect
    expect.set_options(timeout=TIMEOUT_MS)
    with sync_api.sync_playwright() as p:
        browser = launch(sync_api, p)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            problems = watched(page, server_url)
            page.goto(server_url + "/docs")
            search = page.locator(".opblock-post", has_text="/api/search").first
            expect(search).to_be_visible()
            expect(search.locator(".opblock-summary-method")).to_have_text("POST")
            groups = page.locator(".opblock-get", has_text="/api/groups").first
            expect(groups).to_be_visible()
            # an operation opens with its answers' schemas (not `{}`)
            search.locator(".opblock-summary").click()
            expect(search.locator(".responses-wrapper")).to_contain_text("hits")
            assert not problems, problems
        finally:
            browser.close()


def within_viewport(page: Any, selector: str) -> bool:
    """Whether the element is on screen as the page is scrolled now, all of its height."""
    box = page.locator(selector).bounding_box()
    height = page.viewport_size["height"]
    return box is not None and box["y"] >= 0 and box["y"] + box["height"] <= height


def test_on_a_phone_results_and_errors_come_into_view(
    sync_api: Any, server_url: str, demo: DemoCollection, tmp_path: Path
) -> None:
    expect = sync_api.expect
    expect.set_options(timeout=TIMEOUT_MS)
    query, _ = make_query(demo, tmp_path)
    notes = tmp_path / "notes.txt"
    notes.write_text("not an image")
    with sync_api.sync_playwright() as p:
        browser = launch(sync_api, p)
        try:
            phone = browser.new_page(viewport={"width": 390, "height": 844})
            problems = watched(phone, server_url)
            phone.goto(server_url + "/")
            phone.set_input_files("#query-file", str(query))
            wait_for_search(phone, 1)
            expect(phone.locator("#results-summary")).to_contain_text("results")
            # below the query and its controls, out of sight unless the page scrolled to it
            below = phone.evaluate(
                "() => document.querySelector('#results-summary').getBoundingClientRect()"
                ".bottom + window.scrollY"
            )
            assert below > 844, below
            assert within_viewport(phone, "#results-summary")
            # a wrong file chosen from down there: the error is where the user looks
            phone.set_input_files("#query-file", str(notes))
            alert = phone.get_by_role("alert")
            expect(alert).to_be_visible()
            expect(alert).to_contain_text("notes.txt")
            assert within_viewport(phone, "#message")
            assert phone.evaluate("document.documentElement.scrollWidth") <= 390
            assert not problems, problems
        finally:
            browser.close()


def test_a_tiff_query_is_shown_through_the_servers_preview(
    sync_api: Any, server_url: str, demo: DemoCollection, tmp_path: Path
) -> None:
    expect = sync_api.expect
    expect.set_options(timeout=TIMEOUT_MS)
    tiff = tmp_path / "chelsea query.tif"
    with Image.open(demo.root / ORIGINAL) as source:
        source.convert("RGB").save(tiff, "TIFF")
        size = source.size
    with sync_api.sync_playwright() as p:
        browser = launch(sync_api, p)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            problems = watched(page, server_url)
            page.goto(server_url + "/")
            page.set_input_files("#query-file", str(tiff))
            wait_for_search(page, 1)
            area = page.locator("#query-area")
            expect(area).to_have_attribute("data-preview", "true")
            assert area.get_attribute("data-image-size") == f"{size[0]},{size[1]}"
            drawn = page.locator("#query-canvas").evaluate(CANVAS_SPREAD)
            assert drawn["width"] > 100 and drawn["colours"] > 200, drawn
            first = hit_paths(page)[0]
            assert first == ORIGINAL or demo.originals.get(first) == ORIGINAL, first
            expect(page.locator("#message")).to_be_hidden()
            assert not problems, problems
        finally:
            browser.close()


def test_the_gallery_pages_thumbnails_and_finds_similar_images(
    sync_api: Any, server_url: str, demo: DemoCollection
) -> None:
    expect = sync_api.expect
    expect.set_options(timeout=TIMEOUT_MS)
    total = len(demo.images)
    assert total > 60, "the demo should need a second page"
    with sync_api.sync_playwright() as p:
        browser = launch(sync_api, p)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            problems = watched(page, server_url)
            page.goto(server_url + "/")
            items = page.locator("#gallery .gallery-item")
            expect(items).to_have_count(60)
            expect(page.locator("#gallery-summary")).to_have_text(f"Showing 60 of {total} images.")
            assert page.locator("#gallery img[loading=lazy]").count() == 60
            first = items.first
            first.scroll_into_view_if_needed()
            thumb = first.locator("img")
            expect(thumb).to_be_visible()
            page.wait_for_function(
                "img => img.complete && img.naturalWidth > 0", arg=thumb.element_handle()
            )
            more = page.get_by_role("button", name="Show more")
            more.click()
            expect(items).to_have_count(total)
            expect(more).to_be_hidden()
            # "find similar" on a thumbnail searches by that image: its scene comes first
            card = page.locator(
                "#gallery .gallery-item", has=page.locator(f'p[title="{ORIGINAL}"]')
            )
            card.get_by_role("button", name=f"Find images similar to {ORIGINAL}").click()
            wait_for_search(page, 1)
            assert within_viewport(page, "#results-summary")
            hits = hit_paths(page)
            assert hits[0] == ORIGINAL or demo.originals.get(hits[0]) == ORIGINAL, hits[:5]
            assert not problems, problems
        finally:
            browser.close()


def test_a_new_folder_shows_its_indexing_then_searches_and_groups_its_copies(
    sync_api: Any, tmp_path: Path
) -> None:
    from lookalike.server.app import ServerSettings, create_app

    sync_api.expect.set_options(timeout=TIMEOUT_MS)
    collection = Collection.create(write_tiny_folder(tmp_path / "new folder"))
    with contextlib.ExitStack() as held:
        held.enter_context(writer_lock(collection.index_dir))  # the job waits for it
        app = create_app(collection, ServerSettings())
        with serving(app) as url, sync_api.sync_playwright() as p:
            browse_a_new_folder(sync_api, p, url, collection, held)


def browse_a_new_folder(
    sync_api: Any, p: Any, url: str, collection: Collection, held: contextlib.ExitStack
) -> None:
    """The page over `collection` (`TINY_COPIES`), whose first index run waits until `held`
    is closed: the progress, a search meanwhile, then the gallery, a search and the groups."""
    expect = sync_api.expect
    n = sum(len(copies) for copies in TINY_COPIES.values())
    browser = launch(sync_api, p)
    try:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        problems = watched(page, url)
        page.goto(url + "/")
        status = page.locator("#status")
        expect(status).to_contain_text(f"indexing: 0 of {n} images")
        expect(page.locator("#gallery-summary")).to_contain_text("being indexed")

        # a search meanwhile says how far the indexing has got
        page.set_input_files("#query-file", str(collection.root / "d.jpg"))
        expect(page.locator("#results")).to_have_attribute("data-state", "error")
        expect(page.get_by_role("alert")).to_contain_text(f"indexing: 0 of {n} images")

        held.close()  # the other index run is over: the folder is indexed
        expect(status).to_contain_text("generation 1", timeout=600_000)
        expect(status).to_contain_text(f"{n} images")
        expect(status).not_to_contain_text("indexing")
        expect(page.locator("#gallery .gallery-item")).to_have_count(n)
        page.click("#search-region")  # the same query again, now answered
        wait_for_search(page, 1)
        assert set(hit_paths(page)[:2]) == {"d.jpg", "e.jpg"}

        # the groups: largest first, each group's images side by side
        page.get_by_role("tab", name="Groups of near copies").click()
        groups = page.locator("#groups .group")
        expect(groups).to_have_count(2)
        expect(page.locator("#groups-summary")).to_contain_text("2 groups")
        first = groups.nth(0).locator(".group-image")
        expect(first).to_have_count(3)
        expect(groups.nth(1).locator(".group-image")).to_have_count(2)
        assert sorted(first.evaluate_all("e => e.map(i => i.dataset.path)")) == sorted(
            TINY_COPIES["chelsea"]
        )
        boxes = [first.nth(i).bounding_box() for i in range(3)]
        assert all(b is not None for b in boxes)
        assert len({round(b["y"]) for b in boxes}) == 1, boxes  # one row
        assert boxes[0]["x"] < boxes[1]["x"] < boxes[2]["x"], boxes
        expect(first.first.locator("img")).to_be_visible()
        assert not [x for x in problems if "503" not in x], problems
    finally:
        browser.close()


def test_page_draws_the_line_after_the_matches_and_says_when_there_is_none(
    sync_api: Any, server_url: str, demo: DemoCollection, tmp_path: Path
) -> None:
    """What a person reads: the matches first with their verdict, a line under them, the rest
    after; for a photograph that is not in the collection, that there is no match."""
    from skimage import data

    expect = sync_api.expect
    expect.set_options(timeout=TIMEOUT_MS)
    query, _ = make_query(demo, tmp_path)
    stranger = tmp_path / "brick wall.png"
    Image.fromarray(np.stack([data.brick()] * 3, axis=-1)).save(stranger)
    with sync_api.sync_playwright() as p:
        browser = launch(sync_api, p)
        try:
            page = searched_page(browser, server_url, query)
            summary = page.locator("#results-summary")
            expect(summary).to_contain_text("in the collection")
            expect(summary).not_to_contain_text("No match")
            line = page.get_by_role("separator")
            expect(line).to_be_visible()
            expect(line).to_contain_text("Above: the match")
            first = page.locator("#results .hit").first
            expect(first.locator(".verdict")).to_have_text("match")
            expect(first).to_contain_text("similarity 0.")
            # every card above the line says match, none below it does
            verdicts = page.locator("#results > li").evaluate_all(
                "items => items.map(i => i.classList.contains('matches-line') ? '|' :"
                " i.querySelector('.verdict').textContent)"
            )
            cut = verdicts.index("|")
            assert set(verdicts[:cut]) == {"match"}, verdicts
            assert "match" not in verdicts[cut + 1 :], verdicts

            page.set_input_files("#query-file", str(stranger))
            wait_for_search(page, 2)
            expect(summary).to_contain_text("No match in the collection")
            expect(page.get_by_role("separator")).to_have_count(0)
            expect(page.locator("#results .verdict-match")).to_have_count(0)
            assert page.locator("#results .hit").count() > 0
            page.screenshot(path=str(tmp_path / "browser-verdict.png"))
        finally:
            browser.close()


def test_searching_for_the_same_kind_of_thing_says_so_and_shows_no_match(
    sync_api: Any, server_url: str, demo: DemoCollection, tmp_path: Path
) -> None:
    """Switched to 'the same kind of thing', the same query searches again at once: the page
    says the results are of the same kind and not checked for the same object, every card
    reads 'similar' with its score, and no line divides matches; switched back, the match is
    first again."""
    expect = sync_api.expect
    expect.set_options(timeout=TIMEOUT_MS)
    query, _ = make_query(demo, tmp_path)
    with sync_api.sync_playwright() as p:
        browser = launch(sync_api, p)
        try:
            page = searched_page(browser, server_url, query)
            summary = page.locator("#results-summary")
            expect(summary).to_contain_text("in the collection")

            page.get_by_label("Look for", exact=True).select_option(label="the same kind of thing")
            wait_for_search(page, 2)
            expect(summary).to_contain_text("of the same kind of thing")
            expect(summary).to_contain_text("not checked for the same object")
            expect(page.get_by_role("separator")).to_have_count(0)
            cards = page.locator("#results .hit")
            assert cards.count() > 0
            verdicts = set(page.locator("#results .verdict").all_text_contents())
            assert verdicts == {"similar"}, verdicts
            expect(cards.first).to_contain_text("score ")
            same_scene = {ORIGINAL} | {c for c, o in demo.originals.items() if o == ORIGINAL}
            assert hit_paths(page)[0] in same_scene

            page.get_by_label("Look for", exact=True).select_option(label="the same thing")
            wait_for_search(page, 3)
            expect(page.locator("#results .hit").first.locator(".verdict")).to_have_text("match")
            page.screenshot(path=str(tmp_path / "browser-kind.png"))
        finally:
            browser.close()
