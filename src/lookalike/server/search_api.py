"""POST /api/search: an uploaded image or an indexed one (or a region of it) searched on a
worker thread, one core each, at most `search_threads` at once."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import anyio
import faiss
import numpy as np
import torch
from fastapi import APIRouter, FastAPI, File, Form, HTTPException, UploadFile
from fastapi.responses import JSONResponse
from threadpoolctl import threadpool_limits

from lookalike import JSON_SCHEMA
from lookalike.catalog import CatalogError
from lookalike.collection import Collection, Hit, SearchResult
from lookalike.images import ImageError
from lookalike.search.region import Box, parse_region
from lookalike.server.images_api import thumb_url
from lookalike.server.schemas import SearchBody, errors
from lookalike.server.state import ServerState, State

router = APIRouter()


@router.post(
    "/api/search", response_model=SearchBody, responses=errors(400, 403, 404, 413, 422, 503)
)
async def search(
    state: State,
    image: UploadFile | None = File(None, description="the query image"),
    id: int | None = Form(None, description="or the id of an indexed image"),
    region: str | None = Form(None, description='"x,y,w,h" in the query\'s pixels'),
    k: int | None = Form(None, ge=1, description="how many hits (default: the index's, 20)"),
    mode: str | None = Form(
        None, description="fused (default), asmk, global, similar (the same kind of thing), ..."
    ),
    verify: int | None = Form(None, ge=0, description="how many to verify spatially"),
    min_verdict: str | None = Form(
        None, description="list only hits this sure or surer: match, similar or none (all)"
    ),
) -> JSONResponse:
    """Search the collection with an uploaded image or an indexed one (or a region of it).
    While the collection's first index is being made: 503, "indexing: N of M images"."""
    query: int | bytes
    if image is not None and id is None:
        query, name = await state.read_upload(image), image.filename or "the uploaded image"
    elif id is not None and image is None:
        query, name = id, f"image {id}"
    else:
        raise HTTPException(400, "give either an image file or the id of an indexed image")
    box = request_region(region)
    settings = state.settings
    t = time.perf_counter()
    try:
        result = await anyio.to_thread.run_sync(
            partial(
                run_search,
                state.collection,
                query,
                box,
                None if k is None else min(k, settings.max_k),
                mode,
                settings.verify if verify is None else verify,
                min_verdict or None,
            ),
            limiter=state.searches,
        )
    except (ImageError, KeyError, CatalogError, ValueError) as e:
        raise search_error(e, name, state) from e
    # plain JSON: FastAPI's generic encoder takes ~10 ms over the matched points
    return JSONResponse(
        {
            "schema": JSON_SCHEMA,
            "query": {
                "width": result.query_size[0],
                "height": result.query_size[1],
                "id": id,
                "region": box,
            },
            "generation": result.generation,
            "seconds": round(time.perf_counter() - t, 4),
            "hits": [hit_json(hit) for hit in result],
        }
    )


def request_region(text: str | None) -> Box | None:
    """The request's region field as a box (None when it is missing or blank); 400 when it is
    not one."""
    if text is None or not text.strip():
        return None
    try:
        return parse_region(text)
    except ValueError as e:
        raise HTTPException(400, str(e)) from e


def search_error(e: Exception, name: str, state: ServerState) -> HTTPException:
    """What a search's failure tells the client: a query that is not an image (400, with its
    `name`), an unknown id (404), an index being made (503, how far it has got) or replaced
    (503) or a wrong option (400)."""
    if isinstance(e, ImageError):
        return HTTPException(400, f"{name}: {e.reason}")
    if isinstance(e, KeyError):
        return HTTPException(404, str(e.args[0] if e.args else e))
    if isinstance(e, CatalogError):
        return state.unavailable(e)
    return HTTPException(400, str(e))


def run_search(
    collection: Collection,
    query: int | bytes,
    region: Box | None,
    k: int | None,
    mode: str | None,
    verify: int | None,
    min_verdict: str | None = None,
) -> SearchResult:
    """The hits, with the query's (width, height) as seen and the generation searched. Options
    that are None are the index's own.

    Runs on a worker thread, one core per search: OpenMP's thread count is a per-thread
    setting, so a limit set on another thread does not reach here, and FAISS (and torch) would
    start a team of one thread per core for each search (with two searches on two cores that
    made the server 30% slower than with one thread each).
    """
    faiss.omp_set_num_threads(1)
    torch.set_num_threads(1)
    return collection.search(
        query, k=k, mode=mode, region=region, verify=verify, min_verdict=min_verdict
    )


@asynccontextmanager
async def one_core_per_search(_: FastAPI) -> AsyncIterator[None]:
    """While the application runs, searches run side by side on one core each: a BLAS, torch
    or OpenMP pool per search would thrash (matching a shortlist's features is 3 to 5 times
    slower with two threads each on two cores). The BLAS libraries' limits are process-wide:
    set here, restored when the application stops (FAISS and torch are imported above, so the
    limit reaches their pools too; FAISS brings its own OpenBLAS). OpenMP's (FAISS's, and
    torch's in a thread that already runs) hold for one thread only, so each search sets them
    (`run_search`)."""
    limits = threadpool_limits(1)
    try:
        yield
    finally:
        limits.restore_original_limits()


def hit_json(hit: Hit) -> dict[str, Any]:
    """A hit as the API gives it: without the stage scores and the model, with the matched
    points (rounded to 0.1 px) and the image's URLs."""
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
