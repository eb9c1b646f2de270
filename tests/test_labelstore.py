import csv
import multiprocessing as mp

import pytest

from roomclf.labels.store import LabelError, LabelStore
from roomclf.taxonomy import UnknownName


@pytest.fixture()
def store(tmp_path):
    return LabelStore(tmp_path / "labels.sqlite")


def test_sources_never_overwrite_each_other_and_priority_decides(store):
    store.set_label("b/l/p1.jpg", "kitchen", "manual", who="ann")
    store.set_labels([("b/l/p1.jpg", "bedroom", 0.9), ("b/l/p2.jpg", "bathroom", 0.8)], "propagated")
    store.set_labels([("b/l/p2.jpg", "exterior", 0.5, {"top3": ["exterior"]})], "predicted")
    eff = store.labels()
    assert eff["b/l/p1.jpg"].label == "kitchen" and eff["b/l/p1.jpg"].source == "manual"
    assert eff["b/l/p2.jpg"].label == "bathroom" and eff["b/l/p2.jpg"].confidence == pytest.approx(0.8)
    assert store.labels(["predicted"])["b/l/p2.jpg"].extra == {"top3": ["exterior"]}
    assert len(store.rows()) == 4


def test_label_sources_are_one_enum_equal_to_their_stored_strings(store):
    from roomclf.labels.sources import SOURCE_PRIORITY, SOURCES, LabelSource
    from roomclf.train.config import DEFAULT_SOURCES, HUMAN_SOURCES

    assert [str(s) for s in SOURCES] == ["manual", "imported", "propagated", "predicted"]   # priority order
    assert SOURCE_PRIORITY["manual"] < SOURCE_PRIORITY[LabelSource.PREDICTED]
    assert LabelSource.TEACHER not in SOURCES                   # a training origin, never stored
    assert set(HUMAN_SOURCES) < set(DEFAULT_SOURCES) <= set(SOURCES)
    store.set_label("batch_01/a/1.jpg", "kitchen", LabelSource.PROPAGATED)
    store.set_label("batch_01/a/1.jpg", "bedroom", "imported")       # plain strings still work
    (row,) = store.rows([LabelSource.PROPAGATED])
    assert row.source == "propagated" and type(row.source) is str
    assert store.labels(["imported", LabelSource.PROPAGATED])["batch_01/a/1.jpg"].label == "bedroom"
    with pytest.raises(LabelError, match="unknown label source"):
        store.set_label("batch_01/a/1.jpg", "kitchen", LabelSource.TEACHER)


def test_last_write_wins_and_history_keeps_everything(store):
    store.set_label("p.jpg", "kitchen", who="ann")
    store.set_label("p.jpg", "Dinning", who="bob")
    assert store.labels()["p.jpg"].label == "dining_room"
    assert store.labels()["p.jpg"].who == "bob"
    assert store.delete_label("p.jpg", "manual", who="ann")
    assert "p.jpg" not in store.labels()
    hist = store.history("p.jpg")
    assert [(h["label"], h["who"]) for h in hist] == [("kitchen", "ann"), ("dining_room", "bob"), (None, "ann")]


def test_unknown_class_or_source_writes_nothing(store):
    with pytest.raises(UnknownName):
        store.set_labels([("a.jpg", "kitchen"), ("b.jpg", "garage sale")], "manual")
    with pytest.raises(LabelError):
        store.set_label("a.jpg", "kitchen", "guessed")
    assert store.labels() == {}


def test_a_failing_transaction_rolls_back(store):
    with pytest.raises(RuntimeError), store.transaction() as db:
        store.set_labels([("a.jpg", "kitchen")], "propagated", db=db)
        raise RuntimeError("boom")
    assert store.labels() == {}


def test_attributes_partial_and_per_source(store):
    store.set_attributes("k.jpg", {"kitchen.island": 1, "kitchen.dishwasher": 0}, "manual")
    store.set_attributes("k.jpg", {"kitchen.kitchen_island": 0}, "imported")
    assert store.attributes()["k.jpg"] == {"kitchen.kitchen_island": 1, "kitchen.dishwasher": 0}
    with pytest.raises(UnknownName):
        store.set_attributes("k.jpg", {"kitchen.pool": 1})


def _writer(args):
    path, worker = args
    s = LabelStore(path)
    for i in range(40):
        s.set_label(f"shared_{i % 5}.jpg", "kitchen" if worker % 2 else "bedroom", who=f"w{worker}")
        s.set_label(f"own_{worker}_{i}.jpg", "bathroom", who=f"w{worker}")
    return worker


def test_concurrent_writers_lose_nothing(tmp_path):
    path = tmp_path / "labels.sqlite"
    LabelStore(path)
    with mp.get_context("spawn").Pool(4) as pool:
        assert sorted(pool.map(_writer, [(path, w) for w in range(4)])) == [0, 1, 2, 3]
    store = LabelStore(path)
    labels = store.labels()
    assert sum(1 for p in labels if p.startswith("own_")) == 160
    assert all(labels[f"shared_{i}.jpg"].label in ("kitchen", "bedroom") for i in range(5))
    assert len(store.history("shared_0.jpg")) == 4 * 8


def test_import_the_corpus_csv(store, labels_csv, corpus_root, ground_truth):
    report = store.import_csv(labels_csv, corpus_root=corpus_root)
    n_labelled = sum(1 for r in ground_truth.values() if r["label"])
    assert report.added == n_labelled > 7000
    assert report.skipped_empty == 3               # the three broken files have no label
    eff = store.labels()
    assert eff["batch_01/listing_0439/photo_09.jpg"].label == "dining_room"
    assert store.counts()["imported"]["interior"] == 395


def test_import_reports_bad_rows(store, tmp_path, corpus_root):
    bad = tmp_path / "bad.csv"
    bad.write_text("path,label\nbatch_01/listing_0439/photo_09.jpg,dinning\nbatch_01/nope/photo.jpg,kitchen\n"
                   "batch_01/listing_0439/photo_01.jpg,sauna\n,kitchen\n")
    report = store.import_csv(bad, corpus_root=corpus_root)
    assert (report.added, report.not_in_corpus, report.unknown_class, report.skipped_empty) == (1, 1, {"sauna": 1}, 1)
    with pytest.raises(LabelError):
        (tmp_path / "x.csv").write_text("a,b\n1,2\n")
        store.import_csv(tmp_path / "x.csv")
    (tmp_path / "conf.csv").write_text("path,label,confidence\nbatch_01/listing_0439/photo_09.jpg,kitchen,0.9\n"
                                      "batch_01/listing_0439/photo_01.jpg,kitchen,high\n")
    with pytest.raises(LabelError, match=r"conf.csv:3: confidence 'high' is not a number"):
        store.import_csv(tmp_path / "conf.csv")


def test_import_batches_and_limit(store, labels_csv):
    report = store.import_csv(labels_csv, batches=["batch_02"], limit=50)
    assert report.added == 50 and all(p.startswith("batch_02/") for p in store.labels())


def test_import_attributes_resolves_within_class(store, labels_csv, shared_data, corpus_root):
    store.import_csv(labels_csv, batches=["batch_19", "batch_05"])
    with open(shared_data / "attributes.csv", newline="") as f:
        report = store.import_attribute_rows(csv.DictReader(f), corpus_root=corpus_root)
    attrs = store.attributes()
    keys = {k for d in attrs.values() for k in d}
    assert report.added > 0 and report.unknown_attribute     # e.g. appliance tags on bedrooms
    assert all(k.split(".")[0] == store.labels()[p].label for p, d in attrs.items() for k in d)
    assert not any(k.endswith(".washer_dryer") or k == "interior.stairs" for k in keys)


def test_import_folders_and_export(store, tmp_path, corpus_root):
    tree = tmp_path / "tree"
    photos = {"Kitchen": ["batch_01/listing_0439/photo_09.jpg", "batch_01/listing_0439/photo_01.jpg"],
              "Livingroom": ["batch_01/listing_0439/photo_02.jpg", "elsewhere/c.jpg"], "sauna": ["d.jpg"]}
    for cls, paths in photos.items():
        for rel in paths:
            (tree / cls / rel).parent.mkdir(parents=True, exist_ok=True)
            (tree / cls / rel).write_bytes(b"x")
    report = store.import_folders(tree, corpus_root=corpus_root)
    assert (report.added, report.not_in_corpus, report.unknown_class) == (3, 1, {"sauna": 1})
    assert store.labels()["batch_01/listing_0439/photo_02.jpg"].label == "living_room"
    store.set_attributes("batch_01/listing_0439/photo_09.jpg", {"kitchen.refrigerator": 1})
    out = tmp_path / "out" / "labels.csv"
    assert store.export_csv(out) == 3
    rows = list(csv.DictReader(open(out)))
    assert [r["path"] for r in rows] == sorted(p for p in photos["Kitchen"] + photos["Livingroom"] if p.startswith("batch"))
    by_path = {r["path"]: r for r in rows}
    row = by_path["batch_01/listing_0439/photo_09.jpg"]
    assert row["attributes"] == "kitchen.refrigerator=1" and row["source"] == "imported"


def test_store_import_refuses_non_canonical_paths(store, tmp_path, corpus_root):
    """The store's import code itself refuses, naming the row, and writes nothing (the CLI is only one caller)."""
    good = "batch_01/listing_0003/photo_01.jpg"
    sneaky = "batch_01/../batch_02/listing_0018/photo_01.jpg"    # a batch_02 photo filed under batch_01
    assert (corpus_root / sneaky).is_file()
    rows = tmp_path / "rows.csv"
    rows.write_text(f"path,label\n{good},kitchen\n{sneaky},bedroom\n")
    for kwargs in ({}, {"corpus_root": corpus_root}, {"batches": ["batch_01"]}):
        with pytest.raises(LabelError, match=r"rows.csv:3: photo path .*batch_01/\.\./batch_02.* '\.' or '\.\.' part"):
            store.import_csv(rows, **kwargs)
    assert store.labels() == {}
    store.set_label(good, "kitchen", "imported")
    with pytest.raises(LabelError, match="attribute row ./batch_01/listing_0003/photo_01.jpg,island"):
        store.import_attribute_rows([{"path": "./" + good, "attribute": "island", "value": "1"}])
    assert store.attributes() == {}
