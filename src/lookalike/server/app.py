"""The HTTP API and web page over one `Collection` (`lookalike serve`).

    POST   /api/search               multipart: image (file) or id; region "x,y,w,h"; k; mode;
                                     verify
    GET    /api/images               the indexed images, a page at a time
    GET    /api/images/{id}          the original file
    GET    /api/images/{id}/thumb    a cached JPEG thumbnail (?size=256)
    POST   /api/images               multipart files: saved under uploads/, indexed in a job
    DELETE /api/images/{id}          moved to the index's trash, then re-indexed in a job
    GET    /api/jobs/{id}            a job's state and progress
    GET    /api/status               counts, model, generation, last run, failures

Every error is JSON, `{"error": message}`, never a stack trace. Write endpoints need
`Authorization: Bearer TOKEN` when the server has a token (it must when bound beyond
loopback). Searches run on a small pool of threads (`search_threads`), so that many clients
queue instead of thrashing the cores; a new index generation is picked up by the next search.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import numpy as np
from fastapi import FastAPI, File, Form, HTTPException, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from lookalike.catalog import CatalogError
from lookalike.collection import Collection, Hit
from lookalike.images import ImageError
from lookalike.server import files
from lookalike.server.jobs import Jobs

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
LOOPBACK_NAMES = ("localhost",)


@dataclass(frozen=True)
class ServerSettings:
    """How the server listens and what it accepts.

    token: required by the write endpoints when set; must be set when `host` is not a
      loopback address.
    max_upload_bytes: the largest image taken by search or upload.
    search_threads: searches run at once (more queue); about one per core.
    verify: how many of the first stage's best each search verifies spatially when the
      request does not say (None: the collection's setting, 100). Verified hits carry the
      matched points and region the page draws.
    """

    host: str = "127.0.0.1"
    port: int = 8000
    token: str | None = None
    max_upload_bytes: int = 20 * 2**20
    max_files: int = 100
    max_k: int = 200
    search_threads: int = 2
    thumb_size: int = 256
    verify: int | None = None

    def __post_init__(self) -> None:
        if not is_loopback(self.host) and not self.token:
            raise ValueError(
                f"binding to {self.host} exposes the collection beyond this machine: "
                "give a token (--token or LOOKALIKE_TOKEN) for the write endpoints"
            )
        if self.max_upload_bytes < 1 or self.max_files < 1 or self.max_k < 1:
            raise ValueError("max_upload_bytes, max_files and max_k must be >= 1")
        if self.search_threads < 1:
            raise ValueError("search_threads must be >= 1")
        if self.verify is not None and self.verify < 0:
            raise ValueError("verify must be >= 0")


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def create_app(collection: Collection, settings: ServerSettings | None = None) -> FastAPI:
    """The FastAPI application serving `collection`; indexing starts in the background when
    the collection has no index yet."""
    settings = settings or ServerSettings()
    app = FastAPI(
        lifespan=one_core_per_search,
        title="lookalike",
        summary="Find the images that show the same object, place or document.",
        version="0.1.0",
    )
    jobs = Jobs()
    limiter = anyio.CapacityLimiter(settings.search_threads)
    app.state.collection, app.state.settings, app.state.jobs = collection, settings, jobs

    def index_job(workers: int = 1) -> dict[str, Any]:
        """Queue an index run: in this process (`workers=1`) for the few files an upload or a
        delete changes; a whole new collection gets a pool of worker processes (0)."""

        def work(progress: Any) -> dict[str, Any]:
            # a writer of its own: the served collection keeps answering meanwhile
            writer = Collection.open(collection.index_dir)
            return writer.index(workers=workers, progress=progress).as_dict()

        return jobs.submit("index", work).as_dict()

    if collection.status()["generation"] == 0:
        index_job(workers=0)

    # --- errors: JSON with a message, never a traceback ------------------------------------

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, e: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"error": str(e.detail)}, status_code=e.status_code, headers=e.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, e: RequestValidationError) -> JSONResponse:
        problems = [
            f"{'.'.join(str(p) for p in err.get('loc', ())[1:]) or 'request'}: {err.get('msg')}"
            for err in e.errors()
        ]
        return JSONResponse({"error": "; ".join(problems)}, status_code=422)

    @app.exception_handler(Exception)
    async def crashed(request: Request, e: Exception) -> JSONResponse:
        log.exception("%s %s failed", request.method, request.url.path)
        return JSONResponse({"error": "internal error (see the server log)"}, status_code=500)

    @app.middleware("http")
    async def hardened(request: Request, call_next: Any) -> Response:
        # refuse an oversized body before it is read (and spooled to disk) at all
        files_allowed = settings.max_files if request.url.path == "/api/images" else 1
        limit = files_allowed * settings.max_upload_bytes + 2**20  # the form's own fields
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            return JSONResponse(
                {"error": f"the request is over the {limit / 2**20:g} MiB limit"},
                status_code=413,
            )
        response: Response = await call_next(request)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        response.headers.setdefault(
            "Content-Security-Policy",
            "default-src 'self'; img-src 'self' blob: data:; style-src 'self' 'unsafe-inline'",
        )
        return response

    def require_token(request: Request) -> None:
        if settings.token is None:
            return
        given = request.headers.get("authorization", "")
        scheme, _, value = given.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            value.strip().encode(), settings.token.encode()
        ):
            raise HTTPException(
                401,
                "this server needs a token: Authorization: Bearer TOKEN",
                headers={"WWW-Authenticate": "Bearer"},
            )

    async def read_limited(upload: UploadFile) -> bytes:
        data = await upload.read(settings.max_upload_bytes + 1)
        if len(data) > settings.max_upload_bytes:
            raise HTTPException(
                413,
                f"{upload.filename or 'the upload'} is over the "
                f"{settings.max_upload_bytes / 2**20:g} MiB limit",
            )
        return data

    def record_of(image_id: int) -> Any:
        try:
            record = collection.record(image_id)
        except CatalogError as e:
            raise HTTPException(503, str(e)) from e
        if record is None:
            raise HTTPException(404, f"no indexed image with id {image_id}")
        return record

    def file_of(record: Any) -> Path:
        try:
            path = files.inside(collection.root, record.path)
        except files.UnsafePath as e:
            raise HTTPException(403, str(e)) from e
        if not path.is_file():
            raise HTTPException(404, f"{record.path} is no longer in the collection")
        return path

    # --- search -----------------------------------------------------------------------------

    @app.post("/api/search")
    async def search(
        request: Request,
        image: UploadFile | None = File(None, description="the query image"),
        id: int | None = Form(None, description="or the id of an indexed image"),
        region: str | None = Form(None, description='"x,y,w,h" in the query\'s pixels'),
        k: int = Form(20, ge=1),
        mode: str | None = Form(None, description="fused (default), asmk, global, ..."),
        verify: int | None = Form(None, ge=0, description="how many to verify spatially"),
    ) -> JSONResponse:
        """Search the collection with an uploaded image or an indexed one (or a region of it)."""
        if (image is None) == (id is None):
            raise HTTPException(400, "give either an image file or the id of an indexed image")
        query: Any = id
        name = f"image {id}"
        if image is not None:
            query = await read_limited(image)
            name = image.filename or "the uploaded image"
        box = parse_region(region)
        k = min(k, settings.max_k)
        t = time.perf_counter()
        try:
            hits, size, generation = await anyio.to_thread.run_sync(
                partial(
                    run_search,
                    collection,
                    query,
                    box,
                    k,
                    mode,
                    settings.verify if verify is None else verify,
                ),
                limiter=limiter,
            )
        except ImageError as e:
            raise HTTPException(400, f"{name}: {e.reason}") from e
        except KeyError as e:
            raise HTTPException(404, str(e.args[0] if e.args else e)) from e
        except CatalogError as e:
            raise HTTPException(503, str(e)) from e
        except ValueError as e:
            raise HTTPException(400, str(e)) from e
        # plain JSON: FastAPI's generic encoder takes ~10 ms over the matched points
        return JSONResponse(
            {
                "query": {"width": size[0], "height": size[1], "id": id, "region": box},
                "generation": generation,
                "seconds": round(time.perf_counter() - t, 4),
                "hits": [hit_json(hit) for hit in hits],
            }
        )

    # --- images -----------------------------------------------------------------------------

    @app.get("/api/images")
    def list_images(offset: int = 0, limit: int = 100) -> dict[str, Any]:
        """The indexed images, `limit` (at most 1000) from `offset`, in index order."""
        try:
            images = collection.images()
        except CatalogError as e:
            raise HTTPException(503, str(e)) from e
        page = images[max(0, offset) : max(0, offset) + min(max(1, limit), 1000)]
        return {
            "total": len(images),
            "images": [
                {"id": i, "path": p, "image_url": f"/api/images/{i}", "thumb_url": thumb_url(i)}
                for i, p in page
            ],
        }

    @app.get("/api/images/{image_id}")
    def original(image_id: int) -> FileResponse:
        """The indexed image's file, as stored."""
        path = file_of(record_of(image_id))
        media = files.MEDIA_TYPES.get(path.suffix.lower(), "application/octet-stream")
        return FileResponse(path, media_type=media, content_disposition_type="inline")

    @app.get("/api/images/{image_id}/thumb")
    def thumb(image_id: int, size: int | None = None) -> FileResponse:
        """A JPEG of the image no larger than `size` (32 to 1024) on either side."""
        record = record_of(image_id)
        side = min(max(size or settings.thumb_size, 32), 1024)
        key = record.hash or f"{record.id}-{record.mtime_ns}"
        try:
            path = files.thumbnail(
                file_of(record), collection.index_dir / files.THUMB_DIR, key, side
            )
        except ImageError as e:
            raise HTTPException(422, f"{record.path}: {e.reason}") from e
        cache = {"Cache-Control": "max-age=86400"}
        return FileResponse(path, media_type="image/jpeg", headers=cache)

    @app.post("/api/images", status_code=202)
    async def add_images(
        request: Request, files_: list[UploadFile] = File(..., alias="files")
    ) -> dict[str, Any]:
        """Save uploaded images under `uploads/` in the collection and index them in a job."""
        require_token(request)
        if len(files_) > settings.max_files:
            raise HTTPException(413, f"at most {settings.max_files} files an upload")
        saved, rejected = [], []
        for upload in files_:
            name = upload.filename or "upload"
            try:
                data = await read_limited(upload)
                extension = files.check_upload(data, name)
            except HTTPException as e:
                rejected.append({"name": name, "reason": str(e.detail)})
                continue
            except ImageError as e:
                rejected.append({"name": name, "reason": e.reason})
                continue
            saved.append(
                await anyio.to_thread.run_sync(
                    files.save_upload, collection.root, data, name, extension
                )
            )
        if not saved:
            return JSONResponse(  # type: ignore[return-value]
                {"error": "no image was taken", "rejected": rejected}, status_code=400
            )
        return {"job": index_job(), "saved": saved, "rejected": rejected}

    @app.delete("/api/images/{image_id}", status_code=202)
    def delete_image(request: Request, image_id: int) -> dict[str, Any]:
        """Take an image out of the collection (moved to the index's trash, not destroyed)."""
        require_token(request)
        record = record_of(image_id)
        file_of(record)
        try:
            files.move_to_trash(collection.root, collection.index_dir, record.path)
        except OSError as e:
            raise HTTPException(409, f"{record.path}: {e.strerror or e}") from e
        return {"job": index_job(), "removed": record.path}

    # --- jobs and status -------------------------------------------------------------------

    @app.get("/api/jobs/{job_id}")
    def job(job_id: str) -> dict[str, Any]:
        """A background job's state: queued, running, done or failed, with its progress."""
        found = jobs.get(job_id)
        if found is None:
            raise HTTPException(404, f"no job {job_id}")
        return found.as_dict()

    @app.get("/api/status")
    def status() -> dict[str, Any]:
        """Image count, model, generation, last indexing run and failures."""
        now = collection.status()
        del now["root"], now["index"]
        return {
            **now,
            "jobs": jobs.active(),
            "token_required": settings.token is not None,
            "max_upload_bytes": settings.max_upload_bytes,
        }

    # --- the web page -----------------------------------------------------------------------

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


def parse_region(text: str | None) -> tuple[float, float, float, float] | None:
    if text is None or not text.strip():
        return None
    try:
        x, y, w, h = (float(v) for v in text.split(","))
    except ValueError:
        raise HTTPException(400, f'region must be "x,y,w,h" (pixels), got {text!r}') from None
    if w <= 0 or h <= 0 or x < 0 or y < 0:
        raise HTTPException(400, f"region {text!r} must have x, y >= 0 and a positive size")
    return (x, y, w, h)


@asynccontextmanager
async def one_core_per_search(_: FastAPI) -> AsyncIterator[None]:
    """While the application runs, searches run side by side on one core each: a BLAS, torch
    or OpenMP pool per search would thrash (matching a shortlist's features is 3 to 5 times
    slower with two threads each on two cores). The BLAS libraries' limits are process-wide:
    set here, restored when the application stops. OpenMP's (FAISS's, and torch's in a thread
    that already runs) hold for one thread only, so each search sets them (`run_search`)."""
    # loaded first, so that the limit reaches their pools too (FAISS brings its own OpenBLAS)
    import faiss
    import torch
    from threadpoolctl import threadpool_limits

    del faiss, torch
    limits = threadpool_limits(1)
    try:
        yield
    finally:
        limits.restore_original_limits()


def run_search(
    collection: Collection,
    query: Any,
    region: tuple[float, float, float, float] | None,
    k: int,
    mode: str | None,
    verify: int | None,
) -> tuple[Sequence[Hit], tuple[int, int], int]:
    """The hits, the query's (width, height) as seen, and the generation searched.

    Runs on a worker thread, one core per search: OpenMP's thread count is a per-thread
    setting, so a limit set on another thread does not reach here, and FAISS (and torch) would
    start a team of one thread per core for each search (with two searches on two cores that
    made the server 30% slower than with one thread each).
    """
    import faiss
    import torch

    from lookalike.images import source_size

    faiss.omp_set_num_threads(1)
    torch.set_num_threads(1)
    hits = collection.search(query, k=k, mode=mode, region=region, verify=verify)
    if isinstance(query, int):
        record = collection.record(query)
        size = (record.width or 0, record.height or 0) if record else (0, 0)
    else:
        size = source_size(query)
    return hits, size, collection.generation


def thumb_url(image_id: int) -> str:
    return f"/api/images/{image_id}/thumb"


def hit_json(hit: Hit) -> dict[str, Any]:
    found = hit.as_dict()
    del found["asmk_score"], found["global_score"], found["homography"]
    matches = None
    if hit.match is not None and hit.match.inliers:
        matches = {
            "query": np.round(hit.match.query_xy.astype(np.float64), 1).tolist(),
            "image": np.round(hit.match.image_xy.astype(np.float64), 1).tolist(),
        }
    return {
        **found,
        "matches": matches,
        "image_url": f"/api/images/{hit.id}",
        "thumb_url": thumb_url(hit.id),
    }
