"""`lookalike serve`: an HTTP API (FastAPI) and a web page over one `Collection`."""

from lookalike.server.app import ServerSettings, create_app

__all__ = ["ServerSettings", "create_app"]
