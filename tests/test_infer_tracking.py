"""infer-all as an MLflow run: a real SQLite MLflow store (``home``), real onnxruntime (``quick_onnx``),
real photos (two small listings of the corpus, one with broken files), the loop engine."""
from __future__ import annotations

import hashlib
import json
import socket
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

LISTINGS = ("batch_01/listing_0439", "batch_19/listing_0001")


@pytest.fixture()
def small_corpus(tmp_path, corpus_root) -> Path:
    """batch_01 and batch_19 with one listing each (linked files; batch_19's has an empty file, a truncated
    JPEG, an HTML page and a listing.json)."""
    root = tmp_path / "listings"
    for rel in LISTINGS:
        (root / rel).mkdir(parents=True)
        for f in sorted((corpus_root / rel).iterdir()):
            (root / rel / f.name).symlink_to(f)
    return root


@pytest.fixture()
def champion(home, quick_onnx) -> str:
    from roomclf.models.registry import register_onnx_file

    return register_onnx_file(quick_onnx, alias="champion")


def _runs(experiment="roomclf-infer"):
    from mlflow import MlflowClient

    client = MlflowClient()
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None, "no roomclf-infer experiment"
    return client, client.search_runs([exp.experiment_id], order_by=["attributes.start_time ASC"])


def test_infer_all_is_a_tracked_run_and_rows_name_it(home, champion, small_corpus, quick_onnx, tmp_path):
    from roomclf.cli import main
    from roomclf.corpus import discover
    from roomclf.infer.output import done_record
    from roomclf.infer.tracking import row_origin
    from roomclf.settings import setup_mlflow

    out = tmp_path / "out"
    args = ["infer-all", "--data", str(small_corpus), "--out", str(out), "--engine", "loop", "--no-progress",
            "--batches", "batch_01,batch_19"]
    first = CliRunner().invoke(main, args)
    assert first.exit_code == 0, first.output
    assert "warning" not in first.output

    setup_mlflow()
    client, runs = _runs()
    assert len(runs) == 1
    run = runs[0]
    run_id = run.info.run_id
    assert run.info.status == "FINISHED" and f"MLflow run {run_id}" in first.output
    p, m, t = run.data.params, run.data.metrics, run.data.tags
    with open(quick_onnx, "rb") as f:
        sha = hashlib.file_digest(f, "sha256").hexdigest()
    assert p["model_uri"] == "models:/roomclf-onnx@champion" and p["model_version"] == champion == "1"
    assert p["model_sha256"] == sha
    assert p["engine"] == "loop" and p["nodes"] == "loop" and p["out"] == str(out.resolve())
    corpus = discover(small_corpus, "batch_01,batch_19")
    n = len(corpus.paths)
    assert (m["batches"], m["batches_skipped"], m["photos"], m["errors"]) == (2, 0, n, 3)
    assert m["files_skipped"] == len(corpus.skipped) == 2                    # the listing.json files
    assert m["predictions"] == n - 3 and m["photos_per_s"] > 0
    assert sum(v for k, v in m.items() if k.startswith("class_")) == m["predictions"]
    assert t["roomclf.resumed"] == "false" and "roomclf.batches_skipped" not in t

    # the output folder as datasets (context "output"), the chart and the batch records as artifacts
    outputs = {i.dataset.name: i for i in run.inputs.dataset_inputs}
    assert set(outputs) == {"roomclf-infer-photos", "roomclf-infer-listings"}
    photos_ds = outputs["roomclf-infer-photos"]
    assert {tg.key: tg.value for tg in photos_ds.tags}["mlflow.data.context"] == "output"
    assert json.loads(photos_ds.dataset.source)["uri"] == (out.resolve() / "photos").as_uri()
    assert "prob_kitchen" in photos_ds.dataset.schema
    artifacts = {a.path for a in client.list_artifacts(run_id)}
    assert {"per_class.png", "batches.json"} <= artifacts
    png = Path(client.download_artifacts(run_id, "per_class.png", str(tmp_path)))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000

    # every row traceable: done records and Parquet metadata name the run, model version and file digest
    for batch in ("batch_01", "batch_19"):
        rec = done_record(out, batch)
        assert rec["run_id"] == run_id and rec["model_version"] == "1" and rec["model_sha256"] == p["model_sha256"]
        origin = row_origin(out / "photos" / f"{batch}.parquet")
        assert origin == {"run_id": run_id, "model_uri": "models:/roomclf-onnx@champion",
                          "model_name": "roomclf-onnx", "model_version": "1", "model_sha256": p["model_sha256"]}
        assert row_origin(out / "listings" / f"{batch}.parquet")["run_id"] == run_id
    rows = pd.read_parquet(out / "photos" / "batch_19.parquet")         # the columns as before, plain types
    assert "run_id" not in rows.columns and set(rows.model_version) == {"1"}

    # a rerun: nothing to predict, the run says it skipped both batches; the rows keep the first run's id
    again = CliRunner().invoke(main, args)
    assert again.exit_code == 0 and "nothing to do" in again.output, again.output
    _, runs = _runs()
    assert len(runs) == 2
    rerun = runs[1]
    assert rerun.info.status == "FINISHED"
    assert rerun.data.metrics["batches_skipped"] == 2 and rerun.data.metrics["batches"] == 0
    assert rerun.data.tags["roomclf.resumed"] == "true"
    assert rerun.data.tags["roomclf.batches_skipped"] == "batch_01,batch_19"
    assert done_record(out, "batch_01")["run_id"] == run_id
    skipped = json.loads(Path(client.download_artifacts(rerun.info.run_id, "batches.json", str(tmp_path / "b")))
                         .read_text())["skipped"]
    assert [r["run_id"] for r in skipped] == [run_id, run_id]

    # one batch redone (--force on batch_19 only), the other skipped: a partial resume
    (out / "_done" / "batch_19.json").unlink()
    third = CliRunner().invoke(main, args)
    assert third.exit_code == 0 and "1 batches:" in third.output, third.output
    _, runs = _runs()
    last = runs[2]
    assert last.data.metrics["batches"] == 1 and last.data.metrics["batches_skipped"] == 1
    assert last.data.tags["roomclf.batches_skipped"] == "batch_01"
    assert done_record(out, "batch_19")["run_id"] == last.info.run_id
    assert done_record(out, "batch_01")["run_id"] == run_id


def test_unreachable_tracking_store_is_a_warning_and_outputs_are_kept(home, small_corpus, quick_onnx, tmp_path,
                                                                     monkeypatch):
    """A tracking server that does not answer: the run is untracked, one warning line, every batch committed."""
    from roomclf.cli import main
    from roomclf.corpus import discover
    from roomclf.infer.output import done_record, read_photos

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]               # closed again: nothing listens there
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "3")
    out = tmp_path / "out"
    res = CliRunner().invoke(main, ["infer-all", "--data", str(small_corpus), "--out", str(out), "--engine", "loop",
                                    "--no-progress", "--batches", "batch_01", "--model", str(quick_onnx)])
    assert res.exit_code == 0, res.output
    warnings = [line for line in res.output.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "MLflow tracking is off" in warnings[0], res.output
    assert "MLflow run" not in res.output
    rec = done_record(out, "batch_01")
    assert rec["run_id"] is None and rec["model_version"].startswith("sha256:")
    assert sorted(read_photos(out).path) == sorted(discover(small_corpus, "batch_01").paths)


def test_a_run_that_fails_before_its_engine_starts_is_recorded_failed(home, small_corpus, tmp_path):
    """The run is opened once the engine is at work; a model file that is no ONNX model stops infer-all before
    that, and the run is opened then, to be ended FAILED with the error and nothing committed."""
    from roomclf.cli import main
    from roomclf.settings import setup_mlflow

    bad = tmp_path / "model.onnx"
    bad.write_bytes(b"not an onnx model")
    out = tmp_path / "out"
    res = CliRunner().invoke(main, ["infer-all", "--data", str(small_corpus), "--out", str(out), "--engine", "loop",
                                    "--no-progress", "--batches", "batch_01", "--model", str(bad)])
    assert res.exit_code != 0 and "Traceback" not in res.output, res.output
    setup_mlflow()
    _, runs = _runs()
    assert len(runs) == 1 and runs[0].info.status == "FAILED"
    assert runs[0].data.tags["roomclf.error"] and runs[0].data.metrics["batches"] == 0
    assert not (out / "_done").exists()


@pytest.mark.slow
def test_ray_engine_run_names_its_nodes(home, small_corpus, quick_onnx, tmp_path, monkeypatch):
    """A local Ray: the run logs the node(s) that ran the model, by host and node id."""
    import socket as _socket

    from roomclf.infer.output import done_record
    from roomclf.infer.run import infer_all
    from roomclf.settings import setup_mlflow

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    s = infer_all(small_corpus, tmp_path / "out", batches="batch_01", model=str(quick_onnx), engine="ray", cpus=2,
                  progress=False, object_store_mb=200)
    assert s.run_id and not s.warnings and len(s.nodes) == 1
    node = next(iter(s.nodes))
    setup_mlflow()
    client, runs = _runs()
    run = client.get_run(s.run_id)
    assert run.data.params["engine"] == "ray" and run.data.metrics["ray_nodes"] == 1
    assert run.data.params["nodes"] == f"{s.node_hosts[node]}:{node[:8]}" and s.node_hosts[node] == _socket.gethostname()
    assert "nodes.json" in {a.path for a in client.list_artifacts(s.run_id)}
    assert done_record(tmp_path / "out", "batch_01")["nodes"] == {node: s.photos}
