"""Photos and infer-all outputs in object storage, against a real S3 endpoint: ``s3_endpoint`` (tests/s3.py) is
moto's standalone server on loopback, checking credentials, holding batch_18 and batch_19 of the corpus (broken
files included) under s3://crawl/listings. Everything talks HTTP to it; nothing is patched in-process.

The model is the conftest ``quick_onnx`` file; the reference is the same photos read from local disk. infer-all
runs go over a small crawl to stay short: the first listings of batch_18 and batch_19 (broken files included).
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import one_line_error
from click.testing import CliRunner
from hosts import Host, RayNode, free_port, stop_group

from roomclf.infer.output import done_record, read_listings, read_photos

DATA = "s3://crawl/listings"
SMALL = "s3://crawl/small"        # the first SMALL_LISTINGS listings of batch_18 and batch_19
# batch_19 the longer: a run killed once batch_18 is committed still has work left
SMALL_LISTINGS = {"batch_18": 2, "batch_19": 5}
BATCHES = "batch_18,batch_19"
COMPARED = ["batch", "listing", "label", "error", "model_name", "model_version"]


def first_listings(corpus_root: Path, batch: str) -> list[Path]:
    return sorted(p for p in (corpus_root / batch).iterdir() if p.is_dir())[:SMALL_LISTINGS[batch]]


@pytest.fixture(scope="module")
def small_crawl(s3_endpoint, corpus_root) -> str:
    """SMALL: the first listings of batch_18 and batch_19 (batch_19's first one holds the broken files)."""
    for batch in BATCHES.split(","):
        for listing in first_listings(corpus_root, batch):
            s3_endpoint.upload_tree(listing, "crawl", f"small/{batch}/{listing.name}")
    return SMALL


@pytest.fixture(scope="module")
def local_reference(tmp_path_factory, corpus_root, quick_onnx):
    """infer-all (loop engine) from local disk over the photos of ``small_crawl`` (files linked from the
    corpus): its photo and listing rows, and its counts of errors and skipped files."""
    from conftest import isolated_store

    from roomclf.infer.run import infer_all

    home = tmp_path_factory.mktemp("s3_reference")
    root = home / "listings"
    for batch in BATCHES.split(","):
        for listing in first_listings(corpus_root, batch):
            (root / batch / listing.name).mkdir(parents=True)
            for f in listing.iterdir():
                (root / batch / listing.name / f.name).symlink_to(f)
    with isolated_store(home):
        s = infer_all(root, home / "out", batches=BATCHES, model=str(quick_onnx), engine="loop", progress=False,
                      track=False)
    assert (s.errors, s.skipped) == (3, 2)             # batch_19's empty, truncated and HTML .jpg; 2 non-photos
    return {"photos": read_photos(home / "out"), "listings": read_listings(home / "out"), "errors": s.errors,
            "skipped": s.skipped}


def assert_same_rows(got: pd.DataFrame, want: pd.DataFrame) -> None:
    """The same photos, each once, with the same class, probabilities, tags and error."""
    assert got.path.is_unique and sorted(got.path) == sorted(want.path)
    got, want = got.set_index("path").sort_index(), want.set_index("path").sort_index()
    for col in COMPARED:
        assert got[col].fillna("").tolist() == want[col].fillna("").tolist(), col
    assert [tuple(t) if t is not None else None for t in got.tags] == \
           [tuple(t) if t is not None else None for t in want.tags]
    probs = [c for c in want.columns if c.startswith("prob_")] + ["confidence"]
    assert np.allclose(got[probs].fillna(-1).to_numpy(float), want[probs].fillna(-1).to_numpy(float), atol=1e-5)


def secrets_absent(s3_env: dict, *texts: str) -> None:
    for secret in (s3_env["AWS_ACCESS_KEY_ID"], s3_env["AWS_SECRET_ACCESS_KEY"]):
        for text in texts:
            assert secret not in text


def kill_once_committed(s3, bucket: str, prefix: str, proc, log: Path) -> list[str]:
    """Wait (polling fast) until a done record appears under ``prefix``, then return the done records there;
    the caller kills something at once."""
    client, deadline = s3.client(), time.time() + 240
    while time.time() < deadline:
        found = client.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
        done = sorted(o["Key"] for o in found if o["Key"].endswith(".json"))
        if done:
            return done
        assert proc.poll() is None, log.read_text()[-3000:]
        time.sleep(0.05)
    raise AssertionError(f"no batch committed in 240 s: {log.read_text()[-3000:]}")


# --------------------------------------------------------------------------- the filesystem layer


def test_discover_and_photos_through_s3_as_on_disk(s3, bucket, corpus_root):
    from roomclf import storage
    from roomclf.corpus import discover, list_batches
    from roomclf.photos import PhotoError, open_photo

    assert list_batches(DATA) == ["batch_18", "batch_19"] == list_batches(DATA + "/")
    remote, local = discover(DATA, BATCHES), discover(corpus_root, BATCHES)
    assert remote.root == DATA
    assert remote.paths == local.paths and remote.skipped == local.skipped          # same order too
    assert remote.skipped == ["batch_19/listing_0001/.DS_Store", "batch_19/listing_0001/listing.json"]

    rel = "batch_19/listing_0001/photo_01.jpg"
    assert np.array_equal(np.asarray(open_photo(f"{DATA}/{rel}")), np.asarray(open_photo(corpus_root / rel)))
    with pytest.raises(PhotoError, match="HTML"):
        open_photo(f"{DATA}/batch_19/listing_0001/photo_92.jpg")
    with pytest.raises(PhotoError, match="cannot read file"):
        open_photo(f"{DATA}/batch_19/listing_0001/photo_missing.jpg")

    # a cache key follows the object: rewritten with other bytes, it changes
    key = f"s3://{bucket}/k/photo.jpg"
    storage.write_bytes(key, (corpus_root / rel).read_bytes())
    first = storage.cache_key(key)
    assert first[0] == (corpus_root / rel).stat().st_size
    storage.write_bytes(key, b"\xff\xd8 shorter")
    assert storage.cache_key(key) != first and storage.read_bytes(key) == b"\xff\xd8 shorter"
    storage.remove(key)
    storage.remove(key)                                     # nothing there: no error
    with pytest.raises(FileNotFoundError):
        storage.cache_key(key)


def test_a_batch_counts_as_done_only_with_its_done_record(s3, bucket):
    """Killed between the rows and the done record: not done, and a new commit replaces the rows."""
    from roomclf.infer.batch import row_schema
    from roomclf.infer.listings import listing_schema
    from roomclf.infer.output import commit_batch, is_done, to_table

    out = f"s3://{bucket}/commit"

    def rows(n):
        return to_table(pd.DataFrame({"batch": ["b"] * n, "listing": ["l"] * n,
                                      "path": [f"b/l/{i}.jpg" for i in range(n)], "error": ["x"] * n}), row_schema(False))

    listings = to_table(pd.DataFrame({"batch": ["b"], "listing": ["l"]}), listing_schema())
    commit_batch(out, "b", rows(5), listings, {"model_key": "m1"})
    assert is_done(out, "b", "m1", False) and len(read_photos(out)) == 5
    s3.client().delete_object(Bucket=bucket, Key="commit/_done/b.json")        # as if killed before it
    assert not is_done(out, "b", "m1", False)
    commit_batch(out, "b", rows(3), listings, {"model_key": "m1"})
    assert is_done(out, "b", "m1", False) and len(read_photos(out)) == 3 and len(read_listings(out)) == 1
    files = [k for k in s3.keys(bucket, "commit/") if not k.endswith("/")]
    assert files == ["commit/_done/b.json", "commit/listings/b.parquet", "commit/photos/b.parquet"]


# --------------------------------------------------------------------------- bad input


def test_credentials_and_buckets_each_give_one_line(s3, bucket, home, quick_onnx, monkeypatch):
    from roomclf.cli import main

    def infer(data=DATA, out=f"s3://{bucket}/bad"):
        return CliRunner().invoke(main, ["infer-all", "--data", data, "--out", out, "--engine", "loop", "--model",
                                         str(quick_onnx), "--batches", "batch_19", "--no-progress"])

    line = one_line_error(infer(data="s3://no-such-bucket/listings"))
    assert "s3://no-such-bucket: no such bucket" in line
    line = one_line_error(infer(out="s3://no-such-output/infer"))
    assert "s3://no-such-output: no such bucket" in line
    line = one_line_error(infer(data=f"s3://{s3.env['AWS_ACCESS_KEY_ID']}:{s3.env['AWS_SECRET_ACCESS_KEY']}@crawl/x"))
    assert "credentials do not belong in an s3:// URI" in line and "AWS_ACCESS_KEY_ID" in line
    secrets_absent(s3.env, line)
    secrets_absent(s3.env, one_line_error(infer(out=f"s3://AKIAEXAMPLE:{s3.env['AWS_SECRET_ACCESS_KEY']}@out/x")))

    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    line = one_line_error(infer())
    assert line.startswith("Error: s3://crawl: ") and "AWS_SECRET_ACCESS_KEY" in line
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAUNKNOWNKEY000000")
    line = one_line_error(infer())
    assert line.startswith("Error: s3://crawl: ") and "AWS_ACCESS_KEY_ID" in line
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    line = one_line_error(infer())
    assert "s3://crawl: no S3 credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY" in line

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3.env["AWS_ACCESS_KEY_ID"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3.env["AWS_SECRET_ACCESS_KEY"])
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", f"http://127.0.0.1:{free_port()}")   # nothing listens there
    line = one_line_error(infer())
    assert line.startswith("Error: s3://crawl: cannot reach the S3 endpoint") and "AWS_ENDPOINT_URL" in line
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3.env["AWS_ENDPOINT_URL_S3"])

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3.env["AWS_ACCESS_KEY_ID"])          # the data readable, the output not
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3.env["AWS_SECRET_ACCESS_KEY"])
    s3.client().put_bucket_policy(Bucket=bucket, Policy=json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Deny", "Principal": "*", "Action": "s3:*", "Resource": [f"arn:aws:s3:::{bucket}",
                                                                            f"arn:aws:s3:::{bucket}/*"]}]}))
    try:
        line = one_line_error(infer())
    finally:
        s3.client().delete_bucket_policy(Bucket=bucket)
    assert line.startswith(f"Error: s3://{bucket}: access denied") and "AWS_SECRET_ACCESS_KEY" in line
    assert s3.keys(bucket) == []                                               # nothing was written


def test_keys_that_are_not_photos(s3, bucket, home, quick_onnx, corpus_root):
    """A crawl's odd keys: a PDF and an empty object named .jpg get a row with an error, a text file and a
    photo outside any listing are counted skips, a folder marker is nothing."""
    from roomclf.infer.run import infer_all

    crawl = f"s3://{bucket}/crawl"
    photo = (corpus_root / "batch_19/listing_0001/photo_01.jpg").read_bytes()
    for key, body in (("batch_01/listing_0001/photo_01.jpg", photo), ("batch_01/listing_0001/photo_02.jpg", b"%PDF-1.4\n"),
                      ("batch_01/listing_0001/photo_03.jpg", b""), ("batch_01/listing_0001/notes.txt", b"hello"),
                      ("batch_01/stray.jpg", photo), ("batch_01/listing_0002/", b"")):
        s3.put(bucket, f"crawl/{key}", body)
    s = infer_all(crawl, f"s3://{bucket}/out", model=str(quick_onnx), engine="loop", progress=False, track=False)
    assert (s.photos, s.predictions, s.errors, s.skipped) == (3, 1, 2, 2)
    rows = read_photos(f"s3://{bucket}/out").set_index("path")
    assert rows.loc["batch_01/listing_0001/photo_01.jpg"].label and pd.isna(rows.loc["batch_01/listing_0001/photo_01.jpg"].error)
    assert "PDF" in rows.loc["batch_01/listing_0001/photo_02.jpg"].error
    assert rows.loc["batch_01/listing_0001/photo_03.jpg"].error == "empty file"
    assert done_record(f"s3://{bucket}/out", "batch_01")["skipped"] == 2


# --------------------------------------------------------------------------- infer-all s3 -> s3


@pytest.mark.slow
def test_loop_s3_to_s3_killed_then_rerun_gives_the_local_rows(s3, bucket, small_crawl, local_reference, quick_onnx,
                                                              tmp_path):
    """A CLI run from s3:// to s3:// SIGKILLed once batch_18 is done; batch_19 then left half-written (its rows
    file without a done record); the rerun (the data root from ROOMCLF_DATA) redoes batch_19 only. Every photo
    then has exactly one row, the same as read from local disk, and no credential is in any output."""
    out = f"s3://{bucket}/infer"
    host = Host(tmp_path, "s3-host", f"sqlite:///{tmp_path / 'mlflow.db'}", small_crawl, **s3.env)
    args = ["infer-all", "--out", out, "--model", str(quick_onnx), "--engine", "loop", "--no-progress"]
    log = host.dir / "killed.log"
    proc = host.popen(*args[:1], "--data", small_crawl, *args[1:], log=log)
    try:
        done_at_kill = kill_once_committed(s3, bucket, "infer/_done/", proc, log)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        stop_group(proc)
    assert done_at_kill == ["infer/_done/batch_18.json"] == [k for k in s3.keys(bucket) if "_done/" in k]
    s3.put(bucket, "infer/photos/batch_19.parquet",
           s3.get(bucket, "infer/photos/batch_18.parquet"))      # a partial batch: rows, no done record

    rerun = host.run(*args)
    ref = local_reference["photos"]
    assert "already done with this model (skipped, --force redoes): 1 batches" in rerun.stdout
    assert f"1 batches: {(ref.batch == 'batch_19').sum()} photos, " in rerun.stdout
    assert f"{local_reference['errors']} errors, {local_reference['skipped']} non-photo files skipped" in rerun.stdout
    assert f"output: {out}/photos/*.parquet" in rerun.stdout
    assert_same_rows(read_photos(out), ref)
    assert sorted(read_listings(out).listing) == sorted(set(ref.listing))
    assert sorted(k for k in s3.keys(bucket, "infer/") if not k.endswith("/")) == sorted(
        f"infer/{kind}/{b}.{ext}" for b in BATCHES.split(",")
        for kind, ext in (("photos", "parquet"), ("listings", "parquet"), ("_done", "json")))

    # the credentials are in no output, log, MLflow param or tag
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=host.env["MLFLOW_TRACKING_URI"])
    runs = client.search_runs([client.get_experiment_by_name("roomclf-infer").experiment_id])
    assert small_crawl in {r.data.params.get("data") for r in runs}
    stored = [s3.get(bucket, k).decode("latin-1") for k in s3.keys(bucket, "infer/") if not k.endswith("/")]
    secrets_absent(s3.env, log.read_text(), rerun.stdout, rerun.stderr, *stored,
                   *(json.dumps([r.data.params, r.data.tags]) for r in runs))


@pytest.mark.slow
def test_local_ray_s3_to_s3_gives_the_local_rows(s3, bucket, small_crawl, local_reference, quick_onnx, monkeypatch):
    """Ray Data on a local Ray: the workers read the photos from S3 (only their paths leave the driver); the
    same rows, errors and skips as from local disk. Workers without credentials: one line, nothing written."""
    import ray

    from roomclf.infer.run import infer_all
    from roomclf.storage import CredentialsError

    out = f"s3://{bucket}/ray"
    run = dict(model=str(quick_onnx), engine="ray", actors=1, progress=False, track=False)
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):      # a Ray whose workers have no credentials
        monkeypatch.delenv(key)
    ray.init(num_cpus=2, object_store_memory=200 * 1024 * 1024, include_dashboard=False, log_to_driver=False)
    try:
        for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):  # while the driver has them
            monkeypatch.setenv(key, s3.env[key])
        with pytest.raises(CredentialsError, match=r"^s3://crawl: no S3 credentials found: set AWS_ACCESS_KEY_ID "
                                                   r"and AWS_SECRET_ACCESS_KEY .*on a Ray worker[^\n]*$"):
            infer_all(small_crawl, out, **run)
    finally:
        ray.shutdown()
    assert s3.keys(bucket) == []

    s = infer_all(small_crawl, out, cpus=2, object_store_mb=200, **run)
    ref = local_reference["photos"]
    assert (s.photos, s.errors, s.skipped) == (len(ref), local_reference["errors"], local_reference["skipped"])
    assert sorted(s.batches_done) == BATCHES.split(",")
    photos = read_photos(out)
    assert_same_rows(photos, ref)
    assert "local" not in set(photos.node)                      # predicted by Ray actors


# --------------------------------------------------------------------------- many machines


MODEL_RESOURCE = "roomclf_model"


@pytest.mark.slow
def test_cluster_s3_to_s3_worker_node_killed_then_rerun(s3, bucket, small_crawl, local_reference, quick_onnx,
                                                        tmp_path):
    """A Ray head and a worker node (tests/hosts.py), each its own HOME, both able to run the model and with the
    S3 variables in their environment, sharing nothing else. The worker's raylet is SIGKILLed once a first batch
    is committed; the same command then leaves exactly one row per photo, the rows read from local disk."""
    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    model_node = json.dumps({MODEL_RESOURCE: 2})
    temp_dir = f"/tmp/rclf-s3-{free_port()}"                       # short: Ray's socket paths are limited
    head = RayNode(Host(tmp_path, "ray-head", tracking, small_crawl, **s3.env), None, cpus=1, resources=model_node,
                   temp_dir=temp_dir)
    nodes = [head]
    try:
        nodes.append(RayNode(Host(tmp_path, "ray-worker", tracking, small_crawl, **s3.env), head.head_port, cpus=1,
                             resources=model_node))
        host = Host(tmp_path, "driver", tracking, small_crawl, **s3.env)
        out = f"s3://{bucket}/cluster"
        args = ["infer-all", "--data", small_crawl, "--out", out, "--model", str(quick_onnx),
                "--address", f"127.0.0.1:{head.head_port}", "--actor-resource", MODEL_RESOURCE, "--batch-size", "8",
                "--no-progress", "--stall-timeout", "60"]
        log = host.dir / "killed.log"
        proc = host.popen(*args, log=log)
        try:
            done_at_kill = kill_once_committed(s3, bucket, "cluster/_done/", proc, log)
            os.kill(nodes[1].raylet_pid(), signal.SIGKILL)
            proc.wait(timeout=200)
        finally:
            stop_group(proc)
        assert len(done_at_kill) == 1, "both batches finished before the kill"
        text = log.read_text()
        if proc.returncode != 0:                                   # failed: then with one clear line
            assert "Traceback" not in text and text.strip().splitlines()[-1].startswith("Error: "), text[-2000:]
        host.run(*args, timeout=400)
        photos = read_photos(out)
        assert_same_rows(photos, local_reference["photos"])
        assert "local" not in set(photos.node)
    finally:
        for node in reversed(nodes):
            node.stop()
        shutil.rmtree(temp_dir, ignore_errors=True)


# --------------------------------------------------------------------------- the docs


def test_every_docs_s3_command_ran_in_these_tests():
    """docs/cluster.md's s3:// section shows only commands these tests ran (as hosts, recorded by tests/hosts.py)."""
    import shlex

    from hosts import PROJECT, RAN
    from test_multihost import matches

    text = (PROJECT / "docs" / "cluster.md").read_text()
    section = text.split("## Photos and outputs in object storage", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    commands = [shlex.split(ln) for ln in section.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    assert commands
    if not any(r[:1] == ["roomclf"] and any(w.startswith("s3://") for w in r) for r in RAN):
        pytest.skip("run with the slow tests of this module: the commands are recorded as the hosts run them")
    missing = [" ".join(c) for c in commands if not any(matches(c, r) for r in RAN)]
    assert not missing, missing
