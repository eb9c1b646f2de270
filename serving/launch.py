"""Start ``roomclf serve`` as a child process on a free localhost port (tests, benchmarks)."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """A running server: ``url``, ``log`` (its output file); ``stop()`` ends its process group."""

    def __init__(self, args: list[str], env: dict | None = None, log: str | os.PathLike | None = None,
                 port: int | None = None, ready_path: str = "/health"):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.args = [a.replace("{port}", str(self.port)) for a in args]
        self.log = Path(log) if log else None
        self._out = open(self.log, "wb") if self.log else subprocess.DEVNULL
        self.proc = subprocess.Popen(self.args, env=env, stdout=self._out, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        self.ready_path = ready_path

    def wait_ready(self, timeout: float = 90.0) -> ServerProcess:
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}: {self.tail()}")
            try:
                if httpx.get(self.url + self.ready_path, timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        self.stop()
        raise TimeoutError(f"server not ready after {timeout:.0f}s: {self.tail()}")

    def tail(self, n: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-n:] if self.log and self.log.exists() else ""

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=15)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(timeout=5)
        if self._out is not subprocess.DEVNULL:
            self._out.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def roomclf_serve(model: str, env: dict | None = None, log=None, extra: list[str] = ()) -> ServerProcess:
    """``roomclf serve --model MODEL`` on a free port, started (call ``wait_ready``)."""
    args = [sys.executable, "-m", "roomclf.cli", "serve", "--model", model, "--port", "{port}", *extra]
    return ServerProcess(args, env=env, log=log)
