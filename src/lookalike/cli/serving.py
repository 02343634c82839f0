"""`lookalike info` and `lookalike serve`: parse, call the library, print."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from lookalike.catalog import CatalogError
from lookalike.cli.common import JsonOpt, err, fail, open_collection, out, print_json
from lookalike.images import DEFAULT_MAX_PIXELS


def info(
    folder: Annotated[Path | None, typer.Argument(help="Collection or index folder.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Show what an index holds: images, failures, model, sizes on disk."""
    collection = open_collection(folder)
    try:
        data = collection.info()
    except CatalogError as exc:
        raise fail(str(exc)) from exc
    if as_json:
        print_json(data)
        return
    table = Table(show_header=False, title=str(collection.root))
    table.add_row("index", data["index"])
    table.add_row("images", str(data["images"]))
    table.add_row("failed", str(len(data["failed"])))
    table.add_row("generation", str(data["generation"]))
    table.add_row("last run", str(data["last_run"]))
    if data["model"]:
        m = data["model"]
        table.add_row(
            "model",
            f"{m['origin']} · {m['features']} · codebook {m['codebook_size']} · "
            f"local {m['local_dim']}-D · global {m['global_dim']}-D",
        )
    for part, value in data["bytes"].items():
        per = data["bytes_per_image"][part]
        table.add_row(f"bytes: {part}", f"{value / 1e6:.1f} MB ({per / 1e3:.1f} kB/image)")
    out.print(table)
    for failure in data["failed"]:
        out.print(f"[yellow]failed[/yellow] {escape(failure['path'])}: {escape(failure['reason'])}")
    if data["generation"] and not data["up_to_date"]:
        out.print(
            "[yellow]behind[/yellow] searches read an index that does not yet hold the last "
            "changes of the folder (an index run was stopped before publishing them): run "
            f"`lookalike index {collection.root}`"
        )


def serve(
    folder: Annotated[
        Path,
        typer.Argument(
            help="Collection folder (indexed in the background first if it has no index yet)."
        ),
    ],
    index: Annotated[
        Path | None,
        typer.Option("--index", help="Where the index is (default: FOLDER/.lookalike)."),
    ] = None,
    host: Annotated[
        str, typer.Option(help="Address to listen on; beyond loopback a token is required.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    allow_host: Annotated[
        list[str] | None,
        typer.Option(
            "--allow-host",
            metavar="NAME",
            help="A host name (or address) the server answers to besides localhost, "
            "127.0.0.1, [::1] and HOST (repeatable). A request naming any other host is "
            "refused (421), so that no web page can reach the server through a name of its own "
            "(DNS rebinding).",
        ),
    ] = None,
    token: Annotated[
        str | None,
        typer.Option(
            envvar="LOOKALIKE_TOKEN",
            help="Token the write endpoints (upload, delete) require as 'Authorization: "
            "Bearer TOKEN'. Made up and printed when HOST is not loopback and none is given.",
        ),
    ] = None,
    max_upload_mb: Annotated[
        float,
        typer.Option(
            help="Largest image accepted, in MiB. A request's body is counted as it arrives "
            f"and refused (413) past the limit; images over {DEFAULT_MAX_PIXELS / 1e6:g} "
            "megapixels as decoded are refused (400) from their header."
        ),
    ] = 20,
    search_threads: Annotated[
        int,
        typer.Option(
            help="Searches (and thumbnails being made) run at once, others queue; about one "
            "per core."
        ),
    ] = 2,
    verify: Annotated[
        int | None,
        typer.Option(
            min=0,
            help="Images each search verifies spatially, unless the request says (default: "
            "the index's setting, 100). Fewer is faster; verified hits carry matched points.",
        ),
    ] = None,
) -> None:
    """Serve FOLDER over HTTP: the web page at /, the API under /api, its docs at /docs.

    Requests must name the server by a host it answers to (--allow-host); writes (upload,
    delete) from another site's web page are refused, and need the token when there is one.
    """
    # lazy: uvicorn, the server (FastAPI) and the collection (torch, FAISS) take seconds to
    # import, too slow for `--help`
    import uvicorn

    from lookalike.collection import Collection
    from lookalike.server import ServerSettings, create_app
    from lookalike.server.app import is_loopback
    from lookalike.server.guard import allowed_hosts, listed

    if token is None and not is_loopback(host):
        token = secrets.token_urlsafe(24)
        err.print(f"write endpoints need this token: [bold]{token}[/bold]")
    try:
        settings = ServerSettings(
            host=host,
            port=port,
            token=token,
            allowed_hosts=tuple(allow_host or ()),
            max_upload_bytes=int(max_upload_mb * 2**20),
            search_threads=search_threads,
            verify=verify,
        )
        collection = Collection.create(folder, index=index)
        application = create_app(collection, settings)
    except (FileNotFoundError, CatalogError, ValueError) as exc:
        raise fail(str(exc)) from exc
    err.print(
        f"lookalike: serving {collection.root} at http://{host}:{port}/ (Ctrl+C stops)",
        soft_wrap=True,
    )
    if application.state.server.indexing() is not None:
        err.print(
            "lookalike: no index yet: indexing in the background (the page and /api/status "
            "say how far it has got)",
            soft_wrap=True,
        )
    names = listed(allowed_hosts(settings))
    err.print(
        f"lookalike: answering to the host names {names} (more: --allow-host)", soft_wrap=True
    )
    # one core per search: the application sets the thread pools when it starts (`create_app`)
    uvicorn.run(application, host=host, port=port, log_level="warning")
