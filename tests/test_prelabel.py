"""Prelabel (zero-shot cold start and champion model), the zero-shot mapping and the labelling queue."""
from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from roomclf.cli import main
from roomclf.labels import zeroshot
from roomclf.labels.prelabel import prelabel
from roomclf.labels.queue import confirm_pages, margins, value_order
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
def test_value_order_prefers_uncertain_and_diverse():
    rng = np.random.default_rng(1)
    centres = np.eye(4, 16) * 5
    vectors = np.concatenate([c + rng.normal(0, 0.05, (10, 16)) for c in centres])
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    flat = value_order(vectors, np.full(40, 0.5))     # equal uncertainty: plain k-center
    assert sorted(flat) == list(range(40)) and {i // 10 for i in flat[:4]} == {0, 1, 2, 3}
    margin = np.full(40, 0.9)
    margin[[3, 4, 13, 23, 33]] = 0.05                  # uncertain photos; 3 and 4 near-duplicates
    order = value_order(vectors, margin)
    assert sorted(order) == list(range(40))
    assert order[0] in (3, 4) and set(order[1:4]) == {13, 23, 33}   # one uncertain photo per cluster first
    assert set(order[:5]) == {3, 4, 13, 23, 33}        # then the near-duplicate, before confident photos


def test_value_order_traverses_the_head_then_orders_the_rest_by_value():
    """Past ``head`` picks (a crawl-size batch) the traversal stops: the head is the full traversal's, and the
    rest come once each, most valuable first."""
    rng = np.random.default_rng(2)
    vectors = rng.normal(size=(300, 32)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    margin = rng.random(300).astype(np.float32)
    full = value_order(vectors, margin, head=300)
    cut = value_order(vectors, margin, head=40)
    assert cut[:40] == full[:40] and sorted(cut) == list(range(300))
    picked = vectors[cut[:40]]
    value = np.linalg.norm(vectors[:, None] - picked[None], axis=2).min(1) * ((1 - margin) + 1e-3)
    assert np.all(np.diff(value[cut[40:]]) <= 1e-6)             # the rest by their value after the head


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
