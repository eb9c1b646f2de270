"""Benchmark: photos per model call on the bulk paths, against speed and peak memory.

Every bulk path (embeddings, infer-all, prelabel, distill's teacher pass) runs a batch per core at once through
one-thread onnxruntime sessions (``roomclf.parallel``), so the photos per model call set how many activations
are alive together. This bench runs `roomclf embed` and `roomclf infer-all --engine loop` as fresh processes on
bench_crawl's synthetic batch of listing-size photos (made once under var/, never committed), at each batch size,
in interleaved rounds: wall seconds from launch to exit (startup included), photos/s, and the peak resident
memory of the process tree's largest process (bench_crawl's ``PeakMemory``). The embedding cache and the output
folder start empty every time. infer-all runs bench_crawl's speed model (the backbone's architecture with its
pretrained body and untrained heads: the same model time as a trained one).

    .venv/bin/python bench/bench_batch.py                          # 2,000 photos, batches 16 and 32, 4 rounds
    .venv/bin/python bench/bench_batch.py --sizes 8,16,32 --photos 200 --rounds 1 --no-write

The result is kept in bench/results/batch.json (committed) and rendered into docs/benchmarks.md
(``--report`` renders it again without measuring).
"""
from __future__ import annotations

import argparse
import datetime
import os
import shutil
import statistics
import sys
from pathlib import Path

from bench_crawl import ROOMCLF, make_crawl, speed_model, step_env, timed
from common import PROJECT, publish, report_saved, table

sys.path.insert(0, str(PROJECT))
SECTION = "batch"


def measure(work: Path, photos: int, sizes: list[int], rounds: int, backbone: str) -> dict:
    crawl = make_crawl(work, photos, os.cpu_count() or 1)
    total = sum(1 for r in crawl["rows"] if r["path"].startswith("batch_01/"))
    model = speed_model(work, backbone)
    logs = work / "logs-batch"
    logs.mkdir(exist_ok=True)
    commands = {
        "roomclf embed": lambda b, home: ["embed", "--batch", "batch_01", "--batch-size", str(b)],
        "roomclf infer-all --engine loop": lambda b, home: [
            "infer-all", "--batch", "batch_01", "--model", str(model), "--engine", "loop", "--no-progress",
            "--out", str(work / home / "out"), "--batch-size", str(b)],
    }
    runs: dict = {name: {str(b): [] for b in sizes} for name in commands}
    for _ in range(rounds):
        for name, args in commands.items():
            for b in sizes:
                home = f"home-batch-{b}"
                shutil.rmtree(work / home, ignore_errors=True)
                step = timed(f"{name}, batch {b}", [*ROOMCLF, *args(b, home)], step_env(work, home), total,
                             logs / f"{name.split()[1]}-{b}.log")
                runs[name][str(b)].append({"photos_per_s": step["photos_per_s"], "peak_mb": step["peak_mb"]})
                print(name, b, f"{step['photos_per_s']:.1f} photos/s", f"{step['peak_mb']:.0f} MB", flush=True)
                shutil.rmtree(work / home, ignore_errors=True)
    from roomclf.models.timing import machine

    return {"date": datetime.date.today().isoformat(), "machine": machine(), "photos": total, "sizes": sizes,
            "rounds": rounds, "backbone": backbone, "runs": runs, "load": round(os.getloadavg()[0], 1)}


def render(res: dict) -> str:
    rows = []
    for name, by_size in res["runs"].items():
        base = by_size[str(max(res["sizes"]))]
        base_speed = statistics.median(r["photos_per_s"] for r in base)
        base_mb = statistics.median(r["peak_mb"] for r in base)
        for b in res["sizes"]:
            got = by_size[str(b)]
            speed = statistics.median(r["photos_per_s"] for r in got)
            mb = statistics.median(r["peak_mb"] for r in got)
            rows.append([name, b, f"{speed:.1f} ({min(r['photos_per_s'] for r in got):.1f}–"
                         f"{max(r['photos_per_s'] for r in got):.1f})", f"{speed / base_speed:.2f}x",
                         f"{mb:.0f}", f"{mb / base_mb:.2f}x"])
    return "\n".join([
        "## Photos per model call: speed and peak memory (`bench/bench_batch.py`)", "",
        (f"`roomclf embed` and `roomclf infer-all --engine loop` as fresh processes on {res['photos']} synthetic "
         f"listing-size photos (bench_crawl's batch; infer-all with an untrained-head {res['backbone']} model), at each batch size "
         f"(`--batch-size`), {res['rounds']} interleaved rounds, median (and range); photos/s from launch to exit, "
         "startup included; peak memory of the largest process. Every bulk path runs a batch per core at once, "
         f"so the batch sets how many activations are alive together. {res['machine']}, load average "
         f"{res['load']} at the end, {res['date']}."), "",
        table(["command", "photos per model call", "photos/s", f"vs {max(res['sizes'])}", "peak memory MB",
               f"vs {max(res['sizes'])}"], rows)])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--photos", type=int, default=2000, help="photos in the synthetic batch")
    ap.add_argument("--sizes", default="16,32", help="batch sizes, comma-separated")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--backbone", default="efficientnet_lite0", help="infer-all's network")
    ap.add_argument("--no-write", action="store_true", help="print only; leave the result file and docs alone")
    ap.add_argument("--report", action="store_true", help=f"render the section again from bench/results/{SECTION}.json")
    args = ap.parse_args()
    if args.report:
        return report_saved(SECTION, render, write=not args.no_write)
    work = PROJECT / "var" / f"crawl-{args.photos}"
    result = measure(work, args.photos, [int(s) for s in args.sizes.split(",")], args.rounds, args.backbone)
    publish(SECTION, result, render, write=not args.no_write)


if __name__ == "__main__":
    main()
