"""Background work of the server: index runs and searches for groups of near copies, one at a
time, with their progress.

A job is queued by an upload, a delete, a new collection or a first request for groups, and
run by a single worker thread, so that two index runs never race for the collection's writer
lock; while another process holds it (a `lookalike index` run), a job waits and tries again.
Its state is read by `GET /api/jobs/{id}`.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from lookalike.catalog import IndexBusy

log = logging.getLogger(__name__)

JOB_STATES = ("queued", "running", "done", "failed")
KEEP_FINISHED = 200
"""Finished jobs remembered (the oldest are forgotten first)."""
BUSY_WAIT = (0.25, 5.0)
"""Seconds a job waits before trying again while another process writes to the index: at
first, and at most (doubling in between)."""
WAITING = "waiting for another index run"
"""A job's stage while it waits so."""
T = TypeVar("T")


@dataclass(frozen=True)
class Job:
    """One background job and how far it has got."""

    id: str
    kind: str
    state: str = "queued"
    stage: str | None = None
    done: int = 0
    total: int = 0
    report: dict[str, Any] | None = None
    error: str | None = None
    created: float = field(default_factory=time.time)
    finished: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "state": self.state,
            "stage": self.stage,
            "done": self.done,
            "total": self.total,
            "report": self.report,
            "error": self.error,
        }


Progress = Callable[[str, int, int], None]
"""`progress(stage, done, total)`: how far a job's work has got."""
Work = Callable[[Progress], dict[str, Any]]
"""A job's work: called with a `Progress` callback, returns its report."""


def until_free(run: Callable[[], T], progress: Progress) -> T:
    """`run()`, tried again while another process (a `lookalike index` run) holds the index's
    writer lock (`IndexBusy`), waiting `BUSY_WAIT` in between; the job's stage says `WAITING`
    meanwhile."""
    wait = BUSY_WAIT[0]
    while True:
        try:
            return run()
        except IndexBusy as e:
            if wait == BUSY_WAIT[0]:
                log.info("%s; the job waits and tries again", e)
            progress(WAITING, 0, 0)
            time.sleep(wait)
            wait = min(2 * wait, BUSY_WAIT[1])


class Jobs:
    """A queue of jobs run one after another by one daemon thread."""

    def __init__(self) -> None:
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()
        self._queue: queue.Queue[tuple[str, Work]] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="lookalike-jobs", daemon=True)
        self._thread.start()

    def submit(self, kind: str, work: Work) -> Job:
        job = Job(id=uuid.uuid4().hex[:12], kind=kind)
        with self._lock:
            self._jobs[job.id] = job
        self._queue.put((job.id, work))
        return job

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def latest(self, kind: str) -> Job | None:
        """The job of `kind` submitted last (None when there is none, or it is forgotten)."""
        with self._lock:  # the dict keeps the order they were submitted in
            found = [j for j in self._jobs.values() if j.kind == kind]
        return found[-1] if found else None

    def active(self) -> int:
        """Jobs queued or running."""
        with self._lock:
            return sum(j.state in ("queued", "running") for j in self._jobs.values())

    def wait(self, job_id: str, timeout: float = 60.0) -> Job:
        """Block until the job has finished (for tests and scripts)."""
        deadline = time.monotonic() + timeout
        while True:
            job = self.get(job_id)
            if job is None:
                raise KeyError(job_id)
            if job.state in ("done", "failed"):
                return job
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} still {job.state} after {timeout} s")
            time.sleep(0.05)

    def _update(self, job_id: str, **changes: Any) -> None:
        with self._lock:
            self._jobs[job_id] = replace(self._jobs[job_id], **changes)

    def _run(self) -> None:
        while True:
            job_id, work = self._queue.get()
            self._update(job_id, state="running")

            def progress(stage: str, done: int, total: int, job_id: str = job_id) -> None:
                self._update(job_id, stage=stage, done=done, total=total)

            try:
                report = work(progress)
            except Exception as e:  # reported through the job, never raised into the void
                self._update(job_id, state="failed", error=str(e) or type(e).__name__)
            else:
                self._update(job_id, state="done", report=report)
            self._update(job_id, finished=time.time())
            self._forget_old()

    def _forget_old(self) -> None:
        with self._lock:
            finished = sorted(
                (j for j in self._jobs.values() if j.finished is not None),
                key=lambda j: j.finished or 0.0,
            )
            for job in finished[: max(0, len(finished) - KEEP_FINISHED)]:
                del self._jobs[job.id]
