"""The corpus in object storage for the commands besides infer-all: `embed`, `prelabel`, `label` (the app serves
photos read through roomclf.storage), `propagate`, `import-labels` and training's data checks, with an s3:// data
root, give what the same photos give from a local folder. The endpoint is the real one of tests/s3.py (moto's
standalone server on loopback, checking credentials); nothing is patched in-process.

The crawl is small to stay fast: the first listings of batch_18 and the first of batch_19 (its broken files
included), in S3 and, as the reference, linked into a local folder.
"""
from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from roomclf.cli import main
from roomclf.labels.store import LabelStore

FEW = "s3://crawl/few"
FEW_LISTINGS = {"batch_18": 3, "batch_19": 1}
BROKEN = ["batch_19/listing_0001/photo_90.jpg", "batch_19/listing_0001/photo_91.jpg",
          "batch_19/listing_0001/photo_92.jpg"]      # empty, truncated, an HTML page: unreadable everywhere
PHOTO = "batch_19/listing_0001/photo_01.jpg"


@pytest.fixture(scope="module")
def few(s3_endpoint, corpus_root, tmp_path_factory) -> tuple[str, Path]:
    """(the s3:// root, the same files linked into a local folder)."""
    local = tmp_path_factory.mktemp("few") / "listings"
    for batch, n in FEW_LISTINGS.items():
        for listing in sorted(p for p in (corpus_root / batch).iterdir() if p.is_dir())[:n]:
            s3_endpoint.upload_tree(listing, "crawl", f"few/{batch}/{listing.name}")
            (local / batch / listing.name).mkdir(parents=True)
            for f in listing.iterdir():
                (local / batch / listing.name / f.name).symlink_to(f)
    return FEW, local


@pytest.fixture()
def on_s3(s3, home, monkeypatch):  # noqa: F811
    """The endpoint's variables and an isolated home, the corpus root in ROOMCLF_DATA being the s3:// one."""
    monkeypatch.setenv("ROOMCLF_DATA", FEW)
    return s3


def photos_of(local: Path, batch: str) -> list[str]:
    from roomclf.corpus import discover

    return discover(local, batch).paths


def labelled(ground_truth: dict, paths: list[str]) -> list[tuple[str, str]]:
    return [(p, ground_truth[p]["label"]) for p in paths if ground_truth.get(p, {}).get("label")]


# --------------------------------------------------------------------------- embed


def test_embed_keys_its_cache_by_the_objects_listing(on_s3, few, embedding_cache, tmp_path, monkeypatch):
    """`roomclf embed --data s3://...`: the vectors of the local photos; a rerun computes nothing (the cache key
    comes from the bucket's listing); an object rewritten with other bytes is computed again."""
    from roomclf.models.embeddings import embed

    uri, local = few
    paths = photos_of(local, "batch_19")
    want = embed(local, paths, progress=False)                    # the session's cache: local stamps
    s3_cache = tmp_path / "embeddings"
    shutil.copytree(embedding_cache / "onnx", s3_cache / "onnx")  # the exported embedder, not the vectors
    monkeypatch.setenv("ROOMCLF_EMBEDDING_DIR", str(s3_cache))

    result = CliRunner().invoke(main, ["embed", "--batches", "batch_19"])        # --data from ROOMCLF_DATA
    assert result.exit_code == 0, result.output
    got = embed(uri, paths, progress=False)
    assert got.computed == 0 and got.paths == want.paths
    assert np.allclose(got.vectors, want.vectors, atol=1e-5)
    assert set(got.errors) == set(want.errors) >= set(BROKEN)

    on_s3.put("crawl", f"few/{PHOTO}", (local / "batch_19/listing_0001/photo_02.jpg").read_bytes())
    try:
        again = embed(uri, paths, progress=False)
    finally:
        on_s3.put("crawl", f"few/{PHOTO}", (local / PHOTO).read_bytes())
    assert again.computed == 1
    assert not np.allclose(again.vectors[again.index()[PHOTO]], want.vectors[want.index()[PHOTO]], atol=1e-3)


# --------------------------------------------------------------------------- prelabel


def test_prelabel_from_s3_suggests_what_it_suggests_from_disk(on_s3, few):
    from roomclf.labels.prelabel import zero_shot

    uri, local = few
    result = CliRunner().invoke(main, ["prelabel", "--data", uri, "--batches", "batch_19", "--model", "zeroshot"])
    assert result.exit_code == 0, result.output
    suggested = {p: lab.label for p, lab in LabelStore().labels(["predicted"]).items()}
    want = zero_shot(local, photos_of(local, "batch_19"), progress=False)
    assert suggested == {p: _top(row) for p, row in zip(want.paths, want.probs)}
    assert set(BROKEN) <= set(want.errors) and not set(BROKEN) & set(suggested)


def _top(row) -> str:
    from roomclf.taxonomy import CLASSES

    return CLASSES[int(np.argmax(row))]


# --------------------------------------------------------------------------- the labelling app


def test_label_app_serves_photos_read_from_s3(on_s3, few, tmp_path):
    from roomclf.labels.app.app import create_app
    from roomclf.photos import open_photo

    uri, local = few
    store = LabelStore()
    paths = photos_of(local, "batch_19")
    store.set_labels([(p, "kitchen", 0.6, {"model": "seed"}) for p in paths], "predicted", "test")
    client = TestClient(create_app(uri, "batch_19", store, thumbs=tmp_path / "thumbs"), base_url="http://localhost")

    photo = client.get("/api/photo", params={"path": PHOTO})
    assert photo.status_code == 200 and photo.headers["content-type"] == "image/jpeg"
    assert photo.content == (local / PHOTO).read_bytes()
    thumb = client.get("/api/thumb", params={"path": PHOTO, "size": "small"})
    assert thumb.status_code == 200 and max(open_photo(thumb.content).size) == 256
    assert client.get("/api/thumb", params={"path": PHOTO}).content == thumb.content     # from the cache
    assert client.get("/api/thumb", params={"path": BROKEN[2]}).status_code == 422       # an HTML page
    for bad in ("../few/batch_19/listing_0001/photo_01.jpg", "batch_19/../batch_18/x.jpg", "batch_19//a.jpg"):
        assert client.get("/api/photo", params={"path": bad}).status_code in (400, 404), bad

    saved = client.post("/api/label", json={"path": PHOTO, "label": "bathroom"})
    assert saved.status_code == 200, saved.text
    assert store.labels(["manual"])[PHOTO].label == "bathroom"
    on_s3.client().delete_object(Bucket="crawl", Key=f"few/{BROKEN[0]}")            # gone since the app started
    try:
        gone = client.get("/api/photo", params={"path": BROKEN[0]})
    finally:
        on_s3.put("crawl", f"few/{BROKEN[0]}", b"")
    assert gone.status_code == 404 and "no longer" in gone.json()["error"]


# --------------------------------------------------------------------------- propagate


def test_propagate_from_s3_lends_the_labels_it_lends_from_disk(on_s3, few, ground_truth):
    from roomclf.propagate.run import run_propagation

    uri, local = few
    store = LabelStore()
    seeds = labelled(ground_truth, photos_of(local, "batch_18"))[::2]
    store.set_labels(seeds, "manual", who="test")
    options = dict(k=3, folds=3, share_min=0.5, sim_min=0.3, log_mlflow=False, progress=False, echo=lambda *_: None)
    want = run_propagation(local, "batch_18", dry_run=True, **options)
    got = run_propagation(uri, "batch_18", store=store, **options)
    assert got.labelled == len(seeds) and got.written and not got.unreadable
    lent = {p: lab.label for p, lab in store.labels(["propagated"]).items()}
    assert want.accepted > 0 and len(lent) == want.accepted and want.per_class == {
        c: sum(1 for v in lent.values() if v == c) for c in want.per_class}
    assert [s["path"] for s in got.suspects] == [s["path"] for s in want.suspects]


# --------------------------------------------------------------------------- training's data


def test_training_data_checks_read_through_the_storage_layer(on_s3, few, bucket, ground_truth, tmp_path):
    """import-labels finds the photos in S3; select_data names a label without a photo; drop_broken,
    fast.ai's PhotoReader and the duplicate check give what they give on disk."""
    from roomclf.train.config import TrainingError
    from roomclf.train.data import drop_broken, duplicate_paths, select_data
    from roomclf.train.learner import PhotoReader

    uri, local = few
    rows = labelled(ground_truth, photos_of(local, "batch_18")) + [("batch_18/listing_0001/photo_99.jpg", "kitchen")]
    labels = tmp_path / "labels.csv"
    with open(labels, "w", newline="") as f:
        csv.writer(f).writerows([("path", "label"), *rows])
    result = CliRunner().invoke(main, ["import-labels", str(labels), "--as", "manual"])
    assert result.exit_code == 0, result.output
    assert f"{len(rows) - 1} added" in result.output and "1 not in the corpus" in result.output

    store = LabelStore()
    store.set_label("batch_18/listing_0001/photo_99.jpg", "kitchen", "manual")
    with pytest.raises(TrainingError, match=r"1 train labels point at photos that do not exist under few/, e\.g\. "
                                            r"batch_18/listing_0001/photo_99\.jpg"):
        select_data(store, uri, ["batch_18"], ["batch_19"])

    items = [(p, "interior") for p in photos_of(local, "batch_19")]
    assert drop_broken(uri, items, 64) == drop_broken(local, items, 64)
    for item in items[:3]:
        assert np.array_equal(np.asarray(PhotoReader(uri, 64)(item)), np.asarray(PhotoReader(local, 64)(item)))

    photo = (local / PHOTO).read_bytes()
    on_s3.put(bucket, "c/batch_01/l/a.jpg", photo)
    on_s3.put(bucket, "c/batch_02/l/b.jpg", photo)                                 # the same bytes again
    on_s3.put(bucket, "c/batch_02/l/c.jpg", (local / "batch_19/listing_0001/photo_02.jpg").read_bytes())
    dups = duplicate_paths(f"s3://{bucket}/c", ["batch_01/l/a.jpg"], ["batch_02/l/b.jpg", "batch_02/l/c.jpg"],
                           near=False)
    assert dups == ["batch_02/l/b.jpg"]
