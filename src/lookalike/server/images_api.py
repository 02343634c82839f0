"""The indexed images: listed a page at a time, their originals and thumbnails served from
inside the collection only; uploads saved under `uploads/` and deletions moved to the index's
trash, each followed by an index job (these two need the token)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
from fastapi import APIRouter, Depends, File, HTTPException, UploadFile
from fastapi.responses import FileResponse, JSONResponse, Response

from lookalike import JSON_SCHEMA
from lookalike.catalog import CatalogError, ImageRecord
from lookalike.collection import Collection
from lookalike.images import ImageError
from lookalike.index.layout import IndexLayout
from lookalike.server import files
from lookalike.server.schemas import Added, ImagesPage, Removed, errors
from lookalike.server.state import State, require_token

router = APIRouter()

MAX_PAGE = 1000
"""The most images `GET /api/images` lists at once."""


def thumb_url(image_id: int) -> str:
    return f"/api/images/{image_id}/thumb"


def record_of(collection: Collection, image_id: int) -> ImageRecord:
    """The searchable image `image_id`'s record; 404 when there is none."""
    try:
        record = collection.record(image_id)
    except CatalogError as e:
        raise HTTPException(503, str(e)) from e
    if record is None:
        raise HTTPException(404, f"no indexed image with id {image_id}")
    return record


def file_of(collection: Collection, record: ImageRecord) -> Path:
    """The record's file, inside the collection (403 otherwise) and still there (404)."""
    try:
        path = files.inside(collection.root, record.path)
    except files.UnsafePath as e:
        raise HTTPException(403, str(e)) from e
    if not path.is_file():
        raise HTTPException(404, f"{record.path} is no longer in the collection")
    return path


@router.get("/api/images", response_model=ImagesPage, responses=errors(422, 503))
def list_images(state: State, offset: int = 0, limit: int = 100) -> dict[str, Any]:
    """The indexed images, `limit` (at most 1000) from `offset`, in index order."""
    try:
        images = state.collection.images()
    except CatalogError as e:
        raise state.unavailable(e) from e
    page = images[max(0, offset) : max(0, offset) + min(max(1, limit), MAX_PAGE)]
    return {
        "schema": JSON_SCHEMA,
        "total": len(images),
        "images": [
            {"id": i, "path": p, "image_url": f"/api/images/{i}", "thumb_url": thumb_url(i)}
            for i, p in page
        ],
    }


@router.get(
    "/api/images/{image_id}",
    response_class=FileResponse,
    responses={200: {"content": {"image/*": {}}}, **errors(403, 404, 422, 503)},
)
def original(state: State, image_id: int) -> FileResponse:
    """The indexed image's file, as stored."""
    path = file_of(state.collection, record_of(state.collection, image_id))
    media = files.MEDIA_TYPES.get(path.suffix.lower(), "application/octet-stream")
    return FileResponse(path, media_type=media, content_disposition_type="inline")


@router.get(
    "/api/images/{image_id}/thumb",
    response_class=Response,
    responses={200: {"content": {"image/jpeg": {}}}, **errors(403, 404, 422, 503)},
)
async def thumb(state: State, image_id: int, size: int | None = None) -> Response:
    """A JPEG of the image no larger than `size` on either side, from 32 to the server's
    thumbnail size (256, the default). That size is made once an image, on the search threads
    (it decodes the original), and cached; a smaller one is made from it."""
    collection, largest = state.collection, state.settings.thumb_size
    record, source = await anyio.to_thread.run_sync(located, collection, image_id)
    side = min(max(size or largest, 32), largest)
    key = record.hash or f"{record.id}-{record.mtime_ns}"
    path = files.thumbnail_path(IndexLayout(collection.index_dir).thumbs, key, largest)
    cache = {"Cache-Control": "max-age=86400"}
    try:
        if not path.is_file():
            await anyio.to_thread.run_sync(
                files.make_thumbnail, source, path, largest, limiter=state.searches
            )
        if side == largest:
            return FileResponse(path, media_type="image/jpeg", headers=cache)
        data = await anyio.to_thread.run_sync(files.smaller_thumbnail, path, side)
    except ImageError as e:
        raise HTTPException(422, f"{record.path}: {e.reason}") from e
    return Response(data, media_type="image/jpeg", headers=cache)


def located(collection: Collection, image_id: int) -> tuple[ImageRecord, Path]:
    """The searchable image `image_id`'s record and file (`record_of`, `file_of`)."""
    record = record_of(collection, image_id)
    return record, file_of(collection, record)


@router.post(
    "/api/images",
    status_code=202,
    response_model=Added,
    responses=errors(400, 401, 403, 413, 422, upload=True),
    dependencies=[Depends(require_token)],
)
async def add_images(
    state: State, files_: list[UploadFile] = File(..., alias="files")
) -> dict[str, Any]:
    """Save uploaded images under `uploads/` in the collection and index them in a job."""
    if len(files_) > state.settings.max_files:
        raise HTTPException(413, f"at most {state.settings.max_files} files an upload")
    saved: list[str] = []
    rejected: list[dict[str, str]] = []
    oversize = 0
    for upload in files_:
        name = upload.filename or "upload"
        try:
            data = await state.read_upload(upload)
            extension = files.check_upload(data, name)
        except HTTPException as e:
            rejected.append({"name": name, "reason": str(e.detail)})
            oversize += e.status_code == 413
            continue
        except ImageError as e:
            rejected.append({"name": name, "reason": e.reason})
            continue
        saved.append(
            await anyio.to_thread.run_sync(
                files.save_upload, state.collection.root, data, name, extension
            )
        )
    if not saved:  # 413 when every file was over the size limit, as for one file alone
        return JSONResponse(  # type: ignore[return-value]
            {"error": "no image was taken", "rejected": rejected},
            status_code=413 if oversize == len(rejected) else 400,
        )
    return {"job": state.index_job(), "saved": saved, "rejected": rejected}


@router.delete(
    "/api/images/{image_id}",
    status_code=202,
    response_model=Removed,
    responses=errors(401, 403, 404, 409, 422, 503),
    dependencies=[Depends(require_token)],
)
def delete_image(state: State, image_id: int) -> dict[str, Any]:
    """Take an image out of the collection (moved to the index's trash, not destroyed)."""
    collection = state.collection
    record = record_of(collection, image_id)
    file_of(collection, record)
    try:
        files.move_to_trash(collection.root, collection.index_dir, record.path)
    except OSError as e:
        raise HTTPException(409, f"{record.path}: {e.strerror or e}") from e
    return {"job": state.index_job(), "removed": record.path}
