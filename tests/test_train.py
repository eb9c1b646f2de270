"""Training end to end on a few dozen real photos: real fastai, real SQLite MLflow
store and registry, real onnxruntime; bad input refused before any training."""
from __future__ import annotations

import csv
import io
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import fresh_mlflow_store, pick_photos

from roomclf.cli import main
from roomclf.labels.store import LabelStore
from roomclf.taxonomy import CLASSES
from roomclf.train.config import DEFAULT_RECIPE, parse_recipe

BROKEN = ["batch_19/listing_0001/photo_90.jpg", "batch_19/listing_0001/photo_91.jpg",
          "batch_19/listing_0001/photo_92.jpg"]


def _cfg(corpus_root, **kw):
    from roomclf.train.config import TrainConfig

    base = dict(data=str(corpus_root), train_batches="batch_01,batch_19", valid_batches="batch_02",
                image_size=96, frozen_epochs=2, epochs=1, batch_size=16, lr=1e-2, seed=0)
    return TrainConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def trained(tmp_path_factory, corpus_root, ground_truth, embedding_cache):
    """Two runs in one isolated store: a useful one, then a deliberately worse one."""
    from roomclf.train.run import run_training

    home = tmp_path_factory.mktemp("train_home")
    fresh_mlflow_store(home)
    with pytest.MonkeyPatch.context() as mp:
        for key, value in {"ROOMCLF_HOME": str(home), "ROOMCLF_EMBEDDING_DIR": str(embedding_cache),
                           "ROOMCLF_DATA": str(corpus_root), "MLFLOW_DISABLE_TELEMETRY": "true"}.items():
            mp.setenv(key, value)
        for key in ("MLFLOW_TRACKING_URI", "ROOMCLF_LABEL_DB", "MLFLOW_EXPERIMENT_ID", "MLFLOW_RUN_ID"):
            mp.delenv(key, raising=False)
        store = LabelStore()
        train, valid = pick_photos(ground_truth, "batch_01", 60), pick_photos(ground_truth, "batch_02", 30)
        store.set_labels(train, "imported")
        store.set_labels(valid, "manual")
        good_19 = [(p, r["label"]) for p, r in sorted(ground_truth.items())
                   if p.startswith("batch_19/") and r["label"]][:4]
        store.set_labels(good_19 + [(p, "interior") for p in BROKEN], "manual")
        first = run_training(_cfg(corpus_root, run_name="good", quantize=True), store, echo=lambda *_: None)
        second = run_training(_cfg(corpus_root, frozen_epochs=1, epochs=0, lr=1e-7, run_name="worse",
                                   recipe=replace(DEFAULT_RECIPE, flip_tta=True, small_size=48)), store,
                              echo=lambda *_: None)
        yield {"home": home, "first": first, "second": second, "store": store, "n_train": len(train),
               "n_valid": len(valid)}


def _run(run_id):
    from mlflow import MlflowClient

    from roomclf.settings import setup_mlflow

    setup_mlflow()
    client = MlflowClient()
    return client, client.get_run(run_id)


@pytest.mark.slow
def test_run_is_tracked_with_params_metrics_and_report(trained):
    client, run = _run(trained["first"].run_id)
    assert run.info.status == "FINISHED"
    p, m = run.data.params, run.data.metrics
    assert p["backbone"] == "efficientnet_lite2" and p["image_size"] == "96"   # the default network
    assert p["train_batches"] == "batch_01,batch_19" and p["valid_batches"] == "batch_02"
    assert m["n_broken_skipped"] == 3                      # the planted broken files were labelled, then skipped
    n_train, n_valid = trained["n_train"], trained["n_valid"]
    assert m["n_train"] == n_train + 4 and m["n_valid"] + m["n_valid_leaks_dropped"] == n_valid
    # counted on what training used: the 3 unreadable manual photos and any leaks are not in the counts
    assert m["n_train_source.imported"] == n_train and m["n_train_source.manual"] == 4
    assert m["n_valid_source.manual"] == m["n_valid"]
    assert 0.0 <= m["val_accuracy"] <= 1.0 and all(f"val_f1.{c}" in m for c in CLASSES)
    sure = trained["first"].metrics["sure_confidence"]        # what prelabel copies onto its suggestions
    assert set(sure) == {"0.9", "0.95", "0.98", "0.99"}
    reached = [c for c in sure.values() if c is not None]
    assert reached and reached == sorted(reached) and all(0 < c <= 1 for c in reached)
    assert all(m[f"val_sure_confidence.{p}"] == pytest.approx(c) for p, c in sure.items() if c is not None)
    assert m["n_train_predicted_unsure_left_out"] == 0
    history = client.get_metric_history(run.info.run_id, "epoch_valid_loss")
    assert [h.step for h in history] == [0, 1, 2]          # 2 frozen + 1 unfrozen epochs
    phases = [h.value for h in client.get_metric_history(run.info.run_id, "epoch_phase_unfrozen")]
    assert phases == [0.0, 0.0, 1.0]
    assert {"epoch_accuracy", "epoch_macro_f1", "epoch_train_loss"} <= set(m)
    assert run.data.tags["git_commit"]
    files = {f.path for f in client.list_artifacts(run.info.run_id, "report")}
    assert {"report/confusion_matrix.png", "report/top_losses.png", "report/classification_report.txt",
            "report/per_class.json"} <= files
    text = client.download_artifacts(run.info.run_id, "report/classification_report.txt")
    assert "interior" in Path(text).read_text()


@pytest.mark.slow
def test_parity_is_logged_and_holds(trained):
    _, run = _run(trained["first"].run_id)
    m = run.data.metrics
    assert m["parity_photos"] >= 10
    assert m["parity_max_abs_diff_probs"] <= 1e-4 and m["parity_max_abs_diff_embedding"] <= 1e-4
    assert m["parity_max_abs_diff_attributes"] <= 1e-4          # the tag heads are checked too


@pytest.mark.slow
def test_a_flip_tta_run_reports_what_its_flip_model_scores(trained, corpus_root):
    """The worse run was trained with ``--recipe flip_tta=true,small_size=48``: its registered ONNX graph averages
    photo and mirror, parity is checked on that graph, and its logged validation accuracy is the one that graph
    gets on the run's validation photos at the input size (not the unflipped network's, nor the small photos' of
    progressive resizing, on which its frozen epoch trained)."""
    import mlflow

    from roomclf.models.onnx_file import OnnxModel
    from roomclf.models.registry import ONNX_NAME, fetch_model

    second = trained["second"]
    _, run = _run(second.run_id)
    m = run.data.metrics
    model = OnnxModel(fetch_model(f"models:/{ONNX_NAME}/{second.versions[ONNX_NAME]}"))
    assert model.meta["flip_tta"] is True and m["parity_max_abs_diff_probs"] <= 1e-4
    assert run.data.params["recipe.small_size"] == "48" and model.meta["input_size"] == 96
    text = mlflow.artifacts.load_text(f"{run.info.artifact_uri}/data/valid.csv")
    valid = [(r["path"], r["label"]) for r in csv.DictReader(io.StringIO(text))]
    preds = model.predict_sources([corpus_root / p for p, _ in valid])
    onnx_accuracy = float(np.mean([p.label == c for p, (_, c) in zip(preds, valid)]))
    assert onnx_accuracy == pytest.approx(m["val_accuracy"], abs=1.5 / len(valid))


@pytest.mark.slow
def test_both_forms_registered_with_tags(trained):
    from mlflow import MlflowClient

    from roomclf.models.registry import INT8_NAME, ONNX_NAME, TORCH_NAME

    first = trained["first"]
    assert set(first.versions) == {ONNX_NAME, TORCH_NAME, INT8_NAME}    # the good run asked for --quantize
    client = MlflowClient()
    for name, version in first.versions.items():
        mv = client.get_model_version(name, version)
        assert mv.run_id == first.run_id
        tags = mv.tags
        assert tags["classes"] == ",".join(CLASSES) and tags["backbone"] == "efficientnet_lite2"
        assert tags["image_size"] == "96" and tags["valid_batches"] == "batch_02"
        assert float(tags["val_accuracy"]) == pytest.approx(first.metrics["val_accuracy"], abs=1e-4)
        assert "val_macro_f1" in tags and tags["train_batches"] == "batch_01,batch_19"


@pytest.mark.slow
def test_quantized_twin_is_registered_with_its_accuracy_and_runs(trained, corpus_root, ground_truth):
    import mlflow
    import onnx

    from roomclf.models.onnx_file import OnnxModel
    from roomclf.models.quantize import agreement
    from roomclf.models.registry import fetch_model

    _, run = _run(trained["first"].run_id)
    m = run.data.metrics
    # fp32 accuracy recomputed through onnxruntime on the same validation photos = fastai's figure
    assert m["int8_fp32_accuracy"] == pytest.approx(m["val_accuracy"], abs=0.02)
    int8 = OnnxModel(fetch_model("models:/roomclf-onnx-int8@champion"))     # what infer-all --quantized loads
    # the logged int8 figures are those of the registered pair on the run's own validation photos
    # (this 96-px, 3-epoch model is too unsure of itself for int8 to agree with it often: the figures
    # on a real model are bench_infer's)
    text = mlflow.artifacts.load_text(f"{run.info.artifact_uri}/data/valid.csv")
    valid = [(r["path"], r["label"]) for r in csv.DictReader(io.StringIO(text))]
    assert len(valid) == m["n_valid"]
    again = agreement(fetch_model("models:/roomclf-onnx@champion"), int8.path, corpus_root, valid)
    assert again == pytest.approx({k[len("int8_"):]: v for k, v in m.items() if k.startswith("int8_")}, abs=1e-6)
    ops = {node.op_type for node in onnx.load(str(int8.path)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    picked = pick_photos(ground_truth, "batch_03", 4)
    preds = int8.predict_sources([corpus_root / p for p, _ in picked])
    assert all(p.label in CLASSES and p.error is None for p in preds)


@pytest.mark.slow
def test_champion_loads_in_onnxruntime_and_worse_run_is_challenger(trained, corpus_root, ground_truth):
    from roomclf.models.catalogue import list_versions
    from roomclf.models.onnx_file import OnnxModel
    from roomclf.models.registry import (
        DEFAULT_ONNX_URI,
        fetch_model,
        model_version_info,
    )

    first, second = trained["first"], trained["second"]
    assert first.alias == "champion" and first.champion_version is None
    assert second.alias == "challenger" and second.champion_version == first.versions["roomclf-onnx"]
    _, run2 = _run(second.run_id)
    assert run2.data.metrics["gate_new_accuracy"] < run2.data.metrics["gate_champion_accuracy"]
    info = model_version_info(DEFAULT_ONNX_URI)
    assert str(info["version"]) == first.versions["roomclf-onnx"]
    model = OnnxModel(fetch_model(DEFAULT_ONNX_URI))
    assert model.input_size == 96 and model.classes == list(CLASSES)
    picked = pick_photos(ground_truth, "batch_03", 8)
    preds = model.predict_sources([corpus_root / p for p, _ in picked])
    assert all(p.label in CLASSES and p.error is None for p in preds)
    aliases = {(r.name, r.version): r.aliases for r in list_versions()}
    for name, version in second.versions.items():
        assert aliases[(name, version)] == ["challenger"]
        assert aliases[(name, first.versions[name])] == ["champion"]


@pytest.mark.slow
def test_roomclf_version_is_a_photo_pyfunc_and_fine_tunable(trained, corpus_root):
    import mlflow
    import pandas as pd
    import torch

    from roomclf.models.network import RoomNet

    version = trained["first"].versions["roomclf"]
    uri = f"models:/roomclf/{version}"
    photo = corpus_root / "batch_02" / "listing_0081" / "photo_01.jpg"
    out = mlflow.pyfunc.load_model(uri).predict(pd.DataFrame({"image": [photo.read_bytes(), b"not a photo"]}))
    assert out["label"].iloc[0] in CLASSES and out["error"].iloc[1]
    local = mlflow.artifacts.download_artifacts(uri)
    state = torch.load(next(p for p in __import__("pathlib").Path(local).rglob("state_dict.pt")),
                       weights_only=False)
    net = RoomNet(state["backbone"], pretrained=False)
    net.load_state_dict(state["state_dict"])           # continue fine-tuning from here
    assert state["classes"] == list(CLASSES) and state["image_size"] == 96
    from fastai.learner import load_learner

    learner = next(p for p in __import__("pathlib").Path(local).rglob("learner.pkl"))
    learn = load_learner(learner)
    assert list(learn.dls.vocab) == list(CLASSES)


@pytest.mark.slow
def test_models_and_promote_commands(trained):
    runner = CliRunner()
    listed = runner.invoke(main, ["models"])
    assert listed.exit_code == 0, listed.output
    lines = [ln for ln in listed.output.splitlines() if ln.startswith("roomclf")]
    assert len(lines) == 4 and sum("champion" in ln for ln in lines) == 2
    onnx_v2 = trained["second"].versions["roomclf-onnx"]
    moved = runner.invoke(main, ["promote", "roomclf-onnx", onnx_v2])
    torch_v2 = trained["second"].versions["roomclf"]
    assert moved.exit_code == 0, moved.output
    assert f"@champion now on roomclf v{torch_v2}, roomclf-onnx v{onnx_v2}" in moved.output   # both forms move
    from roomclf.models.registry import model_version_info

    assert str(model_version_info("models:/roomclf-onnx@champion")["version"]) == onnx_v2
    assert str(model_version_info("models:/roomclf@champion")["version"]) == torch_v2
    # the second run did not quantise: the first run's int8 twin no longer carries @champion
    from mlflow import MlflowClient

    assert "champion" not in MlflowClient().get_registered_model("roomclf-onnx-int8").aliases
    quantized = runner.invoke(main, ["infer-all", "--quantized", "--out", str(trained["home"] / "q"), "--batches",
                                     "batch_19", "--engine", "loop"])
    assert quantized.exit_code == 1 and "roomclf-onnx-int8@champion" in quantized.output, quantized.output
    runner.invoke(main, ["promote", "roomclf-onnx", trained["first"].versions["roomclf-onnx"]])
    int8 = MlflowClient().get_registered_model("roomclf-onnx-int8").aliases
    assert str(int8.get("champion")) == trained["first"].versions["roomclf-onnx-int8"]   # back with its run
    bad = runner.invoke(main, ["promote", "roomclf-onnx", "99"])
    assert bad.exit_code == 1 and "no version 99" in bad.output


# ---- bad input: one line, before any training ---------------------------------------------

@pytest.fixture()
def labelled(home, ground_truth):
    store = LabelStore()
    store.set_labels(pick_photos(ground_truth, "batch_01", 30), "imported")
    store.set_labels(pick_photos(ground_truth, "batch_02", 24), "manual")
    store.set_labels(pick_photos(ground_truth, "batch_03", 30), "propagated")
    store.set_labels(pick_photos(ground_truth, "batch_05", 5), "manual")
    good_19 = [(p, r["label"]) for p, r in sorted(ground_truth.items()) if p.startswith("batch_19/") and r["label"]]
    store.set_labels(good_19[:18] + [(p, "interior") for p in BROKEN], "manual")    # 21, 3 of them unreadable
    return store


@pytest.mark.parametrize("args, message", [
    (["--train-batches", "batch_01,batch_02", "--valid-batches", "batch_02"], "overlap (batch_02)"),
    (["--train-batches", "batch_06", "--valid-batches", "batch_02"], "no train labels"),
    (["--train-batches", "batch_01", "--valid-batches", "batch_04"], "no valid labels"),
    (["--train-batches", "batch_77", "--valid-batches", "batch_02"], "batch_77 not found"),
    (["--train-batches", "batch_01", "--valid-batches", "batch_02", "--sources", "guessed"],
     "unknown label source"),
    (["--train-batches", "batch_01", "--valid-batches", "batch_02", "--sources", "propagated"],
     "no train labels"),
    (["--train-batches", "batch_01", "--valid-batches", "batch_02", "--epochs", "0", "--frozen-epochs", "0"],
     "not both 0"),
    # validation counts human labels only, and enough of them
    (["--train-batches", "batch_01", "--valid-batches", "batch_03"], "no valid labels from sources manual,imported"),
    (["--train-batches", "batch_01", "--valid-batches", "batch_05"], "only 5 validation photos labelled by"),
    (["--train-batches", "batch_01", "--valid-batches", "batch_19"],
     "only 18 validation photos labelled by manual,imported left after dropping 3 unreadable"),
    # an ensemble: two or more different, known backbones; its first member checks the data as usual
    (["--valid-batches", "batch_02", "--backbone", "efficientnet_lite0,efficientnet_lite0"],
     "two or more different backbones"),
    (["--valid-batches", "batch_02", "--backbone", "efficientnet_lite0,lite9"], "unknown backbone 'lite9'"),
    (["--train-batches", "batch_01", "--valid-batches", "batch_01", "--backbone", "efficientnet_lite0,efficientnet_lite1"],
     "overlap (batch_01)"),
])
def test_bad_input_is_one_line_before_training(labelled, home, args, message):
    result = CliRunner().invoke(main, ["train", *args])
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = result.output.strip().splitlines()         # (a check after the photo pass follows its progress lines)
    assert lines[-1].startswith("Error: ") and message in lines[-1]
    assert len(lines) == 1 or "batch_19" in args
    assert not (home / "mlflow.db").exists() or _no_runs()


@pytest.mark.slow
def test_an_ensemble_is_trained_registered_and_gated_in_one_command(labelled, home):
    """`roomclf train --backbone a,b`: one run per member (each registered), then their average registered
    in both forms with the members' training photos, and gated on the members' validation photos."""
    import mlflow

    from roomclf.models.registry import ONNX_NAME, TORCH_NAME, training_photos

    args = ["train", "--train-batches", "batch_01", "--valid-batches", "batch_02", "--image-size", "64",
            "--frozen-epochs", "1", "--epochs", "0", "--batch-size", "16", "--lr", "0.01",
            "--backbone", "efficientnet_lite0,efficientnet_lite1", "--run-name", "pair"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "ensemble member 1/2: efficientnet_lite0" in result.output and "member 2/2: efficientnet_lite1" in result.output
    said = [line for line in result.output.splitlines() if line.startswith("ensemble roomclf")]   # MLflow talks too
    assert len(said) == 1 and said[0].startswith(f"ensemble {ONNX_NAME} v3, {TORCH_NAME} v3: ")
    client = mlflow.MlflowClient()
    runs = mlflow.search_runs(experiment_names=["roomclf-train"], output_format="list")
    assert sorted(r.info.run_name for r in runs) == ["pair-efficientnet_lite0", "pair-efficientnet_lite1"]
    ens = client.get_model_version(ONNX_NAME, "3")
    assert ens.tags["ensemble_of"] == f"models:/{ONNX_NAME}/1 + models:/{ONNX_NAME}/2"
    assert ens.tags["backbone"] == "efficientnet_lite0+efficientnet_lite1" and ens.tags["train_batches"] == "batch_01"
    assert training_photos("3")[0] == {p for p, r in labelled.labels().items() if p.startswith("batch_01/")}
    champion = {n: client.get_registered_model(n).aliases.get("champion") for n in (ONNX_NAME, TORCH_NAME)}
    assert champion[ONNX_NAME] == champion[TORCH_NAME]           # the two forms never part
    assert said[0].endswith("on the validation photos)") and (": champion" in said[0]) == (champion[ONNX_NAME] == 3)


def test_multitask_without_attribute_labels_is_refused_before_any_run(labelled, home, corpus_root):
    from roomclf.train.config import TrainingError
    from roomclf.train.run import run_training

    cfg = _cfg(corpus_root, train_batches="batch_01", valid_batches="batch_02",
               recipe=replace(DEFAULT_RECIPE, attribute_loss_weight=1.0))
    with pytest.raises(TrainingError, match="none of the training photos has an attribute label"):
        run_training(cfg, labelled, echo=lambda *_: None)
    assert not (home / "mlflow.db").exists() or _no_runs()


@pytest.mark.slow
def test_a_multitask_gem_run_exports_the_attribute_head_trained_with_the_body(home, corpus_root, shared_data,
                                                                              ground_truth):
    """`roomclf train --recipe attribute_loss_weight=1,pooling=gem` on real photos and their attribute labels
    (attributes.csv, imported): the registered ONNX keeps its three outputs, is pooled by GeM and agrees with
    torch (attributes included); a tag the validation photos can judge (exterior.front: many positives, and
    negatives implied by pools and backyards) is judged on them with the head trained with the body."""
    import json

    import mlflow

    from roomclf.models.onnx_file import OUTPUTS, OnnxModel
    from roomclf.models.registry import ONNX_NAME, fetch_model
    from roomclf.photos import model_input
    from roomclf.train.attributes import import_attributes
    from roomclf.train.multitask import TRAINED_WITH_BODY
    from roomclf.train.run import run_training

    with open(shared_data / "attributes.csv", newline="") as f:
        exterior = {r["path"] for r in csv.DictReader(f) if r["attribute"] in ("front", "pool", "backyard")}

    def photos(batch: str, n: int) -> list[tuple[str, str]]:
        tagged = [(p, r["label"]) for p, r in sorted(ground_truth.items())
                  if p in exterior and p.startswith(batch + "/") and r["label"] == "exterior"]
        return sorted(set(pick_photos(ground_truth, batch, n) + tagged))

    store = LabelStore()
    train, valid = photos("batch_01", 28), photos("batch_02", 20)
    store.set_labels(train, "imported")
    store.set_labels(valid, "manual")
    import_attributes(store, shared_data / "attributes.csv", corpus_root, paths=[p for p, _ in train + valid])
    said = []
    result = run_training(_cfg(corpus_root, train_batches="batch_01", valid_batches="batch_02", image_size=64,
                               backbone="efficientnet_lite0", frozen_epochs=1, epochs=1, lr=1e-3, run_name="mt",
                               recipe=parse_recipe("attribute_loss_weight=1,pooling=gem")), store, echo=said.append)
    assert any(line.startswith("multi-task: ") and "training photos carry attribute labels" in line for line in said)
    _, run = _run(result.run_id)
    assert run.data.params["recipe.pooling"] == "gem" and run.data.params["recipe.attribute_loss_weight"] == "1.0"
    m = run.data.metrics
    assert max(m[f"parity_max_abs_diff_{o}"] for o in ("probs", "attributes", "embedding")) <= 1e-4
    model = OnnxModel(fetch_model(f"models:/{ONNX_NAME}/{result.versions[ONNX_NAME]}"))
    assert model.meta["pooling"] == "gem"
    out = model.run(np.stack([model_input(corpus_root / p, 64) for p, _ in valid[:3]]))
    assert set(out) == set(OUTPUTS) and out["attributes"].shape[0] == 3
    report = json.loads(mlflow.artifacts.load_text(f"{run.info.artifact_uri}/report/attributes_report.json"))
    front = report["report"]["exterior.front"]
    assert front["auc_on"] == "validation photos" and front["threshold_from"] == "validation"
    assert front["head"] == (TRAINED_WITH_BODY if front["threshold"] is not None else None)
    assert model.meta["attribute_thresholds"]["exterior.front"] == front["threshold"]
    assert all(e.get("head") != TRAINED_WITH_BODY or e["support"] >= 3 for e in report["report"].values())


def _no_runs() -> bool:
    import mlflow

    from roomclf.settings import setup_mlflow

    setup_mlflow()
    return len(mlflow.search_runs(search_all_experiments=True)) == 0


def test_class_without_examples_and_missing_photo(home, ground_truth, corpus_root):
    from roomclf.train.config import TrainingError
    from roomclf.train.data import select_data

    store = LabelStore()
    rows = [(p, c) for p, c in pick_photos(ground_truth, "batch_01", 40) if c != "interior"]
    store.set_labels(rows, "imported")
    store.set_labels(pick_photos(ground_truth, "batch_02", 24), "manual")
    with pytest.raises(TrainingError, match="no training examples of interior"):
        select_data(store, corpus_root, ["batch_01"], ["batch_02"], ("imported", "manual"))
    store.set_label("batch_01/listing_9999/photo_01.jpg", "interior", "imported")
    with pytest.raises(TrainingError, match="do not exist.*listing_9999"):
        select_data(store, corpus_root, ["batch_01"], ["batch_02"], ("imported", "manual"))


def test_sure_confidence_is_where_the_running_precision_still_reaches_the_target():
    from roomclf.train.report import sure_confidence

    # confidences 0.95 0.9 0.8 0.7 0.6; right, right, wrong, right, wrong: precision 1, 1, .67, .75, .6
    probs = np.array([[0.95, 0.05], [0.1, 0.9], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4]])
    y = np.array([0, 1, 1, 1, 1])
    assert sure_confidence(probs, y, 0.99) == pytest.approx(0.9)
    assert sure_confidence(probs, y, 0.75) == pytest.approx(0.7)     # .67 at 0.8, back to .75 at 0.7
    assert sure_confidence(probs, y, 0.6) == pytest.approx(0.6)
    assert sure_confidence(probs, 1 - y, 0.5) is None                # the surest one is already wrong


def test_predicted_labels_count_only_where_their_model_was_sure(home, ground_truth, corpus_root):
    from roomclf.train.config import TrainingError, check_config, parse_recipe
    from roomclf.train.data import select_data

    store = LabelStore()
    hand = pick_photos(ground_truth, "batch_01", 20)
    store.set_labels(hand, "manual")
    store.set_labels(pick_photos(ground_truth, "batch_02", 24), "manual")
    table = {"0.9": 0.6, "0.95": 0.8, "0.98": 0.9, "0.99": None}
    rest = [(p, r["label"]) for p, r in sorted(ground_truth.items())
            if p.startswith("batch_01/") and r["label"] and (p, r["label"]) not in hand][:10]
    store.set_labels([(p, c, conf, {"sure_confidence": table}) for (p, c), conf in zip(rest[:6], [0.95, 0.85, 0.7] * 2)]
                     + [(p, c, 0.99, {}) for p, c in rest[6:8]]                     # zero-shot: no table
                     + [(p, c, 0.99, {"sure_confidence": table}) for p, c in rest[8:]], "predicted")
    store.set_label(rest[9][0], rest[9][1], "manual")             # a person's label wins, sure or not
    picked = select_data(store, corpus_root, ["batch_01"], ["batch_02"], ("manual", "predicted"))
    n = len(hand) + 1
    assert picked.sources["train"] == {"manual": n, "predicted": 4 + 1} and picked.unsure == 2 + 2
    strict = select_data(store, corpus_root, ["batch_01"], ["batch_02"], ("manual", "predicted"), sure_precision=0.99)
    assert strict.sources["train"] == {"manual": n} and strict.unsure == 9
    loose = select_data(store, corpus_root, ["batch_01"], ["batch_02"], ("manual", "predicted"), sure_precision=0.9)
    assert loose.sources["train"]["predicted"] == 7 and loose.unsure == 2
    with pytest.raises(TrainingError, match="sure_precision is one of 0.9, 0.95, 0.98, 0.99"):
        check_config(_cfg(corpus_root, recipe=parse_recipe("sure_precision=0.97")))


def test_leak_guard_drops_exact_duplicates(tmp_path, corpus_root, ground_truth):
    from roomclf.train.data import TrainData, drop_leaks

    picked = pick_photos(ground_truth, "batch_01", 6)
    for i, (p, _) in enumerate(picked):
        dst = tmp_path / ("batch_01" if i < 4 else "batch_02") / "listing_0001" / f"photo_{i:02d}.jpg"
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(corpus_root / p, dst)
    relisted = tmp_path / "batch_02" / "listing_0002" / "photo_01.jpg"
    relisted.parent.mkdir(parents=True)
    shutil.copy(corpus_root / picked[0][0], relisted)       # the same photo relisted in the validation batch
    train = [(f"batch_01/listing_0001/photo_{i:02d}.jpg", picked[i][1]) for i in range(4)]
    valid = [(f"batch_02/listing_0001/photo_{i:02d}.jpg", picked[i][1]) for i in (4, 5)]
    valid.append(("batch_02/listing_0002/photo_01.jpg", picked[0][1]))
    data = drop_leaks(tmp_path, TrainData(train, valid), near=False)
    assert data.leaks == ["batch_02/listing_0002/photo_01.jpg"]
    assert len(data.valid) == 2


def test_class_weights_favour_the_rare_class():
    from roomclf.train.data import class_weights

    w = class_weights(["kitchen"] * 50 + ["interior"] * 5 + [c for c in CLASSES])
    assert w[CLASSES.index("interior")] > 5 * w[CLASSES.index("kitchen")]
    assert np.isclose(w.mean(), 1.0)


def test_splitter_gives_early_body_late_body_and_head_each_parameter_once():
    from roomclf.models.network import RoomNet
    from roomclf.train.learner import room_splitter

    net = RoomNet("efficientnet_lite0", pretrained=False)
    early, late, head = room_splitter(net)
    ids = [id(p) for group in (early, late, head) for p in group]
    assert sorted(ids) == sorted(id(p) for p in net.parameters())   # every parameter, exactly once
    assert {id(p) for p in head} == {id(p) for p in net.head.parameters()}
    first_conv = next(net.body.parameters())
    last_bn = list(net.body.parameters())[-1]
    assert any(p is first_conv for p in early) and any(p is last_bn for p in late)
