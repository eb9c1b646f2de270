"""How good is the zero-shot cold start, and how was its ImageNet-concept -> room mapping chosen?

Fits the mapping with ``roomclf.labels.zeroshot.fit_mapping`` on batch_02 + batch_03
(starting from the hand-written ``SEED_MAPPING``), then reports the accuracy of
the seed, the fitted and the shipped ``DEFAULT_MAPPING`` against
../shared/data/labels.csv on every batch, batch_01 being the held-out one.
Embeddings come from the cache ($ROOMCLF_EMBEDDING_DIR or the working-data
folder) and are computed where missing.

The result is kept in bench/results/zeroshot.json (committed) and rendered into the `zeroshot`
section of docs/benchmarks.md (``--report`` renders it again without measuring).
Run: .venv/bin/python bench/bench_zeroshot.py [--fit batch_02,batch_03] [--held-out batch_01] [--no-write]
     .venv/bin/python bench/bench_zeroshot.py --report [--no-write]
"""
from __future__ import annotations

import argparse
import csv
import datetime
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import publish, report_saved, table

SECTION = "zeroshot"


def imagenet_probs(root: Path, batch: str, embedder) -> tuple[list[str], np.ndarray]:
    from roomclf.corpus import discover
    from roomclf.labels.zeroshot import softmax
    from roomclf.models.embeddings import embed

    emb = embed(root, discover(root, batch).paths, embedder.spec.name, normalize=False, embedder=embedder)
    return emb.paths, softmax(embedder.imagenet_logits(emb.vectors))


def render(result: dict) -> str:
    """The `zeroshot` section of docs/benchmarks.md from a result ``main`` kept (bench/results/zeroshot.json)."""
    fit, held = result["fit"], result["held_out"]
    role = {**{b: "fit" for b in fit}, **{b: "held out" for b in held}}
    columns = list(dict.fromkeys(fit + held))
    rows = [[m["name"], m["concepts"], *(f"{m['accuracy'][b]:.1%}" for b in columns)] for m in result["mappings"]]
    recall = [[r["class"], r["photos"], f"{r['recall']:.0%}"] for r in result["recall"]]
    when = f" Run {result['date']}." if result.get("date") else ""
    return (f"## Zero-shot prelabel (cold start) — `bench/bench_zeroshot.py`\n\n"
            f"{result['backbone']} ImageNet head over cached raw features; a room's score is the sum of its concepts' "
            f"ImageNet probabilities. The mapping is chosen by greedy search (add, move to the room whose photos show "
            f"it most, or drop one concept at a time, keep the best change) on {', '.join(fit)} "
            f"({result['fit_s']:.1f} s, {result['fit_accuracy']:.1%} there) and reported on {', '.join(held)}, which "
            f"it never saw. Refit reproduces the shipped mapping: {'yes' if result['refit_same'] else 'no'}.{when}\n\n"
            + table(["mapping", "concepts", *(f"{b} ({role[b]})" for b in columns)], rows)
            + f"\n\nPer class, shipped mapping, held out ({', '.join(held)}):\n\n"
            + table(["class", "photos", "recall"], recall)
            + "\n\nShipped mapping: " + "; ".join(f"{r}: {', '.join(c)}" for r, c in result["shipped"].items()) + ".")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fit", default="batch_02,batch_03", help="batches the mapping is fitted on")
    ap.add_argument("--held-out", default="batch_01", help="held-out batches to report")
    ap.add_argument("--backbone", default="efficientnet_lite0")
    ap.add_argument("--no-write", action="store_true", help="print only; leave the result file and docs alone")
    ap.add_argument("--report", action="store_true", help=f"render the section again from bench/results/{SECTION}.json")
    args = ap.parse_args()
    if args.report:
        return report_saved(SECTION, render, write=not args.no_write)

    from roomclf.labels.zeroshot import (
        DEFAULT_MAPPING,
        SEED_MAPPING,
        accuracy,
        fit_mapping,
        room_probs,
    )
    from roomclf.models.backbones import imagenet_classes
    from roomclf.models.embeddings import Embedder
    from roomclf.settings import data_root
    from roomclf.taxonomy import CLASSES

    root = data_root()
    with open(root.parent / "labels.csv", newline="") as f:
        truth = {r["path"]: r["label"] for r in csv.DictReader(f)}
    names, embedder = imagenet_classes(), Embedder(args.backbone)
    fit_b, rep_b = args.fit.split(","), args.held_out.split(",")
    data = {b: imagenet_probs(root, b, embedder) for b in fit_b + rep_b}
    labels = {b: np.array([truth.get(p, "") for p in data[b][0]]) for b in data}

    t0 = time.perf_counter()
    fitted, fit_acc = fit_mapping(np.concatenate([data[b][1] for b in fit_b]),
                                  np.concatenate([labels[b] for b in fit_b]), names, start=SEED_MAPPING)
    fit_s = time.perf_counter() - t0
    mappings = {"seed (hand-written)": SEED_MAPPING, "fitted now": fitted,
                "shipped DEFAULT_MAPPING": DEFAULT_MAPPING}
    scores = [{"name": name, "concepts": sum(map(len, m.values())),
               "accuracy": {b: float(accuracy(data[b][1], labels[b], names, m)) for b in data}}
              for name, m in mappings.items()]
    # per-class recall of the shipped mapping on the held-out batches
    probs = np.concatenate([data[b][1] for b in rep_b])
    gold = np.concatenate([labels[b] for b in rep_b])
    pred = np.asarray(CLASSES)[room_probs(probs, names, DEFAULT_MAPPING).argmax(axis=1)]
    recall = [{"class": c, "photos": int((gold == c).sum()), "recall": float((pred[gold == c] == c).mean())}
              for c in CLASSES if (gold == c).any()]
    same = all(sorted(fitted[r]) == sorted(DEFAULT_MAPPING[r]) for r in CLASSES)
    result = {"backbone": args.backbone, "fit": fit_b, "held_out": rep_b, "fit_s": fit_s,
              "fit_accuracy": float(fit_acc), "refit_same": same, "date": datetime.date.today().isoformat(),
              "mappings": scores, "recall": recall, "shipped": {r: list(c) for r, c in DEFAULT_MAPPING.items()}}
    publish(SECTION, result, render, write=not args.no_write)


if __name__ == "__main__":
    main()
