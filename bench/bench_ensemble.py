"""Benchmark: what an ensemble costs at inference, side by side with its members.

The models are the ONNX files of saved `bench_train.py` runs (``var/bench/train-NAME/model.onnx``) and the
file `roomclf combine` made of them. Each is timed on the same 32 real photos of batch_11, already decoded
(model time only: one onnxruntime session, 1 thread, one batch of 32 per call), in interleaved rounds so
that the machine's noise falls on all alike; the table gives the median per photo and the ratio to the
first model. Accuracy is not measured here (bench_train.py and bench_infer.py --accuracy-only do that).

    .venv/bin/python bench/bench_ensemble.py                 # default, lite1 and ens-default-lite1
    .venv/bin/python bench/bench_ensemble.py --models default,lite1,ens-default-lite1 --rounds 9
    .venv/bin/python bench/bench_ensemble.py --models default,ens-default-lite1,labels1k-lite2-queue:flip

``NAME:flip`` is the saved run's network exported with horizontal-flip TTA (``bench_train.flip_model``);
``NAME:int8`` its static-int8 copy, quantised now as `roomclf train --quantize` does (calibrated on its
training photos). A table already written whose models are not all in this run stays in the section
under "Earlier run" (var/ is not committed, so another checkout may lack those models).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import (
    PROJECT,
    default_data,
    ground_truth,
    read_section,
    table,
    write_section,
)

sys.path.insert(0, str(PROJECT))
RESULTS = PROJECT / "var" / "bench"


def int8_model(fp32: Path, work: Path) -> Path:
    """A static-int8 copy of ``fp32`` in ``work`` (not kept: the quantiser's settings change)."""
    from bench_infer import quantize

    from roomclf.models.onnx_file import OnnxModel

    fitted = set(OnnxModel(fp32).meta.get("train_batches") or [])
    photos = sorted(p for p in ground_truth() if p.split("/", 1)[0] in fitted)
    return quantize(fp32, default_data() / "listings", photos, work / f"{fp32.parent.name}.int8.onnx")


def model_file(name: str, work: Path):
    """A saved run's model.onnx; ``NAME:flip``: its flip-TTA export (made once from its roomnet.pt);
    ``NAME:int8``: its static-int8 copy."""
    run, _, variant = name.partition(":")
    if variant == "flip":
        from bench_train import flip_model

        return flip_model(RESULTS / f"train-{run}")
    if variant == "int8":
        return int8_model(RESULTS / f"train-{run}" / "model.onnx", work)
    return RESULTS / f"train-{run}" / "model.onnx"


def earlier_run(written: str, names: list[str]) -> str:
    """What the section keeps under "Earlier run": the measurement it holds now (its paragraph and
    table) when some of its models are not among ``names``; else the earlier run it already keeps."""
    body, _, older = written.partition("\n### Earlier run")
    rows = [line for line in body.splitlines() if line.startswith("| `")]
    if not rows:
        return ""
    if all(row.split("`")[1] in names for row in rows):
        return f"### Earlier run{older}".strip() if older else ""
    kept = [line for line in body.splitlines()[1:] if line.strip()]
    return "\n\n".join(["### Earlier run", kept[0], "\n".join(kept[1:])])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="default,lite1,ens-default-lite1", help="saved run names")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--no-write", action="store_true", help="print only, leave docs/benchmarks.md alone")
    args = ap.parse_args()

    from roomclf.models.onnx_file import OnnxModel
    from roomclf.photos import model_input

    names = args.models.split(",")
    missing = [n for n in names if not (RESULTS / f"train-{n.partition(':')[0]}" / "model.onnx").exists()]
    if missing:     # `make bench` runs every bench in turn: say what is needed instead of failing
        print(f"bench_ensemble: no saved model for {', '.join(missing)}: run bench/bench_train.py --name default, "
              "--name lite1 --backbone efficientnet_lite1 --image-size 240, then --ensemble default,lite1")
        return
    root = default_data() / "listings"
    photos = sorted((root / "batch_11").glob("listing_*/photo_*.jpg"))[:32]
    with tempfile.TemporaryDirectory(prefix="bench-ensemble-") as work:     # int8 copies, loaded then dropped
        models = {name: OnnxModel(model_file(name, Path(work)), threads=1) for name in names}
    inputs = {size: np.stack([model_input(p, size) for p in photos]) for size in {m.input_size for m in models.values()}}
    times: dict[str, list[float]] = {name: [] for name in models}
    for m in models.values():                      # warm-up
        m.run(inputs[m.input_size])
    for _ in range(args.rounds):
        for name, m in models.items():
            t = time.perf_counter()
            m.run(inputs[m.input_size])
            times[name].append((time.perf_counter() - t) / len(photos) * 1000)
    first = statistics.median(times[next(iter(models))])
    rows = []
    for name, m in models.items():
        ms = statistics.median(times[name])
        backbone = m.meta.get("backbone", "-") + {"flip": ", flip TTA", "int8": ", static int8"}.get(
            name.partition(":")[2], "")
        rows.append([f"`{name}`", backbone, m.input_size, f"{ms:.1f}", f"{ms / first:.2f}x"])
    text = "\n".join([
        "## What an ensemble or a bigger network costs at inference (`bench/bench_ensemble.py`)", "",
        (f"Model time only (photos decoded beforehand), one onnxruntime session with 1 thread, batches of "
         f"{len(photos)} real photos of batch_11, {args.rounds} interleaved rounds, median per photo; load average "
         f"{os.getloadavg()[0]:.1f} at the end (this machine's 2 cores are shared, so compare the ratios)."), "",
        table(["model", "backbone(s)", "input px", "ms per photo", "vs first"], rows)])
    earlier = earlier_run(read_section("ensemble"), names)
    text += f"\n\n{earlier}" if earlier else ""
    print(text)
    if not args.no_write:
        write_section("ensemble", text)


if __name__ == "__main__":
    main()
