"""Prelabel (zero-shot cold start and champion model), the zero-shot mapping and the labelling queue."""
from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from roomclf.cli import main
from roomclf.labels import zeroshot
from roomclf.labels.prelabel import prelabel
from roomclf.labels.queue import confirm_pages, kmeans, margins, value_order
from roomclf.labels.store import LabelStore
from roomclf.models.backbones import imagenet_classes
from roomclf.taxonomy import CLASSES

N_PHOTOS = 48


# ---- the zero-shot mapping ---------------------------------------------------------------
def test_every_mapped_concept_is_an_imagenet_class():
    names = imagenet_classes()
    for mapping in (zeroshot.SEED_MAPPING, zeroshot.DEFAULT_MAPPING):
        assert set(mapping) == set(CLASSES)
        concepts = [c for cs in mapping.values() for c in cs]
        assert set(concepts) <= set(names) and len(concepts) == len(set(concepts))


def test_room_probs_sum_the_concepts():
    names = imagenet_classes()
    probs = np.zeros((3, len(names)), np.float32)
    probs[0, names.index("stove")] = 0.6
    probs[0, names.index("quilt")] = 0.2
    probs[1, names.index("four-poster")] = 0.3
    probs[1, names.index("quilt")] = 0.3
    probs[2, names.index("goldfish")] = 1.0          # nothing of any room: uniform
    rooms = zeroshot.room_probs(probs, names, zeroshot.SEED_MAPPING)
    assert np.allclose(rooms.sum(axis=1), 1.0)
    assert CLASSES[rooms[0].argmax()] == "kitchen" and rooms[0][CLASSES.index("kitchen")] == pytest.approx(0.75)
    assert CLASSES[rooms[1].argmax()] == "bedroom" and rooms[1].max() == pytest.approx(1.0)
    assert np.allclose(rooms[2], 1 / len(CLASSES))


def test_fit_mapping_learns_a_concept_from_labels():
    """'bannister' shows on interior photos but the start mapping lacks it: the search adds it."""
    names = imagenet_classes()
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(len(names)) * 0.05, size=140).astype(np.float32) * 0.1
    labels = np.array(["kitchen"] * 70 + ["interior"] * 70)
    probs[:70, names.index("stove")] += 0.5
    probs[70:, names.index("bannister")] += 0.5
    start = {"kitchen": ("stove",), **{c: () for c in CLASSES if c != "kitchen"}}
    before = zeroshot.accuracy(probs, labels, names, start)
    mapping, acc = zeroshot.fit_mapping(probs, labels, names, start=start)
    assert "bannister" in mapping["interior"] and acc > before and acc > 0.95
    assert zeroshot.accuracy(probs, labels, names, mapping) == pytest.approx(acc)


# ---- the queue -------------------------------------------------------------------------
def clusters(sizes, dim=16, spread=0.05, seed=1):
    """L2-normalised rows around len(sizes) orthogonal centres; (vectors, cluster of each row)."""
    rng = np.random.default_rng(seed)
    centres = np.eye(len(sizes), dim) * 5
    vectors = np.concatenate([c + rng.normal(0, spread, (n, dim)) for c, n in zip(centres, sizes)])
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True), np.repeat(np.arange(len(sizes)), sizes)


def test_kmeans_finds_separated_groups_deterministically():
    vectors, truth = clusters([30, 20, 10, 5])
    centres, group = kmeans(vectors, 4, seed=3)
    assert centres.shape == (4, 16) and np.allclose(np.linalg.norm(centres, axis=1), 1, atol=1e-5)
    assert len({(t, g) for t, g in zip(truth, group)}) == 4          # each true cluster is one group
    assert np.array_equal(kmeans(vectors, 4, seed=3)[1], group)
    assert kmeans(vectors[:3], 10)[0].shape[0] == 3                   # never more groups than rows
    centres, sampled = kmeans(vectors, 4, seed=3, sample=20)          # fitted on 20 rows, every row assigned
    assert np.array_equal(sampled, np.argmax(vectors @ centres.T, axis=1))


def test_value_order_starts_with_representatives_then_spreads_the_doubts():
    """The head: one medoid per group, the biggest group first, whatever the margins; then the least confident
    photos, one per group per round, least confident first within a round."""
    vectors, truth = clusters([30, 20, 10, 5])
    margin = np.linspace(0.9, 0.1, 65).astype(np.float32)             # the small clusters are the unsure ones
    order = value_order(vectors, margin, diverse=4, groups=4)
    assert sorted(order) == list(range(65))
    head = order[:4]
    assert [truth[i] for i in head] == [0, 1, 2, 3]                   # coverage weighted by size
    for i in head:                                                   # each the most central of its cluster
        members = np.flatnonzero(truth == truth[i])
        centre = vectors[members].mean(0)
        assert i == members[np.argmax(vectors[members] @ centre)]
    first_round = order[4:8]
    assert sorted(truth[i] for i in first_round) == [0, 1, 2, 3]      # one per group
    assert [margin[i] for i in first_round] == sorted(margin[i] for i in first_round)
    for c in range(4):                                                # each group's least confident first
        rest = [i for i in order[4:] if truth[i] == c]
        assert [margin[i] for i in rest] == sorted(margin[i] for i in rest)
    plain = value_order(vectors, margin, diverse=0, groups=1)         # no head, no spreading: least confident first
    assert plain == [int(i) for i in np.argsort(margin, kind="stable")]


def test_labelled_photos_shorten_the_head_and_count_as_covering():
    vectors, truth = clusters([30, 20, 10, 5])
    margin = np.full(65, 0.5, np.float32)
    first = value_order(vectors, margin, diverse=4, groups=4)
    labelled = np.zeros(65, bool)
    labelled[[first[0], 1]] = True                                     # two photos of the biggest cluster
    again = value_order(vectors, margin, labelled, diverse=4, groups=4)
    assert sorted(again) == list(range(65))
    assert [truth[i] for i in again[:2]] == [1, 2]                     # 4 - 2 representatives, cluster 0 covered
    assert value_order(np.zeros((0, 16)), np.zeros(0)) == [] and value_order(vectors[:1], margin[:1]) == [0]


def test_margins_and_confirm_pages():
    probs = np.array([[0.5, 0.5, 0], [0.9, 0.05, 0.05]])
    assert np.allclose(margins(probs), [0.0, 0.85])
    sugg = {f"p{i:02d}": ("kitchen" if i % 3 else "bedroom", i / 60) for i in range(60)}
    pages = confirm_pages(sugg, page_size=24, classes=list(CLASSES))
    assert [(pg.label, len(pg.paths)) for pg in pages] == [("kitchen", 24), ("kitchen", 16), ("bedroom", 20)]
    assert list(pages[0].confidences) == sorted(pages[0].confidences, reverse=True)
    assert sorted(p for pg in pages for p in pg.paths) == sorted(sugg)


# ---- prelabel on real photos ---------------------------------------------------------------
def test_cold_start_zero_shot_prelabel(home, corpus_root, labels_csv, ground_truth):
    store = LabelStore()
    first = sorted(p for p in ground_truth if p.startswith("batch_01/"))[0]
    store.set_label(first, "exterior", "manual", who="someone")
    report = prelabel(store, corpus_root, "batch_01", ground_truth=labels_csv, limit=N_PHOTOS, progress=False)
    assert report.model == "zeroshot:efficientnet_lite0"   # no champion registered in a fresh store
    assert report.written == N_PHOTOS and not report.errors
    assert report.scored == N_PHOTOS and report.accuracy >= 0.55, report.summary()
    rows = store.rows(["predicted"])
    assert len(rows) == N_PHOTOS
    hits = sum(r.label == ground_truth[r.path]["label"] for r in rows)
    assert hits / N_PHOTOS == pytest.approx(report.accuracy)
    for r in rows:
        top = r.extra["top3"]
        assert [c for c, _ in top][0] == r.label and r.confidence == pytest.approx(top[0][1], abs=1e-3)
        assert top[0][1] >= top[1][1] >= top[2][1] and r.extra["model"] == report.model
    assert store.labels()[first].source == "manual"        # a suggestion never replaces a person's label
    queue = json.loads(store.get_meta("queue:batch_01"))
    assert sorted(queue) == sorted(r.path for r in rows)
    assert queue[-1] == first          # a photo a person labelled counts as covered: no representative, last here


@pytest.mark.slow  # builds the shared quick_onnx fixture and a real MLflow registry
def test_prelabel_uses_the_champion(home, corpus_root, labels_csv, quick_onnx):
    from roomclf.models.registry import register_onnx_file

    version = register_onnx_file(quick_onnx, alias="champion")
    store = LabelStore()
    report = prelabel(store, corpus_root, "batch_01", ground_truth=labels_csv, limit=24, progress=False)
    assert report.model == f"roomclf-onnx v{version}"
    assert report.written == 24 and report.accuracy >= 0.6
    assert {r.extra["model"] for r in store.rows(["predicted"])} == {report.model}
    assert len(json.loads(store.get_meta("queue:batch_01"))) == 24


@pytest.mark.slow  # builds the shared quick_onnx fixture
def test_a_trained_models_sure_confidence_reaches_its_suggestions_and_training(home, corpus_root, labels_csv,
                                                                               quick_onnx, tmp_path, ground_truth):
    """Self-training: prelabel with a model that knows where it is sure; training takes only those."""
    import onnx

    from roomclf.models.onnx_file import read_meta, save_onnx
    from roomclf.train.data import select_data

    model = onnx.load(str(quick_onnx))
    table = {"0.9": 0.5, "0.95": 0.7, "0.98": 0.9, "0.99": None}
    sure_model = save_onnx(model, tmp_path / "sure.onnx", {**read_meta(model), "sure_confidence": table})
    store = LabelStore()
    prelabel(store, corpus_root, "batch_01", uri=str(sure_model), limit=40, progress=False)
    rows = store.rows(["predicted"])
    assert len(rows) == 40 and all(r.extra["sure_confidence"] == table for r in rows)
    store.set_labels([(p, r["label"]) for p, r in sorted(ground_truth.items())
                      if p.startswith("batch_02/") and r["label"]][:30], "manual")
    data = select_data(store, corpus_root, ["batch_01"], ["batch_02"], ("manual", "predicted"))
    confident = sum(r.confidence >= 0.7 for r in rows)
    assert 0 < confident < 40            # the quick model is sure of some photos and not of others
    assert data.sources["train"] == {"predicted": confident} and data.unsure == 40 - confident


def test_cli_prelabel_and_bad_input(home, corpus_root, labels_csv):
    runner = CliRunner()
    res = runner.invoke(main, ["prelabel", "--batch", "batch_01", "--limit", "8", "--model", "zeroshot",
                               "--ground-truth", str(labels_csv)])
    assert res.exit_code == 0, res.output
    assert "8 photos prelabelled with zeroshot:efficientnet_lite0" in res.output and "accuracy" in res.output
    res = runner.invoke(main, ["prelabel", "--batch", "batch_99"])
    assert res.exit_code != 0 and "batch_99" in res.output and "Traceback" not in res.output
    res = runner.invoke(main, ["prelabel", "--batch", "batch_01", "--limit", "4", "--model", "champion"])
    assert res.exit_code != 0 and "no model" in res.output and "Traceback" not in res.output


def test_ground_truth_accepts_class_spellings(tmp_path):
    from roomclf.labels.prelabel import PrelabelError, read_ground_truth

    gt = tmp_path / "gt.csv"
    gt.write_text("path,label\na.jpg,Kitchen\nb.jpg,Dinning\nc.jpg,\nd.jpg,Livingroom\n")
    assert read_ground_truth(gt) == {"a.jpg": "kitchen", "b.jpg": "dining_room", "d.jpg": "living_room"}
    gt.write_text("path,label\na.jpg,sauna\n")
    with pytest.raises(PrelabelError, match="unknown classes sauna"):
        read_ground_truth(gt)
