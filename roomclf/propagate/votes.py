"""Label propagation: lend labels to unlabelled photos from their labelled look-alikes.

Two directions, both a similarity-weighted vote over annoy neighbours:

- **pull** (default): each unlabelled photo takes the weighted vote of its k
  nearest labelled photos;
- **push** (the seed's way): each labelled photo lends its label to its k
  nearest unlabelled photos, and a photo reached by several lenders takes
  their weighted vote.

A vote is accepted when its winning share and the similarity of the nearest
voter pass two thresholds. Which thresholds? ``cross_validate`` measures it:
hold out a fold of the labelled photos, propagate from the rest, and count
precision (accepted and right) and coverage (accepted) for every pair of
thresholds on a grid; ``pick_thresholds`` takes the pair with the most
coverage at the target precision. ``suspect_labels`` turns the same vote on
the labelled photos themselves: a label its neighbours strongly disagree
with is probably wrong.

Everything here takes arrays and returns data; ``roomclf.propagate.run``
reads the corpus and the label store, writes them back and logs to MLflow.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from roomclf.errors import RoomclfError
from roomclf.metrics import binary_scores, fold_ids
from roomclf.models.neighbours import NeighbourIndex
from roomclf.propagate.defaults import PROPAGATION

METHODS = ("pull", "push")
SHARE_GRID = (0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 1.0)
SIM_GRID = (0.0, 0.4, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8)


class PropagationError(RoomclfError):
    """Propagation cannot run on this input (no labels, k too large, ...)."""


@dataclass
class Votes:
    pred: np.ndarray       # N int: winning class index, -1 where no neighbour voted
    share: np.ndarray      # N float: the winner's share of the weighted vote
    top_sim: np.ndarray    # N float: similarity of the most similar voter (0 where none)
    probs: np.ndarray      # N x C: the weighted vote, normalised

    def accept(self, share_min: float, sim_min: float) -> np.ndarray:
        return (self.pred >= 0) & (self.share >= share_min - 1e-9) & (self.top_sim >= sim_min - 1e-9)


def weighted_vote(labels: np.ndarray, sims: np.ndarray, n_classes: int) -> Votes:
    """Vote of neighbours with class ``labels`` (N x k, -1 = no neighbour), weighted by similarity."""
    labels = np.asarray(labels, dtype=np.int64)
    sims = np.nan_to_num(np.asarray(sims, dtype=np.float64), nan=0.0)
    weights = np.where(labels >= 0, np.clip(sims, 1e-6, None), 0.0)
    votes = np.zeros((len(labels), n_classes))
    rows = np.repeat(np.arange(len(labels)), labels.shape[1] if labels.ndim == 2 else 0)
    flat = labels.ravel()
    ok = flat >= 0
    np.add.at(votes, (rows[ok], flat[ok]), weights.ravel()[ok])
    total = votes.sum(axis=1, keepdims=True)
    probs = np.divide(votes, total, out=np.zeros_like(votes), where=total > 0)
    voted = total[:, 0] > 0
    top = np.where(labels >= 0, sims, -np.inf).max(axis=1, initial=-np.inf) if labels.size else np.zeros(len(labels))
    return Votes(pred=np.where(voted, probs.argmax(axis=1), -1), share=probs.max(axis=1, initial=0.0),
                 top_sim=np.where(voted, top, 0.0), probs=probs)


def pull_votes(labelled: np.ndarray, y: np.ndarray, queries: np.ndarray, k: int, n_classes: int,
               n_trees: int = PROPAGATION.n_trees, search_k: int = PROPAGATION.search_k,
               progress: str | None = None) -> Votes:
    """Each query takes the weighted vote of its k nearest ``labelled`` vectors (classes ``y``)."""
    if not len(queries):
        return weighted_vote(np.zeros((0, k), np.int64), np.zeros((0, k)), n_classes)
    index = NeighbourIndex.build([str(i) for i in range(len(labelled))], labelled, n_trees=n_trees)
    found = index.query(queries, min(k, len(labelled)), search_k, progress=progress)
    return weighted_vote(np.where(found.items >= 0, np.asarray(y)[found.items], -1), found.sims, n_classes)


def push_votes(labelled: np.ndarray, y: np.ndarray, candidates: np.ndarray, k: int, n_classes: int,
               n_trees: int = PROPAGATION.n_trees, search_k: int = PROPAGATION.search_k,
               progress: str | None = None) -> Votes:
    """Each labelled vector lends its class to its k nearest ``candidates``; each candidate
    takes the weighted vote of the lenders that reached it (none: pred -1)."""
    if not len(candidates):
        return weighted_vote(np.zeros((0, 1), np.int64), np.zeros((0, 1)), n_classes)
    index = NeighbourIndex.build([str(i) for i in range(len(candidates))], candidates, n_trees=n_trees)
    found = index.query(labelled, min(k, len(candidates)), search_k, progress=progress)
    got: list[list[tuple[int, float]]] = [[] for _ in range(len(candidates))]
    for lender, (items, sims) in enumerate(zip(found.items, found.sims)):
        for c, s in zip(items, sims):
            if c >= 0:
                got[c].append((int(y[lender]), float(s)))
    width = max(1, max(len(g) for g in got))
    labels = np.full((len(candidates), width), -1, np.int64)
    sims = np.zeros((len(candidates), width))
    for c, g in enumerate(got):
        for j, (lab, s) in enumerate(g):
            labels[c, j], sims[c, j] = lab, s
    return weighted_vote(labels, sims, n_classes)


def votes_for(method: str, labelled: np.ndarray, y: np.ndarray, candidates: np.ndarray, k: int,
              n_classes: int, n_trees: int = PROPAGATION.n_trees, search_k: int = PROPAGATION.search_k,
              progress: str | None = None) -> Votes:
    if method == "pull":
        return pull_votes(labelled, y, candidates, k, n_classes, n_trees, search_k, progress)
    if method == "push":
        return push_votes(labelled, y, candidates, k, n_classes, n_trees, search_k, progress)
    raise PropagationError(f"unknown propagation method {method!r}; one of {', '.join(METHODS)}")


def cross_validated_votes(vectors: np.ndarray, y: np.ndarray, k: int, n_classes: int,
                          method: str = PROPAGATION.method, folds: int = PROPAGATION.folds,
                          pool: np.ndarray | None = None, n_trees: int = PROPAGATION.n_trees,
                          search_k: int = PROPAGATION.search_k, seed: int = 0) -> Votes:
    """Out-of-fold votes for each labelled vector: its fold held out, propagated to from the others.

    For ``push``, the held-out photos compete with the unlabelled ``pool`` for the
    lenders' neighbour slots, as they would in a real run.
    """
    y = np.asarray(y, dtype=np.int64)
    if folds < 2 or folds > len(y):
        raise PropagationError(f"cross-validation needs 2 <= folds <= labelled photos ({len(y)}); got {folds}")
    fold = fold_ids(y, folds, seed)        # stratified by class
    out = Votes(np.full(len(y), -1), np.zeros(len(y)), np.zeros(len(y)), np.zeros((len(y), n_classes)))
    pool = np.zeros((0, vectors.shape[1]), np.float32) if pool is None else pool
    for f in range(folds):
        held, train = fold == f, fold != f
        candidates = np.concatenate([vectors[held], pool]) if method == "push" else vectors[held]
        v = votes_for(method, vectors[train], y[train], candidates, k, n_classes, n_trees, search_k)
        n = int(held.sum())
        out.pred[held], out.share[held], out.top_sim[held], out.probs[held] = (v.pred[:n], v.share[:n],
                                                                               v.top_sim[:n], v.probs[:n])
    return out


def cross_validate(vectors: np.ndarray, y: np.ndarray, k: int, n_classes: int, method: str = PROPAGATION.method,
                   folds: int = PROPAGATION.folds, pool: np.ndarray | None = None, share_grid=SHARE_GRID,
                   sim_grid=SIM_GRID, n_trees: int = PROPAGATION.n_trees, search_k: int = PROPAGATION.search_k,
                   seed: int = 0) -> list[dict]:
    """Precision and coverage of propagation at each (share_min, sim_min), by k-fold cross-validation:
    one row per threshold pair (see ``threshold_table``)."""
    votes = cross_validated_votes(vectors, y, k, n_classes, method, folds, pool, n_trees, search_k, seed)
    return threshold_table(votes, y, share_grid, sim_grid)


def threshold_table(votes: Votes, truth: np.ndarray, share_grid=SHARE_GRID, sim_grid=SIM_GRID) -> list[dict]:
    """Precision and coverage of ``votes`` against ``truth`` for every threshold pair: rows of
    share_min, sim_min, precision (of the accepted votes, ``roomclf.metrics.binary_scores``: 0 when nothing
    is accepted), coverage, accepted, held_out."""
    rows = []
    right = votes.pred == np.asarray(truth)
    for sim_min in sim_grid:
        for share_min in share_grid:
            ok = votes.accept(share_min, sim_min)
            n = int(ok.sum())
            rows.append({"share_min": float(share_min), "sim_min": float(sim_min),
                         "precision": binary_scores(right, ok)["precision"],
                         "coverage": n / len(truth) if len(truth) else 0.0, "accepted": n, "held_out": len(truth)})
    return rows


def pick_thresholds(table: list[dict], target_precision: float = PROPAGATION.target_precision) -> tuple[dict, bool]:
    """The row with the most coverage whose precision reaches the target (ties: higher
    precision, then stricter thresholds). Returns (row, reached); when no row reaches
    the target, the most precise row that accepts anything, and False."""
    scored = [r for r in table if r["accepted"]]
    if not scored:
        raise PropagationError("cross-validation accepted nothing at any threshold: label more photos")
    good = [r for r in scored if r["precision"] >= target_precision]
    if good:
        return max(good, key=lambda r: (r["coverage"], r["precision"], r["share_min"], r["sim_min"])), True
    return max(scored, key=lambda r: (r["precision"], r["coverage"])), False


def suspect_labels(paths: list[str], vectors: np.ndarray, labels: list[str], classes: list[str],
                   k: int = PROPAGATION.k, min_share: float = PROPAGATION.suspect_share,
                   n_trees: int = PROPAGATION.n_trees, search_k: int = PROPAGATION.search_k) -> list[dict]:
    """Labelled photos whose k nearest labelled neighbours vote, with at least
    ``min_share`` of the weighted vote, for another class.

    Returns ``[{"path", "label" (given), "vote" (neighbours' class), "share",
    "neighbours" (the 3 nearest paths)}]``, strongest disagreement first.
    """
    if len(paths) < 2:
        return []
    y = np.array([classes.index(lab) for lab in labels])
    index = NeighbourIndex.build(list(paths), vectors, n_trees=n_trees)
    found = index.query_items(range(len(paths)), min(k, len(paths) - 1), search_k)
    votes = weighted_vote(np.where(found.items >= 0, y[found.items], -1), found.sims, len(classes))
    out = []
    for i in np.flatnonzero((votes.pred >= 0) & (votes.pred != y) & (votes.share >= min_share - 1e-9)):
        out.append({"path": str(paths[i]), "label": labels[i], "vote": classes[votes.pred[i]],
                    "share": round(float(votes.share[i]), 4),
                    "neighbours": [str(paths[j]) for j in found.items[i][:3] if j >= 0]})
    return sorted(out, key=lambda s: (-s["share"], s["path"]))
