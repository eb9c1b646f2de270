"""Annoy at crawl scale: build time, query time and memory at 20k, 100k and 400k vectors.

The vectors are real efficientnet_lite0 embeddings of the corpus (batch_01-batch_03
by default) replicated with small Gaussian noise (each copy about cosine 0.95 to
its original) up to the size, L2-normalised, 1280 floats each. Each size runs in a
fresh subprocess so its memory is measured alone: RSS growth while adding the items
and building (annoy's copy of the vectors plus its trees; the numpy source array is
allocated before and not counted). Queries: 10-NN of 2,000 sampled items
(get_nns_by_item, search_k default = n_trees * k), timed and extrapolated to a
query per photo; recall@10 against exact brute force on 200 of them. The 380k row
is a projection from the 400k measurement (time and memory scaled linearly, a slight
overestimate for the n log n build). The result is kept in bench/results/annoy.json (committed) and
rendered into the `annoy` section of docs/benchmarks.md (``--report`` renders it again without measuring).

    python bench/bench_annoy.py [--sizes 20000,100000,400000] [--trees 10] [--no-write]
    python bench/bench_annoy.py --report [--no-write]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import PROJECT, publish, report_saved, table

SECTION = "annoy"
QUERIES, RECALL_QUERIES, K = 2000, 200, 10


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def real_embeddings(data: Path, batches: str) -> np.ndarray:
    from roomclf.corpus import discover
    from roomclf.models.embeddings import embed

    corpus = discover(data, batches)
    return embed(corpus.root, corpus.paths, progress=True).vectors


def replicate(base: np.ndarray, n: int, noise: float = 0.33, seed: int = 0) -> np.ndarray:
    """n unit vectors: copies of ``base`` rows plus Gaussian noise of total norm ~``noise``."""
    rng = np.random.default_rng(seed)
    out = np.empty((n, base.shape[1]), np.float32)
    scale = noise / np.sqrt(base.shape[1])
    for start in range(0, n, 50_000):
        stop = min(n, start + 50_000)
        part = base[rng.integers(0, len(base), stop - start)]
        part = part + rng.standard_normal(part.shape, dtype=np.float32) * scale
        out[start:stop] = part / np.linalg.norm(part, axis=1, keepdims=True)
    return out


def measure(vectors: np.ndarray, n_trees: int, tmp: Path) -> dict:
    from annoy import AnnoyIndex

    rng = np.random.default_rng(1)
    n, dim = vectors.shape
    before = rss_mb()
    index = AnnoyIndex(dim, "angular")
    t0 = time.perf_counter()
    for i in range(n):
        index.add_item(i, vectors[i])
    t_add = time.perf_counter() - t0
    t0 = time.perf_counter()
    index.build(n_trees, n_jobs=1)
    t_build = time.perf_counter() - t0
    grown = rss_mb() - before
    index.save(str(tmp))
    size_mb = tmp.stat().st_size / 2**20
    tmp.unlink()
    sample = rng.choice(n, QUERIES, replace=False)
    found, times = [], []
    for i in sample:
        t0 = time.perf_counter()
        found.append(index.get_nns_by_item(int(i), K + 1))
        times.append(time.perf_counter() - t0)
    hits = 0
    for i, got in zip(sample[:RECALL_QUERIES], found[:RECALL_QUERIES]):
        exact = np.argpartition(-(vectors @ vectors[i]), K + 1)[:K + 1]
        hits += len(set(exact.tolist()) & set(got)) - 1           # the item itself is in both
    return {"n": n, "trees": n_trees, "add_s": t_add, "build_s": t_build, "rss_mb": grown, "file_mb": size_mb,
            "query_ms": float(np.median(times)) * 1000, "all_queries_min": float(np.mean(times)) * n / 60,
            "recall": hits / (RECALL_QUERIES * K)}


def one(args) -> None:
    base = np.load(args.base)
    vectors = replicate(base, args.one)
    tmp = Path(args.base).with_suffix(f".{args.one}.ann")
    print(json.dumps(measure(vectors, args.trees, tmp)))


def projection(rows: list[dict], n: int = 380_000) -> dict:
    """The largest measured row scaled linearly to ``n`` vectors (time and memory; a slight overestimate of the
    n log n build), query time and recall as measured."""
    big = max(rows, key=lambda r: r["n"])
    f = n / big["n"]
    return {**{k: big[k] * f for k in ("add_s", "build_s", "rss_mb", "file_mb", "all_queries_min")},
            "n": n, "trees": big["trees"], "query_ms": big["query_ms"], "recall": big["recall"]}


def growth(rows: list[dict]) -> dict:
    """How the largest size compares with the smallest: vectors, build time and query time, as ratios."""
    small, big = min(rows, key=lambda r: r["n"]), max(rows, key=lambda r: r["n"])
    return {"vectors": big["n"] // small["n"], "build": big["build_s"] / small["build_s"],
            "query": big["query_ms"] / small["query_ms"]}


def render(result: dict) -> str:
    """The `annoy` section of docs/benchmarks.md from a result ``main`` kept (bench/results/annoy.json)."""
    def fmt(r, note=""):
        return [f"{r['n']:,}{note}", r["trees"], f"{r['add_s']:.1f}", f"{r['build_s']:.1f}", f"{r['rss_mb']:,.0f}",
                f"{r['file_mb']:,.0f}", f"{r['query_ms']:.2f}", f"{r['all_queries_min']:.1f}", f"{r['recall']:.2f}"]

    header = ["vectors", "trees", "add s", "build s", "RSS growth MB", "file MB", "10-NN query ms (median)",
              "10-NN for all, min", "recall@10"]
    proj, grown = result["projected"], result["growth"]
    load = f"{'~' if result.get('load_approx') else ''}{result['load']:g}"
    when = f" Run {result['date']}." if result.get("date") else ""
    return "\n".join([
        "## Annoy at crawl scale — `bench/bench_annoy.py`",
        "",
        (f"{result['base_vectors']} real {result['backbone']} embeddings ({result['batches']}, {result['dim']}-d) "
         "replicated with noise (copy ≈ cosine 0.95 to its original), angular, one build thread, on this "
         f"{result['cpus']}-core machine. Query time: median of {result['queries']:,} sampled 10-NN queries (default "
         "search_k); \"for all\" extrapolates their mean to one query per photo; recall@10 against brute force on "
         f"{result['recall_queries']}. RSS growth = annoy's memory (its copy of the vectors + trees). The "
         f"{proj['n'] // 1000}k row is projected from the largest measured size."),
        "",
        table(header, [fmt(r) for r in result["rows"]] + [fmt(proj, " (projected)")]),
        "",
        (f"{grown['vectors']}× the vectors: build {grown['build']:.0f}× the time, query {grown['query']:.1f}× per "
         f"photo. Load average {result['load_when']}: {load} on {result['cpus']} cores ({result['load_note']})."
         f"{when} Memory is dominated by the vectors (N × {result['dim']} × 4 bytes: "
         f"{proj['n'] * result['dim'] * 4 / 1e9:.1f} GB at {proj['n'] // 1000}k); annoy mmaps a saved index, so "
         "several processes share one copy. Recall here is a sanity check, not a real-photo figure: on replicated "
         "data a photo's nearest neighbours are the noisy copies of its own original, an easy cluster."),
    ])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=os.environ.get("ROOMCLF_DATA", str(PROJECT.parent / "shared" / "data" / "listings")))
    ap.add_argument("--batches", default="batch_01-batch_03", help="real embeddings to replicate")
    ap.add_argument("--sizes", default="20000,100000,400000")
    ap.add_argument("--trees", type=int, default=10)
    ap.add_argument("--no-write", action="store_true", help="print only; leave the result file and docs alone")
    ap.add_argument("--report", action="store_true", help=f"render the section again from bench/results/{SECTION}.json")
    ap.add_argument("--one", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--base", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        return one(args)
    if args.report:
        return report_saved(SECTION, render, write=not args.no_write)

    import datetime
    import tempfile

    from roomclf.settings import EMBEDDING_BACKBONE

    base = real_embeddings(Path(args.data), args.batches)
    load = os.getloadavg()[0]
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-annoy-") as tmp:
        np.save(Path(tmp) / "base.npy", base)
        for n in (int(s) for s in args.sizes.split(",")):
            out = subprocess.run([sys.executable, __file__, "--one", str(n), "--trees", str(args.trees),
                                  "--base", str(Path(tmp) / "base.npy")], capture_output=True, text=True, check=True)
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(json.dumps(rows[-1]), flush=True)
    result = {"backbone": EMBEDDING_BACKBONE, "batches": args.batches, "base_vectors": int(base.shape[0]),
              "dim": int(base.shape[1]), "queries": QUERIES, "recall_queries": RECALL_QUERIES,
              "cpus": os.cpu_count(), "load": round(load, 1), "load_when": "when it started",
              "load_note": "times grow with sharing the machine; the superlinear add/build growth here is mostly that",
              "date": datetime.date.today().isoformat(), "rows": rows, "projected": projection(rows),
              "growth": growth(rows)}
    print()
    publish(SECTION, result, render, write=not args.no_write)


if __name__ == "__main__":
    main()
