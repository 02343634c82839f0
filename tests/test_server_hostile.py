"""The HTTP API against what a hostile web page or client sends: other host names (DNS
rebinding), writes from other sites, bodies streamed past the limit or without the token,
images that decode to too many pixels, thumbnails at many sizes, an upload while another
process indexes, and regions at the edge of floating point."""

from __future__ import annotations

import io
import json
import threading
import time
import tracemalloc
from collections.abc import Iterable, Iterator
from typing import Any

import anyio
import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from PIL import Image

from conftest import LOCAL_URL, local_client
from lookalike.catalog import writer_lock
from lookalike.collection import Collection
from lookalike.demo import DemoCollection
from lookalike.images import DEFAULT_MAX_PIXELS, load_image
from lookalike.index.layout import IndexLayout
from lookalike.server import ServerSettings, create_app
from lookalike.server.files import thumbnail_path
from lookalike.server.jobs import WAITING

ORIGINAL = "originals/chelsea.jpg"
ATTACKER = "http://attacker.example"
CHUNK = 64 * 2**10
BOUNDARY = "lookalike-test-boundary"
PATIENCE = 120.0
"""Seconds a test waits for a state that comes at once in a working server (a broken one never
reaches it); never a measure of speed."""


@pytest.fixture(scope="module")
def client(served: Collection) -> Iterator[TestClient]:
    with local_client(create_app(served, ServerSettings())) as test_client:
        yield test_client


def image_ids(client: TestClient) -> list[int]:
    return [image["id"] for image in client.get("/api/images").json()["images"]]


def jpeg(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def single_colour_png(width: int, height: int) -> bytes:
    """A PNG of `width` x `height` grey pixels: tens of kB that decode to `width * height * 3`
    bytes and more."""
    buffer = io.BytesIO()
    Image.new("L", (width, height), 200).save(buffer, "PNG")
    return buffer.getvalue()


def eventually(condition: Any, what: str) -> None:
    """Wait until `condition()` holds (a working server gets there at once)."""
    deadline = time.monotonic() + PATIENCE
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"never {what}")
        time.sleep(0.02)


# --- the Host allow-list and the Origin check ---------------------------------------------


@pytest.mark.parametrize("host", ["rebind.attacker.example", "rebind.attacker.example:8000"])
def test_a_foreign_host_is_refused_for_reads_and_writes(client: TestClient, host: str) -> None:
    first = image_ids(client)[0]
    for method, url in [
        ("GET", "/api/images"),
        ("GET", f"/api/images/{first}"),
        ("GET", "/"),
        ("DELETE", f"/api/images/{first}"),
    ]:
        response = client.request(method, url, headers={"Host": host})
        assert response.status_code == 421, (method, url, response.text)
        error = response.json()["error"]
        assert "rebind.attacker.example" in error and "--allow-host" in error
        assert response.headers["x-content-type-options"] == "nosniff"
    assert first in image_ids(client)  # the delete did nothing


@pytest.mark.parametrize("host", ["localhost", "localhost:1234", "127.0.0.1:8000", "[::1]:80"])
def test_loopback_names_are_answered_on_any_port(client: TestClient, host: str) -> None:
    assert client.get("/api/status", headers={"Host": host}).status_code == 200


def test_allow_host_adds_names(served: Collection) -> None:
    settings = ServerSettings(allowed_hosts=("photos.lan", "[fe80::1]"))
    with local_client(create_app(served, settings)) as named:
        for host in ("photos.lan", "PHOTOS.LAN:8000", "[fe80::1]:8000", "127.0.0.1"):
            assert named.get("/api/status", headers={"Host": host}).status_code == 200, host
        assert named.get("/api/status", headers={"Host": "other.lan"}).status_code == 421
    with pytest.raises(ValueError, match="no port"):
        ServerSettings(allowed_hosts=("photos.lan:8000",))


def not_an_image(client: TestClient, **headers: str) -> Any:
    """An upload of a text file: refused by the endpoint (400) once past the guard, with no
    index job started."""
    files = [("files", ("notes.txt", b"just some text", "text/plain"))]
    return client.post("/api/images", files=files, headers=headers)


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": ATTACKER},
        {"Origin": "http://127.0.0.1:9999"},  # another port is another site's page
        {"Origin": "null"},  # a sandboxed frame or a local file
        {"Sec-Fetch-Site": "cross-site"},
    ],
)
def test_writes_from_another_site_are_refused(
    client: TestClient, served: Collection, headers: dict[str, str]
) -> None:
    uploads = served.root / "uploads"
    before = sorted(uploads.rglob("*")) if uploads.exists() else []
    photo = (served.root / ORIGINAL).read_bytes()
    response = client.post(
        "/api/images", files=[("files", ("x.jpg", photo, "image/jpeg"))], headers=headers
    )
    assert response.status_code == 403, response.text
    assert "cross-site POST" in response.json()["error"]
    assert (sorted(uploads.rglob("*")) if uploads.exists() else []) == before
    first = image_ids(client)[0]
    assert client.delete(f"/api/images/{first}", headers=headers).status_code == 403
    assert first in image_ids(client)


@pytest.mark.parametrize(
    "headers",
    [
        {},  # curl, a script
        {"Origin": LOCAL_URL, "Sec-Fetch-Site": "same-origin"},  # the server's own page
        {"Origin": "HTTP://127.0.0.1:8000"},
    ],
)
def test_writes_from_the_servers_page_or_no_browser_pass(
    client: TestClient, headers: dict[str, str]
) -> None:
    response = not_an_image(client, **headers)
    assert response.status_code == 400 and response.json()["error"] == "no image was taken"


def test_the_default_port_is_the_same_origin(served: Collection) -> None:
    with TestClient(create_app(served, ServerSettings()), base_url="http://localhost") as plain:
        assert not_an_image(plain, Origin="http://localhost").status_code == 400
        assert not_an_image(plain, Origin="http://localhost:80").status_code == 400
        assert not_an_image(plain, Origin="https://localhost").status_code == 403


# --- bodies counted as they arrive ----------------------------------------------------------


def streamed(
    app: FastAPI, method: str, path: str, chunks: Iterable[bytes], headers: dict[str, str]
) -> tuple[int, dict[str, Any], int]:
    """Send a request straight to the ASGI `app`, its body in `chunks` and no Content-Length
    (as a chunked upload arrives). Returns the status, the JSON answer and how many bytes of
    the body the application took."""
    taken = 0
    pending = iter(chunks)
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal taken
        chunk = next(pending, None)
        if chunk is None:
            return {"type": "http.request", "body": b"", "more_body": False}
        taken += len(chunk)
        return {"type": "http.request", "body": chunk, "more_body": True}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    raw = {"host": "127.0.0.1:8000", "transfer-encoding": "chunked", **headers}
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(k.lower().encode(), v.encode()) for k, v in raw.items()],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }

    async def call() -> None:
        await app(scope, receive, send)

    anyio.run(call)
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], json.loads(body), taken


def multipart(field: str, size: int) -> Iterator[bytes]:
    """A multipart form with one file of `size` bytes, in chunks of `CHUNK`."""
    yield (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{field}"; filename="big.jpg"'
        "\r\nContent-Type: image/jpeg\r\n\r\n"
    ).encode()
    for _ in range(size // CHUNK):
        yield b"\xff" * CHUNK
    yield f"\r\n--{BOUNDARY}--\r\n".encode()


FORM = {"content-type": f"multipart/form-data; boundary={BOUNDARY}"}


def test_a_chunked_body_stops_at_the_limit(served: Collection) -> None:
    settings = ServerSettings(max_upload_bytes=1000)
    limit = 1000 + 2**20  # one image and the form's fields
    app = create_app(served, settings)
    status, answer, taken = streamed(
        app, "POST", "/api/search", multipart("image", 8 * 2**20), FORM
    )
    assert status == 413 and "MiB limit" in answer["error"], answer
    # the chunk that passed the limit was taken from the client, not handed on
    assert taken <= limit + CHUNK
    with local_client(app) as client:  # through httpx, chunked: a generator has no length
        response = client.post("/api/search", content=multipart("image", 3 * 2**20), headers=FORM)
    assert "content-length" not in response.request.headers
    assert response.status_code == 413 and "MiB limit" in response.json()["error"]
    assert response.headers["connection"] == "close"  # the rest is not received either


def test_an_upload_of_only_oversized_files_is_413_naming_each(served: Collection) -> None:
    with local_client(create_app(served, ServerSettings(max_upload_bytes=1000))) as client:
        big = [("files", (f"big{i}.jpg", b"\xff" * 5000, "image/jpeg")) for i in range(2)]
        response = client.post("/api/images", files=big)
        assert response.status_code == 413, response.text
        rejected = response.json()["rejected"]
        assert [r["name"] for r in rejected] == ["big0.jpg", "big1.jpg"]
        assert all("MiB limit" in r["reason"] for r in rejected)
        mixed = [big[0], ("files", ("notes.jpg", b"not an image", "image/jpeg"))]
        assert client.post("/api/images", files=mixed).status_code == 400


def test_a_token_server_refuses_a_chunked_upload_before_reading_it(served: Collection) -> None:
    app = create_app(served, ServerSettings(token="s3cret"))
    for wrong in ({}, {"authorization": "Bearer wrong"}):
        status, answer, taken = streamed(
            app, "POST", "/api/images", multipart("files", 4 * 2**20), {**FORM, **wrong}
        )
        assert status == 401 and "token" in answer["error"]
        assert taken == 0
    # a search is no write that needs the token: its body is read
    status, answer, taken = streamed(app, "POST", "/api/search", multipart("image", CHUNK), FORM)
    assert status == 400 and taken > 0, answer


# --- pixels --------------------------------------------------------------------------------


def test_an_image_over_the_pixel_limit_is_refused_from_its_header(
    client: TestClient, served: Collection
) -> None:
    bomb = single_colour_png(7990, 8000)  # 63.9 Mpx, under the old 64 Mpx limit
    assert len(bomb) < 200_000
    victim = image_ids(client)[-1]
    record = served.record(victim)
    assert record is not None and record.hash
    path = served.root / record.path
    original = path.read_bytes()
    # made again from the replaced file, whatever an earlier test (the gallery) cached
    cached = thumbnail_path(IndexLayout(served.index_dir).thumbs, record.hash, 256)
    cached.unlink(missing_ok=True)
    tracemalloc.start()
    try:
        files = {"image": ("bomb.png", bomb, "image/png")}
        searched = client.post("/api/search", files=files)
        path.write_bytes(bomb)  # the indexed file replaced since it was indexed
        thumb = client.get(f"/api/images/{victim}/thumb", params={"size": 101})
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        path.write_bytes(original)
    assert searched.status_code == 400, searched.text
    assert "7990x8000 = 63.9 Mpx, over the 40 Mpx limit" in searched.json()["error"]
    assert thumb.status_code == 422 and "over the 40 Mpx limit" in thumb.json()["error"]
    assert DEFAULT_MAX_PIXELS < 7990 * 8000
    # decoding it would take 190 MB of RGB alone; what was allocated is the request
    assert peak < 40 * 2**20, peak
    uploaded = client.post("/api/images", files=[("files", ("bomb.png", bomb, "image/png"))])
    assert uploaded.status_code == 400  # not saved, so never handed to an index run
    assert "over the 40 Mpx limit" in uploaded.json()["rejected"][0]["reason"]


# --- thumbnails ------------------------------------------------------------------------------


def test_thumbnails_at_many_sizes_decode_the_original_once(
    client: TestClient, served: Collection
) -> None:
    image = image_ids(client)[0]
    cache = IndexLayout(served.index_dir).thumbs
    record = served.record(image)
    assert record is not None and record.hash
    cached = thumbnail_path(cache, record.hash, 256)
    cached.unlink(missing_ok=True)  # the served collection is shared: other tests made it
    before = set(cache.glob("*")) if cache.exists() else set()
    for size in [None, *range(33, 49)]:
        assert max(thumbnail_size(client, image, size)) == (size or 256)
    assert set(cache.glob("*")) - before == {cached}  # one decode of the original, one file
    assert max(thumbnail_size(client, image, 300)) == max(thumbnail_size(client, image, 5000))
    assert max(thumbnail_size(client, image, 5000)) == 256  # the server's thumbnail size


def thumbnail_size(client: TestClient, image: int, size: int | None) -> tuple[int, int]:
    """The (width, height) of the image's thumbnail asked at `size`."""
    response = client.get(
        f"/api/images/{image}/thumb", params={} if size is None else {"size": size}
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/jpeg"
    with Image.open(io.BytesIO(response.content)) as thumb:
        return thumb.size


def test_a_thumbnail_is_made_on_the_search_threads(served: Collection) -> None:
    app = create_app(served, ServerSettings(search_threads=1))
    with local_client(app) as client:
        cached, fresh = image_ids(client)[:2]
        assert client.get(f"/api/images/{cached}/thumb").status_code == 200
        record = served.record(fresh)
        assert record is not None and record.hash
        thumbnail_path(IndexLayout(served.index_dir).thumbs, record.hash, 256).unlink(
            missing_ok=True
        )
        limiter = app.state.server.searches
        assert client.portal is not None
        client.portal.call(limiter.acquire_on_behalf_of, "a search")
        answers: list[Any] = []
        making = threading.Thread(
            target=lambda: answers.append(client.get(f"/api/images/{fresh}/thumb"))
        )
        making.start()
        try:
            eventually(lambda: limiter.statistics().tasks_waiting == 1, "waited for a search")
            assert client.get(f"/api/images/{cached}/thumb").status_code == 200  # cached
            assert not answers
        finally:
            client.portal.call(limiter.release_on_behalf_of, "a search")
            making.join()
    assert answers[0].status_code == 200


# --- an upload while another process indexes -----------------------------------------------


def test_an_upload_while_another_process_indexes_waits_and_is_indexed(
    client: TestClient, served: Collection, demo: DemoCollection
) -> None:
    before = client.get("/api/status").json()["images"]
    mirrored = jpeg(np.ascontiguousarray(load_image(demo.root / ORIGINAL)[:, ::-1]))
    jobs = client.app.state.jobs  # type: ignore[attr-defined]
    with writer_lock(served.index_dir):  # as `lookalike index` holds it
        response = client.post(
            "/api/images", files=[("files", ("mirrored.jpg", mirrored, "image/jpeg"))]
        )
        assert response.status_code == 202, response.text
        job_id = response.json()["job"]["id"]
        eventually(lambda: jobs.get(job_id).stage == WAITING, "waited for the index run")
        waiting = client.get(f"/api/jobs/{job_id}").json()
        assert waiting["state"] == "running" and waiting["stage"] == WAITING
    job = jobs.wait(job_id, timeout=600)
    assert job.state == "done" and job.report["added"] == 1, job
    assert client.get("/api/status").json()["images"] == before + 1


# --- regions -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "region", ["0,0,inf,inf", "0,0,nan,5", "0,0,1e309,10", "0,0,0,5", "0,0,-1,5", "1,2,3"]
)
def test_a_region_that_is_not_a_box_is_a_client_error(client: TestClient, region: str) -> None:
    response = client.post("/api/search", data={"id": str(image_ids(client)[0]), "region": region})
    assert response.status_code == 400, response.text
    assert "region" in response.json()["error"]


def test_a_region_past_the_image_is_clipped_to_it(client: TestClient) -> None:
    image = image_ids(client)[0]
    response = client.post("/api/search", data={"id": str(image), "region": "0,0,1e308,1e308"})
    assert response.status_code == 200, response.text
    hits = response.json()["hits"]
    assert any(hit["box"] is not None for hit in hits)
    boxes = [np.asarray(hit["box"]) for hit in hits if hit["box"] is not None]
    assert all(np.isfinite(box).all() for box in boxes)
