"""Simulated hosts on one machine, as real processes: a shared MLflow tracking server,
Ray nodes started with `ray start`, and roomclf commands run with a host's own
ROOMCLF_HOME and HOME. Hosts share only what real hosts share: the server's URL,
the corpus and the output folder.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from roomclf.tracking.ui import stop_group

PROJECT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
RAN: list[list[str]] = []        # every command the simulated hosts ran (program name first), for the README check


def record(cmd: list[str], env: dict | None = None) -> list[str]:
    RAN.append([Path(cmd[0]).name, *cmd[1:]])
    for key in ("MLFLOW_TRACKING_URI", "RAY_ADDRESS"):
        if env and key in env:
            RAN.append(["export", f"{key}={env[key]}"])
    return cmd


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout: float, what: str, proc: subprocess.Popen | None = None, log: Path | None = None):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"{what}: process exited ({(log.read_text()[-3000:] if log else '')})")
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"{what}: not within {timeout:.0f} s ({(log.read_text()[-3000:] if log else '')})")


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=3) as r:
            return r.status == 200
    except OSError:
        return False


class TrackingServer:
    """`mlflow server` with a SQLite backend and an artifact folder of its own (or ``artifacts``, e.g. an
    s3:// URI, with ``env`` holding what the server needs to reach it), artifacts served through the
    server; stoppable and restartable on the same port."""

    def __init__(self, root: Path, artifacts: str | None = None, **env: str):
        self.root = root
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.artifacts = artifacts or root / "artifacts"
        self.env = env
        self.proc: subprocess.Popen | None = None

    def command(self) -> list[str]:
        return [str(BIN / "mlflow"), "server", "--backend-store-uri", f"sqlite:///{self.root / 'mlflow.db'}",
                "--artifacts-destination", str(self.artifacts), "--host", "127.0.0.1", "--port", str(self.port),
                "--workers", "1"]

    def start(self) -> TrackingServer:
        self.root.mkdir(parents=True, exist_ok=True)
        log = self.root / "server.log"
        env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "HOME": str(self.root), **self.env}
        self.proc = subprocess.Popen(record(self.command()), stdout=open(log, "ab"), stderr=subprocess.STDOUT,
                                     start_new_session=True, env=env, cwd=self.root)
        wait_for(lambda: http_ok(f"{self.url}/health"), 120, "mlflow server /health", self.proc, log)
        return self

    def kill(self) -> None:
        if self.proc is not None:
            stop_group(self.proc, first=signal.SIGKILL)
            self.proc = None


class Host:
    """One simulated machine: its own HOME and ROOMCLF_HOME, the shared server URL and corpus."""

    def __init__(self, base: Path, name: str, tracking_uri: str, data: Path, **extra: str):
        self.name = name
        self.dir = base / name
        self.home = self.dir / "home"
        self.roomclf_home = self.dir / "roomclf"
        self.home.mkdir(parents=True, exist_ok=True)
        # nothing of this process's roomclf, MLflow or Ray set-up, except the cores it may use (conftest)
        keep = {k: v for k, v in os.environ.items()
                if not k.startswith(("MLFLOW_", "ROOMCLF_", "RAY_")) or k == "ROOMCLF_CPUS"}
        self.env = {**keep, "HOME": str(self.home), "ROOMCLF_HOME": str(self.roomclf_home),
                    "MLFLOW_TRACKING_URI": tracking_uri, "ROOMCLF_DATA": str(data),
                    "MLFLOW_DISABLE_TELEMETRY": "true", "PATH": f"{BIN}:{os.environ.get('PATH', '')}",
                    "PYTHONUNBUFFERED": "1", **extra}

    def run(self, *args: str, timeout: float = 900, check: bool = True) -> subprocess.CompletedProcess:
        """``roomclf ARGS`` on this host."""
        return self.tool("roomclf", *args, timeout=timeout, check=check)

    def tool(self, name: str, *args: str, timeout: float = 900, check: bool = True) -> subprocess.CompletedProcess:
        """A command of the project's environment (roomclf, mlflow, ray, python) on this host."""
        result = subprocess.run(record([str(BIN / name), *args], self.env), env=self.env, cwd=self.home, capture_output=True,
                                text=True, timeout=timeout)
        if check:
            assert result.returncode == 0, (f"{self.name}: {name} {' '.join(args)}\n{result.stdout[-3000:]}\n"
                                            f"{result.stderr[-3000:]}")
        return result

    def popen(self, *args: str, log: Path) -> subprocess.Popen:
        return subprocess.Popen(record([str(BIN / "roomclf"), *args], self.env), env=self.env, cwd=self.home, start_new_session=True,
                                stdout=open(log, "ab"), stderr=subprocess.STDOUT)


class RayNode:
    """`ray start --block` of one node, in its own process group and HOME."""

    def __init__(self, host: Host, head_port: int | None, cpus: float, resources: str | None = None,
                 temp_dir: str | None = None):
        ports = [str(free_port()) for _ in range(5)]
        self.host = host
        self.head_port = head_port or free_port()
        self.is_head = head_port is None
        cmd = [str(BIN / "ray"), "start", "--block", f"--num-cpus={cpus}", "--disable-usage-stats",
               "--object-store-memory=200000000", f"--node-manager-port={ports[0]}",
               f"--runtime-env-agent-port={ports[1]}", f"--dashboard-agent-grpc-port={ports[2]}",
               f"--dashboard-agent-listen-port={ports[3]}", f"--metrics-export-port={ports[4]}"]
        if self.is_head:
            cmd += ["--head", f"--port={self.head_port}", "--include-dashboard=false", f"--temp-dir={temp_dir}"]
        else:
            cmd += [f"--address=127.0.0.1:{self.head_port}"]
        if resources:
            cmd.append(f"--resources={resources}")
        self.log = host.dir / f"ray-{'head' if self.is_head else 'worker'}.log"
        self.proc = subprocess.Popen(record(cmd), env=host.env, cwd=host.home, stdout=open(self.log, "ab"),
                                     stderr=subprocess.STDOUT, start_new_session=True)
        wait_for(lambda: "Ray runtime started" in self.log.read_text() or "ray stop" in self.log.read_text(),
                 120, f"ray start on {host.name}", self.proc, self.log)

    def raylet_pid(self) -> int:
        """The raylet of this node: the process of its group running `raylet`."""
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                if os.getpgid(int(pid)) != self.proc.pid:
                    continue
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
            except (ProcessLookupError, FileNotFoundError, PermissionError):
                continue
            if cmdline.endswith(b"/raylet"):
                return int(pid)
        raise AssertionError(f"no raylet in the process group of {self.host.name}")

    def stop(self) -> None:
        stop_group(self.proc, 15)
