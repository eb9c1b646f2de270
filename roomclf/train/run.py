"""One tracked training run, end to end: check the data, train, report, export,
check parity, register both forms, gate against the champion.

``run_training(config)`` is what ``roomclf train`` and ``mlflow run . -e train``
call. Bad input raises ``TrainingError`` before any MLflow run starts; a
failed parity check fails the run (its MLflow status becomes FAILED).
"""
from __future__ import annotations

import shutil
import time
import warnings
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from roomclf import storage
from roomclf.settings import cpus
from roomclf.taxonomy import CLASSES
from roomclf.train.config import SURE_PRECISIONS, TrainConfig, TrainingError, check_config, sure_key
from roomclf.train.data import TrainData, check_validation_size, class_weights, drop_broken, drop_leaks, select_data
from roomclf.train.learner import build_dls, build_small_dls, find_lr, fit, make_learner
from roomclf.train.predict import predict, raw_features
from roomclf.train.attribute_report import log_attribute_grid, log_attribute_report

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
    valid: list = field(default_factory=list)   # the (path, class) photos it was validated and gated on


def selected_data(cfg: TrainConfig, store) -> TrainData:
    """The run's labels from the store, checked (the quick part of ``prepare_data``; ``cfg``'s batch
    ranges become lists); raises TrainingError."""
    from roomclf.corpus import parse_batches

    root = storage.resolve(cfg.data)
    cfg.train_batches, cfg.valid_batches = parse_batches(cfg.train_batches, root), parse_batches(cfg.valid_batches, root)
    return select_data(store, root, cfg.train_batches, cfg.valid_batches, cfg.sources, cfg.valid_sources,
                       cfg.recipe.sure_precision)


def prepare_data(cfg: TrainConfig, store, echo=print) -> TrainData:
    """Checked, cleaned train/valid lists (raises TrainingError before any training)."""
    root = storage.resolve(cfg.data)
    data = selected_data(cfg, store)
    if data.unsure:
        echo(f"{data.unsure} predicted labels left out: below the confidence at which their model was "
             f"{cfg.recipe.sure_precision:.0%} right on its validation photos")
    echo(f"checking that the {len(data.train) + len(data.valid)} labelled photos open, and dropping validation "
         "photos that duplicate training photos")
    data.train, broken_t = drop_broken(root, data.train, cfg.image_size)
    data.valid, broken_v = drop_broken(root, data.valid, cfg.image_size)
    data.broken = {**broken_t, **broken_v}
    if cfg.teacher:
        data = _teach(cfg, data, root, echo)
    empty = [c for c, n in data.class_counts("train").items() if n == 0]
    if empty or not data.valid:
        raise TrainingError(f"after skipping {len(data.broken)} unreadable photos, "
                            + (f"no training examples of {', '.join(empty)} remain" if empty
                               else "no validation photos remain"))
    data = drop_leaks(root, data)
    check_validation_size(data.valid, cfg.valid_sources,
                          dropped=f"{len(broken_v)} unreadable and {len(data.leaks)} duplicates of training photos")
    if cfg.recipe.attribute_loss_weight:
        data.attributes = _attribute_targets(store, data, cfg.sources)
        echo(f"multi-task: {sum(p in data.attributes for p, _ in data.train)} training photos carry attribute labels")
    return data


def _attribute_targets(store, data: TrainData, sources) -> dict:
    """Multi-task: the attribute targets of the run's photos that have attribute labels (``sources``, as the
    attribute heads read them); a TrainingError when no training photo has one."""
    from roomclf.train.multitask import check_targets, photo_targets

    labels = dict(data.train + data.valid)
    targets = photo_targets(store, labels, list(labels), sources)
    check_targets(targets, [p for p, _ in data.train])
    return targets


def _teach(cfg: TrainConfig, data: TrainData, root: Path, echo) -> TrainData:
    """Distillation: every readable photo of the training batches, labelled or not, with the teacher's
    probabilities as its target (``roomclf.train.distill``)."""
    from roomclf.corpus import discover
    from roomclf.train.distill import teacher_outputs, with_teacher_targets

    photos = discover(root, cfg.train_batches).paths
    echo(f"the teacher {cfg.teacher} predicts the {len(photos)} photos of the training batches")
    teacher = teacher_outputs(cfg.teacher, root, photos)
    data.broken.update({p: why for p, why in teacher.errors.items()})
    return with_teacher_targets(data, teacher, photos)


def parity_check(export_net, onnx_path: Path, root: Path, paths: list[str], size: int) -> dict:
    """Max abs difference torch vs onnxruntime on real photos, per output."""
    import torch

    from roomclf.models.onnx_file import OnnxModel
    from roomclf.photos import model_input

    x = np.stack([model_input(storage.join(root, p), size) for p in paths])
    with torch.no_grad():
        probs, attrs, emb = (t.numpy() for t in export_net.eval()(torch.from_numpy(x)))
    out = OnnxModel(onnx_path).run(x)
    return {"parity_max_abs_diff_probs": float(np.abs(out["probs"] - probs).max()),
            "parity_max_abs_diff_embedding": float(np.abs(out["embedding"] - emb).max()),
            "parity_max_abs_diff_attributes": float(np.abs(out["attributes"] - attrs).max()),
            "parity_photos": len(paths)}


def attach_attributes(net, root: Path, data: TrainData, store, sources, size: int, seed: int):
    """The attribute head of the photos that carry attribute labels (any source in ``sources``: the
    labelling app's check-boxes, an imported CSV): (the fit, the validation photos it was judged on); None
    when none of these photos has one (the model then emits no tags). Linear heads on the trained body's raw
    features, or the head trained with the body (multi-task): ``roomclf.train.multitask.attribute_fit``.
    Every taxonomy attribute with enough labels trains; the others stay untrained and are never
    emitted (``roomclf.train.attributes``)."""
    from roomclf.train.attributes import attribute_targets
    from roomclf.train.multitask import attribute_fit

    labels = dict(data.train + data.valid)
    train_p, valid_p = [p for p, _ in data.train], [p for p, _ in data.valid]
    Y, M = attribute_targets(train_p, store, labels, sources)
    vY, vM = attribute_targets(valid_p, store, labels, sources)
    return attribute_fit(net, root, train_p, Y, M, valid_p, vY, vM, size, seed)


def _distil_attributes(net, root: Path, data: TrainData, cfg: TrainConfig, echo):
    """The student's attribute head fitted to the teacher's attribute scores on the training photos:
    an ``AttributeFit``-like (head, thresholds) for the export, or None when the teacher emits no tags."""
    from types import SimpleNamespace

    from roomclf.train.distill import distil_attributes

    paths = [p for p, _ in data.train if p in data.teacher.attributes]
    if not paths:
        return None
    echo(f"fitting the attribute head to the teacher's scores on {len(paths)} photos")
    fitted = distil_attributes(raw_features(net, root, paths, cfg.image_size), data.teacher, paths, cfg.seed)
    return None if fitted is None else SimpleNamespace(head=fitted[0], thresholds=fitted[1])


def _data_summary(data: TrainData) -> dict:
    return {"train_per_class": data.class_counts("train"), "valid_per_class": data.class_counts("valid"),
            "per_source": data.sources, "broken": data.broken, "leaks": data.leaks}


def _register_torch(onnx_path: Path, learner_path: Path, state_path: Path, tags: dict, description: str,
                    example_photo: bytes) -> str:
    """The ``roomclf`` version: a photo-accepting pyfunc carrying the fast.ai learner and the state dict."""
    from roomclf.models.pyfunc import log_roomclf_pyfunc
    from roomclf.models.registry import TORCH_NAME

    info = log_roomclf_pyfunc(onnx_path, registered_model_name=TORCH_NAME, learner_path=learner_path,
                              extra_artifacts={"state_dict": str(state_path)}, tags=tags,
                              description=description, example_photo=example_photo)
    return str(info.registered_model_version)


def _log_data_lists(mlflow, root: Path, data: TrainData, sources_of: dict[str, str]) -> None:
    """The photos of each split as run inputs (an MLflow dataset with a digest) and as CSV
    artifacts (``data/train.csv``, ``data/valid.csv``: path,label,source), so any version's
    data can be rebuilt after the label store has changed."""
    import pandas as pd

    from roomclf.models.registry import DATA_LISTS

    for split, context in (("train", "training"), ("valid", "validation")):
        frame = pd.DataFrame([{"path": p, "label": c, "source": sources_of.get(p, "")}
                              for p, c in getattr(data, split)], columns=["path", "label", "source"])
        mlflow.log_text(frame.to_csv(index=False), DATA_LISTS[split])
        with warnings.catch_warnings():   # a local folder reads as two kinds of source: either is fine
            warnings.filterwarnings("ignore", message="The specified dataset source can be interpreted")
            dataset = mlflow.data.from_pandas(frame, source=str(root), name=f"roomclf-{split}")
        mlflow.log_input(dataset, context=context)


def _version_description(cfg: TrainConfig, data: TrainData, metrics: dict, run_id: str) -> str:
    """What a registered version is, in one paragraph (shown in the MLflow UI)."""
    def per_source(split: str) -> str:
        return ", ".join(f"{n} {s}" for s, n in sorted(data.sources.get(split, {}).items()))

    taught = (f"Distilled from {data.teacher.name} (its predictions on every photo of the training batches, "
              f"temperature {cfg.recipe.temperature:g}). " if cfg.teacher else "")
    return (f"Room classifier ({', '.join(CLASSES)}): {cfg.backbone} at {cfg.image_size} px, fast.ai "
            f"{cfg.frozen_epochs} frozen + {cfg.epochs} unfrozen epochs. {taught}Trained on {','.join(cfg.train_batches)} "
            f"({len(data.train)} photos: {per_source('train')}); validated on {','.join(cfg.valid_batches)} "
            f"({len(data.valid)} photos: {per_source('valid')}): accuracy {metrics['val_accuracy']:.4f}, "
            f"macro-F1 {metrics['val_macro_f1']:.4f}. MLflow run {run_id}; photo lists in its data/train.csv "
            f"and data/valid.csv.")


def _log_params(mlflow, run, params: dict) -> None:
    """Log params, skipping the ones ``mlflow run`` already logged (in its own spelling:
    MLflow refuses to change a param), and keep the resolved values in ``params.json``."""
    present = mlflow.get_run(run.info.run_id).data.params
    mlflow.log_params({k: v for k, v in params.items() if k not in present})
    mlflow.log_dict({k: str(v) for k, v in params.items()}, "params.json")


@contextmanager
def _work_folder(run_id: str, echo):
    """Where a run's model files are written before they are registered: ``$ROOMCLF_HOME/train-runs/RUN_ID``.
    Removed once the run succeeds; kept (and named) when it fails after the model was exported, so a
    failed registration does not throw away the training (``model.onnx`` runs with ``--model PATH``)."""
    from roomclf import settings

    work = settings.home() / "train-runs" / run_id
    work.mkdir(parents=True, exist_ok=True)
    try:
        yield work
    except BaseException:
        if (work / "model.onnx").is_file():
            echo(f"the trained model is kept in {work} (model.onnx, learner.pkl, state_dict.pt)")
        else:
            shutil.rmtree(work, ignore_errors=True)
        raise
    shutil.rmtree(work, ignore_errors=True)


def run_training(cfg: TrainConfig, store=None, echo=print) -> TrainResult:
    """Train, track, export, register and gate; returns what happened. Each phase is one function below."""
    from roomclf.labels.store import LabelStore
    from roomclf.models.backbones import get_spec
    from roomclf.settings import is_remote_tracking, tracking_uri
    from roomclf.tracking.experiments import step_run, ui_link

    check_config(cfg)
    spec = get_spec(cfg.backbone)          # an unknown backbone fails here, before any work
    cfg.image_size = cfg.image_size or spec.train_size
    store = store or LabelStore()
    root = storage.resolve(cfg.data)
    t0 = time.perf_counter()
    data = prepare_data(cfg, store, echo)
    prep_s = time.perf_counter() - t0
    echo(f"data: {len(data.train)} train / {len(data.valid)} valid photos (validation labels: "
         + ", ".join(f"{n} {s}" for s, n in sorted(data.sources["valid"].items()))
         + f"), {len(data.broken)} unreadable skipped, {len(data.leaks)} validation duplicates of training "
         "photos dropped")

    with step_run(EXPERIMENT, cfg.run_name) as run, _work_folder(run.info.run_id, echo) as out:
        summary = _log_inputs(run, cfg, data, root, prep_s)
        learn = _fit(cfg, data, root, spec, echo)
        metrics = _evaluate(learn, data, root, out, echo, flip_tta=cfg.recipe.flip_tta)
        net = learn.model.cpu().eval()
        if cfg.teacher:
            fit_attrs = _distil_attributes(net, root, data, cfg, echo)
        else:
            fit_attrs = attach_attributes(net, root, data, store, cfg.sources, cfg.image_size, cfg.seed)
        if fit_attrs is not None and not cfg.teacher:
            fit_attrs, attr_valid = fit_attrs
            log_attribute_report(fit_attrs)
            log_attribute_grid(fit_attrs, root, attr_valid, dict(data.valid), out)
        onnx_path, parity = _export_checked(net, fit_attrs, cfg, metrics, run.info.run_id, root, data, out, echo)
        learner_path, state_path = _save_torch_forms(learn, net, cfg, out)
        versions, gated = _register_all(onnx_path, learner_path, state_path, cfg, data, metrics, run.info.run_id,
                                        root, out, echo)
        if is_remote_tracking():
            echo(f"compare runs in the MLflow UI: {ui_link(tracking_uri(), f'experiments/{run.info.experiment_id}')}")
        return TrainResult(run.info.run_id, metrics, versions, gated.alias, gated.champion_version, parity,
                           summary, list(data.valid))


def _log_inputs(run, cfg: TrainConfig, data: TrainData, root: Path, prep_s: float) -> dict:
    """The run's params (the whole config and recipe), tags, data lists and data counts."""
    import mlflow

    from roomclf.train.report import git_commit

    _log_params(mlflow, run, {"train_batches": ",".join(cfg.train_batches),
                              "valid_batches": ",".join(cfg.valid_batches), "sources": ",".join(cfg.sources),
                              "valid_sources": ",".join(cfg.valid_sources),
                              "backbone": cfg.backbone, "image_size": cfg.image_size,
                              "frozen_epochs": cfg.frozen_epochs, "epochs": cfg.epochs,
                              "batch_size": cfg.batch_size, "lr": cfg.lr if cfg.lr else "lr_find",
                              "seed": cfg.seed, "quantize": cfg.quantize, "gate_tolerance": cfg.gate_tolerance,
                              **({"teacher": cfg.teacher} if cfg.teacher else {}),
                              **{f"recipe.{k}": v for k, v in asdict(cfg.recipe).items()}})
    mlflow.set_tags({"git_commit": git_commit(), "backbone": cfg.backbone})
    summary = _data_summary(data)
    mlflow.log_dict(summary, "data/summary.json")
    _log_data_lists(mlflow, root, data, data.origin)
    mlflow.log_metrics({"n_train": len(data.train), "n_valid": len(data.valid),
                        "n_broken_skipped": len(data.broken), "n_valid_leaks_dropped": len(data.leaks),
                        **{f"n_train.{c}": n for c, n in summary["train_per_class"].items()},
                        **{f"n_valid.{c}": n for c, n in summary["valid_per_class"].items()},
                        **{f"n_{split}_source.{s}": n for split, per in data.sources.items()
                           for s, n in per.items()},
                        "n_train_predicted_unsure_left_out": data.unsure,
                        "duration_data_s": prep_s})
    return summary


def _fit(cfg: TrainConfig, data: TrainData, root: Path, spec, echo):
    """The fast.ai learner, trained frozen then unfrozen (learning rate from the config or lr_find)."""
    import mlflow
    import torch
    from fastai.torch_core import set_seed

    from roomclf.train.report import epoch_logger

    torch.set_num_threads(min(torch.get_num_threads(), cpus()))     # torch's own default: the physical cores
    set_seed(cfg.seed, reproducible=True)
    dls = build_dls(root, data, cfg.image_size, cfg.batch_size, spec.mean, spec.std, cfg.seed, cfg.workers,
                    recipe=cfg.recipe)
    learn = make_learner(dls, cfg.backbone, class_weights([c for _, c in data.train]), recipe=cfg.recipe,
                         soft=data.soft is not None)
    t = time.perf_counter()
    if not cfg.lr:
        echo("finding a learning rate (lr_find)")
    lr = cfg.lr or find_lr(learn, cfg.recipe)
    mlflow.log_metrics({"lr": lr, "duration_lr_find_s": time.perf_counter() - t})
    t = time.perf_counter()
    small = build_small_dls(root, data, cfg.batch_size, spec.mean, spec.std, cfg.seed, cfg.workers, cfg.recipe)
    fit(learn, cfg.frozen_epochs, cfg.epochs, lr, cbs=[epoch_logger()], recipe=cfg.recipe, small_dls=small,
        teacher=data.teacher.path if data.teacher else None)
    train_s = time.perf_counter() - t
    mlflow.log_metrics({"duration_train_s": train_s,
                        "duration_per_epoch_s": train_s / max(1, cfg.frozen_epochs + cfg.epochs)})
    return learn


def _evaluate(learn, data: TrainData, root: Path, out: Path, echo, flip_tta: bool = False) -> dict:
    """Validation metrics (overall and per class), the classification report and its figures, of the
    probabilities the exported model gives (with ``flip_tta``, the photo's and its mirror image's mean)."""
    import mlflow

    from roomclf.train.report import (
        class_report,
        confusion_png,
        sure_confidence,
        top_loss_grid,
    )

    probs, y = predict(learn, flip_tta=flip_tta)
    report = class_report(y, probs.argmax(1))
    metrics = {"val_accuracy": report["accuracy"], "val_macro_f1": report["macro_f1"]}
    sure = {sure_key(p): sure_confidence(probs, y, p) for p in SURE_PRECISIONS}
    metrics.update({f"val_sure_confidence.{p}": c for p, c in sure.items() if c is not None})
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
    return {**metrics, "sure_confidence": sure}


def _export_checked(net, fit_attrs, cfg: TrainConfig, metrics: dict, run_id: str, root: Path,
                    data: TrainData, out: Path, echo) -> tuple[Path, dict]:
    """``model.onnx`` (room head + attribute heads), refused unless onnxruntime agrees with torch."""
    import mlflow

    from roomclf.models.attribute_scores import SCORES_KEY
    from roomclf.models.attribute_scores import from_report as attribute_scores
    from roomclf.models.network import ExportNet
    from roomclf.models.onnx_file import export_onnx

    meta = {"input_size": cfg.image_size, "train_batches": cfg.train_batches,
            "valid_batches": cfg.valid_batches, "val_accuracy": metrics["val_accuracy"],
            "val_macro_f1": metrics["val_macro_f1"], "mlflow_run_id": run_id, "flip_tta": cfg.recipe.flip_tta,
            "sure_confidence": metrics["sure_confidence"]}
    if fit_attrs is not None:
        meta["attribute_thresholds"] = fit_attrs.thresholds
        if getattr(fit_attrs, "report", None):      # a distilled head has no held-out figures of its own
            meta[SCORES_KEY] = attribute_scores(fit_attrs.report)
    echo("exporting to ONNX and checking torch/onnxruntime parity on validation photos")
    export_net = ExportNet(net, fit_attrs.head if fit_attrs is not None else None,
                           flip_tta=cfg.recipe.flip_tta).eval()
    onnx_path = export_onnx(export_net, out / "model.onnx", meta)
    parity = parity_check(export_net, onnx_path, root, [p for p, _ in data.valid][:cfg.recipe.parity_photos],
                          cfg.image_size)
    mlflow.log_metrics(parity)
    worst = max(v for k, v in parity.items() if k.startswith("parity_max_abs_diff_"))   # tags too
    if worst > PARITY_TOLERANCE:
        raise TrainingError(f"ONNX parity check failed: max abs difference {worst:.2e} > "
                            f"{PARITY_TOLERANCE:g} on {parity['parity_photos']} validation photos")
    return onnx_path, parity


def _save_torch_forms(learn, net, cfg: TrainConfig, out: Path) -> tuple[Path, Path]:
    """The fast.ai learner (``learner.pkl``) and the plain state dict the pyfunc version carries."""
    import torch

    learner_path = out / "learner.pkl"
    learn.export(learner_path)
    state_path = out / "state_dict.pt"
    torch.save({"backbone": cfg.backbone, "image_size": cfg.image_size, "classes": list(CLASSES),
                "pooling": net.pooling, "with_attributes": net.attribute_head is not None,   # RoomNet(...) again
                "state_dict": net.state_dict()}, state_path)
    return learner_path, state_path


def _register_all(onnx_path: Path, learner_path: Path, state_path: Path, cfg: TrainConfig, data: TrainData,
                  metrics: dict, run_id: str, root: Path, out: Path, echo):
    """Register every form, gate against the champion, and log and say what the gate decided."""
    import mlflow
    from mlflow.exceptions import MlflowException

    from roomclf.models.registry import (
        MS_PER_PHOTO_TAG,
        is_unreachable,
        log_version_metrics,
        model_cost_tags,
        unreachable,
    )
    from roomclf.photos import model_input
    from roomclf.train.report import git_commit

    cost = model_cost_tags(onnx_path)
    mlflow.log_metric("model_ms_per_photo", float(cost[MS_PER_PHOTO_TAG]))
    tags = {"backbone": cfg.backbone, "image_size": cfg.image_size, "classes": ",".join(CLASSES),
            "val_accuracy": f"{metrics['val_accuracy']:.4f}", "val_macro_f1": f"{metrics['val_macro_f1']:.4f}",
            "train_batches": ",".join(cfg.train_batches), "valid_batches": ",".join(cfg.valid_batches),
            "git_commit": git_commit(), **cost,
            **({"teacher": data.teacher.name, "teacher_uri": data.teacher.uri} if cfg.teacher else {})}
    description = _version_description(cfg, data, metrics, run_id)
    photo = data.valid[0][0]
    example = (photo, np.stack([model_input(storage.join(root, photo), cfg.image_size)]))
    echo("registering roomclf-onnx and roomclf in the MLflow registry, then gating against the champion")
    try:
        versions, gated = _register_and_gate(onnx_path, learner_path, state_path, tags, description, example,
                                             root, data, cfg, out)
    except (OSError, MlflowException) as exc:
        if is_unreachable(exc):   # the tracking server stopped: no alias moved, rerun when it is back
            raise unreachable(exc, "registration", moves_aliases=True) from None
        raise
    mlflow.log_metrics({"gate_new_accuracy": gated.new.accuracy, "gate_new_macro_f1": gated.new.macro_f1,
                        "gate_compared_photos": gated.compared_on,
                        **({"gate_champion_accuracy": gated.champion.accuracy,
                            "gate_champion_macro_f1": gated.champion.macro_f1} if gated.champion else {}),
                        **({"gate_new_ms_per_photo": gated.new.ms_per_photo,
                            "gate_champion_ms_per_photo": gated.champion.ms_per_photo}
                           if gated.champion and gated.champion.ms_per_photo is not None else {})})
    mlflow.set_tags({"alias": gated.alias, "gate_reason": gated.reason,
                     "compared_with_champion": gated.champion_version or "none",
                     **({"gate_champion_unfair": gated.champion_unfair} if gated.champion_unfair else {}),
                     **{f"version.{n}": v for n, v in versions.items()}})
    log_version_metrics(versions, {**{k: float(v) for k, v in metrics.items()
                                      if k in ("val_accuracy", "val_macro_f1") or k.startswith("val_f1.")},
                                   "model_ms_per_photo": float(cost[MS_PER_PHOTO_TAG]),
                                   **{k: v for k, v in mlflow.get_run(run_id).data.metrics.items()
                                      if k.startswith("int8_")}})
    if gated.champion_unfair:
        echo(f"note: {gated.champion_unfair}: it cannot be judged on them, so it does not block this model")
    echo(f"registered {', '.join(f'{n} v{v}' for n, v in versions.items())} as {gated.alias}: {gated.reason}"
         + (f" (against champion v{gated.champion_version}, on {gated.compared_on} photos neither trained on)"
            if gated.champion else ""))
    return versions, gated


def _register_and_gate(onnx_path: Path, learner_path: Path, state_path: Path, tags: dict, description: str,
                       example: tuple[str, np.ndarray], root: Path, data: TrainData, cfg: TrainConfig, out: Path):
    """Register every form (each with its signature, input example and description), then move
    the alias on all of them together: an alias is set only once every version is complete."""
    from roomclf.models.registry import ONNX_NAME, TORCH_NAME, register_onnx_file
    from roomclf.train.gate import gate

    photo, pixels = example
    versions = {ONNX_NAME: register_onnx_file(onnx_path, ONNX_NAME, tags, description=description,
                                              input_example=pixels)}
    versions[TORCH_NAME] = _register_torch(onnx_path, learner_path, state_path, tags, description,
                                           _example_jpeg(storage.join(root, photo)))
    if cfg.quantize:
        versions.update(_quantize_and_register(onnx_path, root, data, cfg, tags, out, description, pixels))
    return versions, gate(onnx_path, versions, root, data.valid, tolerance=cfg.gate_tolerance)


def _example_jpeg(path: Path, size: int = 160) -> bytes:
    """A small JPEG of a validation photo: the pyfunc's input example."""
    import io

    from roomclf.photos import thumbnail

    buf = io.BytesIO()
    thumbnail(path, size).save(buf, format="JPEG", quality=85)
    return buf.getvalue()


def _quantize_and_register(onnx_path: Path, root: Path, data: TrainData, cfg: TrainConfig,
                           tags: dict, out: Path, description: str, pixels: np.ndarray) -> dict[str, str]:
    """Static int8 QDQ copy calibrated on training photos, registered as ``roomclf-onnx-int8``."""
    import mlflow

    from roomclf.models.quantize import (
        agreement,
        calibration_sample,
        quantize_static_int8,
    )
    from roomclf.models.registry import INT8_NAME, register_onnx_file

    calib = calibration_sample([p for p, _ in data.train], cfg.recipe.int8_calibration_photos)
    int8 = quantize_static_int8(onnx_path, out / "model.int8.onnx", root, calib)
    stats = agreement(onnx_path, int8, root, data.valid)
    mlflow.log_metrics({f"int8_{k}": v for k, v in stats.items()})
    version = register_onnx_file(int8, INT8_NAME, {**tags, "int8_accuracy": f"{stats['accuracy']:.4f}",
                                                   "int8_top1_agreement": f"{stats['top1_agreement']:.4f}"},
                                 description=f"Static int8 of this run's roomclf-onnx. {description}",
                                 input_example=pixels)
    return {INT8_NAME: version}
