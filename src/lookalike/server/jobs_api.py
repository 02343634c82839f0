"""What the server is doing: a background job's progress, and the collection's status."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException

from lookalike import JSON_SCHEMA
from lookalike.server.state import State

router = APIRouter()


@router.get("/api/jobs/{job_id}")
def job(state: State, job_id: str) -> dict[str, Any]:
    """A background job's state: queued, running, done or failed, with its progress."""
    found = state.jobs.get(job_id)
    if found is None:
        raise HTTPException(404, f"no job {job_id}")
    return found.as_dict()


@router.get("/api/status")
def status(state: State) -> dict[str, Any]:
    """Image count, model, generation, last indexing run and the failed files (`failed`: a
    list of `{"path", "reason"}`, as everywhere)."""
    now = state.collection.status()
    del now["root"], now["index"]
    return {
        "schema": JSON_SCHEMA,
        **now,
        "jobs": state.jobs.active(),
        "token_required": state.settings.token is not None,
        "max_upload_bytes": state.settings.max_upload_bytes,
    }
