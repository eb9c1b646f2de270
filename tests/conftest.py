"""Shared fixtures: the real corpus, an isolated working-data folder, a quick real model.

The corpus is read in place from ../shared/data (or $ROOMCLF_TEST_DATA); tests
that need it skip with a clear reason only when it is absent.
"""
from __future__ import annotations

import atexit
import csv
import functools
import os
import shutil
import sqlite3
import tempfile
from contextlib import closing, contextmanager
from pathlib import Path

import numpy as np
import pytest

PROJECT = Path(__file__).resolve().parent.parent


def _share_the_cores() -> None:
    """Under pytest-xdist, each worker gets its share of the cores. Every thread pool (onnxruntime, torch,
    a local Ray) otherwise sizes itself to the whole machine in each worker and its subprocesses, and
    spinning threads on oversubscribed cores slow everything down. Set before torch is imported."""
    from roomclf.settings import cpus      # light: os, pathlib and roomclf.errors only

    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        share = str(max(1, cpus() // workers))
        os.environ.setdefault("ROOMCLF_CPUS", share)
        os.environ.setdefault("OMP_NUM_THREADS", share)


_share_the_cores()

# The files that take minutes, longest first (--durations of a whole `make test`). `make test` hands whole files
# to two workers in collection order (--no-loadscope-reorder), so these start first and the two workers end
# together instead of one running the longest file alone at the end. Only the order changes, never what runs.
LONG_FILES = ("test_multihost.py", "test_bench_crawl.py", "test_sample_data.py", "test_s3.py", "test_deploy.py",
              "test_s3_demo.py", "test_infer_all.py", "test_s3_mlflow.py", "test_train.py", "test_mlproject.py")


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(LONG_FILES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(LONG_FILES)))     # stable: the rest keep their order


def _shared_data() -> Path:
    env = os.environ.get("ROOMCLF_TEST_DATA")
    return Path(env).resolve() if env else (PROJECT.parent / "shared" / "data").resolve()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    path = _shared_data()
    if not (path / "listings").is_dir():
        pytest.skip(f"corpus not found at {path} (set ROOMCLF_TEST_DATA)")
    return path


@pytest.fixture(scope="session")
def corpus_root(shared_data) -> Path:
    return shared_data / "listings"


@pytest.fixture(scope="session")
def labels_csv(shared_data) -> Path:
    return shared_data / "labels.csv"


@pytest.fixture(scope="session")
def ground_truth(labels_csv) -> dict[str, dict]:
    """path -> the labels.csv row (label, subtype, source)."""
    with open(labels_csv, newline="") as f:
        return {r["path"]: r for r in csv.DictReader(f)}


@pytest.fixture(scope="session")
def embedding_cache(tmp_path_factory) -> Path:
    """One embedding cache for the whole session, so each photo is embedded once."""
    return tmp_path_factory.mktemp("embeddings")


@pytest.fixture()
def home(tmp_path, monkeypatch, embedding_cache) -> Path:
    """An isolated working-data folder (label store, MLflow store) for one test; the corpus
    is $ROOMCLF_DATA when it exists (tests that read photos ask for ``corpus_root`` too)."""
    h = tmp_path / "home"
    fresh_mlflow_store(h)
    monkeypatch.setenv("ROOMCLF_HOME", str(h))
    monkeypatch.setenv("ROOMCLF_EMBEDDING_DIR", str(embedding_cache))
    monkeypatch.setenv("ROOMCLF_DATA", str(_shared_data() / "listings"))
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("ROOMCLF_LABEL_DB", raising=False)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_ID", raising=False)
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    return h


@functools.cache
def _empty_store() -> Path:
    """One empty MLflow SQLite store made by MLflow in this test process, less its Default experiment: MLflow
    makes that again on first opening a copy, at the opener's artifact root (its working folder)."""
    from mlflow import MlflowClient

    folder = tempfile.mkdtemp(prefix="roomclf-mlflow-template-")
    atexit.register(shutil.rmtree, folder, True)
    path = Path(folder) / "mlflow.db"
    MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments()
    with closing(sqlite3.connect(path)) as db, db:
        db.execute("DELETE FROM experiments WHERE experiment_id = 0")
    return path


def fresh_mlflow_store(home: Path) -> None:
    """Put an empty MLflow SQLite store at ``home/mlflow.db``, a copy of ``_empty_store``: a new store runs
    MLflow's ~50 schema migrations, seconds each time; a copy costs nothing."""
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "mlflow.db").exists():
        shutil.copyfile(_empty_store(), home / "mlflow.db")


@contextmanager
def isolated_store(home: Path):
    """For module-scoped fixtures (the ``home`` fixture is per test): ROOMCLF_HOME and an MLflow
    SQLite store in ``home`` while the block runs; yields the variables set, for subprocesses."""
    env = {"ROOMCLF_HOME": str(home), "MLFLOW_TRACKING_URI": f"sqlite:///{home / 'mlflow.db'}",
           "MLFLOW_DISABLE_TELEMETRY": "true"}
    fresh_mlflow_store(home)
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        for key in ("MLFLOW_EXPERIMENT_ID", "MLFLOW_RUN_ID"):
            mp.delenv(key, raising=False)
        yield env


def pick_photos(ground_truth: dict, batch: str, n: int, seed: int = 0) -> list[tuple[str, str]]:
    """n labelled (path, label) pairs of one batch, all classes represented, deterministic."""
    rng = np.random.default_rng(seed)
    rows = sorted((p, r["label"]) for p, r in ground_truth.items() if p.startswith(batch + "/") and r["label"])
    by_class: dict[str, list] = {}
    for p, lab in rows:
        by_class.setdefault(lab, []).append((p, lab))
    chosen: list = []
    for lab in sorted(by_class):
        items = by_class[lab]
        take = max(1, round(n * len(items) / len(rows)))
        chosen += [items[i] for i in sorted(rng.choice(len(items), min(take, len(items)), replace=False))]
    return sorted(chosen)[:n] if len(chosen) > n else sorted(chosen)


@pytest.fixture(scope="session")
def quick_onnx(tmp_path_factory, corpus_root, ground_truth, embedding_cache) -> Path:
    """A real, useful ONNX room model without fast.ai training: the pretrained
    efficientnet_lite0 body with a class head fitted by logistic regression on
    ~150 photos of batch_01. For the consumers' tests (infer-all, serving)."""
    import torch
    from sklearn.linear_model import LogisticRegression

    from roomclf.models.embeddings import embed
    from roomclf.models.network import ExportNet, RoomNet
    from roomclf.models.onnx_file import export_onnx
    from roomclf.taxonomy import CLASSES

    old = os.environ.get("ROOMCLF_EMBEDDING_DIR")
    os.environ["ROOMCLF_EMBEDDING_DIR"] = str(embedding_cache)
    try:
        picked = pick_photos(ground_truth, "batch_01", 150)
        emb = embed(corpus_root, [p for p, _ in picked], "efficientnet_lite0", normalize=False, progress=False)
    finally:
        if old is None:
            os.environ.pop("ROOMCLF_EMBEDDING_DIR", None)
        else:
            os.environ["ROOMCLF_EMBEDDING_DIR"] = old
    labels = dict(picked)
    y = [CLASSES.index(labels[p]) for p in emb.paths]
    clf = LogisticRegression(max_iter=2000, C=0.5).fit(emb.vectors, y)
    net = RoomNet("efficientnet_lite0", pretrained=True).eval()
    lin = net.head[1]
    coef = np.zeros((len(CLASSES), emb.vectors.shape[1]), np.float32)
    bias = np.full(len(CLASSES), -20.0, np.float32)
    coef[clf.classes_] = clf.coef_
    bias[clf.classes_] = clf.intercept_
    with torch.no_grad():
        lin.weight.copy_(torch.from_numpy(coef))
        lin.bias.copy_(torch.from_numpy(bias))
    out = tmp_path_factory.mktemp("quick_model") / "model.onnx"
    return export_onnx(ExportNet(net), out, {"note": "test fixture: logistic-regression head"})


S3_CORPUS_BATCHES = ("batch_18", "batch_19")     # uploaded as s3://crawl/listings/<batch>/...


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory, corpus_root):
    """A real S3 endpoint (tests/s3.py: moto_server on loopback) whose bucket ``crawl`` holds batch_18 and
    batch_19 of the corpus, broken files included, under ``listings/``. Its ``env`` holds the AWS_* and
    MLFLOW_S3_ENDPOINT_URL variables a client needs; tests set them themselves (e.g. with monkeypatch)."""
    from s3 import S3Server

    server = S3Server(tmp_path_factory.mktemp("s3")).start()
    try:
        server.create_bucket("crawl")
        for batch in S3_CORPUS_BATCHES:
            server.upload_tree(corpus_root / batch, "crawl", f"listings/{batch}")
        yield server
    finally:
        server.stop()


@pytest.fixture()
def s3(s3_endpoint, monkeypatch, tmp_path):
    """The endpoint, its variables set for this test only (and a HOME without ~/.aws)."""
    for key in [k for k in os.environ if k.startswith("AWS_")]:
        monkeypatch.delenv(key)
    for key, value in s3_endpoint.env.items():
        monkeypatch.setenv(key, value)
    token = Path.home() / ".ray" / "auth_token"
    if token.is_file():     # a driver that joined a token-auth cluster earlier in this process set
        monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(token))   # RAY_AUTH_MODE=token: a new Ray needs the token
    monkeypatch.setenv("HOME", str(tmp_path / "user-home"))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    return s3_endpoint


@pytest.fixture()
def bucket(s3, tmp_path) -> str:
    """A bucket of this test's own."""
    name = "t-" + tmp_path.name.lower().replace("_", "-")[-50:].strip("-")
    s3.create_bucket(name)
    return name


def one_line_error(result) -> str:
    """The CLI's error: exit code 1, no traceback, and one ``Error:`` line, the last; returns it."""
    lines = result.output.strip().splitlines()
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert [ln for ln in lines if ln.startswith("Error:")] == lines[-1:], result.output
    return lines[-1]
