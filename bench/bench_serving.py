"""Benchmark: HTTP serving throughput and latency at 1, 8 and 32 concurrent clients.

Starts `roomclf serve` as a child process on a free localhost port, then sends
real corpus photos (batch_01) to POST /predict from N client threads at once
(each with its own keep-alive connection) and reports requests/s and p50/p95
latency per photo. The clients run on the same machine as the server, so they
take CPU from it: the numbers are pessimistic. The result is kept in
bench/results/serving.json (committed) and rendered into the `serving` section of
docs/benchmarks.md (``--report`` renders it again without measuring).

The model: --model (a models:/ URI or .onnx); by default the registered champion
of $ROOMCLF_HOME, else a freshly exported efficientnet_lite0 network (the speed
of a model does not depend on its head's weights). Compared: 1 onnxruntime
thread x 2 slots (the default) against 2 threads x 1 slot, and the int8 twin.

    python bench/bench_serving.py [--model URI] [--levels 1,8,32] [--requests 200] [--no-write]
    python bench/bench_serving.py --report [--no-write]
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT))

from common import publish, report_saved  # noqa: E402

from serving.launch import roomclf_serve  # noqa: E402

SECTION = "serving"
BATCH = "batch_01"                      # the photos sent


def default_model(tmp: Path) -> str:
    """The registered champion, else a freshly exported efficientnet_lite0 network."""
    from roomclf.models.registry import (
        DEFAULT_ONNX_URI,
        ModelNotFound,
        model_version_info,
    )

    try:
        model_version_info(DEFAULT_ONNX_URI)
        return DEFAULT_ONNX_URI
    except ModelNotFound:
        from roomclf.models.network import ExportNet, RoomNet
        from roomclf.models.onnx_file import export_onnx

        print("no registered champion: exporting efficientnet_lite0 to a temporary file")
        return str(export_onnx(ExportNet(RoomNet("efficientnet_lite0").eval()), tmp / "model.onnx", {}))


def int8_model(fp32: str, root: Path, tmp: Path) -> tuple[str, str] | None:
    """(label, location) of an int8 model: the registered twin of the champion, else the
    fp32 model quantised here with the training issue's ``roomclf.models.quantize`` (50 batch_02
    photos to calibrate), else None."""
    from roomclf.models.registry import (
        ONNX_NAME,
        ModelNotFound,
        fetch_model,
        model_version_info,
    )

    uri = f"models:/{ONNX_NAME}-int8@champion"
    try:
        model_version_info(uri)
        return "champion int8 (registered)", uri
    except ModelNotFound:
        pass
    try:
        from roomclf.models.quantize import calibration_sample, quantize_static_int8
    except ImportError:
        return None
    from roomclf.models.onnx_file import find_onnx
    from roomclf.train.config import DEFAULT_RECIPE

    src = find_onnx(fetch_model(fp32, dst=tmp / "fp32") if fp32.startswith("models:/") else fp32)
    photos = [str(p.relative_to(root)) for p in sorted((root / "batch_02").glob("listing_*/photo_*.jpg"))]
    print("quantising to int8 for comparison", flush=True)
    dst = quantize_static_int8(src, tmp / "int8.onnx", root,
                               calibration_sample(photos, DEFAULT_RECIPE.int8_calibration_photos))
    return "same model int8 (quantised here)", str(dst)


def service_ms(model: str, photos: list) -> float:
    """Median in-process time per photo (decode + inference, 1 thread, no HTTP): the floor under any latency."""
    from roomclf.models.onnx_file import OnnxModel
    from roomclf.models.registry import fetch_model

    with tempfile.TemporaryDirectory() as tmp:
        m = OnnxModel(fetch_model(model, dst=tmp) if model.startswith("models:/") else model, threads=1)
    m.predict_sources([photos[0][1]])
    times = []
    for _, data in photos:
        t = time.perf_counter()
        m.predict_sources([data])
        times.append(1000 * (time.perf_counter() - t))
    return float(np.median(times))


def load_photos(root: Path, n: int) -> list[tuple[str, bytes]]:
    paths = sorted((root / BATCH).glob("listing_*/photo_*.jpg"))[:n]
    if not paths:
        raise SystemExit(f"no photos under {root / BATCH}")
    return [(p.name, p.read_bytes()) for p in paths]


def run_level(url: str, photos: list, clients: int, total: int) -> dict:
    """``total`` requests from ``clients`` threads at once; latencies in ms."""
    import httpx

    latencies: list[float] = []
    failures = 0
    lock = threading.Lock()
    counter = iter(range(total))

    def worker(_):
        nonlocal failures
        with httpx.Client(timeout=60) as client:
            for i in counter:
                name, data = photos[i % len(photos)]
                t = time.perf_counter()
                r = client.post(url + "/predict", files={"file": (name, data, "image/jpeg")})
                ms = 1000 * (time.perf_counter() - t)
                with lock:
                    latencies.append(ms)
                    failures += r.status_code != 200

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(worker, range(clients)))
    wall = time.perf_counter() - start
    lat = np.array(latencies)
    return {"clients": clients, "requests": len(lat), "failures": failures, "rps": len(lat) / wall,
            "p50": float(np.percentile(lat, 50)), "p95": float(np.percentile(lat, 95)),
            "mean": float(lat.mean())}


def floor(service: float, service_int8: float | None, cpus: int, rps8: float | None) -> dict:
    """What the CPU allows, from the in-process time per photo: the most photos/s the cores finish, the wait of
    a request behind the 7 others of 8 clients, the share of that ceiling the default reaches at 8 clients and
    how much faster the int8 model is."""
    ceiling = 1000 * cpus / service
    return {"service_ms": service, "ceiling_rps": ceiling, "wait8_ms": 8 * service / cpus,
            "share_of_ceiling": rps8 / ceiling if rps8 else None, "service_int8_ms": service_int8,
            "int8_speedup": service / service_int8 if service_int8 else None}


def floor_note(f: dict, cpus: int, rps8: float | None) -> str:
    """The floor under any latency, in words."""
    note = (f"- The floor: one photo takes {f['service_ms']:.0f} ms in-process here (decode + inference on 1 "
            f"thread, median, no HTTP), so {cpus} cores finish at most ~{f['ceiling_rps']:.0f} photos/s, and with 8 "
            f"clients a request waits on average for the other 7: ~{f['wait8_ms']:.0f} ms before any HTTP cost.")
    if rps8 and f["share_of_ceiling"]:
        note += (f" The default configuration serves {rps8:.0f} requests/s at 8 clients "
                 f"({f['share_of_ceiling']:.0%} of that ceiling): the rest of the CPU goes to HTTP handling in one "
                 "Python process (multipart parsing, JSON) and to the 8 client threads on the same cores.")
    note += (" p95 < 100 ms at 8 clients needs more cores (or the clients on another machine), or a cheaper "
             "model: serve the int8 twin with `--model models:/roomclf-onnx-int8@champion`.")
    if f["service_int8_ms"]:
        note += (f" The int8 model takes {f['service_int8_ms']:.0f} ms in-process ({f['int8_speedup']:.2f}x "
                 "faster).")
    return note


def at_clients(rows: list[dict], clients: int) -> dict | None:
    """The row of ``rows`` measured with ``clients`` concurrent clients (None when that level was not run)."""
    return next((r for r in rows if r["clients"] == clients), None)


def render(result: dict) -> str:
    """The `serving` section of docs/benchmarks.md from a result ``main`` kept (bench/results/serving.json)."""
    configs = result["configs"]
    when = f" Run {result['date']}." if result.get("date") else ""
    lines = [
        "## Serving (`bench/bench_serving.py`)",
        "",
        (f"`roomclf serve` (uvicorn, one process) on this machine ({result['cpus']} CPUs, {result['arch']}; "
         f"1-minute load average {result['load']:g} when it started: the machine is shared). Clients run on the "
         f"same machine (one keep-alive connection each) and POST /predict {result['photos']} real "
         f"{result['batch']} photos (mean {result['mean_kb']:.0f} KB) round-robin. Latency = client-side time per "
         "photo (upload, decode, inference, JSON). threads = onnxruntime threads per inference, slots = inferences "
         f"at once.{when}"),
        "",
        "| configuration | concurrent clients | requests | failures | requests/s | p50 ms | p95 ms | vs first row |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    first = {r["clients"]: r for r in configs[0]["rows"]}
    for config in configs:
        for r in config["rows"]:
            ratio = r["rps"] / first[r["clients"]]["rps"] if r["clients"] in first else float("nan")
            lines.append(f"| {config['name']} | {r['clients']} | {r['requests']} | {r['failures']} | {r['rps']:.1f} | "
                         f"{r['p50']:.0f} | {r['p95']:.0f} | {ratio:.2f}x req/s |")
    lines.append("")
    for config in configs:
        if at8 := at_clients(config["rows"], 8):
            verdict = "meets" if at8["p95"] < 100 else "misses"
            lines.append(f"- {config['name']}: p95 at 8 concurrent clients {at8['p95']:.0f} ms: {verdict} the 100 ms "
                         "target.")
    default8 = at_clients(configs[0]["rows"], 8)
    lines.append(floor_note(result["floor"], result["cpus"], default8["rps"] if default8 else None))
    return "\n".join(lines)


def bench_server(model: str, threads: int, slots: int, photos: list, levels: list[int], requests: int,
                 log: Path) -> list[dict]:
    extra = ["--poll", "0", "--threads", str(threads), "--slots", str(slots), "--log-level", "warning"]
    with roomclf_serve(model, env=os.environ.copy(), log=log, extra=extra) as server:
        server.wait_ready()
        run_level(server.url, photos, 2, 16)   # warm-up: session, connections, caches
        rows = []
        for c in levels:
            rows.append(run_level(server.url, photos, c, max(requests, 2 * c)))
            r = rows[-1]
            print(f"  {c:>3} clients: {r['rps']:6.1f} req/s  p50 {r['p50']:6.0f} ms  p95 {r['p95']:6.0f} ms  "
                  f"failures {r['failures']}", flush=True)
        if not server.alive():
            raise SystemExit(f"the server died during the benchmark: {server.tail()}")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", help="corpus root holding batch_*",
                    default=os.environ.get("ROOMCLF_DATA", str(PROJECT.parent / "shared" / "data" / "listings")))
    ap.add_argument("--model", default=None,
                    help="models:/ URI or .onnx (default: the champion, else an exported network); "
                         "compared with its int8 twin (registered, else quantised here)")
    ap.add_argument("--levels", default="1,8,32", help="concurrent clients, comma-separated")
    ap.add_argument("--requests", type=int, default=200, help="requests per level")
    ap.add_argument("--photos", type=int, default=64, help="distinct photos sent round-robin")
    ap.add_argument("--no-int8", action="store_true", help="skip the int8 comparison")
    ap.add_argument("--no-write", action="store_true", help="print only; leave the result file and docs alone")
    ap.add_argument("--report", action="store_true", help=f"render the section again from bench/results/{SECTION}.json")
    args = ap.parse_args()
    if args.report:
        return report_saved(SECTION, render, write=not args.no_write)

    cpus = os.cpu_count() or 1
    photos = load_photos(Path(args.data), args.photos)
    levels = [int(x) for x in args.levels.split(",")]
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or default_model(Path(tmp))
        kind = "champion" if model.startswith("models:/") else Path(model).name
        configs = [(f"{kind} fp32, threads 1 x slots {cpus} (default)", model, 1, cpus),
                   (f"{kind} fp32, threads {min(cpus, 4)} x slots 1", model, min(cpus, 4), 1)]
        service = service_ms(model, photos)
        print(f"in-process: {service:.1f} ms per photo", flush=True)
        int8 = None if args.no_int8 else int8_model(model, Path(args.data), Path(tmp))
        service_int8 = None
        if int8:
            configs.append((f"{int8[0]}, threads 1 x slots {cpus}", int8[1], 1, cpus))
            service_int8 = service_ms(int8[1], photos)
            print(f"in-process int8: {service_int8:.1f} ms per photo", flush=True)
        results = []
        for name, uri, threads, slots in configs:
            print(name, flush=True)
            results.append({"name": name, "model": uri if uri.startswith("models:/") else Path(uri).name,
                            "threads": threads, "slots": slots,
                            "rows": bench_server(uri, threads, slots, photos, levels, args.requests,
                                                 Path(tmp) / "server.log")})
    default8 = at_clients(results[0]["rows"], 8)
    result = {"cpus": cpus, "arch": platform.machine(), "load": round(load, 1), "batch": BATCH,
              "photos": len(photos), "mean_kb": float(np.mean([len(d) for _, d in photos]) / 1024),
              "date": datetime.date.today().isoformat(), "configs": results,
              "floor": floor(service, service_int8, cpus, default8["rps"] if default8 else None)}
    print()
    publish(SECTION, result, render, write=not args.no_write)


if __name__ == "__main__":
    main()
