"""Host names as the Host and Origin headers carry them: parsed, compared, and the names a
server answers to."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable

LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")
"""The names a server answers to wherever it is bound, with any port."""
WILDCARD_HOSTS = ("0.0.0.0", "::", "")
"""Bind addresses that are no name a client could use."""
_HOST = re.compile(
    r"(?:\[(?P<ip6>[0-9A-Fa-f:.]+)\]|(?P<name>[^\s:/?#@\[\]\\]+))(?::(?P<port>\d{1,5}))?"
)
"""`name[:port]` or `[ip6][:port]`, as a Host header (or an Origin after its scheme) has it."""
_DEFAULT_PORTS = {"http": 80, "https": 443}


def host_name(text: str) -> str:
    """A host name as this module compares them: lower case, an IP address in its shortest
    form without brackets; ValueError when `text` is not a bare name or address (a port, a
    scheme or a path with it)."""
    bare = text.strip()
    try:
        return ipaddress.ip_address(bare.removeprefix("[").removesuffix("]")).compressed
    except ValueError:
        pass
    parsed = address(bare)
    if parsed is None or parsed[1] is not None:
        raise ValueError(f"{text!r} is not a host name (give a name or address, no port)")
    return parsed[0]


def allowed_hosts(bound: str, extra: Iterable[str] = ()) -> frozenset[str]:
    """The host names a server bound to `bound` answers to: the loopback names, `bound` itself
    (unless a wildcard) and the `extra` names."""
    own = () if bound in WILDCARD_HOSTS else (bound,)
    return frozenset(host_name(h) for h in (*LOOPBACK_HOSTS, *own, *extra))


def address(text: str) -> tuple[str, int | None] | None:
    """`name[:port]` or `[ip6][:port]` -> (name as `host_name` gives it, port or None); None
    when malformed."""
    found = _HOST.fullmatch(text)
    if found is None:
        return None
    name = found["name"]
    if found["ip6"] is not None:
        try:
            name = ipaddress.ip_address(found["ip6"]).compressed
        except ValueError:
            return None
    return name.lower(), None if found["port"] is None else int(found["port"])


def same_origin(origin: str, host: str, scheme: str) -> bool:
    """Whether the Origin `scheme://host[:port]` is the origin of a request with Host
    `host[:port]` made over `scheme` (each port defaulting to its scheme's)."""
    origin_scheme, sep, rest = origin.strip().partition("://")
    origin_scheme = origin_scheme.lower()
    source, target = address(rest), address(host)
    if not sep or origin_scheme not in _DEFAULT_PORTS or source is None or target is None:
        return False  # "null" (a sandboxed or local page) and anything malformed
    return (origin_scheme, source[0], source[1] or _DEFAULT_PORTS[origin_scheme]) == (
        scheme,
        target[0],
        target[1] or _DEFAULT_PORTS.get(scheme),
    )
