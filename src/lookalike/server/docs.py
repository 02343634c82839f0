"""The API's documentation page at /docs, with nothing fetched from elsewhere: FastAPI's own
loads Swagger UI from a CDN, which the server's CSP (and an offline machine) refuses. Swagger
UI's files come from the `fastapi-offline` package (MIT, its LICENSE is in its dist-info;
Swagger UI itself is Apache-2.0, a licence the package names in the bundle's first line but does
not ship as a file), served under /docs/assets; the page is static HTML whose script is a file
(`static/docs-init.js`), so the CSP needs no inline script."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

STATIC = Path(__file__).parent / "static"


def swagger_assets() -> Path:
    """The folder holding swagger-ui-bundle.js and swagger-ui.css; FileNotFoundError saying
    what to install when it is missing."""
    try:
        import fastapi_offline
    except ImportError as e:
        raise FileNotFoundError(
            "the /docs page needs the fastapi-offline package: pip install 'fastapi-offline>=1.7'"
        ) from e
    folder = Path(fastapi_offline.__file__).parent / "static"
    for name in ("swagger-ui-bundle.js", "swagger-ui.css"):
        if not (folder / name).is_file():
            raise FileNotFoundError(
                f"{folder / name} is missing: reinstall fastapi-offline (pip install "
                "--force-reinstall 'fastapi-offline>=1.7')"
            )
    return folder


def mount(app: FastAPI) -> None:
    """Serve the documentation page at /docs and Swagger UI's files under /docs/assets."""
    app.mount("/docs/assets", StaticFiles(directory=swagger_assets()), name="docs-assets")
    app.get("/docs", include_in_schema=False)(page)


def page() -> FileResponse:
    return FileResponse(STATIC / "docs.html", media_type="text/html")
