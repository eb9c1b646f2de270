"""Label propagation precision and coverage: 300 ground-truth labels of batch_01 as
`manual`, propagated over batch_01-batch_03, checked against the rest of the ground truth.

For each direction (pull / push) and k, the run picks its thresholds by 5-fold
cross-validation on the 300 labels (target precision 90%); the table shows the
cross-validated estimate next to what it really got on the other photos. A
second table is the real precision-coverage curve of the default (pull, k=10).
The result is kept in bench/results/propagation.json (committed) and rendered into the
`propagation` section of docs/benchmarks.md (``--report`` renders it again without measuring).

    python bench/bench_propagation.py [--data DIR] [--seed-labels 300] [--no-write]
    python bench/bench_propagation.py --report [--no-write]

Embeddings come from $ROOMCLF_EMBEDDING_DIR (computed when missing); the label
store and MLflow store are a throw-away $ROOMCLF_HOME.
"""
from __future__ import annotations

import argparse
import csv
import datetime
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import PROJECT, publish, report_saved, table

SECTION = "propagation"
SEED_BATCH, BATCHES = "batch_01", "batch_01-batch_03"
CONFIGS = [("pull", 5), ("pull", 10), ("pull", 20), ("push", 5), ("push", 10), ("push", 20)]


def render(result: dict) -> str:
    """The `propagation` section of docs/benchmarks.md from a result ``main`` kept (bench/results/propagation.json)."""
    batches = result["batches"].replace("-", "–")
    rows = [[r["method"], r["k"], f"{r['share_min']:g}", f"{r['sim_min']:g}", f"{r['cv_precision']:.1%}",
             f"{r['cv_coverage']:.1%}", f"**{r['real_precision']:.1%}**", f"**{r['real_coverage']:.1%}**",
             r["propagated"], r["suspects"], f"{r['seconds']:.1f}"] for r in result["runs"]]
    default, settings = result["default"], result["settings"]
    curve = [[f"{c['share_min']:g}", f"{c['precision']:.1%}", f"{c['coverage']:.1%}"] for c in default["curve"]]
    header = ["direction", "k", "share ≥", "nearest sim ≥", "CV precision", "CV coverage", "real precision",
              "real coverage", "propagated", "suspects", "s"]
    when = f" Run {result['date']}." if result.get("date") else ""
    return "\n".join([
        "## Label propagation (annoy kNN vote) — `bench/bench_propagation.py`",
        "",
        (f"{result['seed_labels']} ground-truth labels of {result['seed_batch']} as `manual`, propagated over "
         f"{batches} ({result['candidates']} other photos), {result['backbone']} ImageNet embeddings, annoy "
         f"{settings['n_trees']} trees. Thresholds picked per run by {settings['folds']}-fold cross-validation on "
         f"the manual labels (most coverage at ≥ {settings['target_precision']:.0%} CV precision); *real* = against "
         f"the ground truth of the other photos (itself ~5% noisy).{when}"),
        "",
        table(header, rows),
        "",
        (f"Real precision–coverage of the default ({default['method']}, k={default['k']}), nearest similarity ≥ "
         f"{default['sim_min']:g}:"),
        "",
        table(["vote share ≥", "precision", "coverage"], curve),
        "",
        (f"Near-duplicate pairs (cosine ≥ {settings['duplicate_threshold']:g}) in {batches}: "
         f"{result['duplicates']}. Suspect labels among the {result['seed_labels']} (neighbours vote ≥ "
         f"{settings['suspect_share']:.0%} for another class, k={default['k']}): {result['suspects']}."),
    ])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=str(PROJECT.parent / "shared" / "data"), help="folder with listings/ and labels.csv")
    ap.add_argument("--seed-labels", type=int, default=300)
    ap.add_argument("--no-write", action="store_true", help="print only; leave the result file and docs alone")
    ap.add_argument("--report", action="store_true", help=f"render the section again from bench/results/{SECTION}.json")
    args = ap.parse_args()
    if args.report:
        return report_saved(SECTION, render, write=not args.no_write)
    os.environ["ROOMCLF_HOME"] = tempfile.mkdtemp(prefix="bench-propagation-")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

    from roomclf.corpus import discover
    from roomclf.labels.store import LabelStore
    from roomclf.models.embeddings import embed
    from roomclf.propagate.defaults import PROPAGATION
    from roomclf.propagate.run import run_propagation
    from roomclf.propagate.votes import pull_votes, threshold_table
    from roomclf.settings import EMBEDDING_BACKBONE
    from roomclf.taxonomy import CLASSES

    data = Path(args.data)
    root, labels_csv = data / "listings", data / "labels.csv"
    with open(labels_csv, newline="") as f:
        truth = {r["path"]: r["label"] for r in csv.DictReader(f) if r["label"]}
    store = LabelStore()
    store.import_csv(labels_csv, "manual", batches=[SEED_BATCH], limit=args.seed_labels)
    manual = {p: lab.label for p, lab in store.labels(["manual"]).items()}

    default_config = (PROPAGATION.method, PROPAGATION.k)      # its real precision-coverage curve is drawn
    runs, default = [], None
    for method, k in CONFIGS:
        t0 = time.perf_counter()
        r = run_propagation(root, BATCHES, k=k, method=method, log_mlflow=(method, k) == default_config,
                            progress=False, echo=lambda *_: None)
        dt = time.perf_counter() - t0
        prop = store.labels(["propagated"])
        judged = [p for p in prop if p in truth]
        right = sum(prop[p].label == truth[p] for p in judged)
        runs.append({"method": method, "k": k, "share_min": float(r.share_min), "sim_min": float(r.sim_min),
                     "cv_precision": float(r.cv_precision), "cv_coverage": float(r.cv_coverage),
                     "real_precision": right / max(1, len(judged)), "real_coverage": len(prop) / r.candidates,
                     "propagated": len(prop), "suspects": len(r.suspects), "seconds": dt})
        print(json.dumps(runs[-1]), flush=True)
        if (method, k) == default_config:
            default = r

    # The real curve of the default: every share threshold at the chosen nearest-similarity threshold.
    corpus = discover(root, BATCHES)
    emb = embed(corpus.root, corpus.paths, progress=False)
    at = emb.index()
    lab = sorted(p for p in manual if p in at)
    rest = [p for p in emb.paths if p not in manual and p in truth]
    votes = pull_votes(emb.vectors[[at[p] for p in lab]], np.array([CLASSES.index(manual[p]) for p in lab]),
                       emb.vectors[[at[p] for p in rest]], PROPAGATION.k, len(CLASSES))
    real = threshold_table(votes, np.array([CLASSES.index(truth[p]) for p in rest]), sim_grid=(default.sim_min,))
    curve = [{"share_min": float(c["share_min"]), "precision": float(c["precision"]), "coverage": float(c["coverage"])}
             for c in real if c["accepted"]]
    result = {"seed_labels": len(manual), "seed_batch": SEED_BATCH, "batches": BATCHES,
              "candidates": default.candidates, "backbone": EMBEDDING_BACKBONE,
              "date": datetime.date.today().isoformat(),
              "settings": {"n_trees": PROPAGATION.n_trees, "folds": PROPAGATION.folds,
                           "target_precision": PROPAGATION.target_precision,
                           "duplicate_threshold": PROPAGATION.duplicate_threshold,
                           "suspect_share": PROPAGATION.suspect_share},
              "runs": runs,
              "default": {"method": PROPAGATION.method, "k": PROPAGATION.k, "sim_min": float(default.sim_min),
                          "curve": curve},
              "duplicates": len(default.duplicates), "suspects": len(default.suspects)}
    print()
    publish(SECTION, result, render, write=not args.no_write)


if __name__ == "__main__":
    main()
