"""What the endpoints share: the server's settings, the collection served, its background jobs
and the limit on searches at once. One `ServerState` per application (`app.state.server`);
endpoints take it through the `State` dependency, and the write endpoints check the token
through `require_token` (which `guard.Guard` checks before their body is read)."""

from __future__ import annotations

import hmac
import ipaddress
import threading
from dataclasses import dataclass, field
from typing import Annotated, Any

import anyio
from fastapi import Depends, HTTPException, Request, UploadFile
from starlette.datastructures import Headers

from lookalike.catalog import CatalogError
from lookalike.collection import Collection
from lookalike.images import find_images
from lookalike.server.hosts import host_name
from lookalike.server.jobs import Job, Jobs, Progress, Work, until_free

LOOPBACK_NAMES = ("localhost",)


@dataclass(frozen=True)
class ServerSettings:
    """How the server listens and what it accepts.

    token: required by the write endpoints when set; must be set when `host` is not a
      loopback address.
    allowed_hosts: host names (or addresses) the server answers to besides the loopback
      names and `host` (`--allow-host`); a request naming any other host is refused.
    max_upload_bytes: the largest image taken by search or upload.
    search_threads: searches (and thumbnails being made) run at once, the others queue;
      about one per core.
    thumb_size: the thumbnails' size (longer side), made once an image and cached.
    verify: how many of the first stage's best each search verifies spatially when the
      request does not say (None: the collection's setting, 100). Verified hits carry the
      matched points and region the page draws.
    """

    host: str = "127.0.0.1"
    port: int = 8000
    token: str | None = None
    allowed_hosts: tuple[str, ...] = ()
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
        if self.thumb_size < 32:
            raise ValueError("thumb_size must be >= 32")
        if self.search_threads < 1:
            raise ValueError("search_threads must be >= 1")
        if self.verify is not None and self.verify < 0:
            raise ValueError("verify must be >= 0")
        for name in self.allowed_hosts:
            host_name(name)  # ValueError saying what is wrong with it


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class ServerState:
    """The collection served and what its requests share."""

    collection: Collection
    settings: ServerSettings
    jobs: Jobs
    searches: anyio.CapacityLimiter
    """Searches, and thumbnails being made, running at once (`settings.search_threads`): each
    decodes an image; the others wait their turn."""
    groups: dict[tuple[int, int], str] = field(default_factory=dict)
    """The job finding the groups of near copies, by (index generation, threshold)."""
    groups_lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def start(cls, collection: Collection, settings: ServerSettings) -> ServerState:
        """A fresh state: a job queue with its worker thread, and the search limiter."""
        return cls(collection, settings, Jobs(), anyio.CapacityLimiter(settings.search_threads))

    def index_job(self, workers: int = 1) -> dict[str, Any]:
        """Queue an index run: in this process (`workers=1`) for the few files an upload or a
        delete changes. While another process (a `lookalike index` run) writes to the index,
        the job waits for it and tries again (`until_free`)."""
        return self.jobs.submit("index", self._index_work(workers)).as_dict()

    def first_index_job(self) -> dict[str, Any]:
        """Queue the index run of a collection that has no index yet, with a pool of worker
        processes. Its progress counts images throughout: `done` of `total` images described
        (the images found in the folder until the run has scanned it), whatever its stage
        (`indexing`)."""
        root, run = self.collection.root, self._index_work(workers=0)

        def work(progress: Progress) -> dict[str, Any]:
            images = [0, len(find_images(root))]

            def counted(stage: str, done: int, total: int) -> None:
                if stage == "extract":
                    images[:] = [done, total]
                progress(stage, images[0], images[1])

            counted("scan", 0, 0)
            return run(counted)

        return self.jobs.submit("index", work).as_dict()

    def _index_work(self, workers: int) -> Work:
        index_dir = self.collection.index_dir

        def work(progress: Progress) -> dict[str, Any]:
            # a writer of its own: the served collection keeps answering meanwhile
            writer = Collection.open(index_dir)
            return until_free(
                lambda: writer.index(workers=workers, progress=progress).as_dict(), progress
            )

        return work

    def indexing(self, generation: int | None = None) -> dict[str, Any] | None:
        """While the collection has no index yet (generation 0) and an index run makes it: that
        run's progress, with a `message` such as "indexing: 3 of 12 images"; else None.
        `generation`: the collection's, when the caller has read it already."""
        job = self.jobs.latest("index")
        if job is None or job.state == "done":
            return None
        if generation is None:
            try:
                generation = int(self.collection.status()["generation"])
            except CatalogError:
                generation = 0
        if generation != 0:
            return None
        return {
            "job": job.id,
            "state": job.state,
            "stage": job.stage,
            "done": job.done,
            "total": job.total,
            "message": indexing_message(job),
        }

    def unavailable(self, e: CatalogError) -> HTTPException:
        """503 for an index that cannot be read: how far the first index has got while it is
        being made ("indexing: 3 of 12 images"), else what is wrong with it."""
        indexing = self.indexing()
        return HTTPException(503, str(e) if indexing is None else indexing["message"])

    async def read_upload(self, upload: UploadFile) -> bytes:
        """The uploaded file's bytes; 413 when it is over `max_upload_bytes`."""
        limit = self.settings.max_upload_bytes
        data = await upload.read(limit + 1)
        if len(data) > limit:
            raise HTTPException(
                413, f"{upload.filename or 'the upload'} is over the {limit / 2**20:g} MiB limit"
            )
        return data


def indexing_message(job: Job) -> str:
    """What an index run making a collection's first index says of itself."""
    if job.state == "failed":
        return f"indexing failed: {job.error}; see the server log, then restart the server"
    counts = f"indexing: {job.done} of {job.total} images"
    if job.state == "queued":
        return f"{counts} (waiting to start)"
    if job.stage in (None, "extract"):
        return counts
    return f"{counts} ({'scanning the folder' if job.stage == 'scan' else job.stage})"


def get_state(request: Request) -> ServerState:
    """The `ServerState` of the application answering `request` (a dependency)."""
    state: ServerState = request.app.state.server
    return state


State = Annotated[ServerState, Depends(get_state)]
"""An endpoint's parameter `state: State` receives the application's `ServerState`."""


def require_token(request: Request, state: State) -> None:
    """A dependency of the write endpoints: 401 unless the request carries the server's token
    (`Authorization: Bearer TOKEN`); a server without a token lets every request through."""
    token = state.settings.token
    wrong = None if token is None else token_refusal(request.headers, token)
    if wrong is not None:
        raise HTTPException(401, wrong, headers={"WWW-Authenticate": "Bearer"})


def token_refusal(headers: Headers, token: str) -> str | None:
    """Why a request's headers do not carry `token` (`Authorization: Bearer TOKEN`), or None
    when they do."""
    scheme, _, value = headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(), token.encode()):
        return None
    return "this server needs a token: Authorization: Bearer TOKEN"
