"""What the server is doing: a background job's progress, and the collection's status."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException

from lookalike import JSON_SCHEMA
from lookalike.server.schemas import JobBody, StatusBody, errors
from lookalike.server.state import State

router = APIRouter()


@router.get("/api/jobs/{job_id}", response_model=JobBody, responses=errors(404))
def job(state: State, job_id: str) -> dict[str, Any]:
    """A background job's state: queued, running, done or failed, with its progress."""
    found = state.jobs.get(job_id)
    if found is None:
        raise HTTPException(404, f"no job {job_id}")
    return found.as_dict()


@router.get("/api/status", response_model=StatusBody, responses=errors(503))
def status(state: State) -> dict[str, Any]:
    """Image count, model, generation, last indexing run, the failed files (`failed`: a list
    of `{"path", "reason"}`, as everywhere) and, while the collection's first index is being
    made, how far it has got (`indexing`)."""
    now = state.collection.status()
    del now["root"], now["index"]
    return {
        "schema": JSON_SCHEMA,
        **now,
        "indexing": state.indexing(now["generation"]),
        "jobs": state.jobs.active(),
        "token_required": state.settings.token is not None,
        "max_upload_bytes": state.settings.max_upload_bytes,
    }
