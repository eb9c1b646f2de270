"""Benchmark: embedding photos, torch eager (how roomclf embedded before) against onnxruntime fp32 and int8.

Every variant goes through the product's ``roomclf.models.embeddings.embed`` on the same photos, each
round with an empty cache, so a figure includes decoding, preprocessing, the network and the cache
writes: what `roomclf embed`, a cold prelabel, propagation and training's near-duplicate check pay per
photo. Rounds are interleaved (the machine is shared and noisy); the table gives median photos/s and
the ratio to torch eager, plus how close each variant's vectors are to torch's (cosine per photo).

Then the int8 probe: the int8 embedding graph made as roomclf makes it (with or without VNNI), and with the
quantiser's two choices varied, each against fp32: how close its vectors are, and how much model time it
saves. The fp32 row the graph exported as before (padding computed at run time) shows what
``roomclf.models.export_graph`` buys.

    .venv/bin/python bench/bench_embed.py                       # batch_18, 3 rounds
    .venv/bin/python bench/bench_embed.py --batches batch_18 --rounds 5 --no-write

The result is kept in bench/results/embed.json (committed) and rendered into docs/benchmarks.md
(``--report`` renders it again without measuring).
"""
from __future__ import annotations

import argparse
import datetime
import os
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


TIMM_PADDING = "onnxruntime fp32, padding computed at run time (the graph as exported before)"


def timm_padding(backbone: str):
    """roomclf's embedder over the graph as it was exported before ``roomclf.models.export_graph`` fixed the
    padding: timm's "same" padding computed from shapes at run time, a ``Pad`` before every strided
    convolution (the same vectors)."""
    from roomclf.models.embeddings import Embedder, export_embedder
    from roomclf.models.onnx_file import open_session

    embedder = Embedder(backbone, "fp32")
    with tempfile.TemporaryDirectory(prefix="bench-embed-timm-") as tmp:
        embedder.session = open_session(export_embedder(backbone, f"{tmp}/timm.onnx", fixed_padding=False), 1)
    return embedder


# The int8 probe: what an int8 embedding graph would buy as roomclf.models.quantize's two choices vary,
# (reduce_range, fp32 first convolutions, fp32 last convolutions). The first two are what roomclf's int8
# embedder uses on a CPU without VNNI and with it (roomclf.models.embeddings).
INT8_PROBE = [(True, 6, 2), (False, 6, 2), (False, 4, 2), (False, 2, 2), (False, 0, 2), (False, 0, 0), (True, 0, 0)]


def int8_probe(backbone: str, root, paths: list[str], rounds: int) -> dict:
    """For each INT8_PROBE variant, quantised by the product's ``quantize_static_int8`` and calibrated as
    ``embed`` calibrates (``calibration_sample`` of the photos embedded): the cosine of its vectors to fp32's
    over ``paths`` (lowest, 1st percentile, median) and its model time per photo on one thread (a batch of 32
    of these photos, decoding excluded), timed in interleaved rounds against fp32, median."""
    from roomclf import storage
    from roomclf.models.backbones import get_spec
    from roomclf.models.embeddings import INT8_CALIBRATION_PHOTOS, INT8_MIN_COSINE, embedder_file, row_cosines
    from roomclf.models.onnx_file import open_session
    from roomclf.models.quantize import (
        FP32_FIRST_CONVS,
        FP32_LAST_CONVS,
        calibration_sample,
        cpu_has_vnni,
        quantize_static_int8,
    )
    from roomclf.photos import model_inputs

    fp32 = embedder_file(backbone, "fp32")
    X = np.stack(model_inputs([storage.join(root, p) for p in paths], get_spec(backbone).weights_size)[0])
    calib = calibration_sample(paths, INT8_CALIBRATION_PHOTOS)
    with tempfile.TemporaryDirectory(prefix="bench-embed-int8-") as tmp:
        files = {"fp32": fp32}
        for rr, first, last in INT8_PROBE:
            files[(rr, first, last)] = quantize_static_int8(fp32, f"{tmp}/{int(rr)}-{first}-{last}.onnx", root, calib,
                                                            reduce_range=rr, fp32_convs=(first, last))
        sessions = {k: open_session(f, 1) for k, f in files.items()}

        def vectors(sess) -> np.ndarray:      # 32 at a time: a session's memory grows with its largest batch
            return np.concatenate([sess.run(["features"], {"image": X[i:i + 32]})[0] for i in range(0, len(X), 32)])

        got = {k: vectors(sess) for k, sess in sessions.items()}      # every session warm before timing
        ms: dict = {k: [] for k in sessions}
        for _ in range(rounds):
            for k, sess in sessions.items():
                t = time.perf_counter()
                sess.run(["features"], {"image": X[:32]})
                ms[k].append((time.perf_counter() - t) * 1000 / 32)
    base = statistics.median(ms["fp32"])
    rows = []
    for key in INT8_PROBE:
        cos = row_cosines(got["fp32"], got[key])
        rows.append({"reduce_range": key[0], "fp32_first": key[1], "fp32_last": key[2],
                     "ms_per_photo": statistics.median(ms[key]), "cosine_min": float(cos.min()),
                     "cosine_p1": float(np.percentile(cos, 1)), "cosine_median": float(np.median(cos))})
    return {"photos": len(X), "calibration": len(calib), "min_cosine": INT8_MIN_COSINE, "fp32_ms_per_photo": base,
            "rounds": rounds, "variants": rows,
            "embedder_variant": [not cpu_has_vnni(), FP32_FIRST_CONVS, FP32_LAST_CONVS]}   # embed's int8, here


def cosines(a, b) -> np.ndarray:
    """Per photo cosine of two Embeddings over the photos both have."""
    from roomclf.models.embeddings import row_cosines

    ib = b.index()
    common = [(i, ib[p]) for i, p in enumerate(a.paths) if p in ib]
    return row_cosines(a.vectors[[i for i, _ in common]], b.vectors[[j for _, j in common]])


def render(result: dict) -> str:
    base = max(v["photos_per_s"] for v in result["variants"] if v["name"].startswith("torch eager") and v["runs"])
    before = next(v["photos_per_s"] for v in result["variants"] if v["name"] == "torch eager")
    rows = [[v["name"], f"{v['photos_per_s']:.1f}", f"{v['photos_per_s'] / before:.1f}x",
             f"{v['photos_per_s'] / base:.1f}x",
             "-" if v["cosine_min"] is None else f"{v['cosine_min']:.4f} / {v['cosine_median']:.5f}"]
            for v in result["variants"] if v["runs"]]
    notes = [f"- {v['name']}: {v['note']}" for v in result["variants"] if v.get("note")]
    probe = result.get("int8_probe")
    probe_part = []
    if probe:
        base_ms = probe["fp32_ms_per_photo"]
        prow = [["yes" if v["reduce_range"] else "no", f"{v['fp32_first']} + {v['fp32_last']}",
                 f"{v['ms_per_photo']:.2f}", f"{base_ms / v['ms_per_photo']:.2f}x",
                 f"{v['cosine_min']:.4f} / {v['cosine_p1']:.4f} / {v['cosine_median']:.4f}",
                 "yes" if v["cosine_min"] >= probe["min_cosine"] else "no"] for v in probe["variants"]]
        ours = probe.get("embedder_variant", [True, 6, 2])     # runs before it was recorded: roomclf's first
        for row, v in zip(prow, probe["variants"]):
            if [v["reduce_range"], v["fp32_first"], v["fp32_last"]] == ours:
                row[0] += " (roomclf's embedder on this CPU)"
        probe_part = ["", "What an int8 embedding graph would buy, as the two choices of `roomclf.models.quantize` vary "
                      f"(its `quantize_static_int8`, calibrated as `embed` calibrates, on {probe['calibration']} of "
                      f"these photos): cosine of its vectors to fp32's over the {probe['photos']} photos, and model "
                      f"time per photo on one thread (a batch of 32 of them, decoding excluded; fp32 "
                      f"{base_ms:.2f} ms), {probe['rounds']} interleaved rounds against fp32, median. An int8 "
                      f"embedder is used only where the lowest cosine is at least {probe['min_cosine']}.", "",
                      table(["reduce_range", "convolutions kept fp32 (first + last)", "model ms/photo",
                             "vs fp32", "cosine to fp32: min / 1st percentile / median", "usable"], prow)]
    return "\n".join([
        "## Embeddings: torch eager vs onnxruntime (`bench/bench_embed.py`)", "",
        (f"{result['photos']} photos of {result['batches']} through `roomclf.models.embeddings.embed` with an "
         f"empty cache each round ({result['backbone']}, {result['input_size']} px, batches of "
         f"{result['batch_size']}): decoding, preprocessing, the network and the cache writes. "
         f"{result['rounds']} interleaved rounds, median; {result['machine']}, load average "
         f"{result['load']:.1f} at the end; {result['date']}. `embed` runs as many batches at once as fill the "
         f"cores with the embedder's threads: one-thread sessions run a batch per core (roomclf's), sessions "
         f"with a thread per core one batch at a time. torch eager is measured both ways: as roomclf ran it "
         f"(the first row) and a batch per core."), "",
        table(["embedder", "photos/s", "vs torch eager as roomclf ran it", "vs the faster torch eager",
               "cosine to torch: min / median"], rows),
        *([""] + notes if notes else []), *probe_part])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batches", default="batch_18")
    ap.add_argument("--backbone", default=None, help="default: the embedding backbone (settings)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--limit", type=int, default=0, help="at most this many photos (0: all of the batches)")
    ap.add_argument("--no-int8-probe", action="store_true",
                    help="skip the int8 probe (quantisation choices against agreement and model time)")
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
                 "onnxruntime fp32, one batch at a time on every core": Embedder(backbone, "fp32", threads=cpus()),
                 TIMM_PADDING: timm_padding(backbone)}
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
    from roomclf.models.timing import machine
    from roomclf.parallel import BATCH_PHOTOS      # what embed() runs at by default

    result = {"batches": args.batches, "photos": len(paths), "backbone": backbone,
              "input_size": get_spec(backbone).weights_size, "batch_size": BATCH_PHOTOS, "rounds": args.rounds,
              "machine": machine(), "load": os.getloadavg()[0],
              "date": datetime.date.today().isoformat(), "variants": variants,
              "int8_probe": None if args.no_int8_probe else int8_probe(backbone, root, paths, max(args.rounds, 5))}
    publish("embed", result, render, write=not args.no_write)


if __name__ == "__main__":
    main()
