"""Label propagation, suspects and near-duplicates: on real photos, a real annoy
index, a real label store and a real MLflow store."""
from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import pick_photos

from roomclf.cli import main
from roomclf.labels.store import LabelStore
from roomclf.models.near_duplicates import duplicate_pairs, near_duplicates
from roomclf.models.neighbours import NeighbourIndex
from roomclf.propagate.run import run_propagation
from roomclf.propagate.votes import (
    SHARE_GRID,
    PropagationError,
    pick_thresholds,
    threshold_table,
    weighted_vote,
)

# The same picture twice in batch_01 (a relisted photo), found by the duplicate search.
DUPLICATE = ("batch_01/listing_0010/photo_15.jpg", "batch_01/listing_0183/photo_08.jpg")


# ---- pure functions ---------------------------------------------------------------------
def test_weighted_vote_weights_by_similarity_and_skips_missing_neighbours():
    labels = np.array([[0, 1, 1], [2, -1, -1], [-1, -1, -1]])
    sims = np.array([[0.9, 0.3, 0.3], [0.5, np.nan, np.nan], [np.nan] * 3])
    v = weighted_vote(labels, sims, 3)
    assert v.pred.tolist() == [0, 2, -1]
    assert v.share[0] == pytest.approx(0.9 / 1.5)
    assert v.share[1] == pytest.approx(1.0)
    assert v.top_sim.tolist() == pytest.approx([0.9, 0.5, 0.0])
    assert v.accept(0.6, 0.0).tolist() == [True, True, False]
    assert v.accept(0.6, 0.6).tolist() == [True, False, False]


def test_threshold_table_and_pick_most_coverage_at_target():
    labels = np.array([[0], [0], [1], [1]])
    v = weighted_vote(np.hstack([labels, labels]), np.array([[0.9, 0.9], [0.5, 0.5], [0.9, 0.9], [0.4, 0.4]]), 2)
    truth = np.array([0, 1, 1, 0])       # the two low-similarity votes are wrong
    table = threshold_table(v, truth, share_grid=(0.5,), sim_grid=(0.0, 0.6))
    assert [(r["sim_min"], r["precision"], r["coverage"]) for r in table] == [(0.0, 0.5, 1.0), (0.6, 1.0, 0.5)]
    row, reached = pick_thresholds(table, 0.9)
    assert reached and row["sim_min"] == 0.6
    row, reached = pick_thresholds(table, 0.4)
    assert reached and row["sim_min"] == 0.0


def test_index_roundtrip_gives_cosine_similarities(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 32)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    paths = [f"b/l/p{i}.jpg" for i in range(200)]
    NeighbourIndex.build(paths, x, n_trees=20).save(tmp_path / "ix")
    ix = NeighbourIndex.load(tmp_path / "ix")
    assert ix.paths == paths and len(ix) == 200
    found = ix.query_items([5], 3, search_k=10_000)
    assert 5 not in found.items[0]
    assert found.sims[0] == pytest.approx(x[found.items[0]] @ x[5], abs=1e-4)
    assert found.items[0][0] == np.argsort(-(x @ x[5]))[1]    # exact nearest with a large search_k
    copy = x.copy()
    copy[7] = x[3] + 1e-4
    pairs = duplicate_pairs(paths, copy, threshold=0.97)
    assert [(a, b) for a, b, _ in pairs] == [("b/l/p3.jpg", "b/l/p7.jpg")]


# ---- real photos ------------------------------------------------------------------------
@pytest.fixture()
def seeded(home, ground_truth):
    """A label store with 40 manual labels of batch_01 (ground truth), all classes."""
    store = LabelStore()
    picked = pick_photos(ground_truth, "batch_01", 40)
    store.set_labels(picked, "manual", who="test")
    return store, dict(picked)


def test_near_duplicates_finds_the_relisted_photo(home, corpus_root):
    others = [f"batch_01/listing_0010/photo_{i:02d}.jpg" for i in range(1, 12)]
    pairs = near_duplicates(corpus_root, [*DUPLICATE, *others], threshold=0.97)
    assert [(a, b) for a, b, _ in pairs] == [tuple(sorted(DUPLICATE))]
    assert pairs[0][2] > 0.99


def test_propagate_gives_right_labels_never_overwrites_manual_and_logs_cv(seeded, corpus_root, ground_truth):
    import mlflow
    from mlflow.tracking import MlflowClient

    store, manual = seeded
    # A manual label the neighbours would contradict, and a stale propagated label on a manual photo.
    wrong_path = next(p for p, lab in manual.items() if lab == "kitchen")
    store.set_label(wrong_path, "bathroom", "manual", who="test")
    store.set_label(wrong_path, "kitchen", "propagated", who="old run")
    unlabelled = next(p for p in sorted(ground_truth) if p.startswith("batch_01/") and p not in manual)
    store.set_label(unlabelled, "interior", "propagated", who="old run")
    # suspects stored by earlier runs: batch_02's stay, batch_01's are replaced by this run's
    other = {"path": "batch_02/listing_0001/photo_01.jpg", "label": "kitchen", "vote": "bathroom", "share": 0.8,
             "neighbours": []}
    stale = {**other, "path": "batch_01/listing_0001/photo_01.jpg"}
    store.set_meta("suspects", json.dumps([other, stale]))

    r = run_propagation(corpus_root, "batch_01", k=5, folds=4, suspect_share=0.55, progress=False,
                        echo=lambda *_: None)

    assert r.written and r.labelled == 40 and r.accepted > 60
    prop = store.labels(["propagated"])
    assert len(prop) == r.accepted
    right = sum(ground_truth[p]["label"] == lab.label for p, lab in prop.items())
    assert right / len(prop) >= 0.8                           # 40 labels, so lower than the 300-label benchmark
    assert all(0 < lab.confidence <= 1 and lab.who == "roomclf propagate" for lab in prop.values())
    # manual labels stay, and no manual photo carries a propagated label
    now = store.labels(["manual"])
    assert now[wrong_path].label == "bathroom" and set(now) == set(manual)
    assert not set(prop) & set(manual)
    # the stale propagated labels of the batch were replaced
    assert unlabelled not in prop or store.rows(["propagated"], unlabelled)[0].who == "roomclf propagate"
    # the deliberately wrong label is a suspect, stored for the labelling app
    stored = json.loads(store.get_meta("suspects"))
    assert stored == [other] + [{k: s[k] for k in ("path", "label", "vote", "share", "neighbours")}
                                for s in r.suspects]
    flagged = {s["path"]: s for s in stored}
    assert flagged[wrong_path]["label"] == "bathroom" and flagged[wrong_path]["vote"] == "kitchen"
    assert all(set(s) >= {"path", "label", "vote", "share"} and s["vote"] != s["label"] for s in stored)
    assert tuple(sorted(DUPLICATE)) in {(a, b) for a, b, _ in r.duplicates}

    client = MlflowClient(mlflow.get_tracking_uri())
    run = client.get_run(r.run_id)
    assert run.data.params["method"] == "pull" and run.data.params["k"] == "5"
    assert run.data.metrics["propagated"] == r.accepted
    assert 0 < run.data.metrics["cv_precision"] <= 1 and 0 < run.data.metrics["cv_coverage"] <= 1
    history = client.get_metric_history(r.run_id, "cv_coverage/sim_0.00")
    assert sorted(m.step for m in history) == list(range(len(SHARE_GRID)))
    assert history[0].value >= history[-1].value              # looser share threshold covers more
    files = {f.path for f in client.list_artifacts(r.run_id)} | {f.path for f in client.list_artifacts(r.run_id, "index")}
    assert {"index/index.ann", "index/index_paths.json", "precision_coverage.png", "cv_thresholds.csv",
            "suspects.csv", "suspects.png", "near_duplicates.csv", "propagated.csv"} <= files
    index = NeighbourIndex.load(mlflow.artifacts.download_artifacts(run_id=r.run_id, artifact_path="index"))
    assert len(index) == 383 - len(r.unreadable)                  # every readable photo of batch_01


def test_push_direction_and_fixed_thresholds_dry_run(seeded, corpus_root, ground_truth):
    store, _ = seeded
    r = run_propagation(corpus_root, "batch_01", k=5, method="push", share_min=0.9, sim_min=0.6, folds=3,
                        dry_run=True, log_mlflow=False, progress=False, echo=lambda *_: None)
    assert r.method == "push" and not r.auto_thresholds and (r.share_min, r.sim_min) == (0.9, 0.6)
    assert 0 < r.accepted <= 40 * 5                                 # push reaches at most k photos per label
    assert not r.written and store.labels(["propagated"]) == {}
    out = CliRunner().invoke(main, ["propagate", "--batches", "batch_01", "--k", "5", "--folds", "3", "--dry-run"])
    assert out.exit_code == 0, out.output
    assert "thresholds (picked by cross-validation): vote share >= " in out.output
    assert "would propagate " in out.output and "from 40 labels" in out.output
    assert store.labels(["propagated"]) == {} and store.get_meta("suspects") is None


# ---- bad input ----------------------------------------------------------------------------
def test_bad_input_is_a_clear_error_and_writes_nothing(home, corpus_root):
    store = LabelStore()
    with pytest.raises(PropagationError, match="no manual labels among the photos of batch_02"):
        run_propagation(corpus_root, "batch_02", progress=False)
    store.set_labels([("batch_01/listing_0010/photo_01.jpg", "kitchen")], "propagated", who="earlier")
    store.set_labels([(p, "kitchen") for p in ("batch_01/listing_0010/photo_02.jpg",
                                               "batch_01/listing_0010/photo_03.jpg")], "manual")
    with pytest.raises(PropagationError, match="k=10 is larger than the labelled set"):
        run_propagation(corpus_root, "batch_01", progress=False)
    store.set_label("batch_01/listing_0010/photo_99.jpg", "kitchen", "manual")
    with pytest.raises(PropagationError, match="not in the corpus"):
        run_propagation(corpus_root, "batch_01", progress=False)
    assert [lab.path for lab in store.rows(["propagated"])] == ["batch_01/listing_0010/photo_01.jpg"]
    assert store.get_meta("suspects") is None

    result = CliRunner().invoke(main, ["propagate", "--batches", "batch_02"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.output.strip().splitlines() == [result.output.strip()]
    assert result.output.startswith("Error: no manual labels among the photos of batch_02 (3 found in batch_01)")
    result = CliRunner().invoke(main, ["propagate", "--k", "0"])
    assert result.exit_code == 2 and "--k" in result.output
