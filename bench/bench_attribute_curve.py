"""Benchmark: the attribute label curve. The labelling app's attribute loop, simulated with the corpus's by-eye
attribute labels standing in for the person: the app's picks against random picks.

For each attribute with by-eye labels (attributes.csv, method ``by_eye``), within the class its photos
belong to (labels.csv), the "person" answers only photos that have a by-eye label for it: the pool is those
photos of TRAIN + TUNE (bench/common.py's honest split). The app's loop: the head is fitted on the answers
so far (``roomclf.labels.attribute_head.fit_head``), the next grid is chosen by
``roomclf.labels.attribute_picks.pick_grid`` (what the app calls) and answered whole, then the head retrains.
Random picks answer the pool in a random order. After 10, 20, 40 and all answers the head fitted on those
answers tags the TEST photos (batch_14–19, near-duplicates of TRAIN photos removed) at its own threshold;
the table gives F1 there (mean ± standard deviation over seeds: the cold start's clustering and the folds
for the app, the order for random picks) and how many yes answers the picks had found.

Features: the cached embeddings (efficientnet_lite0, 224 px, raw pooled features), so the whole run takes
minutes. The result is kept in bench/results/attribute_curve.json and rendered into docs/benchmarks.md
(``--report`` renders it again without measuring).

    .venv/bin/python bench/bench_attribute_curve.py                   # 5 seeds; the app's grid and a grid of 8
    .venv/bin/python bench/bench_attribute_curve.py --seeds 2 --grids 24 --no-write
"""
from __future__ import annotations

import argparse
import csv
import datetime
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
from common import (
    PROJECT,
    SPLIT_NOTE,
    default_data,
    honest_split,
    publish,
    report_saved,
    split_summary,
    table,
)

sys.path.insert(0, str(PROJECT))

SECTION = "attribute_curve"
CHECKPOINTS = (10, 20, 40)
MIN_POOL_POSITIVES = 10          # an attribute (within a class) is simulated when its pool has this many yes


def by_eye_tasks(data: Path, split: dict) -> dict[str, dict]:
    """key -> {"pool": [(path, 0/1)] of TRAIN + TUNE, "test": [(path, 0/1)] of TEST}: the by-eye labels of
    each attribute within the class of its photos, for the keys with at least MIN_POOL_POSITIVES pool positives."""
    from roomclf.taxonomy import UnknownName, attribute_key

    where = {p: name for name in ("train", "tune", "test") for p, _ in split[name]}
    room = {p: c for name in ("train", "tune", "test") for p, c in split[name]}
    tasks: dict[str, dict] = {}
    with open(data / "attributes.csv", newline="") as f:
        for r in csv.DictReader(f):
            path = r["path"]
            if r.get("method") != "by_eye" or path not in where:
                continue
            try:
                key = attribute_key(room[path], r["attribute"])
            except UnknownName:
                continue
            part = "test" if where[path] == "test" else "pool"
            tasks.setdefault(key, {"pool": [], "test": []})[part].append((path, int(float(r["value"]))))
    return {k: t for k, t in sorted(tasks.items()) if sum(v for _, v in t["pool"]) >= MIN_POOL_POSITIVES}


def test_f1(X: np.ndarray, y: np.ndarray, Xt: np.ndarray, yt: np.ndarray, seed: int) -> float:
    """F1 on the TEST photos of the head fitted on (X, y) at its own threshold; 0 while there is no head."""
    from roomclf.labels.attribute_head import fit_head
    from roomclf.metrics import binary_scores

    head, _ = fit_head(X, y, seed)
    if head is None:
        return 0.0
    return binary_scores(yt == 1, head.scores(Xt) >= head.threshold)["f1"]


def app_order(X: np.ndarray, y: np.ndarray, grid: int, last: int, seed: int) -> list[int]:
    """The order the app's loop answers the pool in (up to ``last`` answers): a grid chosen by the current
    head, answered whole, then the head retrains."""
    from roomclf.labels.attribute_head import fit_head
    from roomclf.labels.attribute_picks import pick_grid

    done: list[int] = []
    while len(done) < min(last, len(y)):
        head, _ = fit_head(X[done], y[done], seed) if done else (None, None)
        open_ = np.setdiff1d(np.arange(len(y)), done)
        scores = head.scores(X[open_]) if head else None
        picks = pick_grid(X[open_], scores, head.threshold if head else 0.5, size=grid, seed=seed)
        done += [int(open_[i]) for i in picks]
    return done


def simulate(X, y, Xt, yt, grids: list[int], seeds: int) -> dict[str, dict]:
    """strategy ("app-<grid size>" for each of ``grids``, "random") -> {"f1": {n: [per seed]}, "yes": {n: [per
    seed]}} at CHECKPOINTS and all answers."""
    marks = [n for n in CHECKPOINTS if n < len(y)] + [len(y)]
    names = [f"app-{g}" for g in grids] + ["random"]
    out = {s: {"f1": {n: [] for n in marks}, "yes": {n: [] for n in marks}} for s in names}
    for seed in range(seeds):
        orders = {f"app-{g}": app_order(X, y, g, max(marks[:-1] or [0]), seed) for g in grids}
        orders["random"] = list(np.random.default_rng(seed).permutation(len(y)))
        for name, order in orders.items():
            full = order + sorted(set(range(len(y))) - set(order))
            for n in marks:
                take = full[:n]
                out[name]["f1"][n].append(test_f1(X[take], y[take], Xt, yt, seed))
                out[name]["yes"][n].append(int(y[take].sum()))
    return out


def measure(data: Path, grids: list[int], seeds: int) -> dict:
    from roomclf.labels.attribute_picks import GRID_SIZE
    from roomclf.models.backbones import get_spec
    from roomclf.models.embeddings import embed
    from roomclf.settings import EMBEDDING_BACKBONE

    t0 = time.perf_counter()
    split = honest_split(data)
    tasks = by_eye_tasks(data, split)
    paths = sorted({p for t in tasks.values() for part in t.values() for p, _ in part})
    emb = embed(data / "listings", paths, EMBEDDING_BACKBONE, normalize=False, progress=False)
    index = emb.index()
    keys = {}
    for key, task in tasks.items():
        pool = [(p, v) for p, v in task["pool"] if p in index]
        test = [(p, v) for p, v in task["test"] if p in index]
        X, y = emb.vectors[[index[p] for p, _ in pool]], np.array([v for _, v in pool])
        Xt, yt = emb.vectors[[index[p] for p, _ in test]], np.array([v for _, v in test])
        t = time.perf_counter()
        runs = simulate(X, y, Xt, yt, grids, seeds)
        keys[key] = {"pool": len(y), "pool_yes": int(y.sum()), "test": len(yt), "test_yes": int(yt.sum()),
                     "strategies": {name: {part: {str(n): v for n, v in per.items()} for part, per in run.items()}
                                    for name, run in runs.items()},
                     "seconds": time.perf_counter() - t}
        print(key, {name: {n: round(float(np.mean(v)), 3) for n, v in run["f1"].items()} for name, run in runs.items()},
              f"{keys[key]['seconds']:.0f} s", flush=True)
    return {"date": datetime.date.today().isoformat(), "machine": f"{os.cpu_count()} CPUs ({platform.machine()})",
            "backbone": EMBEDDING_BACKBONE, "input_size": get_spec(EMBEDDING_BACKBONE).weights_size,
            "grids": grids, "app_grid": GRID_SIZE, "seeds": seeds, "checkpoints": list(CHECKPOINTS),
            "split_line": split_summary(split), "keys": keys, "seconds": time.perf_counter() - t0}


def _cell(values: list[float]) -> str:
    return f"{np.mean(values):.2f} ± {np.std(values):.2f}"


def verdict(entry: dict, strategy: str) -> dict:
    """Random picks' mean F1 at 40 answers, ``strategy``'s at 20, and whether that reaches it (None: the
    pool is too small to tell)."""
    f1 = {name: {int(n): float(np.mean(v)) for n, v in s["f1"].items()} for name, s in entry["strategies"].items()}
    target, few = f1["random"].get(40), f1[strategy].get(20)
    return {"random_40": target, "app_20": few,
            "reached": None if target is None or few is None else few >= target}


def strategy_label(name: str, app_grid: int) -> str:
    if name == "random":
        return "random picks"
    grid = int(name.split("-")[1])
    return f"app's picks, grid of {grid}" + (" (the app's)" if grid == app_grid else "")


def render(res: dict) -> str:
    rows, lines = [], []
    for key, e in res["keys"].items():
        marks = list(e["strategies"]["random"]["f1"])
        for name, s in e["strategies"].items():
            rows.append([f"{key} ({e['pool_yes']}/{e['pool']}; {e['test_yes']}/{e['test']})",
                         strategy_label(name, res["app_grid"]),
                         *(f"{_cell(s['f1'][n])} ({np.mean(s['yes'][n]):.0f})" for n in marks[:-1]),
                         *(["-"] * (len(res["checkpoints"]) - len(marks) + 1)),
                         f"{_cell(s['f1'][marks[-1]])} ({marks[-1]} answers)"])
        apps = [n for n in e["strategies"] if n != "random"]
        found = [(strategy_label(n, res["app_grid"]), verdict(e, n)) for n in apps]
        if all(v["reached"] is not None for _, v in found):
            lines.append(f"- {key}: random picks at 40 answers {found[0][1]['random_40']:.2f}; at 20 answers "
                         + "; ".join(f"{label} {v['app_20']:.2f} (**{'reached' if v['reached'] else 'not reached'}**)"
                                     for label, v in found) + ".")
    return "\n".join([
        "## Attribute label curve: the app's picks vs random picks (`bench/bench_attribute_curve.py`)", "",
        ("The attribute mode's loop simulated with the corpus's by-eye attribute labels as the person: the pool is the "
         "TRAIN + TUNE photos of the class that carry a by-eye label for the attribute. The app's loop answers a grid "
         "at a time, chosen by `roomclf.labels.attribute_picks.pick_grid` from the head fitted on the answers so far "
         f"(the first grid, before any head, spread over the photos by k-means); the app shows {res['app_grid']} "
         "photos a grid, so its first 20 answers come before any head: a smaller grid "
         f"({', '.join(str(g) for g in res['grids'] if g != res['app_grid'])}) shows what retraining sooner gives. "
         "Random picks answer the pool in a random order. After n answers the head fitted on them "
         "(`roomclf.labels.attribute_head.fit_head`, its threshold from its own cross-validation) tags the TEST "
         f"photos; F1 there, mean ± sd over {res['seeds']} seeds, and in brackets the yes answers found so far. "
         f"Features: cached {res['backbone']} embeddings ({res['input_size']} px), frozen. Split: {SPLIT_NOTE}. "
         f"{res['split_line']}. {res['machine']}, {res['date']}, {res['seconds']:.0f} s."), "",
        table(["attribute (pool yes/all; test yes/all)", "picks",
               *(f"F1 after {n}" for n in res["checkpoints"]), "F1, all answers"], rows), "",
        "Does the app reach with 20 answers the F1 (mean over seeds) random picks reach with 40?", "",
        *lines])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=None, help="the corpus folder (default: ../shared/data)")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--grids", default=None,
                    help="photos per grid of the app's loop, comma-separated (default: the app's, and 8)")
    ap.add_argument("--no-write", action="store_true", help="print only; leave the result file and docs alone")
    ap.add_argument("--report", action="store_true",
                    help=f"render the section again from bench/results/{SECTION}.json")
    args = ap.parse_args()
    if args.report:
        return report_saved(SECTION, render, write=not args.no_write)
    from roomclf.labels.attribute_picks import GRID_SIZE

    grids = [int(g) for g in args.grids.split(",")] if args.grids else [GRID_SIZE, 8]
    result = measure(args.data or default_data(), grids, args.seeds)
    publish(SECTION, result, render, write=not args.no_write)


if __name__ == "__main__":
    main()
