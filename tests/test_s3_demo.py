"""`roomclf demo` on a corpus in object storage: ROOMCLF_SAMPLE_SOURCE=s3://bucket/prefix is used in place, its
labels.csv and attributes.csv read through roomclf.storage, and the demo plans from it what it plans from the same
photos on disk. The endpoint is the real one of tests/s3.py (moto's standalone server on loopback, checking
credentials); nothing is patched in-process.

The corpus is tiny to stay fast: one listing of batch_17 (no interior photo, so the manual labels widen to
batch_18), two of batch_18 and two of batch_19 (its broken files included), with the corpus's whole labels.csv
and attributes.csv (rows of photos it does not hold included), in a bucket and, as the reference, linked into a
local folder.
"""
from __future__ import annotations

import shutil

import pytest
from conftest import one_line_error
from click.testing import CliRunner

from roomclf.cli import main
from roomclf.demo import (
    DemoPlan,
    _file_stamp,
    _summary_lines,
    attribute_file,
    attribute_pass,
    corpus_plan,
)
from roomclf.labels.prelabel import read_ground_truth
from roomclf.sample.download import SampleDataError, describe, get_sample_corpus

BUCKET = "demo-corpus"
TINY = {"batch_17": ["listing_0053"], "batch_18": ["listing_0120", "listing_0193"],
        "batch_19": ["listing_0001", "listing_0061"]}
FOUR_CLASSES = ("kitchen", "bathroom", "bedroom", "exterior")


def four_class_rows(ground_truth: dict) -> list[tuple[str, str]]:
    """The photos and labels of test_pipeline's 4-class corpus (no dining room, living room nor interior)."""
    return [(p, r["label"]) for p, r in sorted(ground_truth.items())
            if r["label"] in FOUR_CLASSES and p.startswith(("batch_01/listing_04", "batch_02/listing_04"))]


@pytest.fixture(scope="module")
def corpora(s3_endpoint, shared_data, corpus_root, ground_truth, tmp_path_factory) -> dict:
    """The bucket's corpora, each with its local twin (photos linked):
    ``tiny``: s3://demo-corpus/tiny (listings/ beside labels.csv and attributes.csv);
    ``flat``: s3://demo-corpus/flat holding batch_18 directly, its labels.csv in the folder above (the bucket);
    ``four``: s3://demo-corpus/four, test_pipeline's 4-class corpus; ``unlabelled``: batches, no labels.csv."""
    s3_endpoint.create_bucket(BUCKET)
    local = tmp_path_factory.mktemp("demo-corpora")
    for batch, listings in TINY.items():
        for listing in listings:
            s3_endpoint.upload_tree(corpus_root / batch / listing, BUCKET, f"tiny/listings/{batch}/{listing}")
            (local / "tiny" / "listings" / batch / listing).mkdir(parents=True)
            for f in (corpus_root / batch / listing).iterdir():
                (local / "tiny" / "listings" / batch / listing / f.name).symlink_to(f)
    for name in ("labels.csv", "attributes.csv"):
        s3_endpoint.put(BUCKET, f"tiny/{name}", (shared_data / name).read_bytes())
        shutil.copyfile(shared_data / name, local / "tiny" / name)      # copied: a link resolves to ../shared
    s3_endpoint.upload_tree(corpus_root / "batch_18" / "listing_0120", BUCKET, "flat/batch_18/listing_0120")
    s3_endpoint.put(BUCKET, "labels.csv", (shared_data / "labels.csv").read_bytes())
    s3_endpoint.upload_tree(corpus_root / "batch_18" / "listing_0120", BUCKET, "unlabelled/listings/batch_18/l")
    rows = four_class_rows(ground_truth)
    for path, _ in rows:
        s3_endpoint.put(BUCKET, f"four/listings/{path}", (corpus_root / path).read_bytes())
        (local / "four" / "listings" / path).parent.mkdir(parents=True, exist_ok=True)
        (local / "four" / "listings" / path).symlink_to(corpus_root / path)
    labels = ("path,label\n" + "".join(f"{p},{lab}\n" for p, lab in rows)).encode()
    s3_endpoint.put(BUCKET, "four/labels.csv", labels)
    (local / "four" / "labels.csv").write_bytes(labels)
    return {"local": local, "tiny": f"s3://{BUCKET}/tiny", "flat": f"s3://{BUCKET}/flat",
            "four": f"s3://{BUCKET}/four", "unlabelled": f"s3://{BUCKET}/unlabelled"}


def test_a_corpus_in_a_bucket_is_used_in_place(s3, corpora, tmp_path):
    """get_sample_corpus on an s3:// source: the URI of the folder holding the batches and of labels.csv (no
    download); the labels read through the storage layer are those of the same file on disk; attributes.csv is
    found beside it and its step stamp is the object's size and time."""
    local = corpora["local"] / "tiny"
    want = get_sample_corpus(tmp_path / "unused", str(local))
    got = get_sample_corpus(tmp_path / "unused", corpora["tiny"] + "/")       # a trailing slash is the same place
    assert got.in_place
    assert (got.root, got.labels_csv) == (f"{corpora['tiny']}/listings", f"{corpora['tiny']}/labels.csv")
    assert got.photos == want.photos == sum(1 for f in (local / "listings").glob("batch_*/*/*"))
    assert describe(got) == [f"{got.photos} photos used in place at {got.root}; labels: {got.labels_csv}"]
    assert not (tmp_path / "unused").exists()
    assert read_ground_truth(got.labels_csv) == read_ground_truth(want.labels_csv)

    attrs = attribute_file(got.labels_csv)
    assert attrs == f"{corpora['tiny']}/attributes.csv" and attribute_file(want.labels_csv) == local / "attributes.csv"
    stamp = _file_stamp(attrs)
    assert stamp[:2] == [attrs, (local / "attributes.csv").stat().st_size] and stamp[2] > 0
    assert _file_stamp(attrs) == stamp                                         # the same object, the same stamp
    s3.put(BUCKET, "tiny/attributes.csv", (local / "attributes.csv").read_bytes() + b"\n")
    try:
        assert _file_stamp(attrs) != stamp                                     # a changed object redoes the step
    finally:
        s3.put(BUCKET, "tiny/attributes.csv", (local / "attributes.csv").read_bytes())

    flat = get_sample_corpus(tmp_path / "unused", corpora["flat"])             # batch_* at the top, labels above
    assert (flat.root, flat.labels_csv, flat.photos) == (corpora["flat"], f"s3://{BUCKET}/labels.csv", 15)
    assert attribute_file(flat.labels_csv) is None                             # no attributes.csv beside it


def test_the_demo_plans_from_a_bucket_what_it_plans_from_disk(s3, corpora):
    """corpus_plan (what run_demo plans with) from the bucket equals the plan from the same photos on disk, and
    so do the photos that get attribute check-boxes (read from attributes.csv in the bucket)."""
    local = corpora["local"] / "tiny"
    got = corpus_plan(f"{corpora['tiny']}/listings", f"{corpora['tiny']}/labels.csv")
    want = corpus_plan(local / "listings", local / "labels.csv")
    assert got == want
    plan, truth, present = got
    assert plan == DemoPlan(["batch_17", "batch_18"], ["batch_17", "batch_18"], ["batch_19"], 3)
    assert {p.split("/")[0] for p in present} == set(TINY) and set(truth) < present
    boxes = attribute_pass(f"{corpora['tiny']}/attributes.csv", truth, plan.train)
    assert boxes == attribute_pass(local / "attributes.csv", truth, plan.train) and boxes


def test_the_summary_shows_the_bucket_in_the_commands_it_prints(home, monkeypatch):
    """The closing commands name an s3:// corpus as it is (``--data s3://...``, not a path made of it), and
    leave ``--data`` out where ROOMCLF_DATA names the same place (in any spelling of it)."""
    from types import SimpleNamespace

    root = f"s3://{BUCKET}/tiny/listings"
    plan = DemoPlan(["batch_17", "batch_18"], ["batch_17", "batch_18"], ["batch_19"], 3)
    prop = {"truth": {"precision": 1.0, "coverage": 0.5}, "accepted": 3, "suspects": 0}
    tags = {"per_key": {}, "photos_tagged": 0, "listings": 0, "listings_tagged": 0, "example": None, "scores": None}

    def label_command() -> str:
        lines = _summary_lines(plan, {"accuracy": None}, prop, {"metrics": {}, "run_id": "r"},
                               SimpleNamespace(photos=0, photos_per_s=0.0), tags, home / "infer",
                               SimpleNamespace(path=home / "labels.sqlite"), 1.0, root)
        return next(ln for ln in lines if "roomclf label " in ln).split("roomclf ", 1)[1].split("   ")[0]

    assert label_command() == f"label --batch batch_18 --data {root}"
    monkeypatch.setenv("ROOMCLF_DATA", f"s3://{BUCKET}//tiny/listings/")
    assert label_command() == "label --batch batch_18"


def test_demo_on_a_bucket_without_all_classes_stops_with_one_line(s3, home, corpora, monkeypatch):
    """`roomclf demo` on test_pipeline's 4-class corpus in the bucket: the same one line as from disk."""
    monkeypatch.setenv("ROOMCLF_SAMPLE_SOURCE", str(corpora["local"] / "four"))
    want = one_line_error(CliRunner().invoke(main, ["demo"]))
    monkeypatch.setenv("ROOMCLF_SAMPLE_SOURCE", corpora["four"])
    got = CliRunner().invoke(main, ["demo"])
    assert one_line_error(got) == want
    assert "cannot train all 7 classes" in want and "dining_room, living_room, interior" in want
    assert f"photos used in place at {corpora['four']}/listings" in got.output


def test_demo_source_problems_in_object_storage_are_one_line(s3, home, corpora, monkeypatch):
    """No labels.csv, nothing under the prefix, a missing bucket, a wrong secret, an unknown key: one line each,
    naming the place and what to set; no secret in it."""
    def demo(source: str) -> str:
        monkeypatch.setenv("ROOMCLF_SAMPLE_SOURCE", source)
        line = one_line_error(CliRunner().invoke(main, ["demo"]))
        assert s3.env["AWS_SECRET_ACCESS_KEY"] not in line and s3.env["AWS_ACCESS_KEY_ID"] not in line
        return line

    assert demo(corpora["unlabelled"]) == \
        f"Error: {corpora['unlabelled']} looks like a corpus but has no labels.csv beside it"
    line = demo(f"s3://{BUCKET}/nothing-here")
    assert line.startswith(f"Error: ROOMCLF_SAMPLE_SOURCE=s3://{BUCKET}/nothing-here: not a corpus (a folder or s3://")
    assert "s3://no-such-corpus: no such bucket" in demo("s3://no-such-corpus/tiny")
    with pytest.raises(SampleDataError, match="no labels.csv"):
        get_sample_corpus(home / "unused", corpora["unlabelled"])

    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    line = demo(corpora["tiny"])
    assert line.startswith(f"Error: s3://{BUCKET}: ") and "AWS_SECRET_ACCESS_KEY" in line
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAUNKNOWNKEY000000")
    line = demo(corpora["tiny"])
    assert line.startswith(f"Error: s3://{BUCKET}: ") and "AWS_ACCESS_KEY_ID" in line


@pytest.mark.slow
def test_demo_runs_end_to_end_on_a_bucket(s3, home, corpora, tmp_path):
    """`ROOMCLF_SAMPLE_SOURCE=s3://... roomclf demo` in a fresh process on the tiny corpus: every step runs on the
    bucket's photos and labels, infer-all writes one row per photo, the closing commands name the bucket, and no
    credential is printed."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from roomclf.corpus import discover
    from roomclf.infer.output import read_photos

    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update({"ROOMCLF_SAMPLE_SOURCE": corpora["tiny"], "PYTHONUNBUFFERED": "1"})
    Path(os.environ["HOME"]).mkdir(parents=True, exist_ok=True)
    roomclf = str(Path(sys.executable).with_name("roomclf"))
    demo = subprocess.run([roomclf, "demo", "--manual-labels", "20"], env=env, cwd=tmp_path, capture_output=True,
                          text=True, timeout=600)
    out = demo.stdout + demo.stderr
    print(demo.stdout)                                    # shown by pytest -rP
    assert demo.returncode == 0, out[-6000:]
    root = f"{corpora['tiny']}/listings"
    assert f"photos used in place at {root}; labels: {corpora['tiny']}/labels.csv" in out
    assert "manual labels from batch_17–batch_18, propagate over and train on batch_17–batch_18, validate on " \
           "batch_19" in out
    assert "attribute check-boxes of the photos it labels from attributes.csv" in out
    assert "[7/7] summary" in out and f"--data {root}" in out and "s3:/demo-corpus" not in out
    assert s3.env["AWS_SECRET_ACCESS_KEY"] not in out and s3.env["AWS_ACCESS_KEY_ID"] not in out
    photos = read_photos(home / "infer")
    assert sorted(photos.path) == sorted(discover(corpora["local"] / "tiny" / "listings").paths)
