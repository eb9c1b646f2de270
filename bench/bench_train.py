"""Benchmark: fast.ai training of efficientnet_lite0 on ground-truth labels.

Trains on batch_01-batch_10 of ../shared/data/labels.csv and validates on
batch_11-batch_13 (near-duplicates of training photos dropped), with the
same functions ``roomclf train`` uses. Prints a table and writes the section
``train`` of docs/benchmarks.md. Runs tens of minutes on 2 CPU cores:

    nohup python bench/bench_train.py > var/bench_train.log 2>&1 &
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from common import write_section  # noqa: E402

PROJECT = Path(__file__).resolve().parent.parent
SECTION = "train"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=os.environ.get("ROOMCLF_TEST_DATA") or str(PROJECT.parent / "shared" / "data"))
    ap.add_argument("--train", default="batch_01-batch_10")
    ap.add_argument("--valid", default="batch_11-batch_13")
    ap.add_argument("--backbone", default="efficientnet_lite0")
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("--frozen-epochs", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1.6e-3)
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--no-write", action="store_true", help="print only, leave docs/benchmarks.md alone")
    args = ap.parse_args()

    from sklearn.metrics import f1_score

    from roomclf import training as T
    from roomclf.backbones import get_spec
    from roomclf.corpus import parse_batches
    from roomclf.labelstore import LabelStore
    from roomclf.taxonomy import CLASSES

    shared = Path(args.data)
    root = shared / "listings"
    train_b, valid_b = parse_batches(args.train, root), parse_batches(args.valid, root)
    with tempfile.TemporaryDirectory() as tmp:
        store = LabelStore(Path(tmp) / "labels.sqlite")
        store.import_csv(shared / "labels.csv", "imported", corpus_root=root, batches=train_b + valid_b)
        t0 = time.perf_counter()
        data = T.select_data(store, root, train_b, valid_b, ("imported",))
    data.train, broken_t = T.drop_broken(root, data.train, args.image_size)
    data.valid, broken_v = T.drop_broken(root, data.valid, args.image_size)
    data = T.drop_leaks(root, data, backbone=args.backbone)
    prep = time.perf_counter() - t0
    print(f"data: {len(data.train)} train, {len(data.valid)} valid, {len(broken_t) + len(broken_v)} broken, "
          f"{len(data.leaks)} leaks dropped ({prep:.0f}s)", flush=True)

    spec = get_spec(args.backbone)
    dls = T.build_dls(root, data, args.image_size, args.batch_size, spec.mean, spec.std, workers=args.workers)
    learn = T.make_learner(dls, args.backbone, T.class_weights([c for _, c in data.train]))
    t = time.perf_counter()
    T.fit(learn, args.frozen_epochs, 0, args.lr)
    frozen_s = (time.perf_counter() - t) / max(1, args.frozen_epochs)
    t = time.perf_counter()
    T.fit(learn, 0, args.epochs, args.lr)
    unfrozen_s = (time.perf_counter() - t) / max(1, args.epochs)
    probs, y = T.predict(learn)
    pred = probs.argmax(1)
    acc = float((pred == y).mean())
    f1 = f1_score(y, pred, labels=range(len(CLASSES)), average=None, zero_division=0)
    macro = float(np.mean(f1))

    load = os.getloadavg()[0]
    lines = [
        "## Training (`bench/bench_train.py`)",
        "",
        f"{args.backbone}, {args.image_size} px, {args.frozen_epochs} frozen + {args.epochs} unfrozen epochs, "
        f"batch {args.batch_size}, lr {args.lr:g}, class-weighted loss, fastai aug_transforms. "
        f"Train {args.train} ({len(data.train)} photos), validate {args.valid} ({len(data.valid)} photos; "
        f"{len(data.leaks)} near-duplicates of training photos dropped, {len(broken_t) + len(broken_v)} broken).",
        "",
        "| metric | value |",
        "|---|---|",
        f"| validation accuracy | {acc:.4f} |",
        f"| validation macro F1 | {macro:.4f} |",
        f"| time per frozen epoch | {frozen_s:.0f} s |",
        f"| time per unfrozen epoch | {unfrozen_s:.0f} s |",
        f"| data preparation (checks, leak guard) | {prep:.0f} s |",
        "",
        "| class | F1 |",
        "|---|---|",
        *[f"| {c} | {v:.3f} |" for c, v in zip(CLASSES, f1)],
        "",
        f"Measured on 2 shared CPU cores (load average {load:.1f} at the end); the seed reached 89% / 90.1%, "
        "the target is 92%.",
    ]
    text = "\n".join(lines)
    print(text)
    if not args.no_write:
        write_section(SECTION, text)


if __name__ == "__main__":
    main()
