"""The HTTP API and web page over one `Collection` (`lookalike serve`).

    POST   /api/search               multipart: image (file) or id; region "x,y,w,h"; k; mode;
                                     verify
    GET    /api/images               the indexed images, a page at a time
    GET    /api/images/{id}          the original file
    GET    /api/images/{id}/thumb    a cached JPEG thumbnail (?size, 32 to 256, smaller ones
                                     made from it)
    POST   /api/images               multipart files: saved under uploads/, indexed in a job
    DELETE /api/images/{id}          moved to the index's trash, then re-indexed in a job
    GET    /api/images/{id}/preview  a PNG of it (for formats a browser cannot show)
    POST   /api/preview              multipart image: a PNG of it, at most 1600 px a side
    GET    /api/groups               groups of near copies, largest first (202 and a job at
                                     first: found once per index generation and threshold)
    GET    /api/jobs/{id}            a job's state and progress
    GET    /api/status               counts, model, generation, last run, failures, the
                                     first index's progress while there is none yet
    GET    /docs                     the API's documentation (Swagger UI, served from the
                                     fastapi-offline package: nothing is fetched elsewhere)

Every error is JSON, `{"error": message}`, never a stack trace. Write endpoints need
`Authorization: Bearer TOKEN` when the server has a token (it must when bound beyond
loopback). Every request passes `guard.Guard` first: the Host allow-list, the Origin check on
writes, the token before the body is read, and a body limit counted as the body arrives.
Searches, and thumbnails being made, run on a small pool of threads (`search_threads`), so
that many clients queue instead of thrashing the cores (and the memory: each decodes an
image); a new index generation is picked up by the next search.

The endpoints live in routers by job (`search_api`, `images_api`, `jobs_api`) and take what
they share, a `ServerState`, through a dependency (`state`); this module wires them up. The
answers' schemas (`schemas`) make the OpenAPI document at /openapi.json.
"""

from __future__ import annotations

import logging
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from lookalike.collection import Collection
from lookalike.server import docs, groups_api, images_api, jobs_api, preview_api, search_api
from lookalike.server.guard import Guard, token_routes
from lookalike.server.schemas import errors
from lookalike.server.state import ServerSettings, ServerState, is_loopback, require_token

__all__ = ["ServerSettings", "create_app", "is_loopback"]

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"


def create_app(collection: Collection, settings: ServerSettings | None = None) -> FastAPI:
    """The FastAPI application serving `collection`; indexing starts in the background when
    the collection has no index yet."""
    state = ServerState.start(collection, settings or ServerSettings())
    app = FastAPI(
        lifespan=search_api.one_core_per_search,
        title="lookalike",
        summary="Find the images that show the same object, place or document.",
        version="0.1.0",
        responses=errors(421, 500),  # any request: the Host check, an unforeseen failure
        docs_url=None,  # Swagger UI from a CDN: the CSP blocks it (see `docs`)
        redoc_url=None,
    )
    app.state.server = state
    # as before the routers: scripts and tests read these
    app.state.collection, app.state.settings, app.state.jobs = (
        state.collection,
        state.settings,
        state.jobs,
    )
    if collection.status()["generation"] == 0:
        state.first_index_job()

    app.exception_handler(StarletteHTTPException)(http_error)
    app.exception_handler(RequestValidationError)(invalid)
    app.exception_handler(Exception)(crashed)
    routers = (
        search_api.router,
        preview_api.router,
        images_api.router,
        groups_api.router,
        jobs_api.router,
    )
    for router in routers:
        app.include_router(router)
    app.get("/", include_in_schema=False)(page)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    docs.mount(app)
    routes = [route for router in routers for route in router.routes]
    app.add_middleware(
        Guard, settings=state.settings, needs_token=token_routes(routes, require_token)
    )
    return app


# --- errors: JSON with a message, never a traceback ----------------------------------------


async def http_error(_: Request, e: StarletteHTTPException) -> JSONResponse:
    return JSONResponse({"error": str(e.detail)}, status_code=e.status_code, headers=e.headers)


async def invalid(_: Request, e: RequestValidationError) -> JSONResponse:
    problems = [
        f"{'.'.join(str(p) for p in err.get('loc', ())[1:]) or 'request'}: {err.get('msg')}"
        for err in e.errors()
    ]
    return JSONResponse({"error": "; ".join(problems)}, status_code=422)


async def crashed(request: Request, e: Exception) -> JSONResponse:
    log.exception("%s %s failed", request.method, request.url.path)
    return JSONResponse({"error": "internal error (see the server log)"}, status_code=500)


# --- the web page ----------------------------------------------------------------------------


def page() -> FileResponse:
    return FileResponse(STATIC / "index.html", media_type="text/html")
