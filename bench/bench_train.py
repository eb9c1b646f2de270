"""Benchmark: fast.ai training of the room classifier on the honest split.

TRAIN = batch_01-batch_10 (fitted on), TUNE = batch_11-batch_13 (every choice:
recipe, epochs, TTA), TEST = batch_14-batch_19 (reported only, never used to
choose); photos of TUNE and TEST that duplicate a TRAIN photo are removed
(``bench/common.py: honest_split``). The same functions ``roomclf train`` uses
(DataBlock, learner, frozen-then-unfrozen schedule, ``Recipe``) train the network;
label smoothing and mixup are knobs of that Recipe (``roomclf train --recipe``),
more epochs, another backbone and a second unfrozen cycle from a saved run are
this script's options.

Every run writes ``result.json`` (and ``roomnet.pt`` + ``model.onnx``) into
``--save`` (default ``var/bench/train-NAME``). The TUNE figures are always
measured; the TEST figures only with ``--test``: for the reference recipe, the
recipe that won on TUNE, and every 1,000-hand-label point (the issue asks for that
point on TEST) (``--from-saved DIR --test`` scores a saved run on TEST without
training again). A TEST figure never chooses anything; but where a candidate was
proposed after earlier candidates' TEST figures were seen, the winner's TEST
figure is mildly optimistic, and the docs say so. The section
``train`` of docs/benchmarks.md is rendered from ``bench/results/train.json``
(committed) alone: a "what was tried" table (TUNE figures and training time of
every run) and the full tables of the runs measured on TEST. Each run of this
split that finishes joins that file (or replaces its run of the same name), so
it stays when var/ (not committed) is gone; runs whose result files were lost
before the file existed are kept there as "carried" entries: the row, note and
TEST tables the section gave them, rendered as written. ``--report`` folds in
the result files of this split found in var/bench (none: nothing changes) and
renders the section, measuring nothing.

An ensemble (``--ensemble a,b``) is what the product makes of the saved runs:
``roomclf combine``'s ONNX graph (``roomclf.models.ensemble.combine_models``,
nothing registered), scored through the product's ``OnnxModel`` as infer-all
runs it.

    nohup nice -n 10 python bench/bench_train.py --name default --test > var/bench_train.log 2>&1 &
    python bench/bench_train.py --name ls01 --label-smoothing 0.1          # a candidate, TUNE only
    python bench/bench_train.py --name labels1k-prog160 --hand-labels 1000 --recipe small_size=160   # any Recipe knob
    python bench/bench_train.py --name plus2 --resume var/bench/train-default --frozen-epochs 0 --epochs 2
    python bench/bench_train.py --from-saved var/bench/train-ls01 --test   # the TUNE winner, on TEST
    python bench/bench_train.py --report                                   # the section again, nothing measured
    python bench/bench_train.py --ensemble default,lite1                    # two saved runs combined (TUNE)
    python bench/bench_train.py --name lite0-distil-192 --image-size 192 --distill var/bench/train-lite2-300-teacher --recipe temperature=2
    python bench/bench_train.py --name lite0-distil-224-live --distill var/bench/train-lite2-300-teacher \
        --recipe temperature=2,live_teacher=true     # the teacher labels every augmented training batch
    python bench/bench_train.py --name lite2-300-mt-gem --backbone efficientnet_lite2 --attributes \
        --recipe attribute_loss_weight=1,pooling=gem   # multi-task + GeM; attribute tags scored on TUNE
    python bench/bench_train.py --probe-pooling var/bench/train-lite2-300-mt   # its body read with avg/max/GeM (TUNE)
    python bench/bench_train.py --probe-pooling var/bench/train-lite2-300-teacher --image-size 416   # read larger
    python bench/bench_train.py --score-attributes var/bench/train-lite2-300-mt   # the TUNE winner's tags on TEST
    python bench/bench_train.py --name labels1k-lite1-self --backbone efficientnet_lite1 --image-size 240 \
        --hand-labels 1000 --pseudo var/bench/train-labels1k-lite1          # self-training at 1,000 hand labels
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

import numpy as np
from common import (
    PROJECT,
    SPLIT_NOTE,
    TEST_BATCHES,
    TRAIN_BATCHES,
    TUNE_BATCHES,
    default_data,
    ground_truth,
    honest_split,
    load_result,
    save_result,
    split_summary,
    table,
    table_row,
    write_by_eye_attributes,
    write_section,
)

sys.path.insert(0, str(PROJECT))
SECTION = "train"
ATTRIBUTE_TARGETS = ("kitchen.refrigerator", "living_room.fireplace", "living_room.tv")   # the named tags
MIN_TEST_POSITIVES = 10     # a tag joins the TEST attribute macro-F1 from this many TEST positives (the rule)
SEED_RESULTS = "the seed: 89% (ResNet-50), 90.1% (DenseNet-121), each on its own validation batches"
RESULTS = PROJECT / "var" / "bench"


# --------------------------------------------------------------------------- recipe pieces

def recipe_text(r: dict) -> str:
    if r.get("ensemble") and r.get("combined"):
        return (" + ".join(f"`{n}`" for n in r["ensemble"]) + ": their exported ONNX models combined by "
                "`roomclf combine` (one ONNX graph, the mean of their class probabilities) and scored through "
                "onnxruntime as infer-all runs it (no training of its own)")
    if r.get("ensemble"):       # runs made before the bench used the product's combined graph
        return (" + ".join(f"`{n}`" for n in r["ensemble"]) + ": their exported ONNX models through onnxruntime, "
                "class probabilities averaged (no training of its own)")
    parts = [f"{r['backbone']} {r['image_size']} px", f"{r['frozen_epochs']} frozen + {r['epochs']} unfrozen"]
    if r.get("resume"):
        parts = [f"`{r['resume']}` + {r['frozen_epochs']} frozen + {r['epochs']} more unfrozen epochs "
                 "(a second one-cycle)"]
    parts.append(f"lr {r['lr']:g}")
    if r.get("label_smoothing"):
        parts.append(f"label smoothing {r['label_smoothing']:g}")
    if r.get("mixup"):
        parts.append(f"mixup α={r['mixup']:g}")
    if r.get("knobs"):
        parts.append(f"recipe `{r['knobs']}`")
    if r.get("hand_picks"):
        parts.append(f"only {r['hand_labels']:,} TRAIN photos, picked by the labelling app's queue "
                     f"(`{r['hand_picks']}`: a person's hand labels)")
    elif r.get("hand_labels"):
        parts.append(f"only {r['hand_labels']:,} TRAIN photos, drawn at random (a person's hand labels)")
    if r.get("pseudo"):
        ps = r["pseudo"]
        parts.append(f"+ self-training: {ps['added']:,} of the other {ps['unlabelled']:,} TRAIN photos labelled by "
                     f"`{ps['teacher'].removeprefix('train-')}` (flip TTA) where its confidence is ≥ "
                     f"{ps['threshold']:.2f} (TUNE precision ≥ {ps['tune_precision']:g})")
    if r.get("distill"):
        parts.append(f"distilled from `{r['distill']}`: trained on its class probabilities of every TRAIN photo "
                     "(`roomclf distill`'s soft-target loss)")
    if r.get("clean"):
        parts.append(f"TRAIN cleaned: {r.get('cleaned', '?')} suspect labels dropped (neighbour vote ≥ {r['clean']:g})")
    return ", ".join(parts)


# --------------------------------------------------------------------------- cleaning

def drop_suspects(root: Path, split: dict, min_share: float) -> list[str]:
    """Remove from ``split["train"]`` the photos the suspect finder flags (their nearest TRAIN neighbours
    vote for another class with at least ``min_share``): the labels a person would be asked to check.
    Returns the dropped paths; TUNE and TEST are left as they are."""
    from roomclf.models.embeddings import embed
    from roomclf.propagate.votes import suspect_labels
    from roomclf.taxonomy import CLASSES

    label = dict(split["train"])
    emb = embed(root, [p for p, _ in split["train"]])
    found = suspect_labels(emb.paths, emb.vectors, [label[p] for p in emb.paths], list(CLASSES),
                           min_share=min_share)
    dropped = {s["path"] for s in found}
    split["train"] = [(p, c) for p, c in split["train"] if p not in dropped]
    print(f"cleaning: {len(dropped)} suspect TRAIN labels dropped (vote share >= {min_share:g})", flush=True)
    return sorted(dropped)


def saved_knobs(rec: dict):
    """The product Recipe a saved run was trained with (its --label-smoothing, --mixup and --recipe)."""
    from roomclf.train.config import Recipe, parse_recipe

    return parse_recipe(rec.get("knobs") or "", Recipe(label_smoothing=rec.get("label_smoothing") or 0.0,
                                                       mixup=rec.get("mixup") or 0.0))


def flip_model(run: Path) -> Path:
    """``run/model-flip.onnx``: the saved run's network exported with horizontal-flip TTA (made once)."""
    path = run / "model-flip.onnx"
    if not path.is_file():
        import torch

        from roomclf.models.network import ExportNet, RoomNet
        from roomclf.models.onnx_file import export_onnx

        rec = json.loads((run / "result.json").read_text())["recipe"]
        knobs = saved_knobs(rec)
        net = RoomNet(rec["backbone"], pretrained=False, pooling=knobs.pooling,
                      with_attributes=knobs.attribute_loss_weight > 0)
        net.load_state_dict(torch.load(run / "roomnet.pt"))
        export_onnx(ExportNet(net.eval(), flip_tta=True), path,
                    {"input_size": rec["image_size"], "flip_tta": True,
                     "note": f"bench/bench_train.py {run.name}, flip TTA"})
    return path


def add_pseudo_labels(root: Path, split: dict, unlabelled: list[str], teacher: Path, precision: float) -> dict:
    """Self-training: the TRAIN photos a person did not label get the ``teacher`` run's label where it is sure.

    The teacher (a saved run folder: its ``roomnet.pt``, exported here with flip TTA, which won on TUNE for the
    1,000-label point) scores TUNE and the unlabelled photos; the confidence threshold is the lowest at which its
    TUNE precision (accuracy of the photos at or above it) is at least ``precision``. The photos at or above it
    join ``split["train"]`` with the teacher's label (never the ground truth). Returns what was added, and how
    many of those labels agree with the ground truth (told, not used)."""
    from roomclf.taxonomy import CLASSES
    from roomclf.train.report import sure_confidence

    model = flip_model(teacher)
    tp, ty = onnx_probs(model, root, split["tune"])
    hit = tp.argmax(1) == ty
    threshold = sure_confidence(tp, ty, precision) or 1.0     # the product's rule (roomclf train's `predicted`)
    truth = dict(split["all_train"])
    items = [(p, truth[p]) for p in unlabelled]
    up, _ = onnx_probs(model, root, items)
    keep = up.max(1) >= threshold
    added = [(p, CLASSES[int(k)]) for (p, _), k, kept in zip(items, up.argmax(1), keep) if kept]
    split["train"] = split["train"] + added
    agree = float(np.mean([truth[p] == c for p, c in added])) if added else 0.0
    stats = {"teacher": teacher.name, "tune_precision": precision, "threshold": threshold,
             "teacher_tune_accuracy": float(hit.mean()), "unlabelled": len(items), "added": len(added),
             "added_agree_with_truth": agree}
    print(f"self-training: teacher {teacher.name} (flip TTA, TUNE {hit.mean():.4f}); confidence >= {threshold:.3f} "
          f"keeps TUNE precision >= {precision:g}; {len(added)} of {len(items)} unlabelled TRAIN photos added "
          f"({agree:.1%} agree with the ground truth)", flush=True)
    return stats


# --------------------------------------------------------------------------- attribute tags

def attribute_labels(data_dir: Path, paths: list[str], by_eye: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(Y, M) of ``paths`` (``attribute_targets``) from ../shared/data's attributes.csv under the product's
    default evidence policy, judged within each photo's labels.csv class: what the label store would give
    `roomclf train` after ``roomclf import-labels --attributes``. ``by_eye``: only the rows a person labelled
    by eye (fireplace, TV, refrigerator, kitchen island), every one of them kept."""
    import tempfile

    from roomclf.labels.store import LabelStore
    from roomclf.train.attributes import DEFAULT_EVIDENCE, attribute_targets, import_attributes

    truth = ground_truth(data_dir)
    rooms = [(p, truth[p]) for p in paths if p in truth]
    with tempfile.TemporaryDirectory() as tmp:
        source = data_dir / "attributes.csv"
        if by_eye:
            source = write_by_eye_attributes(source, Path(tmp) / "by_eye.csv")
        store = LabelStore(Path(tmp) / "labels.sqlite")
        store.set_labels(rooms, "imported")
        import_attributes(store, source, data_dir / "listings", paths=[p for p, _ in rooms],
                          evidence="as_is" if by_eye else DEFAULT_EVIDENCE)
        return attribute_targets(paths, store, truth)


def multitask_targets(data_dir: Path, split: dict) -> dict[str, np.ndarray]:
    """Multi-task (``--recipe attribute_loss_weight=W``): the attribute targets of the TRAIN and TUNE photos
    that have attribute labels, as ``roomclf train`` gathers them (``roomclf.train.multitask``)."""
    from roomclf.train.multitask import encode_targets

    paths = [p for p, _ in split["train"] + split["tune"]]
    Y, M = attribute_labels(data_dir, paths)
    rows = encode_targets(Y, M)
    return {p: rows[i] for i, p in enumerate(paths) if M[i].any()}


def attribute_scores(net, data_dir: Path, split: dict, size: int, seed: int):
    """``--attributes``: the attribute head `roomclf train` would export from this network (linear heads on
    its features, or the head trained with the body: ``roomclf.train.multitask.attribute_fit``), fitted on the
    TRAIN photos' labels with thresholds picked on TUNE, scored on TUNE: (figures, the fit or None). F1 is
    taken at the thresholds picked on the same photos (optimistic alike for every run); AUC needs none."""
    from roomclf.taxonomy import ATTRIBUTE_KEYS
    from roomclf.train.attributes import MIN_VAL_POSITIVES
    from roomclf.train.multitask import attribute_fit

    train, tune = [p for p, _ in split["train"]], [p for p, _ in split["tune"]]
    (Y, M), (vY, vM) = attribute_labels(data_dir, train), attribute_labels(data_dir, tune)
    fitted = attribute_fit(net, data_dir / "listings", train, Y, M, tune, vY, vM, size, seed)
    if fitted is None:
        return {"keys": {}, "macro_f1": None, "macro_keys": []}, None
    fit = fitted[0]
    keys = {}
    for key in ATTRIBUTE_KEYS:
        e = fit.report[key]
        if not e["support"]:
            continue
        emitted = fit.thresholds[key] is not None
        keys[key] = {"f1": (e["f1"] or 0.0) if emitted else 0.0, "auc": e["auc"], "support": e["support"],
                     "positives": e["positives"], "emitted": emitted, "head": e.get("head"), "status": e["status"]}
    judged = [k for k, v in keys.items() if v["support"] >= MIN_VAL_POSITIVES]
    macro = float(np.mean([keys[k]["f1"] for k in judged])) if judged else None
    return {"keys": keys, "macro_f1": macro, "macro_keys": judged}, fit


def attribute_scores_on_test(model_path: Path, data_dir: Path, split: dict) -> dict:
    """``--score-attributes RUN``: the attribute scores of a saved run's model.onnx through onnxruntime, as
    infer-all computes them (its preprocessing, its thresholds, picked on TUNE when it was trained), on every
    TEST photo with an attribute label. Each tag is judged within the photo's true class (labels.csv), as in
    bench_attributes.py; against the default evidence (``reliable``) and against the by-eye labels alone. A
    tag the model does not emit counts as F1 0. The macro-F1 is over the tags with >= 10 TEST positives."""
    from roomclf.models.onnx_file import OnnxModel
    from roomclf.settings import cpus
    from roomclf.train.attributes import scores_metrics

    with open(data_dir / "attributes.csv", newline="") as f:
        labelled = {r["path"] for r in csv.DictReader(f)}
    paths = [p for p, _ in split["test"] if p in labelled]
    model = OnnxModel(model_path, threads=cpus())
    if "attributes" not in model.output_names:
        sys.exit(f"{model_path}: the model has no attribute output (train it with --attributes)")
    S = np.full((len(paths), len(model.attribute_keys)), np.nan, dtype=np.float32)
    for idx, out, _ in model.run_sources([data_dir / "listings" / p for p in paths]):
        if idx:
            S[idx] = out["attributes"]
    readable = ~np.isnan(S).any(1)
    keys = {}
    for name, (Y, M) in (("reliable", attribute_labels(data_dir, paths)),
                         ("by_eye", attribute_labels(data_dir, paths, by_eye=True))):
        for j, key in enumerate(model.attribute_keys):
            rows = M[:, j] & readable
            y = Y[rows, j]
            if not (y == 1).any():
                continue
            thr = model.thresholds.get(key)
            found = scores_metrics(S[rows, j], y, thr) if thr is not None else \
                {"precision": 0.0, "recall": 0.0, "f1": 0.0}
            keys.setdefault(key, {"emitted": thr is not None})[name] = {
                **found, "positives": int((y == 1).sum()), "negatives": int((y == 0).sum())}
    judged = [k for k, v in keys.items() if v.get("reliable", {}).get("positives", 0) >= MIN_TEST_POSITIVES]
    return {"photos": int(readable.sum()), "unreadable": int((~readable).sum()), "keys": keys,
            "macro_keys": judged, "macro_f1": float(np.mean([keys[k]["reliable"]["f1"] for k in judged]))
            if judged else None}


def attribute_table_on_test(found: dict) -> str:
    """``attribute_scores_on_test``' figures as the run's section shows them: the issue's named tags first."""
    def cell(e, k):
        return "-" if e is None else f"{e[k]:.2f}"

    order = [k for k in ATTRIBUTE_TARGETS if k in found["keys"]] + sorted(set(found["keys"]) - set(ATTRIBUTE_TARGETS))
    rows = []
    for key in order:
        e = found["keys"][key]
        r, b = e.get("reliable"), e.get("by_eye")
        rows.append([key, f"{r['positives']}/{r['negatives']}" if r else "-", cell(r, "precision"), cell(r, "recall"),
                     f"**{cell(r, 'f1')}**", f"{b['positives']}/{b['negatives']}" if b else "-", cell(b, "f1"),
                     "yes" if e["emitted"] else "no" + (" (counts as F1 0)" if key in found["macro_keys"] else "")])
    macro = "-" if found["macro_f1"] is None else f"{found['macro_f1']:.3f}"
    return "\n".join([
        f"Attribute tags on TEST ({found['photos']} photos with attribute labels; the model.onnx's own scores and "
        f"thresholds, picked on TUNE; each tag judged within the photo's true class): macro-F1 **{macro}** over the "
        f"{len(found['macro_keys'])} tags with >= {MIN_TEST_POSITIVES} TEST positives.", "",
        table(["tag", "TEST pos/neg", "precision", "recall", "F1", "by-eye pos/neg", "F1 on by-eye labels",
               "emitted"], rows)])


def attribute_line(found: dict) -> str:
    """One line of ``attribute_scores``' figures: the macro-F1 and the issue's named tags."""
    def num(v):
        return "-" if v is None else f"{v:.3f}"

    named = "; ".join(f"{k} F1 {num(found['keys'][k]['f1'])}, AUC {num(found['keys'][k]['auc'])}"
                      for k in ATTRIBUTE_TARGETS if k in found["keys"])
    return (f"TUNE attributes: macro-F1 {num(found['macro_f1'])} over the {len(found['macro_keys'])} tags with "
            f"enough TUNE positives to judge; {named or 'none of the named tags on TUNE'}")


# --------------------------------------------------------------------------- scoring

def probs_on(learn, items: list[tuple[str, str]], flip: bool = False,
             bs: int = 64) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """(probabilities, the flip-TTA mean or None without ``flip``, true classes) on ``items`` with the
    validation transforms, from one pass over the photos (the mirror images are computed in the same pass)."""
    from roomclf.taxonomy import CLASSES
    from roomclf.train.predict import loader_passes

    from roomclf.train.multitask import unknown_row

    soft = getattr(learn.dls.train_ds, "vocab", None) is None      # a student: distribution targets (one-hot here)
    multitask = getattr(learn.model, "attribute_head", None) is not None   # batches carry attribute targets
    rows = [[p, c, np.eye(len(CLASSES))[CLASSES.index(c)].tolist()] if soft else
            [p, c, unknown_row()] if multitask else [p, c] for p, c in items]
    plain, mirror, y = loader_passes(learn, learn.dls.test_dl(rows, with_labels=True, bs=bs), mirrored=flip)
    return plain, ((plain + mirror) / 2 if flip else None), y


def onnx_probs(model_path: Path, root: Path, items: list[tuple[str, str]]) -> tuple[np.ndarray, np.ndarray]:
    """Class probabilities of an exported model on ``items`` through onnxruntime, as `roomclf infer-all` runs it
    (its own preprocessing; a photo it cannot read gets uniform probabilities, so it counts as a miss)."""
    from roomclf.models.onnx_file import OnnxModel
    from roomclf.taxonomy import CLASSES

    model = OnnxModel(model_path, threads=os.cpu_count() or 1)
    preds = model.predict_sources([root / p for p, _ in items], progress=f"scoring {model_path.parent.name}")
    probs = np.array([[p.probabilities.get(c, 0.0) for c in CLASSES] if p.error is None
                      else [1.0 / len(CLASSES)] * len(CLASSES) for p in preds], dtype=np.float32)
    return probs, np.array([CLASSES.index(c) for _, c in items])


def ensemble_name(names: list[str]) -> str:
    return "ens-" + "-".join(names)


def ensemble(names: list[str], root: Path, split: dict, upstream: dict, with_test: bool, flip: bool,
             out: Path) -> dict:
    """Score saved runs (``var/bench/train-NAME/model.onnx``) as the product combines them, on TUNE (and TEST):
    ``roomclf combine``'s graph (``combine_models``, nothing registered) written to ``out/model.onnx`` and
    scored by ``onnx_probs`` (the product's ``OnnxModel``); ``flip``: also the combination of every member's
    flip-TTA export (``flip_model``), ``out/model-flip.onnx``."""
    from roomclf.models.ensemble import combine_models

    runs = [json.loads((RESULTS / f"train-{n}" / "result.json").read_text()) for n in names]
    result = {"name": ensemble_name(names), "recipe": {"ensemble": names, "combined": True},
              "date": time.strftime("%Y-%m-%d %H:%M"),
              "times": {"train_total_s": sum(r["times"]["train_total_s"] for r in runs)}, "history": []}
    for n, r in zip(names, runs):
        print(f"TUNE {n} alone (its saved result): {r['tune']['accuracy']:.4f}", flush=True)
    combined: dict[bool, Path] = {}

    def model(flip: bool) -> Path:
        if flip not in combined:
            members = [flip_model(RESULTS / f"train-{n}") if flip else RESULTS / f"train-{n}" / "model.onnx"
                       for n in names]
            combined[flip], _ = combine_models([str(m) for m in members],
                                               out / ("model-flip.onnx" if flip else "model.onnx"))
        return combined[flip]

    def score(part: str, flip: bool) -> dict:
        probs, y = onnx_probs(model(flip), root, split[part])
        found = scores(probs, y, split[part], upstream)
        how = " with flip TTA" if flip else ""
        print(f"{part.upper()} ensemble{how}: {found['accuracy']:.4f}, macro-F1 {found['macro_f1']:.4f}", flush=True)
        return found

    result["tune"] = score("tune", False)
    if flip:
        result["tune_flip"] = score("tune", True)
    if with_test:   # as for one network: the flip figure on TEST only when flip won on TUNE
        result["test"] = score("test", False)
        if flip and result["tune_flip"]["accuracy"] > result["tune"]["accuracy"]:
            result["test_flip"] = score("test", True)
    return result


def scores(probs: np.ndarray, y: np.ndarray, items, upstream: dict) -> dict:
    from roomclf.taxonomy import CLASSES
    from roomclf.train.report import class_report

    pred = probs.argmax(1)
    rep = class_report(y, pred)
    by_source = defaultdict(list)
    for (path, _), hit in zip(items, pred == y):
        by_source[upstream.get(path, "-")].append(bool(hit))
    return {"n": len(y), "accuracy": rep["accuracy"], "macro_f1": rep["macro_f1"],
            "f1": {c: rep["per_class"][c]["f1"] for c in CLASSES},
            "support": {c: rep["per_class"][c]["support"] for c in CLASSES},
            "by_source": {s: [len(h), float(np.mean(h))] for s, h in by_source.items()}}


# --------------------------------------------------------------------------- report

def load_results(split_key: str) -> list[dict]:
    found = []
    for f in sorted(RESULTS.glob("train-*/result.json")):
        try:
            r = json.loads(f.read_text())
        except (OSError, ValueError):
            continue
        if r.get("split_key") == split_key:
            found.append(r)
    return sorted(found, key=lambda r: r.get("date", ""))


def run_row(r: dict) -> str:
    """The run's line of the "what was tried" table."""
    t = r.get("test")
    cells = [f"`{r['name']}`", recipe_text(r["recipe"]), f"{r['tune']['accuracy']:.4f}", f"{r['tune']['macro_f1']:.4f}",
             f"{r['tune_flip']['accuracy']:.4f}" if r.get("tune_flip") else "-",
             f"{r['times']['train_total_s'] / 60:.0f} min", f"{r['load_end']:.1f}",
             (f"**{t['accuracy']:.4f}**" + (f"; flip TTA **{r['test_flip']['accuracy']:.4f}**"
                                             if r.get("test_flip") else "")) if t else "not measured"]
    return table_row(cells)


def run_section(r: dict) -> str:
    """The full tables of a run measured on TEST."""
    from roomclf.taxonomy import CLASSES

    t, tu, tm = r["test"], r["tune"], r["times"]
    lines = [f"### `{r['name']}`: {recipe_text(r['recipe'])}", "",
             table(["metric", "TUNE (batch_11–13)", "TEST (batch_14–19)"], [
                 ["photos", tu["n"], t["n"]],
                 ["accuracy", f"{tu['accuracy']:.4f}", f"**{t['accuracy']:.4f}**"],
                 ["macro-F1", f"{tu['macro_f1']:.4f}", f"**{t['macro_f1']:.4f}**"],
                 *([["accuracy, horizontal-flip TTA (2 passes)", f"{r['tune_flip']['accuracy']:.4f}",
                     f"{r['test_flip']['accuracy']:.4f}" if r.get("test_flip") else "not measured"]]
                   if r.get("tune_flip") else [])]), "",
             table(["time (this machine, load average %.1f at the end)" % r["load_end"], "value"], [
                 ["per frozen epoch (train + score TUNE)", f"{tm['frozen_epoch_s']:.0f} s" if tm.get('frozen_epoch_s') else "-"],
                 ["per unfrozen epoch (train + score TUNE)", f"{tm['unfrozen_epoch_s']:.0f} s" if tm.get('unfrozen_epoch_s') else "-"],
                 ["whole recipe (all epochs" + (", earlier run included" if r["recipe"].get("resume") else "")
                  + (", of every member" if r["recipe"].get("ensemble") else "")
                  + ")", f"{tm['train_total_s'] / 60:.1f} min"],
                 ["data preparation (split, leak filter, photo checks)", f"{tm['prep_s']:.0f} s" if "prep_s" in tm else "-"]]), "",
             *(["Per epoch (scored on TUNE after each; the schedule is fixed, nothing is picked per epoch):", "",
                table(["phase", "epoch", "train loss", "TUNE loss", "TUNE acc", "TUNE macro-F1"], r["history"]), ""]
               if r["history"] else []),
             table(["class", "TUNE F1", "TEST F1", "TEST photos"],
                   [[c, f"{tu['f1'][c]:.3f}", f"{t['f1'][c]:.3f}", t["support"][c]] for c in CLASSES]), "",
             "TEST accuracy by the photos' upstream source (labels.csv `source`):", "",
             table(["source", "TEST photos", "TEST acc"],
                   [[s, n, f"{a:.3f}"] for s, (n, a) in sorted(t["by_source"].items(), key=lambda kv: -kv[1][0])])]
    return "\n".join(lines)


def probe_keys(r: dict, base: str) -> list[str]:
    """The keys of a run's pooling probes of one kind: ``base`` (read at the run's own input size), then
    ``base_SIZE`` for each other size it was read at (``--probe-pooling RUN --image-size SIZE``)."""
    sized = sorted((k for k in r if k.startswith(base + "_") and k[len(base) + 1:].isdigit()), key=probe_size)
    return [k for k in (base, *sized) if r.get(k)]


def probe_size(key: str) -> int | None:
    """The input size a probe key names (``pooling_probe_416`` -> 416), None for the run's own."""
    tail = key.rpartition("_")[2]
    return int(tail) if tail.isdigit() else None


def at_size(size: int | None) -> str:
    return f" at {size} px" if size else ""


def run_note(r: dict) -> str | None:
    """The run's line under the table: its note (written into its result file by hand), and the TUNE figures of
    its attribute tags where it was run with --attributes."""
    said = [r["note"]] if r.get("note") else []
    said += [attribute_line(r["tune_attributes"])] if r.get("tune_attributes") else []
    said += [pooling_line(r[key], probe_size(key)) for key in probe_keys(r, "pooling_probe")]
    return f"- `{r['name']}`: " + "; ".join(said) if said else None


def run_parts(r: dict) -> dict:
    """What the section says of one run of train.json: its table row, its note and its TEST tables (None where
    it has none). A "carried" run (its result file was lost before train.json kept runs as data) gives the
    text the section had for it; any other is rendered from its figures."""
    if "carried" in r:
        return {part: r["carried"].get(part) for part in ("row", "note", "section")}
    section = run_section(r) if r.get("test") else None
    tables = ([attribute_table_on_test(r["test_attributes"])] if r.get("test_attributes") else []) + [
        f"The same body read with {r[key]['pooling']} pooling{at_size(probe_size(key))}, the TUNE winner of its "
        "pooling probe (`--probe-pooling RUN --test`: linear heads fitted on TRAIN, thresholds on TUNE; the room "
        "head is not part of it):\n\n" + attribute_table_on_test(r[key])
        for key in probe_keys(r, "pooling_probe_test")]
    if tables:
        section = "\n\n".join([section or f"### `{r['name']}`: {recipe_text(r['recipe'])}", *tables])
    return {"row": run_row(r), "note": run_note(r), "section": section}


def render_result(data: dict) -> str:
    """The section from what bench/results/train.json holds (``section_result``): the runs in the order they
    joined, then the measurements made before the split was fixed (``earlier``: the rows of their table)."""
    parts = [run_parts(r) for r in data["runs"]]
    rows, notes, sections = ([p[k] for p in parts if p[k]] for k in ("row", "note", "section"))
    lines = ["## Training (`bench/bench_train.py`)", "",
             f"Split: {SPLIT_NOTE}. {data['split_line']}. Labels: ../shared/data/labels.csv (ground truth, ~5% "
             "noisy). Every run: batch 32, class-weighted cross-entropy, fastai aug_transforms, the body's BatchNorm "
             "statistics kept (`KeepBnStats`), body split in two parameter groups, `fit_one_cycle` per phase, "
             "seed 42, on this project's 2-core machine with no GPU, shared with other jobs (so times are upper "
             "bounds; the load average is in each row).", "",
             "What was tried on this split (TUNE = batch_11–13 figures decide; TEST is filled only for the "
             "reference recipe, the TUNE winners and the 1,000-hand-label points the issue asks for):", "",
             table(["run", "recipe", "TUNE acc", "TUNE macro-F1", "TUNE acc, flip TTA", "training time",
                    "load avg", "TEST acc (flip TTA: scored only where it won on TUNE)"], []), *rows, ""]
    lines += notes + [""] * bool(notes)
    for section in sections:
        lines += [section, ""]
    lines += [f"Compare {SEED_RESULTS}; the targets on TEST: ≥ 93% accuracy and macro-F1 ≥ 0.92."]
    if data.get("earlier"):
        lines += ["", "Earlier, before the split was fixed (train batch_01–10, figures on batch_11–13, where these "
                  "choices were also made, so all are TUNE-split figures):", "",
                  table(["what", "TUNE acc", "TUNE macro-F1", "time"], data["earlier"])]
    return "\n".join(lines)


# --------------------------------------------------------------------------- main

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(default_data()))
    ap.add_argument("--name", default="default", help="run name (result folder var/bench/train-NAME)")
    ap.add_argument("--train", default=TRAIN_BATCHES)
    ap.add_argument("--tune", "--valid", dest="tune", default=TUNE_BATCHES)
    ap.add_argument("--test-batches", default=TEST_BATCHES)
    ap.add_argument("--test", action="store_true", help="also score TEST (the reference recipe and the TUNE winner only)")
    ap.add_argument("--backbone", default="efficientnet_lite0",
                    help="the network of the reference run `default`; `roomclf train` fine-tunes efficientnet_lite2 "
                         "unless told, the run `lite2`")
    ap.add_argument("--image-size", type=int, default=None, help="input size (default: the backbone's, as roomclf train)")
    ap.add_argument("--frozen-epochs", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1.6e-3)
    ap.add_argument("--label-smoothing", type=float, default=0.0)
    ap.add_argument("--mixup", type=float, default=0.0, help="MixUp alpha (0: off)")
    ap.add_argument("--recipe", default="", help="other knobs of the product's Recipe, as `roomclf train --recipe`: "
                    "e.g. balanced_sampling=true, small_size=160, pooling=gem or attribute_loss_weight=1 "
                    "(multi-task: the attribute labels of attributes.csv train beside the rooms)")
    ap.add_argument("--attributes", action="store_true",
                    help="also fit the attribute tags as roomclf train exports them (TRAIN labels of attributes.csv, "
                         "thresholds on TUNE) and score them on TUNE")
    ap.add_argument("--hand-labels", type=int, default=0,
                    help="train on only this many TRAIN photos drawn at random (0: all); TUNE and TEST unchanged")
    ap.add_argument("--hand-picks", help="train on only the TRAIN photos listed in this file, one path per line "
                    "(bench_labels.py --save-picks writes what the labelling app's queue picks); TUNE and TEST "
                    "unchanged")
    ap.add_argument("--pseudo", help="with --hand-labels or --hand-picks: a saved run folder whose model labels the TRAIN photos "
                    "left unlabelled (self-training; see add_pseudo_labels)")
    ap.add_argument("--pseudo-precision", type=float, default=0.95,
                    help="keep the teacher's labels above the confidence where its TUNE precision is this")
    ap.add_argument("--clean", type=float, default=0.0,
                    help="drop TRAIN photos whose 10 nearest TRAIN neighbours vote for another class with at least "
                         "this share (the suspect finder of `roomclf propagate`; 0: keep all)")
    ap.add_argument("--distill", metavar="RUN",
                    help="a saved run folder (its model.onnx) as the teacher: the student trains on the teacher's "
                         "probabilities of every TRAIN photo (the product's distillation: roomclf.train.distill, "
                         "`roomclf distill`), temperature from --recipe temperature=T; validated on human labels")
    ap.add_argument("--resume", help="a saved run folder: start from its roomnet.pt (a second cycle)")
    ap.add_argument("--ensemble", help="comma-separated names of saved runs: instead of training, combine their "
                                       "model.onnx as `roomclf combine` does and score that model")
    ap.add_argument("--from-saved", help="score a saved run folder (no training); with --test scores TEST")
    ap.add_argument("--score-attributes", metavar="RUN",
                    help="score a saved run folder's model.onnx attribute tags on TEST (its thresholds were picked on "
                         "TUNE; for the runs chosen on TUNE only), keep the figures in its result.json, render")
    ap.add_argument("--probe-pooling", metavar="RUN",
                    help="read a saved run folder's body with each pooling (avg, max, GeM) and score the linear "
                         "attribute heads fitted on those features on TUNE, without training (kept in its "
                         "result.json, render); with --test, the kept TUNE winner's heads exported and scored on TEST; "
                         "with --image-size, the photos read at that size instead of the run's")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0,
                    help="torch CPU threads (0: torch's default); 1 can be faster when other jobs share the cores")
    ap.add_argument("--limit", type=int, default=0, help="at most this many photos per split (smoke tests)")
    ap.add_argument("--no-flip", action="store_true", help="skip the horizontal-flip TTA side measurement")
    ap.add_argument("--save", help="result folder (default var/bench/train-NAME)")
    ap.add_argument("--no-onnx", action="store_true", help="do not export model.onnx")
    ap.add_argument("--no-write", action="store_true", help="print only, leave docs/benchmarks.md alone")
    ap.add_argument("--report", action="store_true",
                    help="measure nothing: render the section again from bench/results/train.json and the result "
                         "files of this split in var/bench")
    args = ap.parse_args()
    if args.report:
        return finish(split_key_of(args), None, args)
    if args.score_attributes:
        return score_attributes(Path(args.score_attributes), args)
    if args.probe_pooling:
        return probe_pooling(Path(args.probe_pooling), args)

    import torch
    from fastai.torch_core import set_seed

    from roomclf.models.backbones import get_spec
    from roomclf.train.config import Recipe, TrainingError, parse_recipe
    from roomclf.train.data import TrainData, class_weights
    from roomclf.train.learner import build_dls, build_small_dls, fit, make_learner

    # the product's recipe: two knobs from their own options, any other from --recipe (as `roomclf train`)
    try:
        knobs = parse_recipe(args.recipe, Recipe(label_smoothing=args.label_smoothing, mixup=args.mixup))
    except TrainingError as exc:
        ap.error(str(exc))
    if args.threads:
        torch.set_num_threads(args.threads)

    data_dir = Path(args.data)
    root = data_dir / "listings"
    with open(data_dir / "labels.csv", newline="") as f:
        upstream = {r["path"]: r.get("source") or "-" for r in csv.DictReader(f)}

    saved = Path(args.from_saved) if args.from_saved else None
    prior = json.loads((saved / "result.json").read_text()) if saved else None
    if prior:   # score a saved run with its own recipe
        rec = prior["recipe"]
        args.name, args.backbone, args.image_size = prior["name"], rec["backbone"], rec["image_size"]
        knobs = replace(saved_knobs(rec), live_teacher=False)    # scoring only: no training, no teacher
    if knobs.attribute_loss_weight and (args.distill or knobs.mixup):
        ap.error("--recipe attribute_loss_weight: not with --distill or --mixup (photos without their own labels)")
    if not args.image_size:
        args.image_size = get_spec(args.backbone).train_size
    out = saved or Path(args.save or RESULTS / f"train-{args.name}")
    if not args.report:
        out.mkdir(parents=True, exist_ok=True)

    t0 = time.perf_counter()
    split = split_of(args, args.image_size)
    split_line = split_summary(split)      # the whole split; a run on part of TRAIN says so in its recipe
    split_key = split_key_of(args)
    pseudo = None
    if args.hand_labels or args.hand_picks:    # the labels-it-takes question: train on part of TRAIN only
        split["all_train"] = split["train"]
        if args.hand_picks:
            label_of = dict(split["train"])
            picked = Path(args.hand_picks).read_text().split()
            strangers = [p for p in picked if p not in label_of]
            if strangers:
                sys.exit(f"--hand-picks: {len(strangers)} of {len(picked)} photos are not TRAIN photos "
                         f"(e.g. {strangers[0]})")
            split["train"] = [(p, label_of[p]) for p in picked]
            args.hand_labels = len(picked)
        else:
            rng = np.random.default_rng(args.seed)
            split["train"] = [split["train"][i] for i in sorted(rng.choice(len(split["train"]), args.hand_labels,
                                                                            replace=False))]
        if args.pseudo:
            drawn = {p for p, _ in split["train"]}
            pseudo = add_pseudo_labels(root, split, [p for p, _ in split["all_train"] if p not in drawn],
                                       Path(args.pseudo), args.pseudo_precision)
    cleaned = drop_suspects(root, split, args.clean) if args.clean else []
    prep = time.perf_counter() - t0
    print(f"{split_line} ({prep:.0f}s)", flush=True)

    if args.ensemble:
        names = args.ensemble.split(",")
        out = RESULTS / f"train-{ensemble_name(names)}"
        before = json.loads((out / "result.json").read_text()) if (out / "result.json").is_file() else {}
        out.mkdir(parents=True, exist_ok=True)
        result = ensemble(names, root, split, upstream, args.test, not args.no_flip, out)
        result.update(split_key=split_key, split_line=split_line, load_end=os.getloadavg()[0])
        if not args.test and before.get("recipe", {}).get("combined"):   # a TUNE re-score keeps TEST and the note
            result.update({k: before[k] for k in ("test", "test_flip", "note") if k in before})
        (out / "result.json").write_text(json.dumps(result, indent=1))
        return finish(split_key, split_line, args)

    set_seed(args.seed, reproducible=True)
    spec = get_spec(args.backbone)
    data = TrainData(train=split["train"], valid=split["tune"])
    if args.distill and not prior:
        from roomclf.train.distill import teacher_outputs, with_teacher_targets

        photos = [p for p, _ in split["train"]]
        data = with_teacher_targets(data, teacher_outputs(args.distill, root, photos), photos)
    if knobs.attribute_loss_weight:
        data.attributes = multitask_targets(data_dir, split)
        print(f"multi-task: {sum(p in data.attributes for p, _ in data.train)} TRAIN photos carry attribute labels",
              flush=True)
    dls = build_dls(root, data, args.image_size, args.batch_size, spec.mean, spec.std, args.seed, args.workers,
                    recipe=knobs)
    weights = class_weights([c for _, c in data.train])
    learn = make_learner(dls, args.backbone, weights, pretrained=not (saved or args.resume), recipe=knobs,
                         soft=data.soft is not None)

    def history_rows(phase):
        # a student's metrics are its accuracy only (soft targets): no macro-F1 column per epoch
        return [[phase, i + 1, f"{v[0]:.3f}", f"{v[1]:.3f}", f"{v[2]:.4f}", f"{v[3]:.4f}" if len(v) > 3 else "-"]
                for i, v in enumerate(learn.recorder.values)]

    if prior:
        learn.model.load_state_dict(torch.load(saved / "roomnet.pt"))
        result = prior
    else:
        base_s, history = 0.0, []
        if args.resume:
            base = json.loads((Path(args.resume) / "result.json").read_text())
            learn.model.load_state_dict(torch.load(Path(args.resume) / "roomnet.pt"))
            base_s, history = base["times"]["train_total_s"], [list(h) for h in base["history"]]
        small = build_small_dls(root, data, args.batch_size, spec.mean, spec.std, args.seed, args.workers, knobs)
        t = time.perf_counter()
        teacher_file = data.teacher.path if data.teacher else None
        fit(learn, args.frozen_epochs, 0, args.lr, recipe=knobs, small_dls=small, teacher=teacher_file)
        frozen_total = time.perf_counter() - t
        history += history_rows("frozen") if args.frozen_epochs else []
        t = time.perf_counter()
        fit(learn, 0, args.epochs, args.lr, recipe=knobs, small_dls=small, teacher=teacher_file)
        unfrozen_total = time.perf_counter() - t
        history += history_rows("unfrozen" + (" (2nd cycle)" if args.resume else "")) if args.epochs else []
        recipe = {k: getattr(args, k) for k in ("backbone", "image_size", "frozen_epochs", "epochs", "batch_size",
                                                "lr", "label_smoothing", "mixup", "seed", "hand_labels", "clean")}
        recipe["knobs"] = args.recipe
        recipe["hand_picks"] = Path(args.hand_picks).name if args.hand_picks else None
        recipe["cleaned"] = len(cleaned)
        recipe["pseudo"] = pseudo
        recipe["resume"] = Path(args.resume).name if args.resume else None
        recipe["distill"] = Path(args.distill).name.removeprefix("train-") if args.distill else None
        result = {"name": args.name, "recipe": recipe, "split_key": split_key, "date": time.strftime("%Y-%m-%d %H:%M"),
                  "history": history,
                  "times": {"prep_s": prep,
                            "frozen_epoch_s": frozen_total / args.frozen_epochs if args.frozen_epochs else None,
                            "unfrozen_epoch_s": unfrozen_total / args.epochs if args.epochs else None,
                            "train_total_s": base_s + frozen_total + unfrozen_total}}
        net = learn.model.cpu().eval()
        torch.save(net.state_dict(), out / "roomnet.pt")

    t = time.perf_counter()
    probs, fprobs, y = probs_on(learn, split["tune"], flip=not args.no_flip)
    result["tune"] = scores(probs, y, split["tune"], upstream)
    print(f"TUNE accuracy {result['tune']['accuracy']:.4f}, macro-F1 {result['tune']['macro_f1']:.4f} "
          f"({time.perf_counter() - t:.0f}s)", flush=True)
    if fprobs is not None:
        result["tune_flip"] = scores(fprobs, y, split["tune"], upstream)
        print(f"TUNE accuracy with flip TTA {result['tune_flip']['accuracy']:.4f}", flush=True)
    if args.test:
        # flip TTA is reported on TEST only when it was better on TUNE (the choice is made there)
        flip_won = bool(result.get("tune_flip")) and result["tune_flip"]["accuracy"] > result["tune"]["accuracy"]
        probs, fprobs, y = probs_on(learn, split["test"], flip=flip_won)
        result["test"] = scores(probs, y, split["test"], upstream)
        print(f"TEST accuracy {result['test']['accuracy']:.4f}, macro-F1 {result['test']['macro_f1']:.4f}", flush=True)
        if flip_won:
            result["test_flip"] = scores(fprobs, y, split["test"], upstream)
            print(f"TEST accuracy with flip TTA {result['test_flip']['accuracy']:.4f}", flush=True)
    tags = None
    if args.attributes:
        t = time.perf_counter()
        result["tune_attributes"], tags = attribute_scores(learn.model.cpu().eval(), data_dir, split, args.image_size,
                                                          args.seed)
        print(f"{attribute_line(result['tune_attributes'])} ({time.perf_counter() - t:.0f}s)", flush=True)
    result["load_end"] = os.getloadavg()[0]
    result["split_line"] = split_line

    if not prior and not args.no_onnx:
        from roomclf.models.network import ExportNet
        from roomclf.models.onnx_file import export_onnx

        export_onnx(ExportNet(learn.model.cpu().eval(), tags.head if tags else None).eval(), out / "model.onnx",
                    {"input_size": args.image_size, "train_batches": split["batches"]["train"],
                     "valid_batches": split["batches"]["tune"], "val_accuracy": result["tune"]["accuracy"],
                     "val_macro_f1": result["tune"]["macro_f1"], "note": f"bench/bench_train.py {args.name}",
                     **({"attribute_thresholds": tags.thresholds} if tags else {})})
    (out / "result.json").write_text(json.dumps(result, indent=1))
    print(f"saved {out}", flush=True)
    finish(split_key, split_line, args)


def score_attributes(saved: Path, args) -> None:
    """``--score-attributes``: a saved run's attribute tags on TEST, kept in its result file, then the section."""
    result = json.loads((saved / "result.json").read_text())
    data_dir = Path(args.data)
    split = split_of(args, result["recipe"]["image_size"])
    t = time.perf_counter()
    result["test_attributes"] = attribute_scores_on_test(saved / "model.onnx", data_dir, split)
    print(f"TEST attributes of {result['name']} ({time.perf_counter() - t:.0f}s):", flush=True)
    print(attribute_table_on_test(result["test_attributes"]), flush=True)
    if args.limit:       # a smoke run: printed, nothing kept
        return
    (saved / "result.json").write_text(json.dumps(result, indent=1))
    finish(result["split_key"], None, args)


def split_of(args, image_size: int) -> dict:
    """The honest split of ``args``' batches (photos checked at ``image_size``), cut to ``--limit N`` photos
    per part, spread over it, for a smoke run."""
    split = honest_split(Path(args.data), args.train, args.tune, args.test_batches, backbone="efficientnet_lite0",
                         check_size=image_size)
    if args.limit:
        for k in ("train", "tune", "test"):
            split[k] = split[k][::max(1, len(split[k]) // args.limit)][:args.limit]
    return split


def probe_pooling(saved: Path, args) -> None:
    """``--probe-pooling RUN``: would a pooling that keeps small objects let the heads read the attributes
    better, without training the body again? The saved run's body (its roomnet.pt) is read with each pooling
    of ``POOLINGS`` (GeM at its initial exponent), and the linear attribute heads `roomclf train` fits on a
    body's features (``attribute_scores``; a head trained with the body is left out, it learnt one pooling)
    are scored on TUNE. Kept in the run's result file as ``pooling_probe``; a line under the table.
    ``--image-size`` reads the photos at another size than the run's (``pooling_probe_SIZE``): would a larger
    reading let small objects (a fireplace, a TV) show?"""
    import torch

    from roomclf.models.network import POOLINGS, RoomNet

    result = json.loads((saved / "result.json").read_text())
    rec, data_dir = result["recipe"], Path(args.data)
    size = args.image_size or rec["image_size"]
    other = None if size == rec["image_size"] else size           # a reading at another size than the run's
    sized = f"_{other}" if other else ""
    split = split_of(args, rec["image_size"])
    state = {k: v for k, v in torch.load(saved / "roomnet.pt").items()
             if not k.startswith(("pool.", "attribute_head."))}

    def body_with(pooling: str):
        net = RoomNet(rec["backbone"], pretrained=False, pooling=pooling)
        missing, unexpected = net.load_state_dict(state, strict=False)
        if unexpected or any(not k.startswith("pool.") for k in missing):
            sys.exit(f"{saved}: roomnet.pt does not fit {rec['backbone']} ({len(missing)} missing, "
                     f"{len(unexpected)} unexpected weights)")
        return net.eval()

    if args.test:        # the TUNE winner of a probe already kept: its heads again, exported, scored on TEST
        from roomclf.models.network import ExportNet
        from roomclf.models.onnx_file import export_onnx

        kept = result.get("pooling_probe" + sized) or sys.exit(f"{saved}: no pooling probe{at_size(other)} "
                                                               "kept yet (run without --test)")
        best = max(kept, key=lambda p: kept[p]["macro_f1"] or 0.0)
        net = body_with(best)
        found, tags = attribute_scores(net, data_dir, split, size, args.seed)
        path = export_onnx(ExportNet(net, tags.head), saved / f"attributes-{best}{sized}.onnx",
                           {"input_size": size, "attribute_thresholds": tags.thresholds,
                            "note": f"bench/bench_train.py --probe-pooling {saved.name}: attribute tags only"})
        result["pooling_probe_test" + sized] = {"pooling": best, **attribute_scores_on_test(path, data_dir, split)}
        print(attribute_table_on_test(result["pooling_probe_test" + sized]), flush=True)
    else:
        probe = {}
        for pooling in POOLINGS:
            t = time.perf_counter()
            probe[pooling], _ = attribute_scores(body_with(pooling), data_dir, split, size, args.seed)
            print(f"{pooling}: {attribute_line(probe[pooling])} ({time.perf_counter() - t:.0f}s)", flush=True)
        if args.limit:       # a smoke run: printed, nothing kept
            return print(pooling_line(probe, other))
        result["pooling_probe" + sized] = probe
    (saved / "result.json").write_text(json.dumps(result, indent=1))
    finish(result["split_key"], None, args)


def pooling_line(probe: dict, size: int | None = None) -> str:
    """``probe_pooling``'s figures in one line: TUNE macro-F1, fireplace AUC and TV AUC per pooling."""
    def num(v):
        return "-" if v is None else f"{v:.3f}"

    return (f"its body read with each pooling{at_size(size)}, linear attribute heads fitted on TRAIN "
            f"(`--probe-pooling{f' --image-size {size}' if size else ''}`), TUNE "
            "macro-F1 / fireplace AUC / TV AUC: " + "; ".join(
                f"{p} {num(f['macro_f1'])} / {num(f['keys'].get('living_room.fireplace', {}).get('auc'))} / "
                f"{num(f['keys'].get('living_room.tv', {}).get('auc'))}" for p, f in probe.items()))


def split_key_of(args) -> str:
    """What the saved results of one split share (the batches of each part, and --limit)."""
    return f"{args.train}|{args.tune}|{args.test_batches}|{args.limit}"


def section_result(split_key: str, split_line: str | None) -> dict:
    """The section's data: the runs ``bench/results/train.json`` holds for this split, each result file of
    var/bench of this split (a run measured here) replacing the run of its name in place or joining after
    them (oldest first); ``split_line`` None: the one saved. The measurements made before the split was
    fixed (``earlier``) stay whatever the split."""
    kept = load_result(SECTION) or {}
    same = kept.get("split_key") == split_key
    runs = {r["name"]: r for r in kept.get("runs", [])} if same else {}
    runs.update({r["name"]: r for r in load_results(split_key)})
    ordered = list(runs.values())
    if split_line is None:
        split_line = kept.get("split_line") if same else None
        split_line = split_line or next((r["split_line"] for r in reversed(ordered) if r.get("split_line")), "")
    return {"split_key": split_key, "split_line": split_line, "runs": ordered, "earlier": kept.get("earlier", [])}


def finish(split_key: str, split_line: str | None, args) -> None:
    """Keep this split's results in bench/results/train.json and render the section from them; write both
    unless told not to (or for a --limit smoke run)."""
    data = section_result(split_key, split_line)
    if not data["runs"]:
        sys.exit(f"no saved results of the split {split_key} (bench/results/{SECTION}.json, {RESULTS})")
    data = json.loads(json.dumps(data))       # render what the JSON file holds
    text = render_result(data)
    print(text)
    if not args.no_write and not args.limit:
        save_result(SECTION, data)
        write_section(SECTION, text)


if __name__ == "__main__":
    main()
