"""The README's screenshots of the web page: the demo collection served, a copy of one of its
photographs searched (the matches above the line), the gallery and the groups of near copies.

    .venv/bin/python tools/screenshots.py [OUT]   # default: docs/ (then shrink them to taste)
"""

import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

import uvicorn
from playwright.sync_api import sync_playwright

from lookalike.collection import Collection
from lookalike.demo import build_demo_collection
from lookalike.server.app import ServerSettings, create_app

out = Path(sys.argv[1] if len(sys.argv) > 1 else "docs")
out.mkdir(parents=True, exist_ok=True)
root = Path(tempfile.mkdtemp()) / "demo"
build_demo_collection(root)
col = Collection.create(root)
col.index(workers=1)
with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
server = uvicorn.Server(
    uvicorn.Config(
        create_app(col, ServerSettings()), host="127.0.0.1", port=port, log_level="warning"
    )
)
threading.Thread(target=server.run, daemon=True).start()
while not server.started:
    time.sleep(0.1)
url = f"http://127.0.0.1:{port}/"
with sync_playwright() as p:
    b = p.chromium.launch(
        executable_path="/usr/bin/chromium", args=["--no-sandbox", "--disable-gpu"]
    )
    page = b.new_page(viewport={"width": 1280, "height": 900})
    page.goto(url)
    page.set_input_files("#query-file", str(root / "copies" / "chelsea-crop.jpg"))
    page.wait_for_function(
        "() => document.querySelector('#results').dataset.state === 'done'", timeout=180000
    )
    page.locator("#results-summary").scroll_into_view_if_needed()
    page.screenshot(path=str(out / "search.png"))
    page.click("#tab-gallery")
    page.wait_for_selector("#gallery img", timeout=60000)
    page.wait_for_timeout(1500)
    page.locator("#tab-gallery").scroll_into_view_if_needed()
    page.screenshot(path=str(out / "gallery.png"))
    page.click("#tab-groups")
    page.wait_for_selector("#groups li", timeout=600000)
    page.wait_for_timeout(1500)
    page.locator("#tab-groups").scroll_into_view_if_needed()
    page.screenshot(path=str(out / "groups.png"))
    b.close()
server.should_exit = True
