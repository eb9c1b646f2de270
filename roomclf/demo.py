"""The end-to-end demo: the whole workflow on the sample corpus, on defaults.

prelabel the first batch cold-start -> "manual" labels (the demo stands in for
a person by importing ground truth from the corpus's label file, and says so),
with the attribute check-boxes of the photos it labels (from ``attributes.csv``
beside ``labels.csv``) -> propagate over the training batches -> train (room
classes and attribute heads) with validation on a different batch -> register
(fast.ai + ONNX) -> infer-all over every batch, tags included -> summary.

The batches come from what the corpus holds (``plan_demo``): up to three
labelled batches to train on, the next one to validate on. A corpus whose
labels cannot train all seven classes stops the demo with a one-line
``DemoError`` naming the missing classes.

The corpus is ``$ROOMCLF_SAMPLE_SOURCE`` used in place (a folder, or an
``s3://bucket/prefix`` read through ``roomclf.storage``: the photos, ``labels.csv``
and ``attributes.csv``), else the sample it downloads (``roomclf.sample.download``).

Each finished step is recorded in ``$ROOMCLF_HOME/demo/state.json`` with its
inputs, so a rerun reuses what is done (``fresh=True`` redoes everything).
"""
from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from roomclf import settings, storage
from roomclf.errors import RoomclfError
from roomclf.labels.sources import HUMAN_SOURCES, LabelSource
from roomclf.metrics import binary_scores
from roomclf.models.attribute_scores import SCORES_KEY, key_line, score_lines
from roomclf.models.backbones import get_spec
from roomclf.propagate.defaults import PROPAGATION
from roomclf.taxonomy import CLASSES, UnknownName, attribute_key
from roomclf.tracking.experiments import ui_link
from roomclf.train.config import DEFAULT_SOURCES, TrainConfig

# The demo's configuration, in one place.
MAX_TRAIN_BATCHES = 3  # train on up to three labelled batches, validate on the next one
# What it trains: roomclf train's defaults (TrainConfig) except the network and the unfrozen epochs.
BACKBONE = "efficientnet_lite0"  # the fastest of the registry: the demo trains within minutes on a laptop
IMAGE_SIZE = get_spec(BACKBONE).train_size   # the backbone's training size: smaller inputs cost accuracy (measured)
FROZEN_EPOCHS = TrainConfig.frozen_epochs
EPOCHS = 1            # fewer than TrainConfig's, to stay within minutes
LR = TrainConfig.lr   # the training bench's rate; lr_find would add a pass of its own to the demo
MIN_PER_CLASS = 5     # the manual pick holds at least this many photos of each class (when there are)
DEMO_WHO = "demo"
VALID_WHO = "demo (validation labels)"
SOURCES = DEFAULT_SOURCES   # the label sources training counts (TrainConfig.sources)
FOCUS_KEYS = ("living_room.tv",)   # the summary says of each whether it is emitted, and if not, why


class DemoError(RoomclfError):
    """A corpus the demo cannot run on (too few batches, classes without labelled photos)."""


@dataclass(frozen=True)
class DemoPlan:
    manual: list[str]     # batches the "manual" room labels are drawn from
    train: list[str]      # propagated over and trained on
    valid: list[str]      # validated on (never trained on)
    batches: int          # labelled batches the corpus holds

    def span(self, which: str) -> str:
        names = getattr(self, which)
        return names[0] if len(names) == 1 else f"{names[0]}–{names[-1]}" if _consecutive(names) else ", ".join(names)


def _consecutive(names: list[str]) -> bool:
    try:
        nums = [int(n.rsplit("_", 1)[1]) for n in names]
    except (IndexError, ValueError):
        return False
    return nums == list(range(nums[0], nums[0] + len(nums)))


def _classes_in(truth: dict[str, str], batches: list[str]) -> set[str]:
    keep = set(batches)
    return {lab for p, lab in truth.items() if p.split("/", 1)[0] in keep}


def plan_demo(present: set[str], truth: dict[str, str], max_train: int = MAX_TRAIN_BATCHES) -> DemoPlan:
    """Which batches the demo labels, trains and validates on, from the labelled photos the corpus holds.

    ``present``: the photos of the corpus (relative paths); ``truth``: path -> class from labels.csv.
    Trains on the first ``max_train`` labelled batches (more if they lack a class), validates on the
    next one; the manual labels come from the first batch (more if it lacks a class). Raises
    ``DemoError`` when the labels cannot train every class or there is no batch left to validate on.
    """
    labelled = {p: lab for p, lab in truth.items() if p in present}
    batches = sorted({p.split("/", 1)[0] for p in labelled})
    have = _classes_in(labelled, batches)
    missing = [c for c in CLASSES if c not in have]
    if missing:
        raise DemoError(f"this corpus cannot train all {len(CLASSES)} classes: its labels.csv has no photos of "
                        f"{', '.join(missing)} (it has {', '.join(c for c in CLASSES if c in have) or 'none'})")
    if len(batches) < 2:
        raise DemoError(f"the demo validates on a batch it did not train on, so it needs at least 2 labelled batches; "
                        f"this corpus has {len(batches)} ({', '.join(batches) or 'none'})")
    n_train = min(max_train, len(batches) - 1)
    while n_train < len(batches) - 1 and len(_classes_in(labelled, batches[:n_train])) < len(CLASSES):
        n_train += 1
    lacking = [c for c in CLASSES if c not in _classes_in(labelled, batches[:n_train])]
    if lacking:
        raise DemoError(f"this corpus cannot train all {len(CLASSES)} classes while keeping a batch apart to validate on: "
                        f"{', '.join(batches[:n_train])} have no photos of {', '.join(lacking)}")
    n_manual = 1
    while len(_classes_in(labelled, batches[:n_manual])) < len(CLASSES):
        n_manual += 1
    return DemoPlan(batches[:n_manual], batches[:n_train], [batches[n_train]], len(batches))


def corpus_plan(root: Path | str, labels_csv: Path | str) -> tuple[DemoPlan, dict[str, str], set[str]]:
    """``plan_demo`` of the corpus at ``root`` (a folder or an s3:// URI) with its labels file: (the plan,
    path -> class of the labelled photos it holds, every photo it holds)."""
    from roomclf.corpus import discover
    from roomclf.labels.prelabel import read_ground_truth

    truth = read_ground_truth(labels_csv)
    present = set(discover(root).paths)
    plan = plan_demo(present, truth)
    return plan, {p: lab for p, lab in truth.items() if p in present}, present


def pick_manual(truth: dict[str, str], batches: list[str], n: int, seed: int = 0) -> list[tuple[str, str]]:
    """n photos of ``batches`` with their true class: at least MIN_PER_CLASS of each class where
    there are that many, the rest at random; deterministic."""
    rng = random.Random(seed)
    keep = set(batches)
    rows = sorted((p, lab) for p, lab in truth.items() if p.split("/", 1)[0] in keep)
    rng.shuffle(rows)
    chosen: dict[str, str] = {}
    for c in CLASSES:
        for p, lab in [r for r in rows if r[1] == c][:MIN_PER_CLASS]:
            chosen[p] = lab
    for p, lab in rows:
        if len(chosen) >= n:
            break
        chosen.setdefault(p, lab)
    return sorted(chosen.items())


def attribute_file(labels_csv: Path | str) -> Path | str | None:
    """The corpus's attribute labels: ``attributes.csv`` beside ``labels.csv`` (a file, or an object beside an
    s3:// one), when there is one."""
    path = storage.join(storage.parent(labels_csv), "attributes.csv")
    return path if storage.is_file(path) else None


def attribute_pass(attrs_csv: Path | str, truth: dict[str, str], batches: list[str]) -> list[str]:
    """The photos of ``batches`` that attributes.csv has evidence for (under the default evidence
    policy) about an attribute of their own class: the ones a person ticks boxes on."""
    import csv

    from roomclf.train.attributes import select_evidence

    keep = set(batches)
    with storage.open_text(attrs_csv) as f:
        rows = [r for r in csv.DictReader(f) if (r.get("path") or "").strip().split("/", 1)[0] in keep]
    kept, _ = select_evidence(rows)
    found = set()
    for r in kept:
        path = r["path"].strip()
        if path not in truth:
            continue
        try:
            attribute_key(truth[path], r.get("attribute") or "")
        except UnknownName:
            continue
        found.add(path)
    return sorted(found)


def _state_file() -> Path:
    d = settings.home() / "demo"
    d.mkdir(parents=True, exist_ok=True)
    return d / "state.json"


class Steps:
    """Which demo steps are done (with what inputs), persisted atomically after each step."""

    def __init__(self, fresh: bool):
        self.path = _state_file()
        self.done: dict = {}
        if not fresh and self.path.is_file():
            try:
                self.done = json.loads(self.path.read_text())
            except ValueError:          # a damaged state file: redo everything
                self.done = {}

    def get(self, name: str, inputs: dict) -> dict | None:
        rec = self.done.get(name)
        return rec["result"] if rec and rec.get("inputs") == inputs else None

    def put(self, name: str, inputs: dict, result: dict) -> dict:
        self.done[name] = {"inputs": inputs, "result": result, "at": time.time()}
        tmp = self.path.with_name(f".{self.path.name}.tmp{os.getpid()}")
        tmp.write_text(json.dumps(self.done, indent=1))
        os.replace(tmp, self.path)
        return result


def _propagation_truth(store, truth: dict[str, str], batches: list[str]) -> dict:
    """Precision/coverage of the propagated labels against the corpus's ground truth."""
    prop = store.labels([LabelSource.PROPAGATED])
    manual = store.labels(PROPAGATION.seed_sources)     # the labels propagation lends (never replaced)
    candidates = [p for p, lab in truth.items() if p.split("/", 1)[0] in batches and p not in manual]
    hits = [p for p in candidates if p in prop]
    right = [prop[p].label == truth[p] for p in hits]
    return {"precision": binary_scores(right, [True] * len(hits))["precision"],
            "coverage": len(hits) / len(candidates) if candidates else 0.0,
            "propagated": len(hits), "candidates": len(candidates)}


def _forget_demo_labels(store) -> int:
    """Remove the labels and attribute tags an earlier demo run wrote (another corpus or plan)."""
    mine = [(r.path, r.source) for r in store.rows(HUMAN_SOURCES) if r.who in (DEMO_WHO, VALID_WHO)]
    with store.transaction() as db:
        for path, source in mine:
            store.clear_source(source, [path], db=db)
            store.delete_attributes(path, source, DEMO_WHO, db=db)
    return len(mine)


def _file_stamp(path: Path | str | None) -> list | None:
    """A step input that changes with the file (a local one or an s3:// object): where, size, modification time."""
    if path is None:
        return None
    size, mtime_ns = storage.cache_key(path)
    return [str(path), size, mtime_ns]


def tag_summary(out: Path, thresholds: dict[str, float | None], batches: list[str] | None = None) -> dict:
    """What infer-all wrote about tags over ``batches`` (default: every batch in ``out``): per attribute,
    whether the model emits it and how many photos got it; photos and listings tagged, and the listing with
    the most tags. How good each tag is comes from the model version (``roomclf.models.attribute_scores``),
    not from here."""
    from roomclf.infer.output import read_listings, read_photos
    from roomclf.taxonomy import ATTRIBUTE_KEYS

    photos, listings = read_photos(out, batches), read_listings(out, batches)
    tagged: dict[str, set[str]] = {}
    if not photos.empty:
        ok = photos[photos["error"].isna()]
        for path, label, tags in zip(ok["path"], ok["label"], ok["tags"]):
            for t in (tags if tags is not None else ()):
                tagged.setdefault(f"{label}.{t}", set()).add(path)
    per_key = {key: {"trained": thresholds.get(key) is not None, "tagged": len(tagged.get(key, ()))}
               for key in ATTRIBUTE_KEYS}
    with_tags = listings[listings["tags"].map(lambda t: t is not None and len(t) > 0)] if not listings.empty else listings
    example = None
    if len(with_tags):
        best = max(range(len(with_tags)), key=lambda i: (len(with_tags["tags"].iloc[i]), -i))
        row = with_tags.iloc[best]
        example = {"listing": f"{row['batch']}/{row['listing']}", "tags": list(row["tags"])}
    return {"per_key": per_key, "photos_tagged": len(set().union(*tagged.values())),
            "listings": len(listings), "listings_tagged": len(with_tags), "example": example}


def format_tag_summary(summary: dict, scores: dict[str, dict] | None, valid_span: str) -> list[str]:
    """The summary's tag lines: photos and listings tagged, each emitted attribute with the held-out figures
    and label counts its model version carries (``scores``, from the ONNX file) and the photos infer-all
    tagged with it, the attributes never emitted, and one line on each of ``FOCUS_KEYS``."""
    per_key = summary["per_key"]
    trained = [k for k, e in per_key.items() if e["trained"]]
    lines = [f"attribute tags: {summary['photos_tagged']} photos tagged; {summary['listings_tagged']} of "
             f"{summary['listings']} listings carry tags"
             + (f" (e.g. {summary['example']['listing']}: {', '.join(summary['example']['tags'])})"
                if summary["example"] else "")]
    if trained:
        lines += score_lines(scores, f"validation {valid_span}")
        lines.append("  photos infer-all tagged: " + ", ".join(f"{k} {per_key[k]['tagged']}" for k in trained))
    else:
        lines.append("  no attribute was trained (too few labels): the model emits no tags")
    untrained = [k for k, e in per_key.items() if not e["trained"]]
    if untrained:
        lines.append(f"  untrained, never emitted ({len(untrained)}): {', '.join(untrained)}")
    lines += [f"  {key_line(scores, key)}" for key in FOCUS_KEYS]
    return lines


def run_demo(manual_labels: int = 300, fresh: bool = False, echo: Callable[[str], None] = print) -> dict:
    """The seven steps, each reused when its inputs have not changed since the last run."""
    from roomclf.labels.store import LabelStore
    from roomclf.sample.download import get_sample_corpus

    t_start = time.perf_counter()
    steps = Steps(fresh)
    home = settings.home()
    store = LabelStore()

    def head(n: int, text: str) -> None:
        echo(f"\n[{n}/7] {text}  ({time.perf_counter() - t_start:.0f}s)")

    head(1, "sample corpus")
    corpus = get_sample_corpus(home / "sample", echo=echo)
    root, labels_csv = storage.resolve(corpus.root), storage.resolve(corpus.labels_csv)   # a Path or an s3:// URI
    plan, truth, present = corpus_plan(root, labels_csv)
    attrs_csv = attribute_file(labels_csv)
    echo(f"plan ({plan.batches} labelled batches): manual labels from {plan.span('manual')}, propagate over and "
         f"train on {plan.span('train')}, validate on {plan.span('valid')}")
    base = {"root": str(root), "plan": asdict(plan)}

    head(2, f"prelabel {plan.span('manual')} (cold start: zero-shot from the ImageNet backbone)")
    pre = _prelabel_step(steps, base, store, root, plan, labels_csv, echo)
    head(3, f"label: up to {manual_labels} 'manual' labels of {plan.span('manual')}, with attribute check-boxes")
    inputs = {**base, "n": manual_labels, "attributes": _file_stamp(attrs_csv)}
    labelled = _label_step(steps, inputs, store, root, plan, truth, attrs_csv, manual_labels, echo)
    head(4, f"propagate over {plan.span('train')} (annoy nearest neighbours)")
    prop = _propagate_step(steps, inputs, store, root, plan, truth, echo)
    head(5, f"train on {plan.span('train')}, validate on {plan.span('valid')}; attribute heads; "
            "register fast.ai + ONNX models")
    trained = _train_step(steps, inputs, store, root, plan, echo)

    from roomclf.models.registry import ONNX_NAME

    head(6, f"infer-all: the model just trained ({ONNX_NAME} v{trained['versions'][ONNX_NAME]}) over every batch "
            "with Ray Data: room classes and attribute tags")
    out = home / "infer"
    summary, tags = _infer_step(root, out, trained, sorted({p.split("/", 1)[0] for p in present}), echo)

    head(7, "summary")
    lines = _summary_lines(plan, pre, prop, trained, summary, tags, out, store, time.perf_counter() - t_start,
                           root)
    for line in lines:
        echo(("  " + line) if line else "")
    return {"plan": asdict(plan), "train": trained, "propagate": prop, "prelabel": pre, "labels": labelled,
            "infer_photos": summary.photos, "tags": tags}


def _prelabel_step(steps: Steps, base: dict, store, root: Path | str, plan: DemoPlan, labels_csv: Path | str,
                   echo) -> dict:
    pre = steps.get("prelabel", base)
    if pre is None:
        from roomclf.labels.prelabel import prelabel
        report = prelabel(store, root, plan.manual, mode="zeroshot", ground_truth=labels_csv)
        pre = steps.put("prelabel", base, {"accuracy": report.accuracy, "written": report.written,
                                           "summary": report.summary()})
    echo(pre["summary"])
    return pre


def _label_step(steps: Steps, inputs: dict, store, root: Path | str, plan: DemoPlan, truth: dict[str, str],
                attrs_csv: Path | str | None, manual_labels: int, echo) -> dict:
    """Ground truth stands in for the person: room labels of a sample, their attribute boxes, validation labels."""
    echo("(the demo stands in for a person in the browser: it imports ground truth from the corpus's labels.csv"
         + (" and the attribute check-boxes of the photos it labels from attributes.csv)" if attrs_csv else
            "; there is no attributes.csv beside it, so no attribute check-boxes and no tags)"))
    labelled = steps.get("manual", inputs)
    if labelled is None:
        from roomclf.train.attributes import DEFAULT_EVIDENCE, import_attributes

        forgotten = _forget_demo_labels(store)
        picked = dict(pick_manual(truth, plan.manual, manual_labels))
        boxes = attribute_pass(attrs_csv, truth, plan.train) if attrs_csv else []
        for p in boxes:                # a person ticking boxes on a photo also labels its room
            picked.setdefault(p, truth[p])
        store.set_labels(sorted(picked.items()), LabelSource.MANUAL, who=DEMO_WHO)
        valid = [(p, lab) for p, lab in sorted(truth.items()) if p.split("/", 1)[0] in plan.valid]
        store.set_labels(valid, LabelSource.IMPORTED, who=VALID_WHO)
        result = {"manual": len(picked), "attribute_photos": len(boxes), "validation": len(valid),
                  "forgotten": forgotten, "evidence": DEFAULT_EVIDENCE}
        if attrs_csv:
            rep = import_attributes(store, attrs_csv, root, source=LabelSource.MANUAL, who=DEMO_WHO, paths=boxes)
            vrep = import_attributes(store, attrs_csv, root, source=LabelSource.IMPORTED, who=VALID_WHO,
                                     paths=[p for p, _ in valid])
            result.update({"attribute_labels": rep.added, "valid_attribute_labels": vrep.added,
                           "dropped_zeros": rep.dropped_zeros})
        labelled = steps.put("manual", inputs, result)
    echo(f"{labelled['manual']} manual labels ({labelled['attribute_photos']} of them photos of {plan.span('train')} "
         f"with attribute check-boxes: {labelled.get('attribute_labels', 0)} attribute labels, evidence policy "
         f"'{labelled['evidence']}'); validation labels of {plan.span('valid')} imported "
         f"({labelled['validation']} photos, {labelled.get('valid_attribute_labels', 0)} attribute labels)")
    return labelled


def _propagate_step(steps: Steps, inputs: dict, store, root: Path | str, plan: DemoPlan, truth: dict[str, str],
                    echo) -> dict:
    prop = steps.get("propagate", inputs)
    if prop is None:
        from roomclf.propagate.run import run_propagation
        result = run_propagation(root, plan.train, store=store, echo=echo)
        measured = _propagation_truth(store, truth, plan.train)
        prop = steps.put("propagate", inputs, {"cv_precision": result.cv_precision, "cv_coverage": result.cv_coverage,
                                               "accepted": result.accepted, "suspects": len(result.suspects),
                                               "truth": measured, "run_id": result.run_id})
    t = prop["truth"]
    echo(f"{prop['accepted']} labels propagated: precision {t['precision']:.1%} at coverage {t['coverage']:.1%} "
         f"against ground truth (cross-validated estimate {prop['cv_precision']:.1%} / {prop['cv_coverage']:.1%})")
    return prop


def _train_step(steps: Steps, inputs: dict, store, root: Path | str, plan: DemoPlan, echo) -> dict:
    train_inputs = {**inputs, "backbone": BACKBONE, "size": IMAGE_SIZE, "epochs": [FROZEN_EPOCHS, EPOCHS], "lr": LR}
    trained = steps.get("train", train_inputs)
    if trained is None:
        from roomclf.train.run import run_training
        cfg = TrainConfig(data=str(root), train_batches=list(plan.train), valid_batches=list(plan.valid),
                          sources=SOURCES, backbone=BACKBONE, image_size=IMAGE_SIZE, frozen_epochs=FROZEN_EPOCHS,
                          epochs=EPOCHS, lr=LR, run_name="demo")
        result = run_training(cfg, store=store, echo=echo)
        trained = steps.put("train", train_inputs, {"run_id": result.run_id, "metrics": result.metrics,
                                                    "versions": result.versions, "alias": result.alias})
    m = trained["metrics"]
    echo(f"validation accuracy {m.get('val_accuracy', float('nan')):.1%}, macro-F1 {m.get('val_macro_f1', float('nan')):.3f}; "
         f"registered {', '.join(f'{k} v{v}' for k, v in trained['versions'].items())} ({trained['alias']})")
    return trained


def _infer_step(root: Path | str, out: Path, trained: dict, batches: list[str], echo):
    """infer-all with the version just trained (so its tags show even if the gate kept an older champion)."""
    from roomclf.infer.run import infer_all, resolve_model
    from roomclf.models.onnx_file import OnnxModel
    from roomclf.models.registry import ONNX_NAME

    model_uri = f"models:/{ONNX_NAME}/{trained['versions'][ONNX_NAME]}"
    summary = infer_all(root, out, batches="all", model=model_uri, engine="ray")
    rate = summary.photos_per_s
    echo(f"{summary.photos} photos, {summary.predictions} predictions, {summary.errors} errors, "
         f"{summary.skipped} skipped" + (f", {rate:.1f} photos/s" if summary.photos else "")
         + (f"; {len(summary.batches_skipped)} batches already done" if summary.batches_skipped else ""))
    model = OnnxModel(resolve_model(model_uri).path)
    tags = tag_summary(out, model.thresholds, batches)
    return summary, {**tags, "scores": model.meta.get(SCORES_KEY)}     # the figures the version carries


def _summary_lines(plan: DemoPlan, pre: dict, prop: dict, trained: dict, summary, tags: dict, out: Path, store,
                   elapsed_s: float, root: Path | str) -> list[str]:
    """What the demo reached, and the command that shows each result (``--data`` where the corpus is
    not where the commands look by default)."""
    m, t = trained["metrics"], prop["truth"]
    data = "" if storage.resolve(root) == settings.data_root() else f" --data {_relative(root)}"
    per_class = {k[len("val_f1."):]: v for k, v in m.items() if k.startswith("val_f1.")}
    rel_out = _relative(out)
    label_batch = plan.train[1] if len(plan.train) > 1 else plan.train[0]
    rate = summary.photos_per_s
    return [
        f"validation accuracy ({plan.span('valid')}): {m.get('val_accuracy', float('nan')):.1%}   macro-F1: {m.get('val_macro_f1', float('nan')):.3f}",
        "per-class F1: " + ", ".join(f"{c} {v:.2f}" for c, v in per_class.items()),
        f"cold-start prelabel accuracy on {plan.span('manual')}: {pre['accuracy']:.1%}" if pre.get("accuracy") is not None else "",
        (f"propagation: precision {t['precision']:.1%}, coverage {t['coverage']:.1%} ({prop['accepted']} labels, "
         f"{prop['suspects']} suspect labels flagged)"),
        *format_tag_summary(tags, tags.get("scores"), plan.span("valid")),
        f"infer-all: {summary.photos} photos this run" + (f" at {rate:.1f} photos/s" if summary.photos else " (all batches reused)"),
        f"total time: {elapsed_s:.0f}s",
        "",
        "look at each result (with the project's environment on PATH: `source .venv/bin/activate`):",
        f"  runs, metrics, plots, registered models:  roomclf ui   then open {ui_link('http://127.0.0.1:5000')} "
        f"(experiments roomclf-train and roomclf-propagate; this training run: {trained['run_id']})",
        "  model versions, aliases, tags they emit:   roomclf models",
        f"  per-photo classes and tags:               {rel_out}/photos/<batch>.parquet",
        f"  per-listing rooms, tags and cover photo:  {rel_out}/listings/<batch>.parquet",
        f"      python -c \"import pandas as pd; print(pd.read_parquet('{rel_out}/listings').head())\"",
        f"  labelling app (review, suspects, tags):   roomclf label --batch {label_batch}{data}   then open http://127.0.0.1:8000",
        f"  label counts per source and class:        roomclf stats   (label store: {_relative(store.path)})",
        "  classify one photo over HTTP:             roomclf serve --port 8080   then   "
        "curl -F file=@photo.jpg http://127.0.0.1:8080/predict",
    ]


def _relative(path: Path | str) -> str:
    """``path`` relative to the working directory when it lies below it (shorter to copy), else as is
    (an s3:// URI always)."""
    if storage.is_uri(path):
        return path
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)
