"""How good is the zero-shot cold start, and how was its ImageNet-concept -> room mapping chosen?

Fits the mapping with ``roomclf.labels.zeroshot.fit_mapping`` on batch_02 + batch_03
(starting from the hand-written ``SEED_MAPPING``), then reports the accuracy of
the seed, the fitted and the shipped ``DEFAULT_MAPPING`` against
../shared/data/labels.csv on every batch, batch_01 being the held-out one.
Embeddings come from the cache ($ROOMCLF_EMBEDDING_DIR or the working-data
folder) and are computed where missing.

Prints a table and writes it into docs/benchmarks.md (section `zeroshot`).
Run: .venv/bin/python bench/bench_zeroshot.py [--fit batch_02,batch_03] [--report batch_01]
"""
from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import write_section


def imagenet_probs(root: Path, batch: str, embedder) -> tuple[list[str], np.ndarray]:
    from roomclf.corpus import discover
    from roomclf.labels.zeroshot import softmax
    from roomclf.models.embeddings import embed

    emb = embed(root, discover(root, batch).paths, embedder.spec.name, normalize=False, embedder=embedder)
    return emb.paths, softmax(embedder.imagenet_logits(emb.vectors))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fit", default="batch_02,batch_03", help="batches the mapping is fitted on")
    ap.add_argument("--report", default="batch_01", help="held-out batches to report")
    ap.add_argument("--backbone", default="efficientnet_lite0")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()

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
    fit_b, rep_b = args.fit.split(","), args.report.split(",")
    data = {b: imagenet_probs(root, b, embedder) for b in fit_b + rep_b}
    labels = {b: np.array([truth.get(p, "") for p in data[b][0]]) for b in data}

    t0 = time.perf_counter()
    fitted, fit_acc = fit_mapping(np.concatenate([data[b][1] for b in fit_b]),
                                  np.concatenate([labels[b] for b in fit_b]), names, start=SEED_MAPPING)
    fit_s = time.perf_counter() - t0
    mappings = {"seed (hand-written)": SEED_MAPPING, "fitted now": fitted,
                "shipped DEFAULT_MAPPING": DEFAULT_MAPPING}
    role = {b: "held out" if b in rep_b else "fit" for b in data}
    header = "| mapping | concepts | " + " | ".join(f"{b} ({role[b]})" for b in data) + " |"
    lines = [header, "|" + "---|" * (2 + len(data))]
    for name, m in mappings.items():
        accs = [f"{accuracy(data[b][1], labels[b], names, m):.1%}" for b in data]
        lines.append(f"| {name} | {sum(map(len, m.values()))} | " + " | ".join(accs) + " |")
    # per-class recall of the shipped mapping on the held-out batches
    probs = np.concatenate([data[b][1] for b in rep_b])
    gold = np.concatenate([labels[b] for b in rep_b])
    pred = np.asarray(CLASSES)[room_probs(probs, names, DEFAULT_MAPPING).argmax(axis=1)]
    recall = ["| class | photos | recall |", "|---|---|---|"]
    recall += [f"| {c} | {(gold == c).sum()} | {(pred[gold == c] == c).mean():.0%} |"
               for c in CLASSES if (gold == c).any()]
    same = all(sorted(fitted[r]) == sorted(DEFAULT_MAPPING[r]) for r in CLASSES)
    text = (f"## Zero-shot prelabel (cold start) — `bench/bench_zeroshot.py`\n\n"
            f"{args.backbone} ImageNet head over cached raw features; a room's score is the sum of its concepts' "
            f"ImageNet probabilities. The mapping is chosen by greedy search (add, move to the room whose photos show "
            f"it most, or drop one concept at a time, keep the best change) on {', '.join(fit_b)} "
            f"({fit_s:.1f} s, {fit_acc:.1%} there) and reported on {', '.join(rep_b)}, which it never saw. "
            f"Refit reproduces the shipped mapping: {'yes' if same else 'no'}.\n\n"
            + "\n".join(lines) + f"\n\nPer class, shipped mapping, held out ({', '.join(rep_b)}):\n\n"
            + "\n".join(recall)
            + "\n\nShipped mapping: " + "; ".join(f"{r}: {', '.join(c)}" for r, c in DEFAULT_MAPPING.items()) + ".")
    print(text)
    if not args.no_write:
        write_section("zeroshot", text)


if __name__ == "__main__":
    main()
