"""One tracked training run, end to end: check the data, train, report, export,
check parity, register both forms, gate against the champion.

``run_training(config)`` is what ``roomclf train`` and ``mlflow run . -e train``
call. Bad input raises ``TrainingError`` before any MLflow run starts; a
failed parity check fails the run (its MLflow status becomes FAILED).
"""
from __future__ import annotations

import importlib.util
import json
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from roomclf import training as T
from roomclf.taxonomy import CLASSES

PARITY_TOLERANCE = 1e-4
EXPERIMENT = "roomclf-train"


@dataclass
class TrainResult:
    run_id: str
    metrics: dict
    versions: dict[str, str]              # registered name -> version
    alias: str
    champion_version: str | None          # the champion it was compared with
    parity: dict
    data: dict = field(default_factory=dict)


def prepare_data(cfg: T.TrainConfig, store) -> T.TrainData:
    """Checked, cleaned train/valid lists (raises TrainingError before any training)."""
    from roomclf.corpus import parse_batches

    root = Path(cfg.data)
    train_b, valid_b = parse_batches(cfg.train_batches, root), parse_batches(cfg.valid_batches, root)
    cfg.train_batches, cfg.valid_batches = train_b, valid_b
    data = T.select_data(store, root, train_b, valid_b, cfg.sources)
    data.train, broken_t = T.drop_broken(root, data.train, cfg.image_size)
    data.valid, broken_v = T.drop_broken(root, data.valid, cfg.image_size)
    data.broken = {**broken_t, **broken_v}
    empty = [c for c, n in data.class_counts("train").items() if n == 0]
    if empty or not data.valid:
        raise T.TrainingError(f"after skipping {len(data.broken)} unreadable photos, "
                              + (f"no training examples of {', '.join(empty)} remain" if empty
                                 else "no validation photos remain"))
    return T.drop_leaks(root, data, backbone=cfg.backbone)


def parity_check(export_net, onnx_path: Path, root: Path, paths: list[str], size: int) -> dict:
    """Max abs difference torch vs onnxruntime on real photos, per output."""
    import torch

    from roomclf.onnx_model import OnnxModel
    from roomclf.photos import model_input

    x = np.stack([model_input(root / p, size) for p in paths])
    with torch.no_grad():
        probs, attrs, emb = (t.numpy() for t in export_net.eval()(torch.from_numpy(x)))
    out = OnnxModel(onnx_path).run(x)
    return {"parity_max_abs_diff_probs": float(np.abs(out["probs"] - probs).max()),
            "parity_max_abs_diff_embedding": float(np.abs(out["embedding"] - emb).max()),
            "parity_max_abs_diff_attributes": float(np.abs(out["attributes"] - attrs).max()),
            "parity_photos": len(paths)}


def attach_attributes(net, root: Path, data: T.TrainData, store, sources, size: int, seed: int):
    """Fit the attribute head on the trained body's raw features, if ``roomclf.attributes`` is
    installed and the store holds attribute labels for these photos; else None."""
    if not importlib.util.find_spec("roomclf.attributes"):
        return None
    from roomclf.attributes import attribute_targets, fit_attribute_head

    labels = dict(data.train + data.valid)
    if not any(p in labels for p in store.attributes(list(sources))):
        return None
    train_p, valid_p = [p for p, _ in data.train], [p for p, _ in data.valid]
    Y, M = attribute_targets(train_p, store, labels, sources)
    vY, vM = attribute_targets(valid_p, store, labels, sources)
    feats = T.raw_features(net, root, train_p, size)
    vfeats = T.raw_features(net, root, valid_p, size)
    return fit_attribute_head(feats, Y, M, vfeats, vY, vM, seed=seed)


def _log_attribute_fit(mlflow, fit, out: Path) -> None:
    for key, entry in fit.report.items():
        for metric in ("precision", "recall", "f1", "auc"):
            if entry.get(metric) is not None:
                mlflow.log_metric(f"attr_{metric}.{key}", float(entry[metric]))
    mlflow.log_metric("attr_trained", len(fit.trained))
    (out / "attributes_report.json").write_text(json.dumps(
        {"thresholds": fit.thresholds, "report": fit.report}, indent=1, default=str))
    mlflow.log_artifact(str(out / "attributes_report.json"), "report")


def _data_summary(data: T.TrainData) -> dict:
    return {"train_per_class": data.class_counts("train"), "valid_per_class": data.class_counts("valid"),
            "per_source": data.sources, "broken": data.broken, "leaks": data.leaks}


def _register_torch(onnx_path: Path, learner_path: Path, state_path: Path, tags: dict, net, size: int) -> str:
    """The ``roomclf`` version: a photo-accepting pyfunc carrying the fast.ai learner when
    ``roomclf.pyfunc_model`` is installed, else the PyTorch module itself."""
    from roomclf.registry import TORCH_NAME

    if importlib.util.find_spec("roomclf.pyfunc_model"):
        from roomclf.pyfunc_model import log_roomclf_pyfunc

        info = log_roomclf_pyfunc(onnx_path, registered_model_name=TORCH_NAME, learner_path=learner_path,
                                  extra_artifacts={"state_dict": str(state_path)}, tags=tags)
        return str(info.registered_model_version)
    import mlflow
    import torch
    from mlflow import MlflowClient

    info = mlflow.pytorch.log_model(net.eval(), name="pytorch-model", registered_model_name=TORCH_NAME,
                                    serialization_format="pickle",
                                    input_example=torch.rand(1, 3, size, size).numpy(),
                                    extra_files=[str(learner_path), str(state_path)])
    version = str(info.registered_model_version)
    for k, v in tags.items():
        MlflowClient().set_model_version_tag(TORCH_NAME, version, k, str(v))
    return version


def _log_params(mlflow, run, params: dict) -> None:
    """Log params, skipping the ones ``mlflow run`` already logged (in its own spelling:
    MLflow refuses to change a param), and keep the resolved values in ``params.json``."""
    present = mlflow.get_run(run.info.run_id).data.params
    mlflow.log_params({k: v for k, v in params.items() if k not in present})
    mlflow.log_dict({k: str(v) for k, v in params.items()}, "params.json")


def run_training(cfg: T.TrainConfig, store=None, echo=print) -> TrainResult:
    """Train, track, export, register and gate; returns what happened."""
    import mlflow
    import torch
    from fastai.torch_core import set_seed

    from roomclf.backbones import get_spec
    from roomclf.gating import gate
    from roomclf.labelstore import LabelStore
    from roomclf.model import ExportNet
    from roomclf.onnx_model import export_onnx
    from roomclf.registry import ONNX_NAME, TORCH_NAME, register_onnx_file
    from roomclf.settings import use_experiment
    from roomclf.tracking import class_report, confusion_png, epoch_logger, git_commit, top_loss_grid

    spec = get_spec(cfg.backbone)          # an unknown backbone fails here, before any work
    store = store or LabelStore()
    root = Path(cfg.data)
    t0 = time.perf_counter()
    data = prepare_data(cfg, store)
    prep_s = time.perf_counter() - t0
    echo(f"data: {len(data.train)} train / {len(data.valid)} valid photos, {len(data.broken)} unreadable "
         f"skipped, {len(data.leaks)} validation duplicates of training photos dropped")

    use_experiment(EXPERIMENT)
    with mlflow.start_run(run_name=cfg.run_name) as run, tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        _log_params(mlflow, run, {"train_batches": ",".join(cfg.train_batches),
                           "valid_batches": ",".join(cfg.valid_batches), "sources": ",".join(cfg.sources),
                           "backbone": cfg.backbone, "image_size": cfg.image_size,
                           "frozen_epochs": cfg.frozen_epochs, "epochs": cfg.epochs,
                           "batch_size": cfg.batch_size, "lr": cfg.lr if cfg.lr else "lr_find",
                           "seed": cfg.seed, "quantize": cfg.quantize})
        mlflow.set_tags({"git_commit": git_commit(), "backbone": cfg.backbone})
        summary = _data_summary(data)
        mlflow.log_dict(summary, "data/summary.json")
        mlflow.log_metrics({"n_train": len(data.train), "n_valid": len(data.valid),
                            "n_broken_skipped": len(data.broken), "n_valid_leaks_dropped": len(data.leaks),
                            **{f"n_train.{c}": n for c, n in summary["train_per_class"].items()},
                            **{f"n_valid.{c}": n for c, n in summary["valid_per_class"].items()},
                            **{f"n_{split}_source.{s}": n for split, per in data.sources.items()
                               for s, n in per.items()},
                            "duration_data_s": prep_s})

        set_seed(cfg.seed, reproducible=True)
        dls = T.build_dls(root, data, cfg.image_size, cfg.batch_size, spec.mean, spec.std, cfg.seed, cfg.workers)
        learn = T.make_learner(dls, cfg.backbone, T.class_weights([c for _, c in data.train]))
        t = time.perf_counter()
        lr = cfg.lr or T.find_lr(learn)
        mlflow.log_metrics({"lr": lr, "duration_lr_find_s": time.perf_counter() - t})
        t = time.perf_counter()
        T.fit(learn, cfg.frozen_epochs, cfg.epochs, lr, cbs=[epoch_logger()])
        train_s = time.perf_counter() - t
        mlflow.log_metrics({"duration_train_s": train_s,
                            "duration_per_epoch_s": train_s / max(1, cfg.frozen_epochs + cfg.epochs)})

        probs, y = T.predict(learn)
        report = class_report(y, probs.argmax(1))
        metrics = {"val_accuracy": report["accuracy"], "val_macro_f1": report["macro_f1"]}
        for c, m in report["per_class"].items():
            metrics.update({f"val_precision.{c}": m["precision"], f"val_recall.{c}": m["recall"],
                            f"val_f1.{c}": m["f1"]})
        mlflow.log_metrics(metrics)
        valid_paths = [p for p, _ in data.valid]
        mlflow.log_text(report["text"], "report/classification_report.txt")
        mlflow.log_dict(report["per_class"], "report/per_class.json")
        mlflow.log_artifact(str(confusion_png(y, probs.argmax(1), out / "confusion_matrix.png")), "report")
        mlflow.log_artifact(str(top_loss_grid(root, valid_paths, probs, y, out / "top_losses.png")), "report")
        echo(f"validation accuracy {metrics['val_accuracy']:.4f}, macro F1 {metrics['val_macro_f1']:.4f}")

        net = learn.model.cpu().eval()
        fit_attrs = attach_attributes(net, root, data, store, cfg.sources, cfg.image_size, cfg.seed)
        meta = {"input_size": cfg.image_size, "train_batches": cfg.train_batches,
                "valid_batches": cfg.valid_batches, "val_accuracy": metrics["val_accuracy"],
                "val_macro_f1": metrics["val_macro_f1"], "mlflow_run_id": run.info.run_id}
        if fit_attrs is not None:
            _log_attribute_fit(mlflow, fit_attrs, out)
            meta["attribute_thresholds"] = fit_attrs.thresholds
        export_net = ExportNet(net, fit_attrs.head if fit_attrs is not None else None).eval()
        onnx_path = export_onnx(export_net, out / "model.onnx", meta)
        parity = parity_check(export_net, onnx_path, root, valid_paths[:16], cfg.image_size)
        mlflow.log_metrics(parity)
        worst = max(parity["parity_max_abs_diff_probs"], parity["parity_max_abs_diff_embedding"])
        if worst > PARITY_TOLERANCE:
            raise T.TrainingError(f"ONNX parity check failed: max abs difference {worst:.2e} > "
                                  f"{PARITY_TOLERANCE:g} on {parity['parity_photos']} validation photos")

        learner_path = out / "learner.pkl"
        learn.export(learner_path)
        state_path = out / "state_dict.pt"
        torch.save({"backbone": cfg.backbone, "image_size": cfg.image_size, "classes": list(CLASSES),
                    "state_dict": net.state_dict()}, state_path)
        tags = {"backbone": cfg.backbone, "image_size": cfg.image_size, "classes": ",".join(CLASSES),
                "val_accuracy": f"{metrics['val_accuracy']:.4f}", "val_macro_f1": f"{metrics['val_macro_f1']:.4f}",
                "train_batches": ",".join(cfg.train_batches), "valid_batches": ",".join(cfg.valid_batches),
                "git_commit": git_commit()}
        versions = {ONNX_NAME: register_onnx_file(onnx_path, ONNX_NAME, tags)}
        versions[TORCH_NAME] = _register_torch(onnx_path, learner_path, state_path, tags, net, cfg.image_size)
        if cfg.quantize:
            versions.update(_quantize_and_register(onnx_path, root, data, cfg, tags, out))

        gated = gate(onnx_path, versions, root, data.valid)
        mlflow.log_metrics({"gate_new_accuracy": gated.new.accuracy, "gate_new_macro_f1": gated.new.macro_f1,
                            **({"gate_champion_accuracy": gated.champion.accuracy,
                                "gate_champion_macro_f1": gated.champion.macro_f1} if gated.champion else {})})
        mlflow.set_tags({"alias": gated.alias, "compared_with_champion": gated.champion_version or "none",
                         **{f"version.{n}": v for n, v in versions.items()}})
        echo(f"registered {', '.join(f'{n} v{v}' for n, v in versions.items())} as {gated.alias}"
             + (f" (champion v{gated.champion_version}: accuracy {gated.champion.accuracy:.4f})"
                if gated.champion else ""))
        return TrainResult(run.info.run_id, metrics, versions, gated.alias, gated.champion_version, parity,
                           summary)


def _quantize_and_register(onnx_path: Path, root: Path, data: T.TrainData, cfg: T.TrainConfig,
                           tags: dict, out: Path) -> dict[str, str]:
    """Static int8 QDQ copy calibrated on training photos, registered as ``roomclf-onnx-int8``."""
    import mlflow

    from roomclf.quantize import INT8_NAME, agreement, quantize_static_int8
    from roomclf.registry import register_onnx_file

    calib = [p for p, _ in data.train][:: max(1, len(data.train) // 50)][:50]
    int8 = quantize_static_int8(onnx_path, out / "model.int8.onnx", root, calib, cfg.image_size)
    stats = agreement(onnx_path, int8, root, data.valid)
    mlflow.log_metrics({f"int8_{k}": v for k, v in stats.items()})
    version = register_onnx_file(int8, INT8_NAME, {**tags, "int8_accuracy": f"{stats['accuracy']:.4f}",
                                                   "int8_top1_agreement": f"{stats['top1_agreement']:.4f}"})
    return {INT8_NAME: version}
