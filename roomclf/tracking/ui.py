"""The MLflow UI on a local tracking store, as one process group that stops as a whole.

``mlflow server`` starts uvicorn, its workers and huey task workers; a signal to
the parent alone leaves them running. ``run_local_ui`` starts the server in a
new session and, when it is itself stopped (Ctrl-C, SIGTERM, SIGHUP), stops that
whole group before returning. ``experiment_links`` gives the UI pages of
roomclf's experiments on any store (what ``roomclf ui`` prints for a server).
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys


def ui_command(uri: str, host: str, port: int) -> list[str]:
    from roomclf.settings import artifact_root

    return [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", uri,
            "--default-artifact-root", artifact_root(), "--host", host, "--port", str(port), "--workers", "1"]


def stop_group(proc: subprocess.Popen, grace_s: float = 10.0, first: int = signal.SIGTERM) -> None:
    """``first`` (SIGTERM) to a process group, then SIGKILL to what is left after ``grace_s``."""
    for sig, wait in ((first, grace_s), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
        try:            # the leader is gone: make sure the rest of its group went with it
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            return


def run_local_ui(uri: str, host: str, port: int) -> int:
    """Serve the UI until the server exits or this process is stopped; returns an exit code."""
    proc = subprocess.Popen(ui_command(uri, host, port), start_new_session=True)

    def stop(signum, frame):
        raise KeyboardInterrupt

    old = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        return proc.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        stop_group(proc)
        for s, handler in old.items():
            signal.signal(s, handler)


def experiment_links(base_url: str) -> list[tuple[str, str]]:
    """(name, UI link) of roomclf's experiments in the current tracking store."""
    from mlflow import MlflowClient

    from roomclf.tracking.experiments import ui_link

    found = MlflowClient().search_experiments(filter_string="name LIKE 'roomclf%'")
    return [(e.name, ui_link(base_url, f"experiments/{e.experiment_id}")) for e in sorted(found, key=lambda e: e.name)]
