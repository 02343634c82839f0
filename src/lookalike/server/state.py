"""What the endpoints share: the server's settings, the collection served, its background jobs
and the limit on searches at once. One `ServerState` per application (`app.state.server`);
endpoints take it through the `State` dependency, and the write endpoints check the token
through `require_token`."""

from __future__ import annotations

import hmac
import ipaddress
from dataclasses import dataclass
from typing import Annotated, Any

import anyio
from fastapi import Depends, HTTPException, Request, UploadFile

from lookalike.collection import Collection
from lookalike.server.jobs import Jobs, Progress

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


@dataclass(frozen=True)
class ServerState:
    """The collection served and what its requests share."""

    collection: Collection
    settings: ServerSettings
    jobs: Jobs
    searches: anyio.CapacityLimiter
    """Searches running at once (`settings.search_threads`); the others wait their turn."""

    @classmethod
    def start(cls, collection: Collection, settings: ServerSettings) -> ServerState:
        """A fresh state: a job queue with its worker thread, and the search limiter."""
        return cls(collection, settings, Jobs(), anyio.CapacityLimiter(settings.search_threads))

    def index_job(self, workers: int = 1) -> dict[str, Any]:
        """Queue an index run: in this process (`workers=1`) for the few files an upload or a
        delete changes; a whole new collection gets a pool of worker processes (0)."""
        index_dir = self.collection.index_dir

        def work(progress: Progress) -> dict[str, Any]:
            # a writer of its own: the served collection keeps answering meanwhile
            writer = Collection.open(index_dir)
            return writer.index(workers=workers, progress=progress).as_dict()

        return self.jobs.submit("index", work).as_dict()

    async def read_upload(self, upload: UploadFile) -> bytes:
        """The uploaded file's bytes; 413 when it is over `max_upload_bytes`."""
        limit = self.settings.max_upload_bytes
        data = await upload.read(limit + 1)
        if len(data) > limit:
            raise HTTPException(
                413, f"{upload.filename or 'the upload'} is over the {limit / 2**20:g} MiB limit"
            )
        return data


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
    if token is None:
        return
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        value.strip().encode(), token.encode()
    ):
        raise HTTPException(
            401,
            "this server needs a token: Authorization: Bearer TOKEN",
            headers={"WWW-Authenticate": "Bearer"},
        )
