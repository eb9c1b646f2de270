"""Which ``Host`` headers the web apps (the labelling app, serving) answer: a guard against DNS rebinding.

A page on ``evil.example`` whose name is then made to resolve to 127.0.0.1 can
make the browser send requests to a local app, but always with
``Host: evil.example``. So an app answers only the names it is reached by:
localhost, 127.0.0.1, ::1, the address it is bound to, and the names given to
it (``--allow-host``, or ``$ROOMCLF_ALLOWED_HOSTS``, comma-separated, e.g. the
name a reverse proxy forwards). ``*`` among them turns the check off. Any
other Host (or none) gets 400.
"""
from __future__ import annotations

import json
import os
from collections.abc import Iterable

LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1")
ENV_VAR = "ROOMCLF_ALLOWED_HOSTS"
ANY_ADDRESS = ("", "0.0.0.0", "::")     # binding every interface names no host


def host_name(value: str) -> str:
    """The name part of a Host header (or an address), lower case: ``[::1]:8080`` -> ``::1``."""
    value = value.strip().lower()
    if value.startswith("["):                      # [IPv6]:port
        return value[1:].split("]", 1)[0]
    if value.count(":") == 1:                      # name:port (a bare IPv6 address has several colons)
        value = value.split(":", 1)[0]
    return value.rstrip(".")


def allowed_hosts(bound: str | None = None, extra: Iterable[str] = ()) -> frozenset[str]:
    """LOCAL_HOSTS, the ``bound`` address, ``extra`` names and those of $ROOMCLF_ALLOWED_HOSTS."""
    names = [*LOCAL_HOSTS, *(n for item in extra for n in item.split(","))]
    names += os.environ.get(ENV_VAR, "").split(",")
    if bound and bound not in ANY_ADDRESS:
        names.append(bound)
    return frozenset(h for h in (host_name(n) for n in names) if h)


class HostAllowList:
    """ASGI middleware: a request whose Host header is not among ``hosts`` gets 400 with a one-line
    JSON ``{key: message}`` and never reaches the app."""

    def __init__(self, app, hosts: Iterable[str], key: str = "detail"):
        self.app = app
        self.hosts = frozenset(hosts)
        self.key = key

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket") or "*" in self.hosts:
            return await self.app(scope, receive, send)
        raw = dict(scope.get("headers") or []).get(b"host", b"").decode("latin-1")
        if host_name(raw) in self.hosts:
            return await self.app(scope, receive, send)
        if scope["type"] == "websocket":
            return await send({"type": "websocket.close", "code": 1008})
        message = (f"host {raw[:100]!r} is not allowed; allow it with --allow-host or ${ENV_VAR}"
                   if raw else "a Host header is required")
        body = json.dumps({self.key: message}).encode()
        await send({"type": "http.response.start", "status": 400,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
