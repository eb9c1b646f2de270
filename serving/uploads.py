"""Bad uploads and their HTTP status codes, and the request-body size limit.

Statuses: empty photo 400; not an image, or an image format the loader does not
accept, 415; too large or too many photos 413;
an image the loader cannot decode (truncated, corrupt, tiny, decompression
bomb) 422 with the loader's reason.
"""
from __future__ import annotations

import json

from roomclf.photos import PhotoError

MB = 1024 * 1024
MULTIPART_OVERHEAD = 64 * 1024   # headers and boundaries around the photos of one request


class UploadError(Exception):
    """A request the server refuses, with its HTTP status and a one-line message."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


# The HTTP status for each kind of PhotoError of the shared loader (anything else: 422).
STATUS_FOR_KIND = {PhotoError.EMPTY: 400, PhotoError.NOT_IMAGE: 415, PhotoError.UNSUPPORTED: 415,
                   PhotoError.TOO_LARGE: 413}


def status_for(kind: str | None) -> int:
    """The HTTP status for a ``PhotoError.kind``."""
    return STATUS_FOR_KIND.get(kind, 422)


def check_size(data: bytes, max_bytes: int, name: str = "photo") -> None:
    """Raise ``UploadError`` for an empty or oversized photo (before decoding it)."""
    if not data:
        raise UploadError(400, f"{name}: empty upload")
    if len(data) > max_bytes:
        raise UploadError(413, f"{name}: too large ({len(data) / MB:.2f} MB; the limit is {max_bytes / MB:g} MB)")


class BodyTooLarge(Exception):
    pass


class BodyLimit:
    """ASGI middleware: a request body above its path's limit gets 413, read or not.

    A declared Content-Length over the limit is refused before reading; a chunked
    body is counted as it arrives and cut off at the limit.
    """

    def __init__(self, app, limit_for):
        self.app = app
        self.limit_for = limit_for    # path -> max body bytes, or None for no limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = self.limit_for(scope.get("path", ""))
        if limit is None:
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            return await self._refuse(send, limit)
        seen = 0
        started = False

        async def counting_receive():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge()
            return message

        async def watching_send(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, watching_send)
        except BodyTooLarge:
            if not started:
                await self._refuse(send, limit)

    @staticmethod
    async def _refuse(send, limit: int) -> None:
        body = json.dumps({"detail": f"request too large (the limit is {limit / MB:.1f} MB)"}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})
