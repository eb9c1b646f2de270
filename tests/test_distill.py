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
@pytest.mark.parametrize("recipe", ["defaults", "live_teacher=true"])
def test_student_is_trained_on_teacher_predictions_registered_and_gated(tmp_path, quick_onnx, corpus_root,
                                                                        ground_truth, embedding_cache, monkeypatch,
                                                                        recipe):
    from mlflow import MlflowClient

    from roomclf.labels.store import LabelStore
    from roomclf.models.registry import ONNX_NAME, logged_model_id, register_onnx_file
    from roomclf.train.config import TrainConfig, parse_recipe
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
                          lr=1e-2, seed=0, teacher=f"models:/{ONNX_NAME}@champion", run_name="student",
                          recipe=parse_recipe(recipe))
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
    assert run.data.params["recipe.live_teacher"] == str(recipe != "defaults")
    assert version.tags["teacher"] == f"{ONNX_NAME} v{teacher_version}"
    assert float(version.tags["model_ms_per_photo"]) > 0 and "CPUs" in version.tags["model_ms_timed_on"]
    # accuracy and cost against the logged model, for the MLflow UI's model comparison
    assert logged["val_accuracy"] == pytest.approx(m["val_accuracy"]) and logged["model_ms_per_photo"] > 0
    assert {"val_macro_f1", "val_f1.kitchen"} <= set(logged)
    assert "Distilled from" in version.description
    assert result.champion_version == teacher_version                    # gated against its teacher
    assert run.data.tags["gate_reason"] and run.data.tags["alias"] == result.alias


def test_live_teacher_labels_each_training_batch_as_the_student_sees_it(tmp_path, quick_onnx, corpus_root,
                                                                         ground_truth):
    """With the recipe's live_teacher, the targets of a training batch are the teacher's predictions on those very
    pictures (augmented and mixed), not the photo's precomputed target; validation batches keep their labels."""
    import torch
    from fastai.callback.core import Callback

    from roomclf.models.backbones import get_spec
    from roomclf.models.onnx_file import OnnxModel
    from roomclf.taxonomy import CLASSES
    from roomclf.train.config import parse_recipe
    from roomclf.train.data import TrainData
    from roomclf.train.learner import build_dls, fit, make_learner

    train, valid = pick_photos(ground_truth, "batch_05", 16), pick_photos(ground_truth, "batch_06", 8)
    uniform = np.full(len(CLASSES), 1 / len(CLASSES), np.float32)       # a precomputed target no teacher gives
    data = TrainData(train=train, valid=valid, soft={p: uniform for p, _ in train})
    spec, teacher = get_spec("efficientnet_lite0"), OnnxModel(quick_onnx)
    recipe = parse_recipe("mixup=1.0,live_teacher=true")
    dls = build_dls(corpus_root, data, teacher.input_size, 8, spec.mean, spec.std, seed=0, recipe=recipe)
    seen = {"train": [], "valid": []}

    class Record(Callback):
        order = 50                                 # after MixUp and the live teacher

        def before_batch(self):
            seen["train" if self.training else "valid"].append((self.learn.xb[0].clone(), self.learn.yb[0].clone()))

    learn = make_learner(dls, "efficientnet_lite0", np.ones(len(CLASSES), np.float32), recipe=recipe, soft=True)
    fit(learn, frozen_epochs=1, epochs=0, lr=1e-3, cbs=[Record()], recipe=recipe, teacher=quick_onnx)

    assert len(seen["train"]) == 2 and seen["valid"]
    mean, std = (torch.tensor(v, dtype=torch.float32).view(1, 3, 1, 1) for v in (spec.mean, spec.std))
    for x, y in seen["train"]:
        pictures = (x * std + mean).clamp(0, 1)               # the backbone's normalisation undone: [0, 1]
        expected = teacher.run(np.ascontiguousarray(pictures.numpy(), dtype=np.float32))["probs"]
        assert torch.allclose(y, torch.from_numpy(expected), atol=1e-4)
        assert not torch.allclose(y, torch.from_numpy(uniform).expand_as(y), atol=1e-2)
    for _, y in seen["valid"]:                                   # human labels: one-hot rows
        assert torch.equal(y.max(1).values, torch.ones(len(y))) and torch.equal(y.sum(1), torch.ones(len(y)))
    learn.export(tmp_path / "learner.pkl")            # the teacher is gone once trained: the learner exports as any
    assert not any("teacher" in type(cb).__name__.lower() for cb in learn.cbs)


def test_live_teacher_is_refused_without_a_teacher():
    from roomclf.train.config import TrainConfig, TrainingError, check_config, parse_recipe

    cfg = TrainConfig(data=".", train_batches=["batch_01"], valid_batches=["batch_02"],
                      recipe=parse_recipe("live_teacher=true"))
    with pytest.raises(TrainingError, match="live_teacher"):
        check_config(cfg)
    cfg.teacher = "models:/roomclf-onnx@champion"
    check_config(cfg)
