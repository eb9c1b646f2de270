"""Benchmark: embedding photos, torch eager (how roomclf embedded before) against onnxruntime fp32 and int8.

Every variant goes through the product's ``roomclf.models.embeddings.embed`` on the same photos, each
round with an empty cache, so a figure includes decoding, preprocessing, the network and the cache
writes: what `roomclf embed`, a cold prelabel, propagation and training's near-duplicate check pay per
photo. Rounds are interleaved (the machine is shared and noisy); the table gives median photos/s and
the ratio to torch eager, plus how close each variant's vectors are to torch's (cosine per photo).

    .venv/bin/python bench/bench_embed.py                       # batch_18, 3 rounds
    .venv/bin/python bench/bench_embed.py --batches batch_18 --rounds 5 --no-write

The result is kept in bench/results/embed.json (committed) and rendered into docs/benchmarks.md
(``--report`` renders it again without measuring).
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import sys
import tempfile
import time

import numpy as np
from common import PROJECT, default_data, publish, report_saved, table

sys.path.insert(0, str(PROJECT))


class TorchEager:
    """The embedder roomclf used before onnxruntime: the registry's network in torch eager mode, with
    ``threads`` torch threads per batch (``embed`` runs cores / threads batches at once, as for onnxruntime)."""

    precision = "fp32"

    def __init__(self, backbone: str, threads: int):
        import torch

        from roomclf.models.backbones import build_backbone, get_spec, normalizer, split_backbone

        self.threads = threads                # torch's threads are a process-wide setting: set per call
        self.spec = get_spec(backbone)
        body, pool, _ = split_backbone(backbone, build_backbone(backbone, pretrained=True))
        self.net = torch.nn.Sequential(normalizer(self.spec), body, pool).eval()

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        import torch

        if torch.get_num_threads() != self.threads:
            torch.set_num_threads(self.threads)
        with torch.inference_mode():
            return self.net(torch.from_numpy(batch)).numpy()


def cosines(a, b) -> np.ndarray:
    """Per photo cosine of two Embeddings over the photos both have."""
    ib = b.index()
    common = [(i, ib[p]) for i, p in enumerate(a.paths) if p in ib]
    x, y = a.vectors[[i for i, _ in common]], b.vectors[[j for _, j in common]]
    return np.sum(x * y, axis=1) / (np.linalg.norm(x, axis=1) * np.linalg.norm(y, axis=1)).clip(1e-12)


def render(result: dict) -> str:
    base = max(v["photos_per_s"] for v in result["variants"] if v["name"].startswith("torch eager") and v["runs"])
    rows = [[v["name"], f"{v['photos_per_s']:.1f}", f"{v['photos_per_s'] / base:.1f}x",
             "-" if v["cosine_min"] is None else f"{v['cosine_min']:.4f} / {v['cosine_median']:.5f}"]
            for v in result["variants"] if v["runs"]]
    notes = [f"- {v['name']}: {v['note']}" for v in result["variants"] if v.get("note")]
    return "\n".join([
        "## Embeddings: torch eager vs onnxruntime (`bench/bench_embed.py`)", "",
        (f"{result['photos']} photos of {result['batches']} through `roomclf.models.embeddings.embed` with an "
         f"empty cache each round ({result['backbone']}, {result['input_size']} px, batches of "
         f"{result['batch_size']}): decoding, preprocessing, the network and the cache writes. "
         f"{result['rounds']} interleaved rounds, median; {result['machine']}, load average "
         f"{result['load']:.1f} at the end; {result['date']}. `embed` runs as many batches at once as fill the "
         f"cores with the embedder's threads: one-thread sessions run a batch per core (roomclf's), sessions "
         f"with a thread per core one batch at a time. torch eager is measured both ways, and the ratio is to "
         f"the faster of them."), "",
        table(["embedder", "photos/s", "vs the faster torch eager", "cosine to torch: min / median"], rows),
        *([""] + notes if notes else [])])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batches", default="batch_18")
    ap.add_argument("--backbone", default=None, help="default: the embedding backbone (settings)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--limit", type=int, default=0, help="at most this many photos (0: all of the batches)")
    ap.add_argument("--no-write", action="store_true", help="print only; leave the result file and docs alone")
    ap.add_argument("--report", action="store_true", help="render the section again from bench/results/embed.json")
    args = ap.parse_args()
    if args.report:
        return report_saved("embed", render, write=not args.no_write)

    from roomclf.corpus import discover, parse_batches
    from roomclf.models.embeddings import EmbeddingError, Embedder, embed
    from roomclf.settings import EMBEDDING_BACKBONE

    backbone = args.backbone or EMBEDDING_BACKBONE
    root = default_data() / "listings"
    batches = parse_batches(args.batches, root)
    paths = [p for b in batches for p in discover(root, b).paths]
    paths = paths[:args.limit] if args.limit else paths
    from roomclf.settings import cpus

    embedders = {"torch eager": TorchEager(backbone, cpus()),
                 "torch eager, a batch per core": TorchEager(backbone, 1),
                 "onnxruntime fp32": Embedder(backbone, "fp32"),
                 "onnxruntime fp32, one batch at a time on every core": Embedder(backbone, "fp32", threads=cpus())}
    notes = {}
    try:
        embedders["onnxruntime int8"] = Embedder(backbone, "int8", root=root, calibration=paths)
    except EmbeddingError as exc:
        notes["onnxruntime int8"] = str(exc)
    times: dict[str, list[float]] = {name: [] for name in embedders}
    vectors = {}
    for _ in range(args.rounds):
        for name, embedder in embedders.items():
            with tempfile.TemporaryDirectory(prefix="bench-embed-") as cache:
                os.environ["ROOMCLF_EMBEDDING_DIR"] = cache
                t = time.perf_counter()
                vectors[name] = embed(root, paths, embedder=embedder, normalize=False, progress=False)
                times[name].append(len(paths) / (time.perf_counter() - t))
    os.environ.pop("ROOMCLF_EMBEDDING_DIR")
    variants = []
    for name in embedders:
        cos = None if name.startswith("torch eager") else cosines(vectors["torch eager"], vectors[name])
        variants.append({"name": name, "photos_per_s": statistics.median(times[name]), "runs": times[name],
                         "cosine_min": None if cos is None else float(cos.min()),
                         "cosine_median": None if cos is None else float(np.median(cos))})
    variants += [{"name": name, "photos_per_s": None, "runs": [], "cosine_min": None,
                  "cosine_median": None, "note": f"not measured: {why}"} for name, why in notes.items()]
    from roomclf.models.backbones import get_spec

    result = {"batches": args.batches, "photos": len(paths), "backbone": backbone,
              "input_size": get_spec(backbone).weights_size, "batch_size": 32, "rounds": args.rounds,
              "machine": f"{os.cpu_count()} CPUs ({platform.machine()})", "load": os.getloadavg()[0],
              "date": datetime.date.today().isoformat(), "variants": variants}
    publish("embed", result, render, write=not args.no_write)


if __name__ == "__main__":
    main()
