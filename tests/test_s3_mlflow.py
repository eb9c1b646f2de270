"""MLflow artifacts in object storage, against the real S3 endpoint of tests/s3.py (moto's standalone server on
loopback, checking credentials; nothing patched in-process): a tracking server that keeps its artifacts in S3
(`mlflow server --artifacts-destination s3://...`, as in the README's cluster section), and a client-side s3://
artifact root (a local SQLite store with MLFLOW_DEFAULT_ARTIFACT_ROOT). The photos are in S3 too.

Training, registration (the fast.ai/PyTorch pyfunc and the ONNX graph), infer-all and serving each get their
model files from S3; no access key or secret is in any param, tag, log, output or stored artifact.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import pick_photos
from hosts import PROJECT, RAN, Host, TrackingServer, free_port, http_ok, stop_group, wait_for
from test_s3 import secrets_absent

from roomclf.infer.output import read_photos
from roomclf.taxonomy import CLASSES

DATA = "s3://crawl/listings"                     # batch_18 and batch_19 (conftest s3_endpoint)
TINY = "s3://crawl/tiny"                         # one listing of batch_19, its broken files included
TINY_LISTING = "batch_19/listing_0001"
# the quickest real training of the tests: a small network at a small size, one epoch each way
TRAIN_ARGS = ["--train-batches", "batch_18", "--valid-batches", "batch_19", "--backbone", "efficientnet_lite0",
              "--image-size", "96", "--frozen-epochs", "1", "--epochs", "1", "--batch-size", "16", "--lr", "0.01"]
PHOTO = f"{TINY_LISTING}/photo_01.jpg"


@pytest.fixture(scope="module")
def tiny_crawl(s3_endpoint, corpus_root) -> str:
    s3_endpoint.upload_tree(corpus_root / TINY_LISTING, "crawl", f"tiny/{TINY_LISTING}")
    return TINY


def tiny_photos(corpus_root: Path) -> set[str]:
    """The files of the tiny crawl infer-all gives a row (photos by extension, readable or not)."""
    from roomclf.corpus import is_photo_name

    return {f"{TINY_LISTING}/{p.name}" for p in (corpus_root / TINY_LISTING).iterdir() if is_photo_name(p.name)}


def credential_free(host: Host) -> Host:
    """A host that has no S3 variables at all (nor ~/.aws: its HOME is its own)."""
    host.env = {k: v for k, v in host.env.items() if not k.startswith("AWS_") and k != "MLFLOW_S3_ENDPOINT_URL"}
    return host


def stored_texts(s3, bucket: str) -> list[str]:
    """Every object of a bucket, as text (binary files too, byte for byte), for the credential check."""
    return [s3.get(bucket, k).decode("latin-1") for k in s3.keys(bucket) if not k.endswith("/")]


def tracked_texts(client, experiments: list[str]) -> list[str]:
    """Params, tags and dataset inputs of every run of ``experiments``, and the tags of every model version."""
    texts = []
    for name in experiments:
        for run in client.search_runs([client.get_experiment_by_name(name).experiment_id]):
            texts.append(json.dumps([run.data.params, run.data.tags,
                                     [(d.dataset.name, d.dataset.source) for d in run.inputs.dataset_inputs]]))
    for mv in client.search_model_versions():
        texts.append(json.dumps([mv.tags, mv.source, mv.description]))
    return texts


# --------------------------------------------------------------------------- a tracking server with S3 artifacts


@pytest.mark.slow
def test_server_with_s3_artifacts_trains_on_s3_photos_and_an_empty_host_serves_it(
        s3_endpoint, tiny_crawl, ground_truth, corpus_root, tmp_path, monkeypatch):
    """Host A (the S3 variables for the photos) labels, trains on s3:// photos and registers through a server
    whose artifacts are in S3; host B runs infer-all from s3:// to s3:// with the champion; host C, an empty
    home without any S3 variable, serves it: the server serves the files it keeps in S3."""
    endpoint = s3_endpoint
    store = f"mlflow-{free_port()}"                          # the server's artifact bucket
    endpoint.create_bucket(store)
    for key, value in endpoint.env.items():                  # for this process's own reads of the outputs
        monkeypatch.setenv(key, value)
    labels = tmp_path / "labels.csv"
    with open(labels, "w", newline="") as f:
        csv.writer(f).writerows([("path", "label"), *pick_photos(ground_truth, "batch_18", 60),
                                 *pick_photos(ground_truth, "batch_19", 30)])
    server = TrackingServer(tmp_path / "server", f"s3://{store}/artifacts", **endpoint.env).start()
    serve = None
    try:
        trainer = Host(tmp_path, "host-a", server.url, DATA, **endpoint.env)
        imported = trainer.run("import-labels", str(labels), "--as", "manual")
        assert "90 added" in imported.stdout                     # every photo found in S3
        trained = trainer.run("train", "--data", DATA, *TRAIN_ARGS, "--run-name", "s3-photos")
        assert "registered roomclf-onnx v1, roomclf v1 as champion" in trained.stdout, trained.stdout[-2000:]

        keys = endpoint.keys(store)
        models = {k.rsplit("/", 1)[0] for k in keys if k.endswith("/MLmodel")}
        assert len(models) == 2                                  # the ONNX graph and the pyfunc
        assert any(k.endswith("/model.onnx") for k in keys) and any(k.endswith("/learner.pkl") for k in keys)
        assert any(k.endswith("/data/train.csv") for k in keys)
        on_disk = [p for d in (server.root, trainer.dir) for p in d.rglob("*")
                   if p.name in ("MLmodel", "model.onnx", "learner.pkl")]
        assert on_disk == []                                     # the artifacts are in S3 only

        out = f"s3://{store}/infer"
        driver = Host(tmp_path, "host-b", server.url, DATA, **endpoint.env)
        inferred = driver.run("infer-all", "--data", tiny_crawl, "--out", out, "--engine", "loop", "--no-progress")
        assert "roomclf-onnx 1" in inferred.stdout
        rows = read_photos(out).set_index("path")
        assert set(rows.index) == tiny_photos(corpus_root) and set(rows.model_version) == {"1"}

        serving = credential_free(Host(tmp_path, "host-c", server.url, tmp_path))
        port = free_port()
        log = serving.dir / "serve.log"
        serve = serving.popen("serve", "--port", str(port), log=log)
        wait_for(lambda: http_ok(f"http://127.0.0.1:{port}/health"), 180, "roomclf serve", serve, log)
        import httpx

        assert httpx.get(f"http://127.0.0.1:{port}/model").json()["version"] == "1"
        answer = httpx.post(f"http://127.0.0.1:{port}/predict", timeout=60,
                            files={"file": ("photo.jpg", (corpus_root / PHOTO).read_bytes(), "image/jpeg")}).json()
        assert answer["label"] in CLASSES and answer["label"] == rows.loc[PHOTO].label
        assert answer["confidence"] == pytest.approx(float(rows.loc[PHOTO].confidence), abs=1e-4)

        from mlflow import MlflowClient

        client = MlflowClient(tracking_uri=server.url, registry_uri=server.url)
        run = client.search_runs([client.get_experiment_by_name("roomclf-train").experiment_id])[0]
        sources = json.dumps([d.dataset.source for d in run.inputs.dataset_inputs])
        assert DATA in sources                                   # the data root as given, without credentials
        stop_group(serve)
        secrets_absent(endpoint.env, trained.stdout, trained.stderr, imported.stdout, inferred.stdout,
                       inferred.stderr, log.read_text(), (server.root / "server.log").read_text(),
                       *tracked_texts(client, ["roomclf-train", "roomclf-infer"]), *stored_texts(endpoint, store))
    finally:
        if serve is not None:
            stop_group(serve)
        server.kill()


# --------------------------------------------------------------------------- a client-side s3:// artifact root


def test_client_side_s3_artifact_root(s3, bucket, tiny_crawl, quick_onnx, corpus_root, tmp_path, monkeypatch):
    """A local store whose artifacts this host writes to S3 itself (MLFLOW_DEFAULT_ARTIFACT_ROOT): both forms are
    registered there and nothing lands on the disk; another home sharing the store gets the champion's files from
    S3 for infer-all and the pyfunc. A missing bucket or a refused key: one line before any run is opened."""
    import mlflow
    import pandas as pd
    from mlflow import MlflowClient

    from roomclf.cli import main
    from roomclf.models.pyfunc import log_roomclf_pyfunc
    from roomclf.models.registry import register_onnx_file
    from roomclf.settings import setup_mlflow
    from roomclf.storage import BucketNotFound, CredentialsError

    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    monkeypatch.setenv("MLFLOW_DEFAULT_ARTIFACT_ROOT", f"s3://{bucket}/mlflow/")
    monkeypatch.setenv("ROOMCLF_HOME", str(tmp_path / "home-a"))
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    for key in ("MLFLOW_EXPERIMENT_ID", "MLFLOW_RUN_ID"):
        monkeypatch.delenv(key, raising=False)
    setup_mlflow()
    register_onnx_file(quick_onnx, alias="champion")
    log_roomclf_pyfunc(quick_onnx, alias="champion")
    client = MlflowClient()
    assert client.get_experiment_by_name("roomclf").artifact_location == f"s3://{bucket}/mlflow/roomclf"
    keys = s3.keys(bucket)
    assert sum(k.endswith("/MLmodel") for k in keys) == 2 and any(k.endswith("/model.onnx") for k in keys)
    assert not any((tmp_path / "home-a").rglob("MLmodel"))

    monkeypatch.setenv("ROOMCLF_HOME", str(tmp_path / "home-b"))                 # another home, the same store
    out = f"s3://{bucket}/infer"
    result = CliRunner().invoke(main, ["infer-all", "--data", tiny_crawl, "--out", out, "--engine", "loop",
                                       "--no-progress"])
    assert result.exit_code == 0, result.output
    rows = read_photos(out).set_index("path")
    assert set(rows.index) == tiny_photos(corpus_root) and set(rows.model_version) == {"1"}
    pyfunc = mlflow.pyfunc.load_model("models:/roomclf@champion")
    said = pyfunc.predict(pd.DataFrame({"image": [(corpus_root / PHOTO).read_bytes()]}))
    assert said["label"].iloc[0] == rows.loc[PHOTO].label
    assert any((tmp_path / "home-b" / "models").rglob("model.onnx"))            # fetched from S3 into its cache
    secrets_absent(s3.env, result.output, *tracked_texts(client, ["roomclf", "roomclf-infer"]),
                   *stored_texts(s3, bucket))

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'other.db'}")   # new experiments
    monkeypatch.setenv("MLFLOW_DEFAULT_ARTIFACT_ROOT", "s3://no-such-artifacts/mlflow")
    with pytest.raises(BucketNotFound, match=r"^s3://no-such-artifacts: no such bucket at http://127\.0\.0\.1"):
        register_onnx_file(quick_onnx)
    monkeypatch.setenv("MLFLOW_DEFAULT_ARTIFACT_ROOT", f"s3://{bucket}/other")    # the variable fixed: it counts
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    with pytest.raises(CredentialsError, match=rf"^s3://{bucket}: the secret key does not match"):
        register_onnx_file(quick_onnx)
    other = MlflowClient()
    assert other.search_runs([e.experiment_id for e in other.search_experiments()]) == []
    assert [e.name for e in other.search_experiments()] == ["Default"]              # none kept a wrong location


# --------------------------------------------------------------------------- the README


def test_every_readme_s3_command_ran_in_these_tests():
    """The README's cluster section shows, in its second block, the s3:// variant: only commands these tests ran
    (as hosts, recorded by tests/hosts.py)."""
    import shlex

    from test_multihost import matches

    text = (PROJECT / "README.md").read_text()
    section = text.split("## Many machines", 1)[1].split("\n## ", 1)[0]
    block = section.split("```bash", 2)[2].split("```", 1)[0]
    commands = [shlex.split(ln) for ln in block.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    assert commands and any(w.startswith("s3://") for c in commands for w in c)
    if not any(r[:2] == ["roomclf", "train"] and DATA in r for r in RAN):
        pytest.skip("run with the slow test of this module: the commands are recorded as the hosts run them")
    missing = [" ".join(c) for c in commands if not any(matches(c, r) for r in RAN)]
    assert not missing, missing

