"""The HTTP API (`lookalike serve`), through FastAPI's test client, on a copy of the demo
collection: search, images, add, delete, jobs, status, security and errors."""

from __future__ import annotations

import contextlib
import io
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import skimage.data
from fastapi.testclient import TestClient
from PIL import Image

from conftest import local_client, write_tiny_folder
from lookalike import JSON_SCHEMA
from lookalike.catalog.lock import writer_lock
from lookalike.collection import Collection
from lookalike.demo import DemoCollection
from lookalike.images import load_image
from lookalike.server import ServerSettings, create_app
from lookalike.server.files import UnsafePath, inside, safe_name
from lookalike.server.jobs import WAITING, Jobs
from lookalike.settings import DEDUP_THRESHOLD

ORIGINAL = "originals/chelsea.jpg"


def jpeg(pixels: np.ndarray, quality: int = 90) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def a_new_photo_of(demo: DemoCollection, path: str = ORIGINAL) -> bytes:
    """A copy no file of the collection is: the whole original, smaller and a little darker."""
    pixels = load_image(demo.root / path)
    h, w = pixels.shape[:2]
    smaller = np.asarray(Image.fromarray(pixels).resize((w * 4 // 5, h * 4 // 5)))
    return jpeg((smaller * 0.85).astype(np.uint8), quality=75)


def same_photo(demo: DemoCollection, path: str) -> bool:
    """Whether `path` is the original chelsea or one of its copies."""
    return path == ORIGINAL or demo.originals.get(path) == ORIGINAL


@pytest.fixture(scope="module")
def client(served: Collection) -> Iterator[TestClient]:
    with local_client(create_app(served, ServerSettings())) as test_client:
        yield test_client


def search(client: TestClient, data: bytes | None = None, **fields: Any) -> Any:
    upload = {"image": ("query.jpg", data, "image/jpeg")} if data is not None else None
    return client.post("/api/search", files=upload, data={k: str(v) for k, v in fields.items()})


def test_an_uploaded_photo_finds_its_own_first_with_the_matched_points(
    client: TestClient, demo: DemoCollection
) -> None:
    response = search(client, a_new_photo_of(demo), k=5)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["schema"] == JSON_SCHEMA
    assert body["query"]["region"] is None and body["query"]["width"] > 0
    first = body["hits"][0]
    assert first["rank"] == 1 and len(body["hits"]) == 5
    assert all(same_photo(demo, hit["path"]) for hit in body["hits"][:3])
    assert first["inliers"] >= 20 and len(first["matches"]["query"]) == first["inliers"]
    assert len(first["matches"]["image"]) == first["inliers"] and len(first["box"]) == 4
    assert (first["width"], first["height"]) == Image.open(demo.root / first["path"]).size
    assert first["thumb_url"] == f"/api/images/{first['id']}/thumb"
    assert first["image_url"] == f"/api/images/{first['id']}"


def test_a_region_is_searched_alone(client: TestClient, demo: DemoCollection) -> None:
    query = a_new_photo_of(demo)
    w, h = Image.open(io.BytesIO(query)).size
    region = (w * 0.2, h * 0.2, w * 0.6, h * 0.6)
    body = search(client, query, region=",".join(f"{v:g}" for v in region), k=3).json()
    assert body["query"]["region"] == pytest.approx(list(region))
    first = body["hits"][0]
    assert same_photo(demo, first["path"])
    xs = [x for x, _ in first["matches"]["query"]]  # every match lies in the region
    assert min(xs) >= region[0] - 1 and max(xs) <= region[0] + region[2] + 1


def test_an_indexed_image_is_searched_by_id(client: TestClient) -> None:
    listed = client.get("/api/images", params={"limit": 500}).json()
    assert listed["schema"] == JSON_SCHEMA
    ids = {image["path"]: image["id"] for image in listed["images"]}
    assert listed["total"] == len(ids)
    body = search(client, id=ids[ORIGINAL], k=3).json()
    assert body["query"]["id"] == ids[ORIGINAL] and body["hits"][0]["path"] == ORIGINAL


@pytest.mark.parametrize(
    ("fields", "data", "status", "says"),
    [
        ({}, None, 400, "either an image"),
        ({"id": 1}, b"x", 400, "either an image"),
        ({}, b"\xff\xd8\xff\xe0 truncated", 400, "query.jpg"),
        ({}, b"<html><body>not a photo</body></html>", 400, "looks like HTML"),
        ({"id": 987654}, None, 404, "987654"),
        ({"id": "seven"}, None, 422, "id"),
        ({"k": 0}, b"x", 422, "k"),
        ({"region": "1,2,3"}, b"x", 400, "x,y,w,h"),
        ({"region": "0,0,-5,10"}, b"x", 400, "positive size"),
    ],
)
def test_bad_searches_get_a_json_error_that_says_why(
    client: TestClient,
    demo: DemoCollection,
    fields: dict[str, Any],
    data: bytes | None,
    status: int,
    says: str,
) -> None:
    if data == b"x":  # a valid image, so that only the field is wrong
        data = (demo.root / ORIGINAL).read_bytes()
    response = search(client, data, **fields)
    assert response.status_code == status, response.text
    assert says in response.json()["error"]


def test_an_unknown_mode_is_a_client_error(client: TestClient, demo: DemoCollection) -> None:
    response = search(client, (demo.root / ORIGINAL).read_bytes(), mode="telepathy")
    assert response.status_code == 400 and "telepathy" in response.json()["error"]


def test_uploads_over_the_size_limit_are_refused(served: Collection, demo: DemoCollection) -> None:
    with local_client(create_app(served, ServerSettings(max_upload_bytes=1000))) as small:
        response = search(small, (demo.root / ORIGINAL).read_bytes())
    assert response.status_code == 413 and "limit" in response.json()["error"]


def test_originals_and_thumbnails_are_served(client: TestClient, demo: DemoCollection) -> None:
    image = client.get("/api/images", params={"limit": 1}).json()["images"][0]
    original = client.get(image["image_url"])
    assert original.status_code == 200
    assert original.content == (demo.root / image["path"]).read_bytes()
    assert original.headers["content-type"] == "image/jpeg"
    assert original.headers["x-content-type-options"] == "nosniff"
    for size in (64, 256):
        thumb = client.get(image["thumb_url"], params={"size": size})
        assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
        assert max(Image.open(io.BytesIO(thumb.content)).size) <= size
    again = client.get(image["thumb_url"], params={"size": 64})  # from the cache
    assert again.content == client.get(image["thumb_url"], params={"size": 64}).content


@pytest.mark.parametrize(
    "url",
    [
        "/api/images/..%2F..%2F..%2Fetc%2Fpasswd",
        "/api/images/../../etc/passwd",
        "/api/images/1/..%2F..%2F..%2Fetc%2Fpasswd",
        "/static/../../../../etc/passwd",
        "/static/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        "/static/..%2F..%2F..%2F..%2Fetc%2Fpasswd",
        "/%2e%2e/%2e%2e/etc/passwd",
    ],
)
def test_no_path_leaves_the_collection(client: TestClient, url: str) -> None:
    response = client.get(url)
    assert response.status_code in (404, 405, 422), (url, response.status_code)
    assert "root:" not in response.text
    assert "error" in response.json() or "detail" not in response.text


def test_paths_through_links_out_of_the_root_are_refused(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (tmp_path / "secret.jpg").write_bytes(b"x")
    (root / "sub" / "ok.jpg").write_bytes(b"x")
    (root / "link.jpg").symlink_to(tmp_path / "secret.jpg")
    assert inside(root, "sub/ok.jpg") == (root / "sub" / "ok.jpg").resolve()
    for bad in ("../secret.jpg", "link.jpg", "sub/../../secret.jpg", "/etc/passwd", "."):
        with pytest.raises(UnsafePath):
            inside(root, bad)


def test_upload_names_are_made_safe() -> None:
    assert safe_name("../../etc/passwd.jpg", ".jpg") == "passwd.jpg"
    assert safe_name("C:\\Users\\me\\holiday photo.PNG", ".png") == "holiday photo.png"
    assert safe_name("bad\nname<script>.jpg", ".jpg") == "bad_name_script.jpg"
    assert safe_name("...", ".webp") == "upload.webp"
    assert safe_name("photo.gif", ".jpg") == "photo.jpg"  # the extension follows the content


def test_added_images_are_indexed_in_a_job_and_found_by_the_next_search(
    client: TestClient, served: Collection, demo: DemoCollection
) -> None:
    before = client.get("/api/status").json()
    new = jpeg(np.asarray(load_image(demo.root / "originals/astronaut.jpg"))[::-1].copy())
    response = client.post(
        "/api/images",
        files=[
            ("files", ("upside down.jpg", new, "image/jpeg")),
            ("files", ("fake.jpg", b"PK\x03\x04 zipped", "image/jpeg")),
            ("files", ("notes.txt", b"just some text", "text/plain")),
        ],
    )
    assert response.status_code == 202, response.text
    body = response.json()
    assert len(body["saved"]) == 1 and body["saved"][0].endswith("/upside down.jpg")
    assert body["saved"][0].startswith("uploads/")
    reasons = {r["name"]: r["reason"] for r in body["rejected"]}
    assert "zip" in reasons["fake.jpg"] and "text" in reasons["notes.txt"]
    assert body["job"]["state"] in ("queued", "running")
    job = wait_for(client, body["job"]["id"])
    assert job["state"] == "done" and job["report"]["added"] == 1, job
    assert job["total"] > 0 and job["stage"]
    after = client.get("/api/status").json()
    assert after["images"] == before["images"] + 1
    assert after["generation"] > before["generation"]
    hits = search(client, new, k=1).json()["hits"]  # no restart: the new generation is read
    assert hits[0]["path"] == body["saved"][0]


def test_a_deleted_image_leaves_the_index_and_goes_to_the_trash(
    client: TestClient, served: Collection
) -> None:
    listed = client.get("/api/images", params={"limit": 500}).json()["images"]
    victim = next(i for i in listed if i["path"].startswith("copies/"))
    response = client.delete(f"/api/images/{victim['id']}")
    assert response.status_code == 202 and response.json()["removed"] == victim["path"]
    job = wait_for(client, response.json()["job"]["id"])
    assert job["state"] == "done" and job["report"]["removed"] == 1
    assert not (served.root / victim["path"]).exists()
    trashed = list((served.index_dir / "trash").rglob(Path(victim["path"]).name))
    assert len(trashed) == 1  # kept, not destroyed
    assert client.get(victim["image_url"]).status_code == 404
    paths = [i["path"] for i in client.get("/api/images", params={"limit": 500}).json()["images"]]
    assert victim["path"] not in paths
    assert client.delete(f"/api/images/{victim['id']}").status_code == 404


def test_unknown_jobs_are_404(client: TestClient) -> None:
    response = client.get("/api/jobs/nope")
    assert response.status_code == 404 and "nope" in response.json()["error"]


def test_a_failing_job_reports_its_error() -> None:
    jobs = Jobs()

    def broken(progress: Any) -> dict[str, Any]:
        progress("scan", 1, 4)
        raise RuntimeError("the disk went away")

    job = jobs.wait(jobs.submit("index", broken).id)
    assert job.state == "failed" and job.error == "the disk went away"
    assert (job.stage, job.done, job.total) == ("scan", 1, 4)
    assert jobs.wait(jobs.submit("index", lambda progress: {"ok": 1}).id).report == {"ok": 1}
    assert jobs.active() == 0


def test_write_endpoints_need_the_token_when_the_server_has_one(
    served: Collection, demo: DemoCollection
) -> None:
    settings = ServerSettings(token="s3cret")
    photo = ("files", ("x.jpg", (demo.root / ORIGINAL).read_bytes(), "image/jpeg"))
    with local_client(create_app(served, settings)) as locked:
        assert locked.get("/api/status").json()["token_required"] is True
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"}):
            response = locked.post("/api/images", files=[photo], headers=headers)
            assert response.status_code == 401 and "token" in response.json()["error"]
            assert locked.delete("/api/images/1", headers=headers).status_code == 401
        assert search(locked, (demo.root / ORIGINAL).read_bytes()).status_code == 200
        ok = locked.post("/api/images", files=[photo], headers={"Authorization": "Bearer s3cret"})
        assert ok.status_code == 202
        wait_for(locked, ok.json()["job"]["id"])


def test_binding_beyond_loopback_requires_a_token() -> None:
    with pytest.raises(ValueError, match="token"):
        ServerSettings(host="0.0.0.0")
    assert ServerSettings(host="0.0.0.0", token="t").token == "t"
    assert ServerSettings(host="::1").token is None


def test_a_crash_is_a_json_message_without_the_trace(
    served: Collection, monkeypatch: pytest.MonkeyPatch, demo: DemoCollection
) -> None:
    def explode(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("secret internals at /home/someone")

    app = create_app(served, ServerSettings())
    monkeypatch.setattr(served, "search", explode)
    with local_client(app, raise_server_exceptions=False) as crashing:
        response = search(crashing, (demo.root / ORIGINAL).read_bytes())
    assert response.status_code == 500
    assert response.json() == {"error": "internal error (see the server log)"}


def test_searches_keep_faiss_to_one_thread_each(
    served: Collection, monkeypatch: pytest.MonkeyPatch, demo: DemoCollection
) -> None:
    """OpenMP's thread count is per thread: a search on a fresh worker thread must set its own,
    or FAISS starts a team per search and concurrent searches fight over the cores."""
    import faiss

    seen: list[int] = []
    search_for_real = served.search

    def counting(*args: Any, **kwargs: Any) -> Any:
        seen.append(faiss.omp_get_max_threads())
        return search_for_real(*args, **kwargs)

    monkeypatch.setattr(served, "search", counting)
    with local_client(create_app(served, ServerSettings())) as fresh:
        assert search(fresh, (demo.root / ORIGINAL).read_bytes()).status_code == 200
    assert seen == [1]


def test_a_running_app_keeps_torch_and_blas_to_one_thread_and_restores_them(
    served: Collection, monkeypatch: pytest.MonkeyPatch, demo: DemoCollection
) -> None:
    """Embedded from Python (not through `lookalike serve`), the application still runs each
    search on one core: torch on one thread, the BLAS libraries with their own threads too, and
    gives the process its BLAS thread counts back when it stops."""
    import torch
    from threadpoolctl import threadpool_info

    seen: list[tuple[int, bool]] = []
    search_for_real = served.search

    def counting(*args: Any, **kwargs: Any) -> Any:
        # BLAS built on OpenMP follows the thread's OpenMP setting (FAISS's, checked above)
        own = [p for p in threadpool_info() if p["user_api"] == "blas"]
        blas_one = all(p["num_threads"] == 1 for p in own if p["threading_layer"] != "openmp")
        seen.append((torch.get_num_threads(), blas_one))
        return search_for_real(*args, **kwargs)

    monkeypatch.setattr(served, "search", counting)
    pools = {p["filepath"]: p["num_threads"] for p in threadpool_info()}
    with local_client(create_app(served, ServerSettings())) as running:
        assert search(running, (demo.root / ORIGINAL).read_bytes()).status_code == 200
    assert seen == [(1, True)]
    after = {p["filepath"]: p["num_threads"] for p in threadpool_info()}
    assert {path: after[path] for path in pools} == pools


def test_status_docs_and_page(client: TestClient) -> None:
    status = client.get("/api/status").json()
    assert status["images"] > 0 and status["generation"] >= 1 and status["model"]["id"]
    assert {"failed", "last_run", "jobs", "max_upload_bytes"} <= set(status)
    assert status["schema"] == JSON_SCHEMA and status["failed"] == []  # {"path", "reason"} each
    assert "root" not in status and "index" not in status
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/api/search", "/api/images", "/api/images/{image_id}", "/api/status"} <= set(paths)
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]


def test_a_folder_without_an_index_is_indexed_when_served_and_says_how_far_it_got(
    tmp_path: Path, demo: DemoCollection
) -> None:
    root = tmp_path / "fresh"
    (root / "a").mkdir(parents=True)
    for name in ("chelsea", "astronaut", "coffee"):
        shutil.copy(demo.root / f"originals/{name}.jpg", root / "a" / f"{name}.jpg")
    collection = Collection.create(root)
    with contextlib.ExitStack() as held:
        held.enter_context(writer_lock(collection.index_dir))  # as if `lookalike index` ran
        with local_client(create_app(collection, ServerSettings())) as fresh:
            app_jobs = fresh.app.state.jobs  # type: ignore[attr-defined]
            (only,) = [j for j in app_jobs._jobs.values()]
            while app_jobs.get(only.id).stage != WAITING:  # the job waits for the lock
                assert app_jobs.get(only.id).state in ("queued", "running")
                time.sleep(0.05)
            status = fresh.get("/api/status").json()
            assert status["jobs"] == 1 and status["generation"] == 0
            waiting = "indexing: 0 of 3 images (waiting for another index run)"
            assert status["indexing"]["message"] == waiting
            assert (status["indexing"]["done"], status["indexing"]["total"]) == (0, 3)
            answer = search(fresh, (root / "a/coffee.jpg").read_bytes())
            assert (answer.status_code, answer.json()) == (503, {"error": waiting})
            listed = fresh.get("/api/images")
            assert (listed.status_code, listed.json()) == (503, {"error": waiting})

            held.close()  # the other run is over: the job indexes the folder
            assert app_jobs.wait(only.id, timeout=600).state == "done"
            status = fresh.get("/api/status").json()
            assert status["indexing"] is None and status["images"] == 3
            hits = search(fresh, (root / "a/coffee.jpg").read_bytes(), k=1).json()["hits"]
            assert hits[0]["path"] == "a/coffee.jpg"


def wait_for(client: TestClient, job_id: str) -> dict[str, Any]:
    app_jobs = client.app.state.jobs  # type: ignore[attr-defined]
    app_jobs.wait(job_id, timeout=600)
    job = client.get(f"/api/jobs/{job_id}")
    assert job.status_code == 200
    return dict(job.json())


def test_lookalike_serve_answers_over_http(served: Collection) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "lookalike.cli", "serve", str(served.root), "--port", str(port)]
    server = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline, status = time.monotonic() + 120, None
        while status is None and time.monotonic() < deadline and server.poll() is None:
            try:
                status = httpx.get(f"http://127.0.0.1:{port}/api/status", timeout=5).json()
            except httpx.HTTPError:
                time.sleep(0.3)
        assert status is not None, server.stderr.read() if server.poll() is not None else "slow"
        assert status["images"] > 0 and status["token_required"] is False
    finally:
        server.terminate()
        _, stderr = server.communicate(timeout=30)
    assert f"http://127.0.0.1:{port}/" in stderr


def test_verification_can_be_turned_down_per_request_or_for_the_server(
    client: TestClient, served: Collection, demo: DemoCollection
) -> None:
    query = a_new_photo_of(demo)
    hits = search(client, query, k=3, verify=0).json()["hits"]
    assert same_photo(demo, hits[0]["path"])
    assert all(h["inliers"] is None and h["matches"] is None for h in hits)
    with local_client(create_app(served, ServerSettings(verify=1))) as shallow:
        hits = search(shallow, query, k=3).json()["hits"]
    assert hits[0]["inliers"] is not None and hits[1]["inliers"] is None
    with pytest.raises(ValueError, match="verify"):
        ServerSettings(verify=-1)


def test_an_oversized_body_is_refused_before_it_is_read(served: Collection) -> None:
    with local_client(create_app(served, ServerSettings(max_upload_bytes=1000))) as small:
        response = small.post(
            "/api/search",
            files={"image": ("big.jpg", b"\xff" * 3 * 2**20, "image/jpeg")},
        )
    assert response.status_code == 413 and "MiB limit" in response.json()["error"]


def test_uploads_never_overwrite_even_without_hard_links(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lookalike.server.files import save_upload

    first = save_upload(tmp_path, b"one", "photo.jpg", ".jpg")
    assert save_upload(tmp_path, b"two", "photo.jpg", ".jpg") == first.replace(".jpg", "-1.jpg")

    def no_links(*args: Any) -> None:
        raise OSError(1, "Operation not permitted")

    monkeypatch.setattr("os.link", no_links)
    third = save_upload(tmp_path, b"three", "photo.jpg", ".jpg")
    assert third == first.replace(".jpg", "-2.jpg")
    assert [(tmp_path / p).read_bytes() for p in (first, third)] == [b"one", b"three"]
    assert not list(tmp_path.rglob("*.part"))


def answer_schema(spec: dict[str, Any], path: str, method: str, status: int) -> dict[str, Any]:
    """The JSON schema the OpenAPI document gives the answer to `method path` with `status`,
    with the document's components to resolve its references."""
    answer = spec["paths"][path][method]["responses"][str(status)]
    schema = answer["content"]["application/json"]["schema"]
    return {**schema, "components": spec["components"]}


def validates(client: TestClient, response: httpx.Response, path: str, method: str = "get") -> None:
    """Check `response` (to `method path`) against its schema in `client`'s OpenAPI document."""
    import jsonschema

    spec = client.get("/openapi.json").json()
    schema = answer_schema(spec, path, method, response.status_code)
    assert schema.get("$ref") or schema.get("properties"), schema  # not the empty `{}`
    jsonschema.Draft202012Validator(schema).validate(response.json())


def test_answers_validate_against_the_openapi_schemas(
    client: TestClient, demo: DemoCollection
) -> None:
    import jsonschema

    spec = client.get("/openapi.json").json()

    def check(response: httpx.Response, path: str, method: str = "get") -> None:
        validates(client, response, path, method)

    found = search(client, a_new_photo_of(demo), k=3)
    assert found.status_code == 200 and found.json()["hits"][0]["matches"]
    check(found, "/api/search", "post")
    check(client.get("/api/status"), "/api/status")
    listed = client.get("/api/images", params={"limit": 5})
    assert len(listed.json()["images"]) == 5
    check(listed, "/api/images")
    for error, path, method in (
        (client.get("/api/jobs/nothing"), "/api/jobs/{job_id}", "get"),
        (search(client, b"not an image"), "/api/search", "post"),
        (search(client), "/api/search", "post"),
        (client.get("/api/images/99999/thumb"), "/api/images/{image_id}/thumb", "get"),
    ):
        assert error.status_code in (400, 404), error.text
        check(error, path, method)
    invalid = answer_schema(spec, "/api/search", "post", 400)
    with pytest.raises(jsonschema.ValidationError):  # the error schema is no `{}`
        jsonschema.validate({"hits": []}, invalid)


def test_docs_are_served_from_this_server_only(client: TestClient) -> None:
    page = client.get("/docs")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert "<script>" not in page.text and "http" not in page.text.replace("http-equiv", "")
    for asset in ("/docs/assets/swagger-ui-bundle.js", "/docs/assets/swagger-ui.css"):
        served = client.get(asset)
        assert served.status_code == 200 and len(served.content) > 10_000, asset
    assert client.get("/static/docs-init.js").status_code == 200


def test_groups_are_found_once_by_a_job_and_come_largest_first(tmp_path: Path) -> None:
    collection = Collection.create(write_tiny_folder(tmp_path / "tiny"))
    collection.index(workers=1)
    with local_client(create_app(collection, ServerSettings())) as tiny:
        first, again = tiny.get("/api/groups"), tiny.get("/api/groups")
        assert (first.status_code, first.json()["job"]["kind"]) == (202, "groups")
        validates(tiny, first, "/api/groups")
        job_id = first.json()["job"]["id"]
        validates(tiny, tiny.get(f"/api/jobs/{job_id}"), "/api/jobs/{job_id}")
        assert again.status_code in (200, 202)
        if again.status_code == 202:
            assert again.json()["job"]["id"] == job_id  # the same job: found once
        wait_for(tiny, job_id)
        found = tiny.get("/api/groups")
        assert found.status_code == 200, found.text
        validates(tiny, found, "/api/groups")
        body = found.json()
        assert body["generation"] == 1 and body["threshold"] == DEDUP_THRESHOLD
        assert [sorted(i["path"] for i in g["images"]) for g in body["groups"]] == [
            ["a.jpg", "b, c.jpg", "é.jpg"],
            ["d.jpg", "e.jpg"],
        ]
        assert [g["size"] for g in body["groups"]] == [3, 2]
        image = body["groups"][1]["images"][0]
        assert image["thumb_url"] == f"/api/images/{image['id']}/thumb"
        assert tiny.get(image["thumb_url"]).headers["content-type"] == "image/jpeg"
        jobs = tiny.app.state.jobs._jobs.values()  # type: ignore[attr-defined]
        assert [j.kind for j in jobs].count("groups") == 1
        other = tiny.get("/api/groups", params={"threshold": 5})  # another threshold: a job
        assert other.status_code == 202 and other.json()["job"]["id"] != job_id
        assert tiny.get("/api/groups", params={"threshold": 0}).status_code == 422


def test_a_failed_groups_job_answers_500_with_its_error_and_the_next_request_tries_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    collection = Collection.create(write_tiny_folder(tmp_path / "tiny"))
    collection.index(workers=1)
    real = Collection.dedup
    calls: list[int] = []

    def fails_once(self: Collection, *args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise OSError("disk went away")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Collection, "dedup", fails_once)
    with local_client(create_app(collection, ServerSettings())) as tiny:
        first = tiny.get("/api/groups")
        assert first.status_code == 202
        wait_for(tiny, first.json()["job"]["id"])
        failed = tiny.get("/api/groups")
        assert failed.status_code == 500
        assert "finding the groups failed" in failed.json()["error"]
        assert "disk went away" in failed.json()["error"]
        retry = tiny.get("/api/groups")  # the failed job is forgotten: a new one starts
        assert retry.status_code == 202
        assert retry.json()["job"]["id"] != first.json()["job"]["id"]
        wait_for(tiny, retry.json()["job"]["id"])
        found = tiny.get("/api/groups")
        assert found.status_code == 200, found.text
        assert [g["size"] for g in found.json()["groups"]] == [3, 2]
        assert len(calls) == 2


def tiff(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "TIFF")
    return buffer.getvalue()


def test_previews_are_pngs_of_at_most_1600_pixels(client: TestClient) -> None:
    big = np.asarray(Image.fromarray(skimage.data.chelsea()).resize((2000, 1330)))
    answer = client.post("/api/preview", files={"image": ("big.tif", tiff(big), "image/tiff")})
    assert answer.status_code == 200 and answer.headers["content-type"] == "image/png"
    with Image.open(io.BytesIO(answer.content)) as shown:
        assert (shown.format, shown.size) == ("PNG", (1600, 1064))
        assert (
            np.abs(
                np.asarray(shown.convert("RGB").resize((200, 133))).astype(int)
                - np.asarray(Image.fromarray(big).resize((200, 133))).astype(int)
            ).mean()
            < 8
        )
    bad = client.post("/api/preview", files={"image": ("notes.tif", b"plain text", "image/tiff")})
    assert bad.status_code == 400 and "notes.tif" in bad.json()["error"]
    image_id = client.get("/api/images", params={"limit": 1}).json()["images"][0]["id"]
    indexed = client.get(f"/api/images/{image_id}/preview")
    assert indexed.status_code == 200 and indexed.content.startswith(b"\x89PNG")
    assert client.get("/api/images/99999/preview").status_code == 404
