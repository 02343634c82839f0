"""GET /api/groups: the collection's groups of near copies, found once per index generation
and threshold by a background job (verifying every image's best hits takes a while)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import JSONResponse

from lookalike.catalog import CatalogError
from lookalike.search.dedup import DuplicateGroup
from lookalike.server.images_api import thumb_url
from lookalike.server.jobs import Job, Progress, Work
from lookalike.server.schemas import GroupsBody, GroupsPending, errors
from lookalike.server.state import ServerState, State
from lookalike.settings import DEDUP_THRESHOLD

router = APIRouter()


@router.get(
    "/api/groups",
    response_model=GroupsBody,
    responses={
        202: {"model": GroupsPending, "description": "being found: ask again when the job is done"},
        **errors(422, 500, 503),
    },
)
def groups(
    state: State,
    threshold: int = Query(
        DEDUP_THRESHOLD, ge=1, description="inliers that make two images near copies"
    ),
) -> Any:
    """The groups of exact and near copies, largest first. The first request for an index
    generation and threshold starts a job and answers 202 with it; once it is done, the
    groups (200). A failed job answers 500 with its error, and the next request tries again."""
    try:
        generation = state.collection.snapshot().number
    except CatalogError as e:
        raise state.unavailable(e) from e
    job = groups_job(state, generation, threshold)
    if job.state == "done" and job.report is not None:
        return job.report
    if job.state == "failed":
        with state.groups_lock:
            state.groups.pop((generation, threshold), None)
        raise HTTPException(500, f"finding the groups failed: {job.error}")
    return JSONResponse({"job": job.as_dict()}, status_code=202)


def groups_job(state: ServerState, generation: int, threshold: int) -> Job:
    """The job finding the groups of `generation` at `threshold`: started by the first request
    (one job, however many ask at once), or again when it is forgotten."""
    key = (generation, threshold)
    with state.groups_lock:
        known = state.groups.get(key)
        job = None if known is None else state.jobs.get(known)
        if job is None:
            job = state.jobs.submit("groups", find_groups(state, generation, threshold))
            state.groups[key] = job.id
    return job


def find_groups(state: ServerState, generation: int, threshold: int) -> Work:
    """The work of a groups job: `Collection.dedup`, the groups largest first (then by their
    first path), each image with its thumbnail's URL."""

    def work(progress: Progress) -> dict[str, Any]:
        found = state.collection.dedup(threshold=threshold, progress=progress)
        groups = [group_json(group) for group in found]
        groups.sort(key=lambda g: (-len(g["images"]), g["images"][0]["path"]))
        return {"generation": generation, "threshold": threshold, "groups": groups}

    return work


def group_json(group: DuplicateGroup) -> dict[str, Any]:
    """A group as the API gives it: `DuplicateGroup.as_dict`, each image with its thumbnail's
    URL."""
    found: dict[str, Any] = group.as_dict()
    found["images"] = [{**image, "thumb_url": thumb_url(image["id"])} for image in found["images"]]
    return found
