"""What every request passes before an endpoint sees it (a pure ASGI middleware, `Guard`):

1. the Host allow-list: a request must name this server by a name it answers to (loopback
   names, the address it is bound to, `--allow-host` names), so that a web page that rebinds
   its own domain name to 127.0.0.1 (DNS rebinding) can neither read nor change anything;
2. the Origin check on writes (POST, PUT, PATCH, DELETE): a browser's request from another
   site (a form posted by any web page) is refused; the server's own page and clients that
   send no Origin (curl, scripts) pass;
3. the token, on the endpoints that need it, before a byte of the body is read;
4. the body limit: a body declared over it is refused at once, and the bytes of every body,
   chunked or not, are counted as they arrive and refused the moment they pass it;

and it sets the `SECURITY_HEADERS` on every response. Each refusal is JSON, `{"error": ...}`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lookalike.server import hosts
from lookalike.server.hosts import address, same_origin
from lookalike.server.state import ServerSettings, token_refusal

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
FORM_FIELDS_BYTES = 2**20
"""What a request's body may carry beyond its files: the form's own fields and boundaries."""
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' blob: data:; style-src 'self' 'unsafe-inline'"
    ),
}
"""Set on every response that does not set them itself."""


CLOSE = {"Connection": "close"}
"""On a refusal answered before the body is read through: the server then closes the
connection instead of receiving (and dropping) the rest of the body."""


class BodyTooLarge(HTTPException):
    """A request body that passed its limit while it was read."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, over_limit(limit), headers=CLOSE)


def over_limit(limit: int) -> str:
    return f"the request is over the {limit / 2**20:g} MiB limit"


class Guard:
    """The checks every HTTP request passes (see the module's docstring), in front of `app`.

    `needs_token(scope)`: whether the request is for an endpoint that takes the token (when
    the server has one)."""

    def __init__(
        self, app: ASGIApp, settings: ServerSettings, needs_token: Callable[[Scope], bool]
    ) -> None:
        self.app = app
        self.settings = settings
        self.hosts = allowed_hosts(settings)
        self.needs_token = needs_token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def secured(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers.setdefault(name, value)
            await send(message)

        headers = Headers(scope=scope)
        limit = self.body_limit(scope)
        refusal = self.refusal(scope, headers, limit)
        if refusal is not None:
            await refusal(scope, receive, secured)
            return
        read = 0

        async def counted() -> Message:
            nonlocal read
            message = await receive()
            if message["type"] == "http.request":
                read += len(message.get("body", b""))
                if read > limit:  # the endpoint gets no byte past the limit
                    raise BodyTooLarge(limit)
            return message

        try:
            await self.app(scope, counted, secured)
        except BodyTooLarge as e:  # when no exception handler has answered it
            if started:
                raise
            await _error(e.status_code, str(e.detail))(scope, receive, secured)

    def body_limit(self, scope: Scope) -> int:
        """The most bytes a request's body may have: an upload's files, one image elsewhere,
        and the form's fields."""
        settings = self.settings
        upload = scope["method"] == "POST" and scope["path"] == "/api/images"
        files = settings.max_files if upload else 1
        return files * settings.max_upload_bytes + FORM_FIELDS_BYTES

    def refusal(self, scope: Scope, headers: Headers, limit: int) -> JSONResponse | None:
        """The answer to a request refused before its body is read, or None when it passes."""
        host = headers.get("host")  # none only from a client that is no browser (HTTP/1.0)
        if host is not None and not self.answers_to(host):
            return _error(421, self.foreign_host(host))
        if scope["method"] in WRITE_METHODS:
            cross = cross_site(headers, scope["scheme"])
            if cross is not None:
                return _error(403, f"refused a cross-site {scope['method']}: {cross}")
        if self.settings.token is not None and self.needs_token(scope):
            wrong = token_refusal(headers, self.settings.token)
            if wrong is not None:
                return _error(401, wrong, {"WWW-Authenticate": "Bearer", **CLOSE})
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            return _error(413, over_limit(limit))
        return None

    def answers_to(self, host: str) -> bool:
        parsed = address(host)
        return parsed is not None and parsed[0] in self.hosts

    def foreign_host(self, host: str) -> str:
        names = listed(self.hosts)
        parsed = address(host)
        hint = (
            f"; to reach it by that name, start it with --allow-host {parsed[0]}"
            if parsed is not None
            else ""
        )
        return (
            f"this server answers to {names} (any port), not to the host {host!r}: a request "
            f"through another name may come from a web page (DNS rebinding){hint}"
        )


def allowed_hosts(settings: ServerSettings) -> frozenset[str]:
    """The host names a server with `settings` answers to (`hosts.allowed_hosts`)."""
    return hosts.allowed_hosts(settings.host, settings.allowed_hosts)


def listed(names: Iterable[str]) -> str:
    """Host names for a message, sorted, IPv6 addresses in brackets."""
    return ", ".join(f"[{h}]" if ":" in h else h for h in sorted(names))


def cross_site(headers: Headers, scheme: str) -> str | None:
    """Why a write request (made over `scheme`) comes from another site's page, or None when
    it does not: it has no Origin (no browser sends a write without one: curl, scripts) or its
    Origin is the request's scheme, Host and port (this server's own page); and the browser
    does not call it cross-site (Sec-Fetch-Site)."""
    if headers.get("sec-fetch-site", "").lower() == "cross-site":
        return "the browser says it comes from another site's page (Sec-Fetch-Site)"
    origin = headers.get("origin")
    if origin is None or same_origin(origin, headers.get("host", ""), scheme):
        return None
    return (
        f"it comes from a page at {origin}, not from this server's own page; writes are "
        "taken from this server's page and from clients that send no Origin (curl, scripts)"
    )


def token_routes(routes: Iterable[BaseRoute], dependency: object) -> Callable[[Scope], bool]:
    """`needs_token(scope)` for `Guard`: whether the request is for one of `routes` that
    depends on `dependency` (the token check)."""
    guarded = [
        route
        for route in routes
        if any(d.dependency is dependency for d in getattr(route, "dependencies", ()))
    ]

    def needs_token(scope: Scope) -> bool:
        return any(route.matches(scope)[0] is Match.FULL for route in guarded)

    return needs_token


def _error(status: int, message: str, headers: Mapping[str, str] = CLOSE) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=dict(headers))
