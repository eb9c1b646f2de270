"""infer-all: a real Ray cluster (ray start --head), a real MLflow registry, real onnxruntime, real photos.

The model is the conftest ``quick_onnx`` (pretrained body + logistic-regression
head), registered as ``roomclf-onnx@champion`` in a throwaway MLflow store.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import fresh_mlflow_store

PROJECT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
SMALL_LISTING = "batch_01/listing_0439"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def env_home(tmp_path_factory, corpus_root, quick_onnx):
    """An isolated ROOMCLF_HOME with quick_onnx registered as roomclf-onnx@champion (version 1)."""
    home = tmp_path_factory.mktemp("infer_home")
    fresh_mlflow_store(home)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ROOMCLF_HOME", str(home))
        mp.setenv("ROOMCLF_DATA", str(corpus_root))
        mp.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
        for var in ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_ID", "MLFLOW_RUN_ID"):
            mp.delenv(var, raising=False)
        from roomclf.models.registry import register_onnx_file

        version = register_onnx_file(quick_onnx, alias="champion")
        assert version == "1"
        yield home


@pytest.fixture(scope="module")
def ray_cluster():
    """A one-node Ray cluster of our own (own port, temp dir and process group: other Ray
    instances on this machine are left alone; `ray stop` would kill them all)."""
    temp_dir = tempfile.mkdtemp(prefix="rclf-ray-", dir="/tmp")   # short: Ray's socket paths are limited
    port = _free_port()
    ports = [str(_free_port()) for _ in range(5)]
    cmd = [str(BIN / "ray"), "start", "--head", "--block", "--num-cpus=2", "--include-dashboard=false",
           "--disable-usage-stats", f"--port={port}", f"--temp-dir={temp_dir}", "--object-store-memory=300000000",
           f"--dashboard-agent-listen-port={ports[0]}", f"--dashboard-agent-grpc-port={ports[1]}",
           f"--runtime-env-agent-port={ports[2]}", f"--metrics-export-port={ports[3]}",
           f"--node-manager-port={ports[4]}"]
    log = open(Path(temp_dir) / "start.log", "w")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    address = f"127.0.0.1:{port}"
    try:
        deadline = time.time() + 90
        while time.time() < deadline:
            if proc.poll() is not None:
                pytest.fail(f"ray start exited: {(Path(temp_dir) / 'start.log').read_text()[-2000:]}")
            if "Ray runtime started" in (Path(temp_dir) / "start.log").read_text():
                break
            time.sleep(0.5)
        else:
            pytest.fail("ray start did not come up in 90 s")
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("RAY_ADDRESS", address)
            yield address
    finally:
        import ray

        if ray.is_initialized():
            ray.shutdown()
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=5)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        log.close()


@pytest.fixture(scope="module")
def mini_corpus(tmp_path_factory, corpus_root):
    """batch_01 with one listing (real files, linked) and the whole of batch_19 (linked)."""
    root = tmp_path_factory.mktemp("mini") / "listings"
    listing = root / SMALL_LISTING
    listing.mkdir(parents=True)
    for f in sorted((corpus_root / SMALL_LISTING).iterdir()):
        (listing / f.name).symlink_to(f)
    (root / "batch_19").symlink_to(corpus_root / "batch_19", target_is_directory=True)
    return root


def _gt_batch(ground_truth, batch):
    return {p: r for p, r in ground_truth.items() if p.startswith(batch + "/")}


# --------------------------------------------------------------------------- pure functions


def test_decode_batch_is_the_shared_loader_with_an_error_per_bad_photo(corpus_root, ground_truth):
    """infer-all's batches go through ``photos.model_inputs``: the readable photos' inputs equal
    ``model_input``'s bitwise, in order, and every planted broken file (and a path that is a folder) is a row
    with its reason, not a crash."""
    from roomclf.infer.batch import decode_batch
    from roomclf.photos import model_input

    odd = [p for p, r in ground_truth.items() if r["subtype"].startswith("odd_")][:4]
    good = "batch_01/listing_0439/photo_01.jpg"
    bad = [p for p, r in ground_truth.items() if r["subtype"].startswith("corrupt")][:2] + ["batch_01"]
    paths = [odd[0], bad[0], good, bad[1], *odd[1:], bad[2]]
    out = decode_batch({"path": paths, "batch": ["b"] * len(paths), "listing": ["l"] * len(paths)},
                       str(corpus_root), 224)
    readable = [p for p in paths if p not in bad]
    assert [p for p, e in zip(out["path"], out["error"]) if not e] == readable
    assert all(out["error"][paths.index(p)] for p in bad)
    assert out["inputs"].dtype == np.float32 and out["inputs"].shape == (len(readable), 3, 224, 224)
    for k, rel in enumerate(readable):
        assert np.array_equal(out["inputs"][k], model_input(corpus_root / rel, 224)), rel


def test_model_inputs_turns_any_per_photo_failure_into_that_photos_error(corpus_root):
    """Whatever one source raises (here: not a path at all) is that photo's PhotoError; the batch goes on."""
    from roomclf.photos import PhotoError, model_inputs

    arrays, readable, unreadable = model_inputs([corpus_root / "batch_01/listing_0439/photo_01.jpg", 7], 224)
    assert readable == [0] and len(arrays) == 1
    assert isinstance(unreadable[1], PhotoError) and unreadable[1].reason.startswith("cannot read photo (TypeError")


def test_listing_summary_prefers_front_exterior():
    import pandas as pd

    from roomclf.infer.listings import summarize

    rows = pd.DataFrame([
        {"batch": "b", "listing": "l1", "path": "b/l1/1.jpg", "label": "exterior", "confidence": 0.99, "tags": [], "error": None},
        {"batch": "b", "listing": "l1", "path": "b/l1/2.jpg", "label": "exterior", "confidence": 0.70, "tags": ["front"], "error": None},
        {"batch": "b", "listing": "l1", "path": "b/l1/3.jpg", "label": "bedroom", "confidence": 0.9, "tags": [], "error": None},
        {"batch": "b", "listing": "l1", "path": "b/l1/4.jpg", "label": "bedroom", "confidence": 0.8, "tags": [], "error": None},
        {"batch": "b", "listing": "l1", "path": "b/l1/5.jpg", "label": "kitchen", "confidence": 0.8,
         "tags": ["kitchen_island"], "error": None},
        {"batch": "b", "listing": "l1", "path": "b/l1/6.jpg", "label": None, "confidence": None, "tags": None,
         "error": "empty file"},
        {"batch": "b", "listing": "l2", "path": "b/l2/1.jpg", "label": "exterior", "confidence": 0.6, "tags": [], "error": None},
        {"batch": "b", "listing": "l2", "path": "b/l2/2.jpg", "label": "exterior", "confidence": 0.9, "tags": [], "error": None},
        {"batch": "b", "listing": "l3", "path": "b/l3/1.jpg", "label": "bathroom", "confidence": 0.9, "tags": [], "error": None},
    ])
    out = summarize(rows).set_index("listing")
    l1 = out.loc["l1"]
    assert (l1.photos, l1.predictions, l1.errors, l1.n_bedroom, l1.n_exterior, l1.n_kitchen) == (6, 5, 1, 2, 2, 1)
    assert l1.cover_photo == "b/l1/2.jpg" and l1.cover_is_front          # front beats a more confident exterior
    assert list(l1.tags) == ["exterior.front", "kitchen.kitchen_island"]
    assert out.loc["l2"].cover_photo == "b/l2/2.jpg" and not out.loc["l2"].cover_is_front
    assert pd.isna(out.loc["l3"].cover_photo)


def test_commit_replaces_a_batch_left_without_done_record(tmp_path):
    """A crash between moving the rows and the done record: the batch counts as not done, and a
    new commit replaces its rows rather than adding to them."""
    import pandas as pd

    from roomclf.infer.batch import row_schema
    from roomclf.infer.listings import listing_schema
    from roomclf.infer.output import (
        clean_stale,
        commit_batch,
        is_done,
        photo_digest,
        read_photos,
        to_table,
    )

    def rows(n):
        return to_table(pd.DataFrame({"batch": ["b"] * n, "listing": ["l"] * n, "path": [f"b/l/{i}.jpg" for i in range(n)],
                                      "error": ["x"] * n}), row_schema(False))

    listings = to_table(pd.DataFrame({"batch": ["b"], "listing": ["l"]}), listing_schema())
    commit_batch(tmp_path, "b", rows(5), listings, {"model_key": "m1"})
    (tmp_path / "_done" / "b.json").unlink()                                  # as if killed before the done record
    (tmp_path / ".tmp-b-999999999").mkdir()                                   # and a dead run's leftovers
    assert not is_done(tmp_path, "b", "m1", False)
    assert clean_stale(tmp_path) == [".tmp-b-999999999"]
    commit_batch(tmp_path, "b", rows(3), listings, {"model_key": "m1"})
    assert len(read_photos(tmp_path)) == 3
    assert is_done(tmp_path, "b", "m1", False) and not is_done(tmp_path, "b", "m2", False)
    assert not is_done(tmp_path, "b", "m1", True)                             # embeddings asked, none stored
    three = [f"b/l/{i}.jpg" for i in range(3)]
    commit_batch(tmp_path, "b", rows(3), listings, {"model_key": "m1", "photos": 3})
    assert is_done(tmp_path, "b", "m1", False, three)                         # a record without a digest: by count
    assert not is_done(tmp_path, "b", "m1", False, three[:2])
    commit_batch(tmp_path, "b", rows(3), listings, {"model_key": "m1", "photo_digest": photo_digest(three)})
    assert is_done(tmp_path, "b", "m1", False, three[::-1])
    assert not is_done(tmp_path, "b", "m1", False, three[:2] + ["b/l/new.jpg"])   # same count, other photos
    assert sorted(p.name for p in tmp_path.iterdir()) == ["_done", "listings", "photos"]


# --------------------------------------------------------------------------- through the registry and Ray


@pytest.mark.slow
def test_ray_cluster_batch19(env_home, ray_cluster, corpus_root, ground_truth, quick_onnx, tmp_path):
    """batch_19 through an existing cluster (--address auto), the model from the registry."""
    from roomclf.infer.output import done_record, read_listings, read_photos
    from roomclf.infer.run import infer_all
    from roomclf.models.onnx_file import OnnxModel
    from roomclf.taxonomy import CLASSES

    out = tmp_path / "out"
    s = infer_all(corpus_root, out, batches="batch_19", address="auto", with_embedding=True, progress=False)
    gt = _gt_batch(ground_truth, "batch_19")
    df = read_photos(out).set_index("path")
    assert sorted(df.index) == sorted(gt) and df.index.is_unique          # one row per photo, nothing else
    assert s.skipped == 2 and s.photos == len(gt) and s.errors == 3 and s.predictions == len(gt) - 3
    assert sum(s.per_class.values()) == s.predictions
    for path, r in gt.items():
        row = df.loc[path]
        if r["subtype"].startswith("corrupt_"):
            assert pd.isna(row.label) and pd.isna(row.confidence) and row.error, path
        else:
            assert pd.isna(row.error) and row.label in CLASSES and 0 < row.confidence <= 1, path
    assert df.loc["batch_19/listing_0001/photo_90.jpg"].error == "empty file"
    assert "truncated" in df.loc["batch_19/listing_0001/photo_91.jpg"].error
    assert "HTML" in df.loc["batch_19/listing_0001/photo_92.jpg"].error
    assert set(df.model_name) == {"roomclf-onnx"} and set(df.model_version) == {"1"}
    ok = df[df.error.isna()]
    emb = np.stack(ok.embedding.to_list())
    assert emb.shape == (len(ok), 1280) and np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-4)
    probs = ok[[c for c in df.columns if c.startswith("prob_")]].to_numpy()
    assert np.allclose(probs.sum(axis=1), 1, atol=1e-4)
    accuracy = float(np.mean([row.label == gt[p]["label"] for p, row in ok.iterrows()]))
    assert accuracy > 0.6, accuracy                                          # a real model, not noise

    # the same photos through OnnxModel.predict_sources in this process: the same predictions
    sample = sorted(gt)[::5]
    direct = OnnxModel(quick_onnx).predict_sources([corpus_root / p for p in sample])
    for p, pred in zip(sample, direct):
        row = df.loc[p]
        assert (None if pd.isna(row.label) else row.label) == pred.label, p
        assert (None if pd.isna(row.error) else row.error) == pred.error, p
        if pred.label:
            assert abs(row.confidence - pred.confidence) < 1e-5
            assert np.allclose([row[f"prob_{c}"] for c in pred.probabilities], list(pred.probabilities.values()),
                               atol=1e-5)

    rec = done_record(out, "batch_19")
    assert (rec["photos"], rec["errors"], rec["skipped"], rec["model_version"]) == (len(gt), 3, 2, "1")
    listings = read_listings(out).set_index("listing")
    listing_dirs = {p.split("/")[1] for p in gt}
    assert set(listings.index) == listing_dirs
    assert listings.photos.sum() == len(gt) and listings.errors.sum() == 3
    assert listings.loc["listing_0001"].errors == 3
    n_cols = [c for c in listings.columns if c.startswith("n_")]
    assert (listings[n_cols].sum(axis=1) == listings.predictions).all()
    for listing, lrow in listings.iterrows():
        ext = ok[(ok.listing == listing) & (ok.label == "exterior")]
        if ext.empty:
            assert pd.isna(lrow.cover_photo)
        else:
            assert lrow.cover_photo == ext.confidence.idxmax()


def test_resume_force_and_model_change_loop(env_home, mini_corpus, quick_onnx, tmp_path):
    from click.testing import CliRunner

    from roomclf.cli import main
    from roomclf.infer.output import done_record

    out = tmp_path / "out"
    args = ["infer-all", "--data", str(mini_corpus), "--out", str(out), "--engine", "loop", "--no-progress",
            "--batches", "batch_01"]
    first = CliRunner().invoke(main, args)
    assert first.exit_code == 0, first.output
    n = len(list((mini_corpus / SMALL_LISTING).iterdir()))
    assert f"1 batches: {n} photos, {n} predictions, 0 errors" in first.output and "photos/s" in first.output
    stamp = done_record(out, "batch_01")["finished_at"], (out / "photos" / "batch_01.parquet").stat().st_mtime_ns

    again = CliRunner().invoke(main, args)
    assert again.exit_code == 0 and "nothing to do" in again.output, again.output
    assert (out / "photos" / "batch_01.parquet").stat().st_mtime_ns == stamp[1]
    cached = list((env_home / "models").rglob("*.onnx"))     # the registry version, downloaded once per host
    assert len(cached) == 1 and "/roomclf-onnx/1-" in cached[0].as_posix()
    assert not [p for p in (env_home / "models").rglob("*") if p.name.endswith(".tmp")]
    downloaded = cached[0].stat().st_mtime_ns

    time.sleep(1.1)
    forced = CliRunner().invoke(main, args + ["--force"])
    assert forced.exit_code == 0 and f"{n} photos" in forced.output, forced.output
    assert done_record(out, "batch_01")["finished_at"] != stamp[0]
    assert list((env_home / "models").rglob("*.onnx")) == cached and cached[0].stat().st_mtime_ns == downloaded

    # the same graph as a file is another model (name and version differ): the batch is redone
    by_file = CliRunner().invoke(main, args + ["--model", str(quick_onnx)])
    assert by_file.exit_code == 0 and f"{n} photos" in by_file.output, by_file.output
    assert done_record(out, "batch_01")["model_version"].startswith("sha256:")

    # a photo added to a finished batch: the batch is redone and the photo gets its row; removed, it goes again
    by_file_args = args + ["--model", str(quick_onnx)]
    assert "nothing to do" in CliRunner().invoke(main, by_file_args).output
    extra = mini_corpus / SMALL_LISTING / "photo_99.jpg"
    extra.symlink_to(next((mini_corpus / SMALL_LISTING).iterdir()).resolve())
    try:
        grown = CliRunner().invoke(main, by_file_args)
    finally:
        extra.unlink()
    assert grown.exit_code == 0 and f"1 batches: {n + 1} photos" in grown.output, grown.output
    shrunk = CliRunner().invoke(main, by_file_args)
    assert shrunk.exit_code == 0 and f"1 batches: {n} photos" in shrunk.output, shrunk.output
    import pandas as pd

    assert len(pd.read_parquet(out / "photos" / "batch_01.parquet")) == n


def test_bad_model_arguments_are_one_line_errors(env_home, tmp_path):
    from click.testing import CliRunner

    from roomclf.cli import main

    base = ["infer-all", "--out", str(tmp_path / "o"), "--batches", "batch_19", "--engine", "loop"]
    (tmp_path / "damaged.onnx").write_bytes(b"not a graph")
    for extra, needle in ((["--quantized"], "roomclf-onnx-int8"), (["--model", "models:/nope@champion"], "nope"),
                          (["--model", str(tmp_path / "missing.onnx")], "model not found"),
                          (["--model", str(tmp_path / "damaged.onnx")], "damaged.onnx is not a readable ONNX model")):
        res = CliRunner().invoke(main, base + extra)
        assert res.exit_code == 1 and needle in res.output and "Traceback" not in res.output, res.output
    assert not (tmp_path / "o" / "photos").exists()


@pytest.mark.slow
def test_sigkill_mid_run_then_rerun_is_exactly_once(env_home, ray_cluster, mini_corpus, tmp_path):
    """Kill the driver (SIGKILL) after batch_01 is committed and while batch_19 runs, then rerun."""
    from roomclf.corpus import discover
    from roomclf.infer.output import read_listings, read_photos
    from roomclf.infer.run import infer_all

    out = tmp_path / "out"
    cmd = [str(BIN / "roomclf"), "infer-all", "--data", str(mini_corpus), "--out", str(out), "--address", "auto",
           "--batches", "batch_01,batch_19", "--no-progress", "--batch-size", "8"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
                            env={**os.environ})
    done_b1 = out / "_done" / "batch_01.json"
    deadline = time.time() + 240
    while not done_b1.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    output = proc.communicate()[0].decode(errors="replace")
    assert done_b1.exists(), output
    assert not (out / "_done" / "batch_19.json").exists(), "batch_19 finished before the kill; nothing tested"

    s = infer_all(mini_corpus, out, batches="batch_01,batch_19", address="auto", progress=False)
    assert s.batches_skipped == ["batch_01"] and s.batches_done == ["batch_19"]
    corpus = discover(mini_corpus, "batch_01,batch_19")
    df = read_photos(out)
    assert sorted(df.path) == sorted(corpus.paths) and df.path.is_unique
    assert sorted(p.name for p in out.iterdir()) == ["_done", "listings", "photos"]   # no leftovers
    assert sorted(p.name for p in (out / "photos").iterdir()) == ["batch_01.parquet", "batch_19.parquet"]
    assert read_listings(out).listing.is_unique
    assert json.loads((out / "_done" / "batch_19.json").read_text())["photos"] == len(
        [p for p in corpus.paths if p.startswith("batch_19/")])


def test_listing_summary_cover_ties_go_to_the_first_photo():
    """Two equally confident exteriors: the first row is the cover; an unreadable photo's row is never one."""
    import pandas as pd

    from roomclf.infer.listings import summarize

    photos = pd.DataFrame({"batch": ["b"] * 4, "listing": ["l"] * 4,
                           "path": ["b/l/3.jpg", "b/l/1.jpg", "b/l/2.jpg", "b/l/4.jpg"],
                           "label": ["exterior", "exterior", "bedroom", "exterior"],
                           "confidence": [0.8, 0.8, 0.9, 0.99],
                           "tags": [[], None, [], ["front"]], "error": [None, None, None, "truncated"]})
    row = summarize(photos).iloc[0]
    assert row["cover_photo"] == "b/l/3.jpg" and row["cover_confidence"] == 0.8 and not row["cover_is_front"]
    assert (row["photos"], row["errors"], row["n_exterior"], row["n_bedroom"]) == (4, 1, 2, 1) and row["tags"] == []


def test_listing_summary_reads_missing_tags_as_none():
    """Ray's Parquet path can hand a photo without tags over as NA rather than None or []."""
    import pandas as pd

    from roomclf.infer.listings import summarize

    photos = pd.DataFrame({"batch": ["batch_01"] * 3, "listing": ["listing_0001"] * 3,
                           "path": [f"batch_01/listing_0001/photo_0{i}.jpg" for i in (1, 2, 3)],
                           "label": ["kitchen", "exterior", "kitchen"], "confidence": [0.9, 0.8, 0.7],
                           "tags": pd.array([None, pd.NA, ["kitchen_island"]], dtype=object),
                           "error": [None, None, None]})
    row = summarize(photos).iloc[0]
    assert row["tags"] == ["kitchen.kitchen_island"] and row["predictions"] == 3 and row["n_kitchen"] == 2
    assert row["cover_photo"] == "batch_01/listing_0001/photo_02.jpg" and not row["cover_is_front"]


def test_a_stream_closed_early_stops_its_engine():
    """infer-all stopping early (a commit that fails, an interrupt) closes the engine's stream in the thread that
    reads it ahead, so no engine stays at work; a stream with nothing for too long is an InferError."""
    import itertools
    import threading

    from roomclf.infer.batch import InferError
    from roomclf.infer.run import Stream

    closed, made = threading.Event(), []

    def engine():
        try:
            for i in itertools.count():
                made.append(i)
                yield i
        finally:
            closed.set()

    stream = Stream(engine(), seconds=5)
    assert next(iter(stream)) == 0
    stream.close()
    assert closed.wait(5)
    n = len(made)
    time.sleep(0.5)
    assert len(made) == n and n <= Stream.AHEAD + 2          # read ahead a few at most, then nothing more

    def silent():
        time.sleep(3)
        yield 1

    with pytest.raises(InferError, match="no prediction for"):
        list(Stream(silent(), seconds=0.3))
