"""Admission: a request gets its place before a byte of its upload is read.

At most ``max_requests`` requests are admitted at once (reading their upload,
waiting for an inference slot, or being classified), holding at most
``max_bytes`` of uploads between them: each reserves its declared
Content-Length (its path's body limit when it declares none) and keeps it
until its answer is sent. The others wait, first come first served, without
their body being read (the server stops reading a connection it does not
serve); one that waits longer than ``wait_s`` gets 503. A request larger than
``max_bytes`` alone is admitted when nothing else is.
"""
from __future__ import annotations

import asyncio
import threading
from collections import deque
from contextlib import asynccontextmanager

from serving.uploads import MB, UploadError


class Admission:
    def __init__(self, max_requests: int, max_bytes: int, wait_s: float):
        if max_requests < 1 or max_bytes < 1:
            raise ValueError("admission needs at least one request and one byte")
        self.max_requests, self.max_bytes, self.wait_s = max_requests, max_bytes, wait_s
        self.requests = 0
        self.bytes = 0
        self._lock = threading.Lock()      # TestClient and uvicorn may run apps on different loops
        self._waiting: deque[tuple[asyncio.Future, int]] = deque()

    def stats(self) -> dict:
        return {"requests": self.requests, "inflight_mb": round(self.bytes / MB, 3), "waiting": len(self._waiting),
                "max_requests": self.max_requests, "max_inflight_mb": round(self.max_bytes / MB, 3)}

    def _fits(self, nbytes: int) -> bool:
        return self.requests < self.max_requests and self.bytes + nbytes <= self.max_bytes

    def _take(self, nbytes: int) -> None:
        self.requests += 1
        self.bytes += nbytes

    @asynccontextmanager
    async def admit(self, nbytes: int):
        """Hold a place for a request of ``nbytes`` while the block runs; UploadError(503) after ``wait_s``."""
        nbytes = max(0, min(nbytes, self.max_bytes))
        with self._lock:
            granted = not self._waiting and self._fits(nbytes)
            if granted:
                self._take(nbytes)
            else:
                future = asyncio.get_running_loop().create_future()
                self._waiting.append((future, nbytes))
        if not granted:
            try:
                await asyncio.wait_for(asyncio.shield(future), self.wait_s)
            except BaseException as exc:      # timed out or cancelled: leave the queue, or the place if given
                with self._lock:
                    queued = (future, nbytes) in self._waiting
                    if queued:
                        self._waiting.remove((future, nbytes))
                if not queued:
                    self._leave(nbytes)
                if isinstance(exc, TimeoutError):
                    raise UploadError(503, f"server busy: no place for this request within {self.wait_s:g} s "
                                           "(too many requests or upload bytes at once); try again later") from None
                raise
        try:
            yield
        finally:
            self._leave(nbytes)

    def _leave(self, nbytes: int) -> None:
        with self._lock:
            self.requests -= 1
            self.bytes -= nbytes
            while self._waiting:
                future, want = self._waiting[0]
                if not self._fits(want):
                    break
                self._waiting.popleft()
                self._take(want)
                future.get_loop().call_soon_threadsafe(_grant, future)


def _grant(future: asyncio.Future) -> None:
    if not future.done():
        future.set_result(True)
