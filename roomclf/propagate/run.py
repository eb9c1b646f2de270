"""One propagation run: corpus + label store in, propagated labels + MLflow run out.

Reads the seed labels (``manual`` by default) of the photos of some batches,
embeds every photo (cached; missing ones are computed), measures propagation
by cross-validation on the seed labels, picks the thresholds (unless given),
propagates to every photo without a manual or imported label, and finds
suspect labels and near-duplicates. Everything is computed before anything is
written: the label store is then changed in ONE transaction (old propagated
labels of these batches dropped, new ones written, the suspect list stored in
the store's meta under ``suspects``), and the MLflow run gets the parameters,
the cross-validation metrics and the artifacts (annoy index + its photo paths,
threshold table, precision–coverage plot, suspects CSV + grid, duplicates CSV,
the propagated labels).
"""
from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from roomclf.corpus import discover
from roomclf.labels.sources import HUMAN_SOURCES, LabelSource
from roomclf.labels.store import SUSPECTS_KEY
from roomclf.models.near_duplicates import duplicate_pairs
from roomclf.models.neighbours import NeighbourIndex
from roomclf.propagate import report
from roomclf.propagate.defaults import PROPAGATION
from roomclf.propagate.votes import (
    PropagationError,
    cross_validated_votes,
    pick_thresholds,
    suspect_labels,
    threshold_table,
    votes_for,
)
from roomclf.taxonomy import CLASSES

EXPERIMENT = "roomclf-propagate"
SUSPECTS_META = SUSPECTS_KEY


@dataclass
class PropagationResult:
    run_id: str | None
    method: str
    k: int
    labelled: int                      # seed labels used
    candidates: int                    # photos that could take a label
    accepted: int                      # propagated labels written
    share_min: float
    sim_min: float
    auto_thresholds: bool
    target_reached: bool
    cv_precision: float
    cv_coverage: float
    per_class: dict[str, int] = field(default_factory=dict)
    suspects: list[dict] = field(default_factory=list)
    duplicates: list[tuple[str, str, float]] = field(default_factory=list)
    ignored_outside: int = 0           # seed labels of photos outside the batches
    unreadable: dict[str, str] = field(default_factory=dict)
    written: bool = False
    experiment: str = EXPERIMENT       # where the run is: `mlflow run --experiment-name` logs into its own


def _seed_labels(store, sources, corpus_paths: set[str], batches: list[str]) -> tuple[dict[str, str], int]:
    seeds = {p: lab.label for p, lab in store.labels(sources).items()}
    inside = {p: lab for p, lab in seeds.items() if p in corpus_paths}
    in_batches = set(batches)
    stale = sorted(p for p in seeds if p not in corpus_paths and p.split("/", 1)[0] in in_batches)
    if stale:
        raise PropagationError(f"{len(stale)} {'/'.join(sources)} labels name photos that are not in the corpus "
                               f"(e.g. {stale[0]}): fix or delete them first")
    if not inside:
        where = sorted({p.split("/", 1)[0] for p in seeds})
        hint = f" ({len(seeds)} found in {', '.join(where[:5])}{'...' if len(where) > 5 else ''})" if seeds else ""
        raise PropagationError(f"no {'/'.join(sources)} labels among the photos of {', '.join(batches)}{hint}: "
                               "label some with `roomclf label` or `roomclf import-labels --as manual`")
    return inside, len(seeds) - len(inside)


@dataclass
class _Inputs:
    batches: list[str]
    paths: list[str]                   # every photo with an embedding
    vectors: np.ndarray
    labelled: list[str]
    labels: list[str]
    X_lab: np.ndarray
    y_lab: np.ndarray
    candidates: list[str]
    X_cand: np.ndarray
    outside: int
    unreadable: dict[str, str]


def _inputs(store, root, batches, backbone: str, seed_sources, k: int, folds: int, progress: bool) -> _Inputs:
    """Check the seed labels, then embed the batches (computing what the cache lacks)."""
    from roomclf.models.embeddings import embed

    if k < 1:
        raise PropagationError(f"k must be at least 1, got {k}")
    corpus = discover(root, batches)
    batch_names = sorted({p.batch for p in corpus.photos})
    seeds, outside = _seed_labels(store, list(seed_sources), set(corpus.paths), batch_names)
    train_size = len(seeds) - -(-len(seeds) // folds)
    if k > train_size:
        raise PropagationError(f"k={k} is larger than the labelled set a cross-validation fold learns from "
                               f"({train_size} of {len(seeds)} labelled photos, {folds} folds): lower k or label more")
    emb = embed(corpus.root, corpus.paths, backbone, progress=progress)
    row_of = emb.index()
    labelled = [p for p in sorted(seeds) if p in row_of]
    if len(labelled) - -(-len(labelled) // folds) < k:
        raise PropagationError(f"only {len(labelled)} labelled photos have an embedding; k={k} needs more")
    taken = set(store.labels(HUMAN_SOURCES)) | set(seeds)
    candidates = [p for p in emb.paths if p not in taken]
    dim = emb.vectors.shape[1]
    return _Inputs(batch_names, emb.paths, emb.vectors, labelled, [seeds[p] for p in labelled],
                   emb.vectors[[row_of[p] for p in labelled]], np.array([CLASSES.index(seeds[p]) for p in labelled]),
                   candidates, emb.vectors[[row_of[p] for p in candidates]] if candidates else np.zeros((0, dim),
                                                                                                        np.float32),
                   outside, dict(emb.errors))


def run_propagation(root: str | os.PathLike, batches: str | list[str], backbone: str = PROPAGATION.backbone,
                    k: int = PROPAGATION.k, method: str = PROPAGATION.method,
                    share_min: float | None = PROPAGATION.share_min, sim_min: float | None = PROPAGATION.sim_min,
                    target_precision: float = PROPAGATION.target_precision, folds: int = PROPAGATION.folds,
                    n_trees: int = PROPAGATION.n_trees, search_k: int = PROPAGATION.search_k,
                    duplicate_threshold: float = PROPAGATION.duplicate_threshold,
                    suspect_share: float = PROPAGATION.suspect_share,
                    seed_sources: tuple[str, ...] = PROPAGATION.seed_sources, store=None, dry_run: bool = False,
                    log_mlflow: bool = True, progress: bool = True, echo=print) -> PropagationResult:
    """Propagate the seed labels over ``batches`` (see the module docstring)."""
    from roomclf.labels.store import LabelStore

    store = store or LabelStore()
    d = _inputs(store, root, batches, backbone, seed_sources, k, folds, progress)
    echo(f"{len(d.labelled)} labelled, {len(d.candidates)} to propagate to, {len(d.unreadable)} unreadable; "
         f"cross-validating ({folds} folds, {method}, k={k})")
    oof = cross_validated_votes(d.X_lab, d.y_lab, k, len(CLASSES), method, folds, d.X_cand, n_trees, search_k)
    table = threshold_table(oof, d.y_lab)
    chosen, reached = pick_thresholds(table, target_precision)
    auto = share_min is None and sim_min is None
    share_min = chosen["share_min"] if share_min is None else float(share_min)
    sim_min = chosen["sim_min"] if sim_min is None else float(sim_min)
    at = threshold_table(oof, d.y_lab, (share_min,), (sim_min,))[0]

    votes = votes_for(method, d.X_lab, d.y_lab, d.X_cand, k, len(CLASSES), n_trees, search_k, progress="propagating")
    ok = votes.accept(share_min, sim_min)
    rows = [(p, CLASSES[votes.pred[i]], round(float(votes.share[i]), 4),
             {"method": method, "k": k, "nearest_sim": round(float(votes.top_sim[i]), 4)})
            for i, p in enumerate(d.candidates) if ok[i]]
    index = NeighbourIndex.build(d.paths, d.vectors, n_trees=n_trees)
    result = PropagationResult(
        run_id=None, method=method, k=k, labelled=len(d.labelled), candidates=len(d.candidates), accepted=len(rows),
        share_min=share_min, sim_min=sim_min, auto_thresholds=auto, target_reached=reached,
        cv_precision=at["precision"], cv_coverage=at["coverage"],
        per_class={c: sum(1 for r in rows if r[1] == c) for c in CLASSES},
        suspects=suspect_labels(d.labelled, d.X_lab, d.labels, list(CLASSES), k, suspect_share, n_trees, search_k),
        duplicates=duplicate_pairs(d.paths, d.vectors, duplicate_threshold, index=index),
        ignored_outside=d.outside, unreadable=d.unreadable)
    params = {"batch_list": ",".join(d.batches), "backbone": backbone, "method": method, "k": k, "folds": folds,
              "n_trees": n_trees, "search_k": search_k, "used_share_min": share_min, "used_sim_min": sim_min,
              "auto_thresholds": auto, "target_precision": target_precision, "seed_sources": ",".join(seed_sources),
              "duplicate_threshold": duplicate_threshold, "suspect_share": suspect_share, "dry_run": dry_run}

    def write():
        _write(store, result, rows, d.paths, d.batches, dry_run)

    with tempfile.TemporaryDirectory(prefix="roomclf-propagate-") as tmp:
        files = _artifacts(Path(tmp), root, index, table, at, result, rows)
        if log_mlflow:
            _log_run(params, table, result, files, write)
        else:
            write()
    return result


def _artifacts(tmp: Path, root, index: NeighbourIndex, table, chosen, result: PropagationResult, rows) -> dict:
    index.save(tmp / "index")
    return {
        "index": tmp / "index",
        "thresholds": report.threshold_csv(tmp / "cv_thresholds.csv", table),
        "plot": report.precision_coverage_plot(tmp / "precision_coverage.png", table, chosen,
                                               f"{result.method}, k={result.k}: cross-validated on "
                                               f"{result.labelled} labels"),
        "suspects_csv": report.suspects_csv(tmp / "suspects.csv", result.suspects),
        "suspects_grid": report.suspect_grid(tmp / "suspects.png", root, result.suspects),
        "duplicates": report.duplicates_csv(tmp / "near_duplicates.csv", result.duplicates),
        "propagated": report.write_csv(tmp / "propagated.csv", ["path", "label", "share", "nearest_sim"],
                                       [[p, lab, conf, extra["nearest_sim"]] for p, lab, conf, extra in rows]),
    }


def _write(store, result: PropagationResult, rows, paths: list[str], batches: list[str], dry_run: bool) -> None:
    """Replace the propagated labels of these photos and these batches' stored suspects, in one transaction.

    Suspects of other batches (an earlier run over them) stay for the labelling app's Review tab.
    """
    if dry_run:
        return
    kept = [s for s in store.suspects() if s.get("path", "").split("/", 1)[0] not in set(batches)]
    with store.transaction() as db:
        store.clear_source(LabelSource.PROPAGATED, paths, db=db)
        store.set_labels(rows, LabelSource.PROPAGATED, who="roomclf propagate", db=db)
        value = json.dumps(kept + [{k: s[k] for k in ("path", "label", "vote", "share", "neighbours")}
                                   for s in result.suspects])
        info = json.dumps({"run_id": result.run_id, "batches": batches, "at": time.time(),
                           "method": result.method, "k": result.k})
        for key, val in ((SUSPECTS_META, value), (f"{SUSPECTS_META}_info", info)):
            store.set_meta(key, val, db=db)
    result.written = True


def _log_run(params: dict, table: list[dict], result: PropagationResult, files: dict, write) -> str:
    import mlflow

    from roomclf.tracking.experiments import step_run

    with step_run(EXPERIMENT, f"propagate {params['batch_list']}") as run:
        result.run_id = run.info.run_id
        result.experiment = mlflow.get_experiment(run.info.experiment_id).name
        # Under `mlflow run`, the entry point's parameters are already logged (as given): keep them.
        given = mlflow.get_run(run.info.run_id).data.params
        mlflow.log_params({k: v for k, v in params.items() if k not in given})
        for sim_min in sorted({r["sim_min"] for r in table}):
            for step, r in enumerate(x for x in table if x["sim_min"] == sim_min):
                tag = f"sim_{sim_min:.2f}"
                if r["accepted"]:
                    mlflow.log_metric(f"cv_precision/{tag}", r["precision"], step=step)
                mlflow.log_metric(f"cv_coverage/{tag}", r["coverage"], step=step)
        metrics = {"labelled": result.labelled, "candidates": result.candidates, "propagated": result.accepted,
                   "coverage": result.accepted / result.candidates if result.candidates else 0.0,
                   "suspects": len(result.suspects), "near_duplicates": len(result.duplicates),
                   "unreadable": len(result.unreadable)}
        metrics["cv_coverage"] = result.cv_coverage
        if result.cv_coverage:           # a precision was measured: the thresholds accepted something
            metrics["cv_precision"] = result.cv_precision
        mlflow.log_metrics(metrics)
        mlflow.log_artifacts(str(files["index"]), "index")
        for key in ("thresholds", "plot", "suspects_csv", "suspects_grid", "duplicates", "propagated"):
            mlflow.log_artifact(str(files[key]))
        write()
        mlflow.set_tag("label_store_written", str(result.written).lower())
        return run.info.run_id
