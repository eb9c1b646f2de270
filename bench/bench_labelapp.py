"""How fast does a 24-thumbnail confirm page of the labelling app load, cold and cached?

Starts `roomclf label` on batch_01 in a throw-away working-data folder (the
suggestions are the ground truth imported as `predicted`, so no model runs),
then times, per confirm page:

- HTTP: GET /api/pages plus the page's 24 thumbnails over 6 parallel connections
  (a browser's per-host limit). *cold* = empty thumbnail cache, *cached* = again.
- browser: Debian's chromium (playwright) from a click on the Confirm tab until all
  24 images are decoded, in a fresh browser context (no browser cache) each time.

The result is kept in bench/results/labelapp.json (committed) and rendered into the `labelapp`
section of docs/benchmarks.md (``--report`` renders it again without measuring).
Run: .venv/bin/python bench/bench_labelapp.py [--pages 5] [--repeats 5] [--no-write]
     .venv/bin/python bench/bench_labelapp.py --report [--no-write]
"""
from __future__ import annotations

import argparse
import datetime
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from common import publish, report_saved, table

SECTION = "labelapp"
BATCH = "batch_01"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(port: int, env: dict) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "roomclf.cli", "label", "--batch", BATCH, "--port", str(port),
                             "--no-warm-thumbs"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    for _ in range(200):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/api/state", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.3)
    os.killpg(proc.pid, signal.SIGTERM)
    raise SystemExit("the labelling app did not start")


def load_page(base: str, index: int) -> float:
    """Seconds for the page list plus one page's thumbnails, 6 at a time."""
    with httpx.Client(base_url=base, timeout=60) as client:
        t0 = time.perf_counter()
        page = client.get("/api/pages").json()[index]
        with ThreadPoolExecutor(6) as pool:
            codes = list(pool.map(lambda p: client.get("/api/thumb", params={"path": p}).status_code, page["paths"]))
        dt = time.perf_counter() - t0
    assert codes == [200] * len(page["paths"]), codes
    return dt


def browser_load(browser, base: str) -> float:
    context = browser.new_context()
    page = context.new_page()
    page.goto(base + "/?who=bench")
    page.wait_for_selector("body[data-ready='1']")
    t0 = time.perf_counter()
    page.click("button[data-mode='confirm']")
    page.wait_for_function("document.querySelectorAll('#grid img').length >= 24 && "
                           "[...document.querySelectorAll('#grid img')].every(i => i.complete && i.naturalWidth > 0)",
                           timeout=60000)
    dt = time.perf_counter() - t0
    context.close()
    return dt


def render(result: dict) -> str:
    """The `labelapp` section of docs/benchmarks.md from a result ``main`` kept (bench/results/labelapp.json)."""
    def ms(x):
        return "n/a" if x is None else f"{x:.0f}"

    http = result["rows"][0]
    rows = [[r["what"], r["pages"], ms(r["cold_ms"]), ms(r["cached_ms"])] for r in result["rows"]]
    when = f" Run {result['date']}." if result.get("date") else ""
    return (f"## Labelling app: a 24-thumbnail confirm page — `bench/bench_labelapp.py`\n\n"
            f"`roomclf label` on {result['batch']} ({result['photos']} photos with suggestions), "
            f"256-px JPEG thumbnails made on first request and kept under `$ROOMCLF_HOME/thumbs`. *cold* = empty "
            f"thumbnail cache (each thumbnail decoded from the original photo), *cached* = the same page again "
            f"(browser: a fresh context, so no browser cache). The server runs with `--no-warm-thumbs` here; by default "
            f"`roomclf label` makes the batch's thumbnails in the background at start, so a labeller mostly sees the "
            f"cached numbers. Medians; target < 1 s cached.\n\n"
            + table(["what", "pages timed", "cold ms (median)", "cached ms (median)"], rows)
            + f"\n\nCached is {http['cold_ms'] / http['cached_ms']:.1f}× faster than cold over HTTP. Load average "
            f"at the end: {result['load']:g} on {result['cpus']} cores (other jobs were running).{when}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pages", type=int, default=5, help="confirm pages of 24 to time")
    ap.add_argument("--repeats", type=int, default=5, help="cached loads per page")
    ap.add_argument("--no-write", action="store_true", help="print only; leave the result file and docs alone")
    ap.add_argument("--report", action="store_true", help=f"render the section again from bench/results/{SECTION}.json")
    args = ap.parse_args()
    if args.report:
        return report_saved(SECTION, render, write=not args.no_write)

    from roomclf.labels.store import LabelStore
    from roomclf.settings import data_root

    root = data_root()
    labels_csv = root.parent / "labels.csv"
    work = Path(tempfile.mkdtemp(prefix="bench-labelapp-"))
    env = {**os.environ, "ROOMCLF_HOME": str(work), "ROOMCLF_DATA": str(root)}
    LabelStore(work / "labels.sqlite").import_csv(labels_csv, "predicted", "bench", corpus_root=root,
                                                  batches=[BATCH])
    thumbs = work / "thumbs"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = start_server(port, env)
    try:
        pages = httpx.get(base + "/api/pages").json()
        full = [i for i, p in enumerate(pages) if len(p["paths"]) == 24][:args.pages]
        cold, cached = [], []
        for i in full:
            shutil.rmtree(thumbs, ignore_errors=True)
            cold.append(load_page(base, i))
            cached += [load_page(base, i) for _ in range(args.repeats)]
        b_cold, b_cached = [], []
        try:
            from playwright.sync_api import sync_playwright

            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=FLAGS)
                for _ in range(3):
                    shutil.rmtree(thumbs, ignore_errors=True)
                    b_cold.append(browser_load(browser, base))
                    b_cached += [browser_load(browser, base) for _ in range(2)]
                browser.close()
        except Exception as exc:  # no chromium here: the HTTP numbers still stand
            print(f"browser timing skipped: {exc}")
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(10)
        shutil.rmtree(work, ignore_errors=True)

    def ms(xs):
        return 1000 * statistics.median(xs) if xs else None

    result = {"batch": BATCH, "photos": sum(len(p["paths"]) for p in pages), "cpus": os.cpu_count(),
              "load": round(os.getloadavg()[0], 1), "date": datetime.date.today().isoformat(),
              "rows": [{"what": "HTTP: page list + 24 thumbnails, 6 connections", "pages": len(cold),
                        "cold_ms": ms(cold), "cached_ms": ms(cached)},
                       {"what": "chromium: Confirm tab click → 24 images decoded", "pages": len(b_cold),
                        "cold_ms": ms(b_cold), "cached_ms": ms(b_cached)}]}
    publish(SECTION, result, render, write=not args.no_write)


if __name__ == "__main__":
    main()
