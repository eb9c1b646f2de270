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
training photos). The result is kept as data in ``bench/results/ensemble.json`` and the section rendered
from it (``--report``: render it again without measuring). The result saved before whose models are not all
in this run stays, as data, under "Earlier run" (var/ is not committed, so another checkout may lack those
models).

    .venv/bin/python bench/bench_ensemble.py --report
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
    load_result,
    publish,
    table,
    write_section,
)

sys.path.insert(0, str(PROJECT))
RESULTS = PROJECT / "var" / "bench"
SECTION = "ensemble"
PHOTOS_FROM = "batch_11"        # the batch whose first 32 photos every model is timed on


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


def earlier_run(previous: dict | None, names: list[str]) -> dict | None:
    """What the new result keeps under "Earlier run": the ``previous`` result (without its own earlier run)
    when some of its models are not among ``names``; else the earlier run it already keeps."""
    if not previous:
        return None
    if all(m["name"] in names for m in previous["models"]):
        return previous.get("earlier")
    return {k: v for k, v in previous.items() if k != "earlier"}


def measurement(run: dict) -> str:
    """One run's paragraph and table."""
    first = run["models"][0]["ms"]
    return "\n".join([
        (f"Model time only (photos decoded beforehand), one onnxruntime session with 1 thread, batches of "
         f"{run['photos']} real photos of {run['photos_from']}, {run['rounds']} interleaved rounds, median per photo; "
         f"load average {run['load']:.1f} at the end (this machine's 2 cores are shared, so compare the ratios)."), "",
        table(["model", "backbone(s)", "input px", "ms per photo", "vs first"],
              [[f"`{m['name']}`", m["backbone"], m["input_px"], f"{m['ms']:.1f}", f"{m['ms'] / first:.2f}x"]
               for m in run["models"]])])


def render_saved(result: dict) -> str:
    """The ``ensemble`` section from what bench/results/ensemble.json holds: the run, then its earlier run."""
    lines = ["## What an ensemble or a bigger network costs at inference (`bench/bench_ensemble.py`)", "",
             measurement(result)]
    if result.get("earlier"):
        lines += ["", "### Earlier run", "", measurement(result["earlier"])]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="default,lite1,ens-default-lite1", help="saved run names")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--no-write", action="store_true",
                    help="print only, leave docs/benchmarks.md and bench/results/ensemble.json alone")
    ap.add_argument("--report", action="store_true",
                    help="measure nothing: render the section again from bench/results/ensemble.json")
    args = ap.parse_args()
    if args.report:
        saved = load_result(SECTION)
        if saved is None:
            sys.exit(f"no saved result (bench/results/{SECTION}.json): run the bench first")
        text = render_saved(saved)
        print(text)
        if not args.no_write:
            write_section(SECTION, text)
        return

    from roomclf.models.onnx_file import OnnxModel
    from roomclf.photos import model_input

    names = args.models.split(",")
    missing = [n for n in names if not (RESULTS / f"train-{n.partition(':')[0]}" / "model.onnx").exists()]
    if missing:     # `make bench` runs every bench in turn: say what is needed instead of failing
        print(f"bench_ensemble: no saved model for {', '.join(missing)}: run bench/bench_train.py --name default, "
              "--name lite1 --backbone efficientnet_lite1 --image-size 240, then --ensemble default,lite1")
        return
    root = default_data() / "listings"
    photos = sorted((root / PHOTOS_FROM).glob("listing_*/photo_*.jpg"))[:32]
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
    rows = []
    for name, m in models.items():
        backbone = m.meta.get("backbone", "-") + {"flip": ", flip TTA", "int8": ", static int8"}.get(
            name.partition(":")[2], "")
        rows.append({"name": name, "backbone": backbone, "input_px": m.input_size,
                     "ms": statistics.median(times[name])})
    result = {"date": time.strftime("%Y-%m-%d %H:%M"), "photos": len(photos), "photos_from": PHOTOS_FROM,
              "rounds": args.rounds, "load": os.getloadavg()[0], "models": rows}
    earlier = earlier_run(load_result(SECTION), names)
    publish(SECTION, {**result, **({"earlier": earlier} if earlier else {})}, render_saved, write=not args.no_write)


if __name__ == "__main__":
    main()
