"""The end-to-end demo: the whole workflow on the sample corpus, on defaults.

prelabel batch_01 cold-start -> "manual" labels (the demo stands in for a
person by importing ground truth from the corpus's label file, and says so)
-> propagate over the first batches -> train with validation on a different
batch -> register (fast.ai + ONNX) -> infer-all over every batch -> summary.

Each finished step is recorded in ``$ROOMCLF_HOME/demo/state.json`` with its
inputs, so a rerun reuses what is done (``fresh=True`` redoes everything).
"""
from __future__ import annotations

import json
import os
import random
import time
from pathlib import Path
from collections.abc import Callable

from roomclf import settings

# The demo's configuration, in one place.
MANUAL_BATCH = "batch_01"
PROPAGATE_BATCHES = "batch_01-batch_03"
TRAIN_BATCHES = "batch_01-batch_03"
VALID_BATCHES = "batch_04"
IMAGE_SIZE = 224      # the backbone's own size: smaller inputs cost accuracy (measured)
FROZEN_EPOCHS = 2
EPOCHS = 1
LR = 1.6e-3           # the training bench's rate; lr_find would cost ~70 s here


def _state_file() -> Path:
    d = settings.home() / "demo"
    d.mkdir(parents=True, exist_ok=True)
    return d / "state.json"


class Steps:
    """Which demo steps are done (with what inputs), persisted atomically after each step."""

    def __init__(self, fresh: bool):
        self.path = _state_file()
        self.done: dict = {} if fresh or not self.path.is_file() else json.loads(self.path.read_text())

    def get(self, name: str, inputs: dict) -> dict | None:
        rec = self.done.get(name)
        return rec["result"] if rec and rec.get("inputs") == inputs else None

    def put(self, name: str, inputs: dict, result: dict) -> dict:
        self.done[name] = {"inputs": inputs, "result": result, "at": time.time()}
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.done, indent=1))
        os.replace(tmp, self.path)
        return result


def _pick_manual(labels_csv: Path, batch: str, n: int, seed: int = 0) -> list[tuple[str, str]]:
    from roomclf.prelabel import read_ground_truth

    rows = sorted((p, lab) for p, lab in read_ground_truth(labels_csv).items() if p.startswith(batch + "/"))
    random.Random(seed).shuffle(rows)
    return sorted(rows[:n])


def _propagation_truth(store, truth: dict[str, str], batches: list[str]) -> dict:
    """Precision/coverage of the propagated labels against the corpus's ground truth."""
    prop = store.labels(["propagated"])
    manual = store.labels(["manual"])
    candidates = [p for p, lab in truth.items() if p.split("/", 1)[0] in batches and p not in manual]
    hits = [p for p in candidates if p in prop]
    right = sum(prop[p].label == truth[p] for p in hits)
    return {"precision": right / len(hits) if hits else 0.0, "coverage": len(hits) / len(candidates) if candidates else 0.0,
            "propagated": len(hits), "candidates": len(candidates)}


def run_demo(manual_labels: int = 300, fresh: bool = False, echo: Callable[[str], None] = print) -> dict:
    from roomclf.corpus import parse_batches
    from roomclf.labelstore import LabelStore
    from roomclf.sample_data import get_sample_corpus

    t_start = time.perf_counter()
    steps = Steps(fresh)
    home = settings.home()
    store = LabelStore()

    def head(n: int, text: str) -> None:
        echo(f"\n[{n}/7] {text}  ({time.perf_counter() - t_start:.0f}s)")

    head(1, "sample corpus")
    corpus = get_sample_corpus(home / "sample")
    root, labels_csv = corpus.root, corpus.labels_csv
    echo(f"{corpus.photos} photos at {root} ({'used in place' if corpus.in_place else 'laid out'})")
    from roomclf.prelabel import read_ground_truth
    truth = read_ground_truth(labels_csv)
    base = {"root": str(root)}

    head(2, f"prelabel {MANUAL_BATCH} (cold start: zero-shot from the ImageNet backbone)")
    pre = steps.get("prelabel", base)
    if pre is None:
        from roomclf.prelabel import prelabel
        report = prelabel(store, root, [MANUAL_BATCH], mode="zeroshot", ground_truth=labels_csv)
        pre = steps.put("prelabel", base, {"accuracy": report.accuracy, "written": report.written,
                                           "summary": report.summary()})
    echo(pre["summary"])

    head(3, f"label: {manual_labels} 'manual' labels of {MANUAL_BATCH}")
    echo("(the demo stands in for a person in the browser: it imports ground truth from the corpus's labels.csv)")
    inputs = {**base, "n": manual_labels}
    if steps.get("manual", inputs) is None:
        picked = _pick_manual(labels_csv, MANUAL_BATCH, manual_labels)
        store.clear_source("manual", [p for p in store.labels(["manual"]) if p.startswith(MANUAL_BATCH + "/")])
        store.set_labels(picked, "manual", who="demo")
        valid = [(p, lab) for p, lab in sorted(truth.items())
                 if p.split("/", 1)[0] in parse_batches(VALID_BATCHES, root)]
        store.set_labels(valid, "imported", who="demo (validation labels)")
        steps.put("manual", inputs, {"manual": len(picked), "validation": len(valid)})
    echo(f"{manual_labels} manual labels on {MANUAL_BATCH}; validation labels of {VALID_BATCHES} imported")

    head(4, f"propagate over {PROPAGATE_BATCHES} (annoy nearest neighbours)")
    prop = steps.get("propagate", inputs)
    if prop is None:
        from roomclf.propagation import run_propagation
        result = run_propagation(root, PROPAGATE_BATCHES, store=store, echo=echo)
        measured = _propagation_truth(store, truth, parse_batches(PROPAGATE_BATCHES, root))
        prop = steps.put("propagate", inputs, {"cv_precision": result.cv_precision, "cv_coverage": result.cv_coverage,
                                               "accepted": result.accepted, "suspects": len(result.suspects),
                                               "truth": measured, "run_id": result.run_id})
    t = prop["truth"]
    echo(f"{prop['accepted']} labels propagated: precision {t['precision']:.1%} at coverage {t['coverage']:.1%} "
         f"against ground truth (cross-validated estimate {prop['cv_precision']:.1%} / {prop['cv_coverage']:.1%})")

    head(5, f"train on {TRAIN_BATCHES}, validate on {VALID_BATCHES}; register fast.ai + ONNX models")
    train_inputs = {**inputs, "size": IMAGE_SIZE, "epochs": [FROZEN_EPOCHS, EPOCHS], "lr": LR}
    trained = steps.get("train", train_inputs)
    if trained is None:
        from roomclf.train_run import run_training
        from roomclf.training import TrainConfig
        cfg = TrainConfig(data=str(root), train_batches=TRAIN_BATCHES, valid_batches=VALID_BATCHES,
                          sources=("manual", "imported", "propagated"), image_size=IMAGE_SIZE,
                          frozen_epochs=FROZEN_EPOCHS, epochs=EPOCHS, lr=LR, run_name="demo")
        result = run_training(cfg, store=store, echo=echo)
        trained = steps.put("train", train_inputs, {"run_id": result.run_id, "metrics": result.metrics,
                                                    "versions": result.versions, "alias": result.alias})
    m = trained["metrics"]
    echo(f"validation accuracy {m.get('val_accuracy', float('nan')):.1%}, macro-F1 {m.get('val_macro_f1', float('nan')):.3f}; "
         f"registered {', '.join(f'{k} v{v}' for k, v in trained['versions'].items())} ({trained['alias']})")

    head(6, "infer-all: the champion ONNX over every batch with Ray Data")
    from roomclf.infer_all import infer_all
    out = home / "infer"
    summary = infer_all(root, out, batches="all", engine="ray")
    rate = summary.photos_per_s
    echo(f"{summary.photos} photos, {summary.predictions} predictions, {summary.errors} errors, "
         f"{summary.skipped} skipped" + (f", {rate:.1f} photos/s" if summary.photos else "")
         + (f"; {len(summary.batches_skipped)} batches already done" if summary.batches_skipped else ""))

    head(7, "summary")
    per_class = {k[len("val_f1."):]: v for k, v in m.items() if k.startswith("val_f1.")}
    lines = [
        f"validation accuracy ({VALID_BATCHES}): {m.get('val_accuracy', float('nan')):.1%}   macro-F1: {m.get('val_macro_f1', float('nan')):.3f}",
        "per-class F1: " + ", ".join(f"{c} {v:.2f}" for c, v in per_class.items()),
        f"cold-start prelabel accuracy on {MANUAL_BATCH}: {pre['accuracy']:.1%}" if pre.get("accuracy") is not None else "",
        (f"propagation: precision {t['precision']:.1%}, coverage {t['coverage']:.1%} ({prop['accepted']} labels, "
        f"{prop['suspects']} suspect labels flagged)"),
        f"infer-all: {summary.photos} photos this run" + (f" at {rate:.1f} photos/s" if summary.photos else " (all batches reused)"),
        f"outputs: {out}/photos/*.parquet, {out}/listings/*.parquet",
        f"label store: {store.path}",
        f"MLflow UI:    roomclf ui     (or: mlflow ui --backend-store-uri {settings.tracking_uri()})",
        "labelling app: roomclf label --batch batch_02",
        "serve:        roomclf serve",
        f"total time: {time.perf_counter() - t_start:.0f}s",
    ]
    for line in filter(None, lines):
        echo("  " + line)
    return {"train": trained, "propagate": prop, "prelabel": pre, "infer_photos": summary.photos}
