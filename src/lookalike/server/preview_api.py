"""PNG previews of images a browser may not show (TIFF, ...): of an upload (`POST
/api/preview`, a query the page displays) and of an indexed image. Made on the search threads
(each decodes an image), never cached."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
from fastapi import APIRouter, File, HTTPException, UploadFile
from fastapi.responses import Response

from lookalike.images import ImageError
from lookalike.server import files
from lookalike.server.images_api import located
from lookalike.server.schemas import errors
from lookalike.server.state import ServerState, State

router = APIRouter()

PREVIEW_SIDE = 1600
"""The longer side of a preview, at most (smaller images keep their size)."""
PNG: dict[int | str, dict[str, Any]] = {
    200: {"content": {"image/png": {}}, "description": "a PNG, upright"}
}


@router.post(
    "/api/preview",
    response_class=Response,
    responses={**PNG, **errors(400, 413, 422)},
)
async def preview_upload(
    state: State, image: UploadFile = File(..., description="the image to show")
) -> Response:
    """A PNG of an uploaded image, upright, at most 1600 pixels on either side: the page shows
    a query through it when the browser cannot decode the file (a TIFF, say)."""
    data = await state.read_upload(image)
    return await preview(state, data, image.filename or "the uploaded image")


@router.get(
    "/api/images/{image_id}/preview",
    response_class=Response,
    responses={**PNG, **errors(403, 404, 422, 503)},
)
async def preview_indexed(state: State, image_id: int) -> Response:
    """A PNG of an indexed image, upright, at most 1600 pixels on either side."""
    record, source = await anyio.to_thread.run_sync(located, state.collection, image_id)
    return await preview(state, source, record.path)


async def preview(state: ServerState, source: Path | bytes, name: str) -> Response:
    """The PNG preview of `source` (named `name` in an error: 400 when it is no image)."""
    try:
        data = await anyio.to_thread.run_sync(
            files.preview_png, source, PREVIEW_SIDE, limiter=state.searches
        )
    except ImageError as e:
        raise HTTPException(400, f"{name}: {e.reason}") from e
    return Response(data, media_type="image/png", headers={"Cache-Control": "no-store"})
