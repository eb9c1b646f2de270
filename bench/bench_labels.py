"""Benchmark: how many hand labels it takes. The labelling loop, simulated.

The corpus's ground truth stands in for the person. The loop is the product's:

1. cold start: the zero-shot prelabel (``roomclf.labels.prelabel.zero_shot``: ImageNet concepts mapped to rooms)
   suggests a class for every photo of the pool (TRAIN = batch_01-batch_10);
2. the labelling app's queue (``roomclf.labels.queue.value_order`` over the photos' embeddings and the current
   model's margins, what ``roomclf prelabel`` stores for the app: representatives of the pool first, then the
   model's doubts spread over it) orders the pool; the "person" labels the first photos of that order not
   labelled yet (``random``: photos drawn at random instead);
3. optionally propagation lends labels to unlabelled photos of the pool (``roomclf.propagate.votes``: pull
   vote, k=10, thresholds by 5-fold cross-validation on the hand labels at 90% target precision, as
   ``roomclf propagate`` does);
4. a model is trained on hand (+ propagated) labels and scored on TEST (batch_14-batch_19, never used to
   choose anything); it becomes the champion whose margins order the next round's queue.

The model of every round is the cheap frozen-feature one, not a fast.ai network: a class-balanced logistic
regression on the cached efficientnet_lite0 ImageNet embeddings (its C chosen once on TUNE, batch_11-batch_13,
with all TRAIN labels), so a round costs seconds. The queue's knobs (how many representatives before the
doubts, how many groups the doubts are spread over: ``DIVERSE_HEAD``, ``SPREAD_GROUPS``) are chosen on TUNE
with ``--tune-queue``: the same loop scored on TUNE for each pair of ``QUEUE_GRID``, the winner being the pair
whose worst lead over random picks, at any round up to 1,000 labels, is the largest. The queue's campaigns
are averaged over k-means seeds, the random ones over draws. Near-duplicates of TRAIN photos are removed
from TUNE and TEST. The result is kept in bench/results/labels.json and rendered into the section
``labels`` of docs/benchmarks.md with a plot ``docs/labels_curve.png`` (``--report`` renders it again
without measuring); ``--mlflow`` also logs an MLflow run in a local store under var/bench/ (experiment
``roomclf-bench-labels``).

    nice -n 10 python bench/bench_labels.py --tune-queue [--mlflow]   # TUNE grid, then the TEST curves
    nice -n 10 python bench/bench_labels.py                           # TEST curves; keeps the TUNE table

Full fast.ai training on the photos the app's queue has the person label (the curve's 1,000-label point
with the real network; random picks are ``bench_train.py --hand-labels 1000``):

    python bench/bench_labels.py --save-picks 1000:var/bench/labels/queue-picks-1000.txt
    python bench/bench_train.py --name labels1k-lite2-queue --backbone efficientnet_lite2 --image-size 260 \
        --hand-picks var/bench/labels/queue-picks-1000.txt
"""
from __future__ import annotations

import argparse
import datetime
import os
import re
import sys
import time
from pathlib import Path

import numpy as np
from common import (
    PROJECT,
    SPLIT_NOTE,
    TEST_BATCHES,
    TRAIN_BATCHES,
    TUNE_BATCHES,
    default_data,
    honest_split,
    load_result,
    publish,
    report_saved,
    split_summary,
    table,
)

sys.path.insert(0, str(PROJECT))
SECTION = "labels"
PLOT = PROJECT / "docs" / "labels_curve.png"
CHECKPOINTS = (50, 100, 300, 1000, 3000)      # hand-label counts reported (plus "all")
ROUNDS = (50, 100, 200, 300, 500, 1000, 2000, 3000)   # the loop's rounds: model retrained, queue re-ordered
TUNE_ROUNDS = (50, 100, 200, 300, 500, 1000)  # the rounds the queue's knobs are judged at on TUNE
QUEUE_GRID = ((50, 50), (100, 50), (200, 50), (300, 50), (50, 1), (100, 1), (200, 1), (100, 25), (100, 100),
              (100, 200))                    # (representatives, groups) tried on TUNE
QUEUE_SEEDS = 3                               # k-means seeds a queue campaign is averaged over
RANDOM_SEEDS = 5                              # random draws a random campaign is averaged over
QUEUE_TIMING_ROWS = 20_000                    # the queue's order is timed on a batch this big
C_GRID = (0.03, 0.1, 0.3, 1.0, 3.0)


# --------------------------------------------------------------------------- the model of a round

def fit_predict(X: np.ndarray, y: np.ndarray, X_eval: list[np.ndarray], C: float, n_classes: int) -> list[np.ndarray]:
    """Class-balanced logistic regression on (X, y); probabilities (N x n_classes) for each array of X_eval.
    Classes without a training example get probability 0."""
    from sklearn.linear_model import LogisticRegression

    clf = LogisticRegression(C=C, class_weight="balanced", max_iter=300)
    clf.fit(X, y)
    out = []
    for Z in X_eval:
        p = np.zeros((len(Z), n_classes), np.float32)
        p[:, clf.classes_] = clf.predict_proba(Z)
        out.append(p)
    return out


def propagate(unit: np.ndarray, hand: np.ndarray, y_hand: np.ndarray, n_classes: int, k: int = 10,
              target: float = 0.9, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Pool indices that get a propagated label, and those labels (``roomclf propagate``'s defaults)."""
    from roomclf.propagate.votes import (
        PropagationError,
        cross_validate,
        pick_thresholds,
        votes_for,
    )

    rest = np.setdiff1d(np.arange(len(unit)), hand)
    if len(hand) < 5 * k // 4 + 1 or not len(rest):
        return np.zeros(0, int), np.zeros(0, int)
    try:
        tab = cross_validate(unit[hand], y_hand, k, n_classes, "pull", 5, seed=seed)
        chosen, _ = pick_thresholds(tab, target)
    except PropagationError:
        return np.zeros(0, int), np.zeros(0, int)
    votes = votes_for("pull", unit[hand], y_hand, unit[rest], k, n_classes)
    ok = votes.accept(chosen["share_min"], chosen["sim_min"])
    return rest[ok], votes.pred[ok]


def simulate(X: np.ndarray, unit: np.ndarray, y: np.ndarray, probs0: np.ndarray, X_test: np.ndarray,
             y_test: np.ndarray, rounds: list[int], strategy: str, with_propagation: bool, C: float,
             n_classes: int, seed: int = 0, log=print, picked: dict | None = None,
             knobs: dict | None = None) -> list[dict]:
    """One labelling campaign over the pool (X raw-ish features, unit L2-normalised embeddings, y truth).

    ``probs0``: the cold-start suggestions for the pool. ``strategy``: ``queue`` (the app's value order,
    recomputed from the latest model's margins and the photos labelled so far every round; ``seed`` is its
    k-means seed, ``knobs`` its ``diverse``/``groups`` when not the product's defaults) or ``random``
    (``seed``: the draw). Returns one row per round: hand labels, propagated labels and their precision,
    accuracy and macro-F1 on (X_test, y_test), seconds. ``picked``, when given, receives {hand labels: pool
    indices labelled by then} for every round.
    """
    from sklearn.metrics import f1_score

    from roomclf.labels.queue import margins, value_order

    rng = np.random.default_rng(seed)
    random_order = rng.permutation(len(y))
    labelled = np.zeros(len(y), bool)
    probs = probs0
    rows = []
    for n in rounds:
        t = time.perf_counter()
        need = min(n, len(y)) - int(labelled.sum())
        if need > 0:
            order = (value_order(unit, margins(probs), labelled, seed=seed, **(knobs or {}))
                     if strategy == "queue" else random_order)
            picks = [i for i in order if not labelled[i]][:need]
            labelled[picks] = True
        t_queue = time.perf_counter() - t
        hand = np.flatnonzero(labelled)
        if picked is not None:
            picked[len(hand)] = hand.copy()
        idx, lab = hand, y[hand]
        prop_n, prop_prec = 0, float("nan")
        if with_propagation:
            pidx, plab = propagate(unit, hand, y[hand], n_classes, seed=seed)
            prop_n = len(pidx)
            prop_prec = float((plab == y[pidx]).mean()) if prop_n else float("nan")
            idx, lab = np.concatenate([hand, pidx]), np.concatenate([y[hand], plab])
        probs, p_test = fit_predict(X[idx], lab, [X, X_test], C, n_classes)
        pred = p_test.argmax(1)
        row = {"hand": len(hand), "propagated": prop_n, "prop_precision": prop_prec,
               "test_acc": float((pred == y_test).mean()),
               "test_macro_f1": float(f1_score(y_test, pred, labels=range(n_classes), average="macro",
                                               zero_division=0)),
               "queue_s": t_queue, "s": time.perf_counter() - t}
        rows.append(row)
        log(f"  {strategy:6} prop={with_propagation!s:5} seed={seed} hand={row['hand']:5} "
            f"prop={prop_n:5} ({prop_prec:.3f}) TEST acc {row['test_acc']:.4f} ({row['s']:.0f}s)")
    return rows


# --------------------------------------------------------------------------- inputs

def features(root: Path, paths: list[str], backbone: str) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(paths with a vector, LR features, L2-normalised embeddings) from the embedding cache; the LR
    uses the L2-normalised embeddings too (one array, returned twice)."""
    from roomclf.models.embeddings import embed

    emb = embed(root, paths, backbone, normalize=False, progress=False)
    raw = emb.vectors
    unit = raw / np.linalg.norm(raw, axis=1, keepdims=True).clip(1e-12)
    return emb.paths, unit, unit


def cold_start(root: Path, paths: list[str], backbone: str) -> np.ndarray:
    from roomclf.labels.prelabel import zero_shot

    pred = zero_shot(root, paths, backbone, progress=False)
    if pred.paths != list(paths):
        raise RuntimeError("zero-shot prelabel skipped photos that have an embedding")
    return pred.probs


# --------------------------------------------------------------------------- the queue's knobs and cost

def tune_queue(X, unit, y, probs0, X_tune, y_tune, C: float, n_classes: int, grid=QUEUE_GRID,
               rounds=TUNE_ROUNDS, log=print) -> dict:
    """The loop scored on TUNE for every (representatives, groups) pair of ``grid`` (``QUEUE_SEEDS`` k-means
    seeds each) and for random picks (``RANDOM_SEEDS`` draws); the winner is the pair whose worst lead over
    random picks, at any of ``rounds``, is the largest."""
    rounds = [n for n in rounds if n < len(y)]

    def accuracy(strategy, seeds, knobs=None):
        runs = [[r["test_acc"] for r in simulate(X, unit, y, probs0, X_tune, y_tune, rounds, strategy, False, C,
                                                  n_classes, s, log=log, knobs=knobs)] for s in range(seeds)]
        return np.mean(runs, 0).tolist(), np.min(runs, 0).tolist(), np.max(runs, 0).tolist()

    rand, rand_min, rand_max = accuracy("random", RANDOM_SEEDS)
    configs = []
    for diverse, groups in grid:
        t = time.perf_counter()
        acc, lo, hi = accuracy("queue", QUEUE_SEEDS, {"diverse": diverse, "groups": groups})
        worst = min(a - b for a, b in zip(acc, rand))
        configs.append({"diverse": diverse, "groups": groups, "acc": acc, "min": lo, "max": hi,
                        "worst_lead": worst, "s": time.perf_counter() - t})
        log(f"TUNE queue diverse={diverse} groups={groups}: " + " ".join(f"{100 * a:.1f}" for a in acc)
            + f" (worst lead over random {100 * worst:+.1f})")
    best = max(configs, key=lambda c: (c["worst_lead"], np.mean(c["acc"])))
    return {"rounds": rounds, "random": rand, "random_min": rand_min, "random_max": rand_max, "configs": configs,
            "winner": {"diverse": best["diverse"], "groups": best["groups"]}}


def queue_seconds(unit: np.ndarray, probs: np.ndarray, rows: int = QUEUE_TIMING_ROWS) -> float:
    """Seconds ``value_order`` (product defaults) takes over ``rows`` photos: the pool's embeddings repeated
    with a little noise (so no two are equal) and its margins."""
    from roomclf.labels.queue import margins, value_order

    rng = np.random.default_rng(0)
    reps = -(-rows // len(unit))
    vectors = np.tile(unit, (reps, 1))[:rows] + rng.normal(0, 0.01, (rows, unit.shape[1])).astype(np.float32)
    margin = np.tile(margins(probs), reps)[:rows]
    t = time.perf_counter()
    value_order(vectors, margin)
    return time.perf_counter() - t


# --------------------------------------------------------------------------- report

LABELS = {"queue|False": "app queue", "queue|True": "app queue + propagation",
          "random|False": "random picks", "random|True": "random picks + propagation"}


def plot(result: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=90)
    style = {"queue|False": ("C0", "-"), "queue|True": ("C0", "--"),
             "random|False": ("C1", "-"), "random|True": ("C1", "--")}
    for key, rows in result["curves"].items():
        xs = [r["hand"] for r in rows]
        ys = [100 * r["test_acc"] for r in rows]
        lo = [100 * r.get("test_acc_min", r["test_acc"]) for r in rows]
        hi = [100 * r.get("test_acc_max", r["test_acc"]) for r in rows]
        colour, ls = style[key]
        ax.plot(xs, ys, ls, color=colour, marker="o", ms=3, label=LABELS[key])
        if lo != hi:
            ax.fill_between(xs, lo, hi, color=colour, alpha=0.15)
    ax.axhline(100 * result["zero_shot"]["test"], color="grey", lw=0.8, ls=":",
               label="cold-start prelabel (no hand labels)")
    ax.set_xscale("log")
    ax.set_xlabel(f"hand labels (pool: batch_01–10, {result['pool']} photos)")
    ax.set_ylabel("TEST accuracy, batch_14–19 (%)")
    ax.set_title("Frozen efficientnet_lite0 features + logistic regression", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def at(result: dict, key: str, n: int) -> dict:
    return next(r for r in result["curves"][key] if r["hand"] == n)


def reading(result: dict, checkpoints: list[int]) -> list[str]:
    """What the curves say, in numbers: queue minus random, propagation minus none, the ceiling."""
    def diffs(a, b):
        return ", ".join(f"{n:,}: {100 * (at(result, a, n)['test_acc'] - at(result, b, n)['test_acc']):+.1f}"
                         for n in checkpoints)

    best = max((r["test_acc"], r["hand"]) for rs in result["curves"].values() for r in rs)
    below = [n for n in checkpoints
             if at(result, "queue|False", n)["test_acc"] < at(result, "random|False", n)["test_acc"]]
    verdict = ("at or above random picks at every one of these points" if not below else
               "below random picks at " + ", ".join(f"{n:,}" for n in below))
    return [f"- App queue minus random picks, TEST points (no propagation): {diffs('queue|False', 'random|False')}: "
            f"the queue is {verdict}.",
            f"- With propagation minus without, app queue: {diffs('queue|True', 'queue|False')}; "
            f"random: {diffs('random|True', 'random|False')}.",
            f"- Best TEST accuracy of any loop: {100 * best[0]:.1f}% ({best[1]:,} hand labels); the cold-start "
            f"prelabel alone: {100 * result['zero_shot']['test']:.1f}%. This is about the frozen-feature model's "
            "ceiling (all labels give the same figure whatever the loop): more hand labels alone do not take it to "
            "90%; whether the fine-tuned network does on TEST is the training section's question."]


def tune_table(tuned: dict, chosen: dict) -> list[str]:
    """The TUNE grid of the queue's knobs: accuracy per round, worst lead over random, which won."""
    rounds = tuned["rounds"]
    head = ["representatives, groups"] + [f"{n:,}" for n in rounds] + ["worst lead over random"]
    rows = [["random picks (mean of %d)" % RANDOM_SEEDS] + [f"{100 * a:.1f}%" for a in tuned["random"]] + ["-"]]
    for c in tuned["configs"]:
        name = f"{c['diverse']}, {c['groups']}"
        if (c["diverse"], c["groups"]) == (tuned["winner"]["diverse"], tuned["winner"]["groups"]):
            name = f"**{name}** (TUNE winner)"
        rows.append([name] + [f"{100 * a:.1f}%" for a in c["acc"]] + [f"{100 * c['worst_lead']:+.1f}"])
    same = (chosen["diverse"], chosen["groups"]) == (tuned["winner"]["diverse"], tuned["winner"]["groups"])
    return [f"The queue's knobs, chosen on TUNE (batch_11–13; run {tuned.get('date', '?')}): TUNE accuracy of the same "
            f"loop (no propagation) at each round, app queue averaged over {QUEUE_SEEDS} k-means seeds; "
            "*representatives* = photos of the coverage order before the doubts (`DIVERSE_HEAD`), *groups* = "
            "k-means groups the doubts are spread over (`SPREAD_GROUPS`; 1 = plain least-confident order). The "
            "winner has the largest worst lead over random picks at any round. "
            + (f"The product's defaults ({chosen['diverse']}, {chosen['groups']}) are the TUNE winner." if same else
               f"The product's defaults ({chosen['diverse']}, {chosen['groups']}) are NOT the TUNE winner."), "",
            table(head, rows)]


def render(result: dict) -> str:
    rounds, pool = result["rounds"], result["pool"]
    seeds = result["seeds"]
    names = {"queue|False": f"app queue (mean of {seeds['queue']})",
             "queue|True": f"app queue + propagation (mean of {seeds['queue']})",
             "random|False": f"random picks (mean of {seeds['random']})",
             "random|True": f"random picks + propagation (mean of {seeds['random']})"}
    shown = [n for n in rounds if n in CHECKPOINTS or n == pool]
    rows = []
    for n in shown:
        row = [f"{n:,}" + (" (all)" if n == pool else "")]
        for key in result["curves"]:
            r = at(result, key, n)
            cell = f"{100 * r['test_acc']:.1f}%"
            if "test_acc_min" in r and r["test_acc_min"] != r["test_acc_max"]:
                cell += f" ({100 * r['test_acc_min']:.1f}–{100 * r['test_acc_max']:.1f})"
            row.append(cell)
        rows.append(row)
    prop_rows = []
    for n in shown:
        cells = [f"{n:,}"]
        for key in ("queue|True", "random|True"):
            r = at(result, key, n)
            cells.append(f"{r['propagated']:.0f}" + (f" at {100 * r['prop_precision']:.1f}% precision"
                                                     if r["propagated"] else ""))
        prop_rows.append(cells)

    def first_reaching(key, goal):
        hit = next((r["hand"] for r in result["curves"][key] if r["test_acc"] >= goal), None)
        return f"{hit:,}" if hit else "not reached"

    reach = [[names[k], first_reaching(k, 0.85), first_reaching(k, 0.88), first_reaching(k, 0.90)]
             for k in result["curves"]]
    c_rows = ", ".join(f"C={c:g}: {100 * a:.1f}%" for c, a, _ in result["c_rows"])
    knobs = result["queue_knobs"]
    tuned = result.get("tune_queue")
    lines = [
        "## How many hand labels it takes (`bench/bench_labels.py`)", "",
        (f"The labelling loop simulated with the corpus's ground truth as the person. Split: {SPLIT_NOTE}. "
         f"Pool = the {pool:,} labelled TRAIN photos with an embedding; scored on {result['test']:,} TEST photos. "
         "Round 0 is the cold-start zero-shot prelabel; then in rounds (hand labels "
         f"{', '.join(f'{n:,}' for n in rounds)}) the person labels the next photos, propagation optionally "
         "lends labels, a model is trained and scored on TEST and its margins re-order the next round's queue. "
         f"*app queue* = `roomclf.labels.queue.value_order` with the product's defaults ({knobs['diverse']} "
         f"representatives: k-means medoids of the pool in greedy coverage order, then the least confident photos "
         f"spread round by round over {knobs['groups']} k-means groups; what `roomclf prelabel` stores for the "
         "labelling app; the person takes the first photos of it they have not labelled yet, across the whole "
         f"pool), averaged over {seeds['queue']} k-means seeds (min–max in brackets); *random* = photos drawn at "
         f"random, {seeds['random']} draws. *propagation* = `roomclf.propagate.votes` pull vote, k=10, thresholds "
         "by 5-fold cross-validation on the hand labels at 90% target precision, recomputed every round. The "
         "model of every round: class-balanced logistic regression on the frozen efficientnet_lite0 ImageNet "
         f"embeddings (L2-normalised), C={result['C']:g} chosen on TUNE with every TRAIN label ({c_rows}). No "
         "fine-tuning (a round costs seconds): the fast.ai figures on the same split are in the training section."),
        "",
        f"Cold start, no hand labels: the zero-shot prelabel scores **{100 * result['zero_shot']['test']:.1f}%** on "
        f"TEST ({100 * result['zero_shot']['pool']:.1f}% on the pool; its concept mapping was fitted on labelled "
        "photos of batch_02–03, part of the pool).", "",
        *(tune_table(tuned, knobs) + [""] if tuned else []),
        "TEST accuracy (batch_14–19) against hand labels (mean, and min–max over the campaigns):", "",
        table(["hand labels"] + [names[k] for k in result["curves"]], rows), "",
        "Hand labels needed to first reach a TEST accuracy (at the rounds above):", "",
        table(["loop", "85%", "88%", "90%"], reach), "",
        "Labels propagation lent (and their precision against the ground truth, which is itself ~5% noisy):", "",
        table(["hand labels", "app queue + propagation", "random + propagation"], prop_rows), "",
        "What the curves say:", "",
        *reading(result, [n for n in shown if n != pool]), "",
        "![TEST accuracy against hand labels](labels_curve.png)", "",
        (f"Run time on this shared 2-core machine ({result['date']}): {result['total_s'] / 60:.1f} min in all "
         "(embeddings from the cache; " + ", ".join(f"{names[k]} {v:.0f} s" for k, v in result["timing"].items())
         + (f"; the TUNE grid {tuned['s'] / 60:.1f} min" if tuned and "s" in tuned else "")
         + f"). The queue's order over {QUEUE_TIMING_ROWS:,} photos (the pool's embeddings repeated with a little "
         f"noise): {result['queue_20k_s']:.1f} s. Load average at the end: {result['load']:.1f}."),
    ]
    return "\n".join(lines)


def mean_rows(runs: list[list[dict]]) -> list[dict]:
    import warnings

    warnings.filterwarnings("ignore", "Mean of empty slice")
    out = []
    for rs in zip(*runs):
        acc = [r["test_acc"] for r in rs]
        row = {k: float(np.nanmean([r[k] for r in rs])) if k != "hand" else rs[0]["hand"] for k in rs[0]}
        row["test_acc_min"], row["test_acc_max"] = min(acc), max(acc)
        out.append(row)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(default_data()))
    ap.add_argument("--train", default=TRAIN_BATCHES, help="the pool the person labels")
    ap.add_argument("--tune", default=TUNE_BATCHES)
    ap.add_argument("--test", default=TEST_BATCHES)
    ap.add_argument("--backbone", default="efficientnet_lite0")
    ap.add_argument("--rounds", help="comma-separated hand-label counts per round (default: %s)" % ",".join(map(str, ROUNDS)))
    ap.add_argument("--tune-queue", action="store_true",
                    help="first score the queue's knobs (QUEUE_GRID) on TUNE; without it the section keeps the "
                         "TUNE table of the last saved result")
    ap.add_argument("--limit", type=int, default=0, help="at most this many photos per split (smoke tests)")
    ap.add_argument("--mlflow", action="store_true", help="also log the curves and plot to var/bench/mlflow.db")
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--report", action="store_true", help="render the section again from bench/results/labels.json")
    ap.add_argument("--save-picks", metavar="N:FILE",
                    help="only run the app-queue campaign (no propagation) up to N hand labels and write the pool "
                         "photos it had the person label to FILE, one path per line (for bench_train.py "
                         "--hand-picks: full fast.ai training on the queue's picks)")
    args = ap.parse_args()
    if args.report:
        return report_saved(SECTION, render, write=not args.no_write)
    if args.save_picks and not re.fullmatch(r"[1-9]\d*:.+", args.save_picks):
        ap.error(f"--save-picks takes N:FILE (e.g. 1000:var/bench/labels/queue-picks-1000.txt), not {args.save_picks!r}")

    from roomclf.labels.queue import DIVERSE_HEAD, SPREAD_GROUPS
    from roomclf.taxonomy import CLASSES

    t0 = time.perf_counter()
    data = Path(args.data)
    root = data / "listings"
    split = honest_split(data, args.train, args.tune, args.test, backbone=args.backbone)
    if args.limit:
        for k in ("train", "tune", "test"):
            split[k] = split[k][::max(1, len(split[k]) // args.limit)][:args.limit]
    label_of = {p: c for k in ("train", "tune", "test") for p, c in split[k]}
    sets = {}
    for k in ("train", "tune", "test"):
        paths, X, unit = features(root, [p for p, _ in split[k]], args.backbone)
        sets[k] = (paths, X, unit, np.array([CLASSES.index(label_of[p]) for p in paths]))
    pool_paths, X, unit, y = sets["train"]
    _, X_tune, _, y_tune = sets["tune"]
    _, X_test, _, y_test = sets["test"]
    print(f"{split_summary(split)}; with embeddings: pool {len(y)}, TUNE {len(y_tune)}, TEST {len(y_test)} "
          f"({time.perf_counter() - t0:.0f}s)", flush=True)

    # the one choice of the model: C of the logistic regression, on TUNE with every TRAIN label
    c_rows = []
    for C in C_GRID:
        t = time.perf_counter()
        (p,) = fit_predict(X, y, [X_tune], C, len(CLASSES))
        c_rows.append((C, float((p.argmax(1) == y_tune).mean()), time.perf_counter() - t))
        print(f"C={C:g}: TUNE accuracy {c_rows[-1][1]:.4f} ({c_rows[-1][2]:.1f}s)", flush=True)
    C = max(c_rows, key=lambda r: (r[1], -r[0]))[0]

    probs0 = cold_start(root, pool_paths, args.backbone)
    zs_test = cold_start(root, sets["test"][0], args.backbone)
    zs_acc = float((zs_test.argmax(1) == y_test).mean())
    zs_pool = float((probs0.argmax(1) == y).mean())
    print(f"cold-start prelabel: TEST {zs_acc:.4f}, pool {zs_pool:.4f}", flush=True)

    wanted = [int(x) for x in args.rounds.split(",")] if args.rounds else ROUNDS
    rounds = [n for n in wanted if n < len(y)] + [len(y)]
    if args.save_picks:
        n, _, file = args.save_picks.partition(":")
        picked: dict = {}
        simulate(X, unit, y, probs0, X_test, y_test, [r for r in rounds if r < int(n)] + [int(n)], "queue", False,
                 C, len(CLASSES), picked=picked)
        Path(file).parent.mkdir(parents=True, exist_ok=True)
        Path(file).write_text("".join(pool_paths[i] + "\n" for i in picked[int(n)]))
        print(f"{len(picked[int(n)])} photos the app queue picked written to {file}")
        return

    earlier = load_result(SECTION) or {}
    tuned = earlier.get("tune_queue")
    if args.tune_queue:
        t = time.perf_counter()
        tuned = tune_queue(X, unit, y, probs0, X_tune, y_tune, C, len(CLASSES),
                           rounds=[n for n in TUNE_ROUNDS if n in wanted] if args.rounds else TUNE_ROUNDS)
        tuned.update({"s": time.perf_counter() - t, "date": datetime.date.today().isoformat()})
        print(f"TUNE winner: {tuned['winner']} (the product's defaults: diverse={DIVERSE_HEAD}, "
              f"groups={SPREAD_GROUPS})", flush=True)

    curves, timing = {}, {}
    for strategy in ("queue", "random"):
        for prop in (False, True):
            t = time.perf_counter()
            seeds = range(QUEUE_SEEDS if strategy == "queue" else RANDOM_SEEDS)
            runs = [simulate(X, unit, y, probs0, X_test, y_test, rounds, strategy, prop, C, len(CLASSES), s)
                    for s in seeds]
            curves[f"{strategy}|{prop}"] = mean_rows(runs)
            timing[f"{strategy}|{prop}"] = time.perf_counter() - t
    result = {"date": datetime.date.today().isoformat(), "split": split_summary(split), "pool": int(len(y)),
              "tune": int(len(y_tune)), "test": int(len(y_test)), "C": C, "c_rows": c_rows,
              "zero_shot": {"test": zs_acc, "pool": zs_pool}, "rounds": rounds,
              "seeds": {"queue": QUEUE_SEEDS, "random": RANDOM_SEEDS},
              "queue_knobs": {"diverse": DIVERSE_HEAD, "groups": SPREAD_GROUPS}, "curves": curves,
              "timing": timing, "queue_20k_s": queue_seconds(unit, probs0), "tune_queue": tuned,
              "total_s": time.perf_counter() - t0, "load": os.getloadavg()[0]}
    out = PROJECT / "var" / "bench" / "labels"
    out.mkdir(parents=True, exist_ok=True)
    png = plot(result, out / "labels_curve.png")
    full = not args.limit and not args.rounds
    text = publish(SECTION, result, render, write=full and not args.no_write)
    if full and not args.no_write:
        PLOT.write_bytes(png.read_bytes())
    if args.mlflow:
        log_mlflow(result, text, png)


def log_mlflow(result: dict, text: str, png: Path) -> None:
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    import mlflow

    store = (PROJECT / "var" / "bench").resolve()
    mlflow.set_tracking_uri(f"sqlite:///{store / 'mlflow.db'}")
    if mlflow.get_experiment_by_name("roomclf-bench-labels") is None:
        mlflow.create_experiment("roomclf-bench-labels", artifact_location=(store / "mlartifacts").as_uri())
    mlflow.set_experiment("roomclf-bench-labels")
    with mlflow.start_run(run_name="labels-curve"):
        mlflow.log_params({"C": result["C"], "queue_seeds": result["seeds"]["queue"],
                           "random_seeds": result["seeds"]["random"], "pool": result["pool"],
                           "test": result["test"], "rounds": ",".join(map(str, result["rounds"])),
                           "queue_diverse": result["queue_knobs"]["diverse"],
                           "queue_groups": result["queue_knobs"]["groups"]})
        mlflow.log_metric("zero_shot_test_acc", result["zero_shot"]["test"])
        mlflow.log_metric("queue_20k_s", result["queue_20k_s"])
        for key, rows in result["curves"].items():
            strategy, prop = key.split("|")
            for r in rows:
                mlflow.log_metric(f"test_acc_{strategy}{'_prop' if prop == 'True' else ''}", r["test_acc"],
                                  step=r["hand"])
        mlflow.log_artifact(str(png))
        mlflow.log_text(text, "labels.md")
    print(f"logged to MLflow: {mlflow.get_tracking_uri()} (experiment roomclf-bench-labels)")


if __name__ == "__main__":
    main()
