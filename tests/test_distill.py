"""Distillation: a student learns a registered teacher's predictions on every photo of the training
batches, is validated on human labels only, registered with its teacher named, and gated."""
from __future__ import annotations

import numpy as np
import pytest
from conftest import isolated_store, pick_photos


def test_soft_targets_at_a_temperature():
    import torch

    from roomclf.train.distill import soft_accuracy, soft_target_loss, soften

    p = np.array([[0.7, 0.2, 0.1]], np.float32)
    warm = soften(p, 2.0)
    assert np.allclose(warm.sum(), 1) and warm[0, 0] < 0.7 and warm[0, 2] > 0.1     # flatter, same order
    assert np.allclose(soften(p, 1.0), p)
    loss = soft_target_loss(1.0)
    onehot = torch.tensor([[0.0, 1.0, 0.0]])
    logits = torch.tensor([[0.5, 2.0, -1.0]])
    assert float(loss(logits, onehot)) == pytest.approx(float(torch.nn.functional.cross_entropy(logits, torch.tensor([1]))))
    assert float(soft_accuracy(logits, onehot)) == 1.0
    assert float(loss(torch.log(torch.from_numpy(p)), torch.from_numpy(p))) < float(loss(logits, torch.from_numpy(p)))


def test_attribute_head_learns_the_teachers_scores(corpus_root):
    """On real student features, the fitted head reproduces a teacher's attribute scores (and takes its
    thresholds); an attribute the teacher does not emit stays untrained."""
    from roomclf.models.embeddings import embed
    from roomclf.train.distill import Teacher, distil_attributes

    paths = [p.relative_to(corpus_root).as_posix() for p in sorted((corpus_root / "batch_04").rglob("*.jpg"))[:120]]
    emb = embed(corpus_root, paths, normalize=False, progress=False)
    rng = np.random.default_rng(0)
    w = rng.normal(size=emb.vectors.shape[1]).astype(np.float32)
    z = (emb.vectors - emb.vectors.mean(0)) @ w / np.sqrt(len(w))
    scores = 1 / (1 + np.exp(-z / z.std()))
    teacher = Teacher("models:/t/1", "t v1", "1", attribute_keys=["kitchen.kitchen_island", "living_room.tv"],
                      thresholds={"kitchen.kitchen_island": 0.5, "living_room.tv": None},
                      attributes={p: np.array([s, 0.5], np.float32) for p, s in zip(emb.paths, scores)})
    head, thresholds = distil_attributes(emb.vectors, teacher, emb.paths)
    import torch

    with torch.no_grad():
        got = torch.sigmoid(head(torch.from_numpy(emb.vectors))).numpy()[:, 0]
    assert np.corrcoef(got, scores)[0, 1] > 0.95
    assert thresholds == {"kitchen.kitchen_island": 0.5, "living_room.tv": None}


@pytest.mark.slow
def test_student_is_trained_on_teacher_predictions_registered_and_gated(tmp_path, quick_onnx, corpus_root,
                                                                        ground_truth, embedding_cache, monkeypatch):
    from mlflow import MlflowClient

    from roomclf.labels.store import LabelStore
    from roomclf.models.registry import ONNX_NAME, logged_model_id, register_onnx_file
    from roomclf.train.config import TrainConfig
    from roomclf.train.run import run_training

    monkeypatch.setenv("ROOMCLF_EMBEDDING_DIR", str(embedding_cache))
    monkeypatch.setenv("ROOMCLF_DATA", str(corpus_root))
    with isolated_store(tmp_path):
        store = LabelStore()
        labelled = pick_photos(ground_truth, "batch_19", 40)
        store.set_labels(labelled, "imported")
        store.set_labels(pick_photos(ground_truth, "batch_02", 30), "manual")
        teacher_version = register_onnx_file(quick_onnx, alias="champion")
        cfg = TrainConfig(data=str(corpus_root), train_batches="batch_19", valid_batches="batch_02",
                          backbone="efficientnet_lite0", image_size=96, frozen_epochs=1, epochs=1, batch_size=32,
                          lr=1e-2, seed=0, teacher=f"models:/{ONNX_NAME}@champion", run_name="student")
        result = run_training(cfg, store, echo=lambda *_: None)
        client = MlflowClient()
        run = client.get_run(result.run_id)
        version = client.get_model_version(ONNX_NAME, result.versions[ONNX_NAME])
        logged = {m.key: m.value for m in client.get_logged_model(logged_model_id(version)).metrics}
    m = run.data.metrics
    assert run.info.status == "FINISHED"
    assert m["n_train"] > 300 and m["n_train_source.teacher"] == m["n_train"] - m["n_train_source.imported"]
    assert m["n_valid_source.manual"] == m["n_valid"]                   # validated on human labels only
    assert 0.3 <= m["val_accuracy"] <= 1.0
    assert run.data.params["teacher"] == f"models:/{ONNX_NAME}@champion"
    assert version.tags["teacher"] == f"{ONNX_NAME} v{teacher_version}"
    assert float(version.tags["model_ms_per_photo"]) > 0 and "CPUs" in version.tags["model_ms_timed_on"]
    # accuracy and cost against the logged model, for the MLflow UI's model comparison
    assert logged["val_accuracy"] == pytest.approx(m["val_accuracy"]) and logged["model_ms_per_photo"] > 0
    assert {"val_macro_f1", "val_f1.kitchen"} <= set(logged)
    assert "Distilled from" in version.description
    assert result.champion_version == teacher_version                    # gated against its teacher
    assert run.data.tags["gate_reason"] and run.data.tags["alias"] == result.alias
