"""Where roomclf keeps its working data, and where the corpus is.

Everything roomclf writes (label store, embedding cache, MLflow store,
thumbnails, run outputs) lives under one working-data folder:
``$ROOMCLF_HOME`` if set, else ``var/`` in the project root (the folder
holding ``pyproject.toml``), else ``./var``. Paths are always absolute, so a
different working directory never means a different store.
"""
from __future__ import annotations

import os
from pathlib import Path

from roomclf.errors import RoomclfError

# The network whose pooled features are the embeddings (cold-start prelabel, propagation, the labelling
# queue, the near-duplicate check). Not the network `roomclf train` fine-tunes (that is TrainConfig.backbone).
EMBEDDING_BACKBONE = "efficientnet_lite0"


class SettingsError(RoomclfError, ValueError):
    """An environment variable roomclf reads holds something it cannot use."""


def cpus() -> int:
    """The cores roomclf sizes its thread pools and its local Ray to: $ROOMCLF_CPUS if set (to leave a
    shared machine some room, or to give each of several processes its own core), else the CPUs this
    process may run on (its affinity mask: taskset, a container's cpuset), else os.cpu_count()."""
    env = os.environ.get("ROOMCLF_CPUS", "").strip()
    if env:
        if not env.isdigit() or int(env) < 1:
            raise SettingsError(f"ROOMCLF_CPUS={env!r}: expected a whole number of cores, 1 or more")
        return int(env)
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:           # not Linux
        return os.cpu_count() or 1


def project_root() -> Path:
    here = Path.cwd().resolve()
    for d in (here, *here.parents):
        if (d / "pyproject.toml").is_file() and (d / "roomclf").is_dir():
            return d
    pkg = Path(__file__).resolve().parent.parent
    if (pkg / "pyproject.toml").is_file():
        return pkg
    return here


def home() -> Path:
    env = os.environ.get("ROOMCLF_HOME")
    path = Path(env).expanduser() if env else project_root() / "var"
    path = path.resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


def label_db() -> Path:
    return Path(os.environ.get("ROOMCLF_LABEL_DB") or home() / "labels.sqlite").resolve()


def embedding_dir() -> Path:
    env = os.environ.get("ROOMCLF_EMBEDDING_DIR")
    path = Path(env).resolve() if env else home() / "embeddings"
    path.mkdir(parents=True, exist_ok=True)
    return path


def data_root() -> Path | str:
    """The corpus root (the folder holding batch_*, or an s3://bucket/prefix URI): $ROOMCLF_DATA; else
    ../shared/data/listings where it exists; else the sample that `make demo` / `roomclf sample-data` downloaded
    ($ROOMCLF_HOME/sample/listings) where it exists; else ../shared/data/listings (whose absence is then the error)."""
    env = os.environ.get("ROOMCLF_DATA")
    if env:
        from roomclf.storage import resolve

        return resolve(env)
    shared = (project_root().parent / "shared" / "data" / "listings").resolve()
    sample = home() / "sample" / "listings"
    return sample.resolve() if not shared.is_dir() and sample.is_dir() else shared


def tracking_uri() -> str:
    """$MLFLOW_TRACKING_URI, else a SQLite store at an absolute path in the working-data folder."""
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    return f"sqlite:///{home() / 'mlflow.db'}"


def is_remote_tracking(uri: str | None = None) -> bool:
    """True when the tracking store is a server (http/https/databricks): the server then
    decides where artifacts go, and every host reaches them through it."""
    return (uri or tracking_uri()).split(":", 1)[0] in ("http", "https", "databricks")


def artifact_root() -> str:
    """Where a local store keeps run artifacts (a new experiment's artifact location is this plus its name):
    ``$MLFLOW_DEFAULT_ARTIFACT_ROOT`` when set (MLflow's own variable, e.g. ``s3://BUCKET/PREFIX``: the S3
    endpoint and credentials then come from the standard variables, ``roomclf.storage``), else
    ``<home>/mlartifacts``."""
    env = os.environ.get("MLFLOW_DEFAULT_ARTIFACT_ROOT", "").strip()
    if env:
        from roomclf.storage import S3, resolve

        return resolve(env) if env.startswith(S3) else env.rstrip("/")
    path = home() / "mlartifacts"
    path.mkdir(parents=True, exist_ok=True)
    return path.as_uri()


def setup_mlflow() -> str:
    """Point MLflow at roomclf's store; returns the tracking URI.

    A tracking server that serves artifacts kept in object storage (``--artifacts-destination s3://...``)
    would hand out presigned S3 URLs for downloads by default: hosts then download through the server
    instead (unless ``MLFLOW_ENABLE_PROXY_MULTIPART_DOWNLOAD`` says otherwise), so they need to reach only
    the server, and no S3 URL, which names the server's access key, passes through their logs."""
    _mlflow_environment()
    import mlflow

    uri = tracking_uri()
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return uri


def _mlflow_environment() -> None:
    """MLflow's variables that must be set before it is imported."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    os.environ.setdefault("MLFLOW_ENABLE_PROXY_MULTIPART_DOWNLOAD", "false")


def import_mlflow_in_background() -> None:
    """Start importing MLflow, and the SQL store module a local store needs, in a daemon thread. Those
    imports take seconds of one core: infer-all on Ray starts this before Ray and opens its run once the
    engine is at work, so they run while Ray starts its processes, and ``setup_mlflow`` later finds them
    done (Python's import lock makes a second import wait for the first, never run twice)."""
    import threading

    _mlflow_environment()
    local = not is_remote_tracking()

    def load() -> None:
        try:
            import mlflow  # noqa: F401

            if local:
                import mlflow.store.tracking.sqlalchemy_store  # noqa: F401
        except Exception:   # whoever uses MLflow next meets the same error, in its own thread, and reports it
            pass

    threading.Thread(target=load, daemon=True, name="roomclf-import-mlflow").start()
