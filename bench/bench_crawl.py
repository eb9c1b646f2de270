"""Benchmark: one crawl-size batch of listing-size photos through every step of roomclf.

The crawl roomclf serves holds batches of ~20,000 listing photos of about 1024x768 (JPEG). The corpus
in ../shared/data is small web photos, so this bench first makes a synthetic batch under var/ (never
committed): every photo a 1024x768 (or, one in ten, 768x1024) JPEG re-encode of a labelled corpus photo,
varied by crop, mirror image and quality so that none is byte-identical, 20 to a listing, plus the
corpus's planted bad files (empty, truncated, HTML, CMYK, huge...). A small second batch (one photo in
twenty, at least 50) is the validation batch for training's data preparation.

Each step then runs as the product's own command in a fresh process, in a fresh working-data folder,
timed wall-clock from launch to exit (startup included) with the peak resident memory of the process
tree's largest process (``os.wait4``):

- cold prelabel plus the first labelling page: `roomclf label` with no model (zero-shot), no embedding
  cache, until the page, its queue, the first photo and the first 24-thumbnail confirm page answered;
- embedding: `roomclf embed` into an empty cache;
- propagation from 1,000 manual labels (`roomclf import-labels --as manual`, then `roomclf propagate`);
- training's data preparation (`roomclf.train.run.prepare_data`: labels, unreadable photos, the leak
  filter with its near-duplicate check);
- infer-all with Ray and with the loop engine, fp32 and static int8, against the floor for that model:
  (decode + model time per photo, each measured on 320 of these photos with one thread) / CPUs, and
  against the same decode and model work run on every core at once (640 photos, one thread per core as
  the loop engine runs it): what the cores give together, which the floor assumes is CPUs x one thread.

The model for infer-all is the default training network's architecture with its pretrained body and an
untrained head (speed does not depend on the head's weights), unless --model names an ONNX file.
Finally the per-node rates are extrapolated to the whole crawl (19 batches of 20,000 photos) on 1 node
and on N nodes, assuming rates add up across nodes (Ray's multi-node overhead is not measured here).

    .venv/bin/python bench/bench_crawl.py                      # 20,000 photos (about 2 hours here)
    .venv/bin/python bench/bench_crawl.py --photos 200 --no-write              # a quick look, in var/crawl-200
    .venv/bin/python bench/bench_crawl.py --only infer-loop    # measure some steps again, keep the others

The result is kept in bench/results/crawl.json (committed) and rendered into docs/benchmarks.md
(``--report`` renders it again without measuring).
"""
from __future__ import annotations

import argparse
import csv
import datetime
import os
import platform
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

from common import PROJECT, default_data, load_result, publish, report_saved, table

sys.path.insert(0, str(PROJECT))
CRAWL_PHOTOS, CRAWL_BATCHES = 20_000, 19
PHOTOS_PER_LISTING = 20
MANUAL_LABELS = 1_000
NODES = (1, 4, 16)
ROOMCLF = [sys.executable, "-m", "roomclf.cli"]


# ---- the synthetic batch ------------------------------------------------------------------------

def _make_one(job: tuple[str, str, int]) -> None:
    """Write one listing-size variant of the corpus photo ``src`` at ``dst`` (seeded by ``seed``)."""
    from PIL import Image

    from roomclf.photos import open_photo

    src, dst, seed = job
    rng = random.Random(seed)
    img = open_photo(src)
    w, h = img.size
    cw, ch = int(w * rng.uniform(0.75, 1.0)), int(h * rng.uniform(0.75, 1.0))
    x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
    img = img.crop((x, y, x + cw, y + ch))
    if rng.random() < 0.5:
        img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    size = (768, 1024) if rng.random() < 0.1 else (1024, 768)
    img = img.resize(size, Image.Resampling.BILINEAR)
    Path(dst).parent.mkdir(parents=True, exist_ok=True)
    tmp = f"{dst}.tmp"
    img.save(tmp, "JPEG", quality=rng.randint(70, 92))
    os.replace(tmp, dst)


def make_crawl(work: Path, n: int, jobs: int) -> dict:
    """The synthetic corpus at ``work/listings`` (batch_01: ``n`` photos, batch_02: validation), with
    ``work/manifest.csv`` (path,label,source); made once per size, reused when complete."""
    from roomclf.labels.prelabel import read_ground_truth

    listings, manifest, done = work / "listings", work / "manifest.csv", work / f".complete-{n}"
    if done.exists():
        with open(manifest, newline="") as f:
            return {"photos": n, "rows": list(csv.DictReader(f))}
    shutil.rmtree(work, ignore_errors=True)
    data = default_data()
    truth = read_ground_truth(data / "labels.csv")
    sources = sorted(truth.items())
    rng = random.Random(0)
    rng.shuffle(sources)
    n_valid = max(50, n // 20)
    rows, todo = [], []
    for batch, count in (("batch_01", n), ("batch_02", n_valid)):
        for i in range(count):
            path, label = sources[(i + (n if batch == "batch_02" else 0)) % len(sources)]
            rel = f"{batch}/listing_{i // PHOTOS_PER_LISTING + 1:04d}/photo_{i % PHOTOS_PER_LISTING + 1:02d}.jpg"
            rows.append({"path": rel, "label": label, "source": path})
            todo.append((str(data / "listings" / path), str(listings / rel), (batch == "batch_02") * 10**7 + i))
    from tqdm import tqdm

    with ProcessPoolExecutor(max_workers=jobs) as pool:
        list(tqdm(pool.map(_make_one, todo, chunksize=16), total=len(todo), desc="making the listing-size batch",
                  unit="photo"))
    bad = listings / "batch_01" / "listing_bad"
    bad.mkdir(parents=True, exist_ok=True)
    with open(data / "labels.csv", newline="") as f:      # the corpus's planted files say so in `subtype`
        odd = {r["path"] for r in csv.DictReader(f) if r["subtype"].startswith(("corrupt_", "odd_"))}
    for i, planted in enumerate(sorted((data / "listings" / "batch_19").rglob("*"))):
        rel = planted.relative_to(data / "listings").as_posix()
        if planted.is_file() and (rel in odd or rel not in truth):
            shutil.copy(planted, bad / f"{i:04d}-{planted.name}")
    with open(manifest, "w", newline="") as f:
        writer = csv.DictWriter(f, ["path", "label", "source"])
        writer.writeheader()
        writer.writerows(rows)
    done.touch()
    return {"photos": n, "rows": rows}



# ---- running one step -----------------------------------------------------------------------------

def step_env(work: Path, home: str) -> dict:
    """A fresh working-data folder (label store, MLflow store, embedding cache) for one step."""
    env = dict(os.environ, ROOMCLF_HOME=str(work / home), ROOMCLF_DATA=str(work / "listings"),
               MLFLOW_DISABLE_TELEMETRY="true", PYTHONWARNINGS="ignore")
    for key in ("MLFLOW_TRACKING_URI", "ROOMCLF_LABEL_DB", "ROOMCLF_EMBEDDING_DIR", "RAY_ADDRESS"):
        env.pop(key, None)
    return env


class PeakMemory:
    """Samples a process tree from /proc while it runs: the largest single process's peak (VmHWM) and
    the tree's largest total resident set. (``ru_maxrss`` would not do: a child forked from this big
    bench process starts with the bench's own peak.)"""

    def __init__(self, pid: int, every: float = 0.5):
        import threading

        self.pid, self.every, self.largest_mb, self.total_mb = pid, every, 0.0, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _tree(self) -> list[int]:
        parents: dict[int, list[int]] = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
                except (OSError, IndexError, ValueError):
                    continue
                parents.setdefault(ppid, []).append(int(entry))
        tree, todo = [], [self.pid]
        while todo:
            pid = todo.pop()
            tree.append(pid)
            todo.extend(parents.get(pid, []))
        return tree

    @staticmethod
    def _status_kb(pid: int, field: str) -> int:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith(field + ":"):
                    return int(line.split()[1])
        except OSError:
            pass
        return 0

    def _run(self) -> None:
        while not self._stop.is_set():
            tree = self._tree()
            self.largest_mb = max([self.largest_mb] + [self._status_kb(p, "VmHWM") / 1024 for p in tree])
            self.total_mb = max(self.total_mb, sum(self._status_kb(p, "VmRSS") for p in tree) / 1024)
            self._stop.wait(self.every)

    def stop(self) -> tuple[float, float]:
        self._stop.set()
        self._thread.join()
        return self.largest_mb, self.total_mb


def timed(name: str, args: list[str], env: dict, photos: int, log: Path) -> dict:
    """Run ``args`` to its end: wall seconds, photos/s and peak memory; a failed step stops the bench
    with the tail of its log."""
    with open(log, "w") as out:
        t = time.perf_counter()
        proc = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=PROJECT)
        memory = PeakMemory(proc.pid)
        code = proc.wait()
        seconds = time.perf_counter() - t
        largest, total = memory.stop()
    if code:
        tail = "\n".join(log.read_text().splitlines()[-15:])
        raise SystemExit(f"bench_crawl: step '{name}' failed ({code}):\n{tail}")
    return {"step": name, "seconds": seconds, "photos": photos, "photos_per_s": photos / seconds,
            "peak_mb": largest, "tree_peak_mb": total, **_stamp()}


def _stamp() -> dict:
    """When a step was measured and the machine's load then (steps of one table may come from several runs)."""
    return {"when": datetime.datetime.now().isoformat(timespec="minutes"), "load": round(os.getloadavg()[0], 1)}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def first_labelling_page(env: dict, photos: int, log: Path) -> dict:
    """`roomclf label` on a batch nobody prelabelled (no model, no embeddings): seconds from launch until
    the page, its queue, the first photo and the first confirm page's 24 thumbnails have answered."""
    import httpx

    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    with open(log, "w") as out:
        t = time.perf_counter()
        proc = subprocess.Popen([*ROOMCLF, "label", "--batch", "batch_01", "--port", str(port), "--no-warm-thumbs"],
                                env=env, stdout=out, stderr=subprocess.STDOUT, cwd=PROJECT, start_new_session=True)
        memory = PeakMemory(proc.pid)
        try:
            while True:
                if proc.poll() is not None:
                    raise SystemExit(f"bench_crawl: the labelling app stopped:\n{log.read_text()[-2000:]}")
                try:
                    if httpx.get(f"{base}/api/state", timeout=5).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.5)
            with httpx.Client(base_url=base, timeout=120) as client:
                client.get("/").raise_for_status()
                queue = client.get("/api/queue").raise_for_status().json()
                first = _first_path(queue)
                if first:
                    client.get("/api/photo", params={"path": first}).raise_for_status()
                pages = client.get("/api/pages").raise_for_status().json()
                thumbs = _first_page_paths(pages)
                with ThreadPoolExecutor(6) as pool:      # a browser's connections per host
                    list(pool.map(lambda p: client.get("/api/thumb", params={"path": p}).raise_for_status(), thumbs))
            seconds = time.perf_counter() - t
        finally:
            largest, total = memory.stop()
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait()
    return {"step": "cold prelabel + first labelling page", "seconds": seconds, "photos": photos,
            "photos_per_s": photos / seconds, "peak_mb": largest, "tree_peak_mb": total, **_stamp()}


def _first_path(queue: list[dict]) -> str | None:
    return queue[0]["path"] if queue else None


def _first_page_paths(pages: list[dict]) -> list[str]:
    return list(pages[0]["paths"])[:24] if pages else []


def prepare_training_data(root: str, valid_batch: str) -> None:
    """What `roomclf train` does before its first epoch (run in a child process by the bench)."""
    from roomclf.labels.store import LabelStore
    from roomclf.train.config import TrainConfig
    from roomclf.train.run import prepare_data

    from roomclf.models.backbones import get_spec

    cfg = TrainConfig(data=root, train_batches=["batch_01"], valid_batches=[valid_batch])
    cfg.image_size = get_spec(cfg.backbone).train_size
    prepare_data(cfg, LabelStore(), echo=lambda *a, **k: None)


# ---- infer-all and its floor -------------------------------------------------------------------------

def speed_model(work: Path, backbone: str, size: int | None = None, meta: dict | None = None) -> Path:
    """An ONNX room model of ``backbone``'s architecture as training exports it (pretrained body,
    untrained heads), at ``size`` (default: the registry's): the same model time per photo as a trained one.
    ``meta``: more metadata (e.g. the batches a trained one would name as its training photos)."""
    out = work / (f"speed-{backbone}.onnx" if size is None else f"speed-{backbone}-{size}.onnx")
    if not out.exists():
        from roomclf.models.network import ExportNet, RoomNet
        from roomclf.models.onnx_file import export_onnx

        export_onnx(ExportNet(RoomNet(backbone).eval()), out,
                    {"note": "bench_crawl: speed only, untrained heads", **({"input_size": size} if size else {}),
                     **(meta or {})})
    return out


def int8_twin(fp32: Path, work: Path, rows: list[dict]) -> Path:
    """Its static-int8 copy, calibrated as `roomclf train --quantize` does, on photos of the batch."""
    from roomclf.models.quantize import calibration_sample, quantize_static_int8

    out = fp32.with_suffix(".int8.onnx")
    if not out.exists():
        paths = [r["path"] for r in rows if r["path"].startswith("batch_01/")]
        quantize_static_int8(fp32, out, work / "listings", calibration_sample(paths, 50))
    return out


def floor(model: Path, work: Path, rows: list[dict], n: int = 320) -> dict:
    """Decode and model milliseconds per photo (one thread each, medians over batches of 32) and the
    photos/s they allow on the cores roomclf uses (settings.cpus): the most infer-all can reach.
    ``all_cores_photos_per_s``: the same work on every core at once (``all_cores``), what the cores
    deliver together."""
    import numpy as np

    from roomclf.models.onnx_file import OnnxModel
    from roomclf.photos import model_input
    from roomclf.settings import cpus

    m = OnnxModel(model, threads=1)
    paths = [work / "listings" / r["path"] for r in rows[:n]]
    t = time.perf_counter()
    arrays = [model_input(p, m.input_size) for p in paths]
    decode_ms = (time.perf_counter() - t) / len(paths) * 1000
    m.run(np.stack(arrays[:32]))
    per = []
    for s in range(0, len(arrays) - 31, 32):
        t = time.perf_counter()
        m.run(np.stack(arrays[s:s + 32]))
        per.append((time.perf_counter() - t) / 32 * 1000)
    model_ms = statistics.median(per)
    return {"decode_ms": decode_ms, "model_ms": model_ms, "photos_per_s": cpus() * 1000 / (decode_ms + model_ms),
            "all_cores_photos_per_s": all_cores(m, [work / "listings" / r["path"] for r in rows[:2 * n]])}


def all_cores(m, paths: list[Path], batch: int = 32) -> float:
    """Photos/s of decoding and running batches of ``batch`` on every core at once, as the loop engine runs
    them (one thread per core over the one single-threaded session, ``roomclf.parallel``) but without its
    output rows, commits and tracking: the floor the cores reach together, which sharing caches, memory
    and clock between busy cores puts below one thread's rate times the cores."""
    import numpy as np

    from roomclf.parallel import ordered_map
    from roomclf.photos import model_inputs
    from roomclf.settings import cpus

    def one(chunk: list[Path]) -> int:
        arrays, _, _ = model_inputs(chunk, m.input_size)
        m.run(np.stack(arrays))
        return len(arrays)

    chunks = [paths[i:i + batch] for i in range(0, len(paths), batch)]
    one(chunks[0])
    t = time.perf_counter()
    done = sum(ordered_map(one, chunks, cpus()))
    return done / (time.perf_counter() - t)


# ---- the whole bench -----------------------------------------------------------------------------

STEPS = ("label", "embed", "propagate", "train-prep", "infer-loop", "infer-ray")


def run_bench(work: Path, n: int, backbone: str, model: Path | None, jobs: int, only: set[str] | None = None,
              rounds: int = 1) -> dict:
    """Every step of ``STEPS`` (or those in ``only``) on the synthetic batch; the result to keep."""
    def want(step: str) -> bool:
        return only is None or step in only

    made = make_crawl(work, n, jobs)
    rows = made["rows"]
    logs = work / "logs"
    logs.mkdir(exist_ok=True)
    total = n + len(list((work / "listings" / "batch_01" / "listing_bad").iterdir()))
    steps = []
    print(f"bench_crawl: {n} listing-size photos in {work / 'listings'}", flush=True)

    if want("label"):
        env = step_env(work, "home-label")
        shutil.rmtree(env["ROOMCLF_HOME"], ignore_errors=True)
        steps.append(first_labelling_page(env, total, logs / "label.log"))
        print(steps[-1], flush=True)
    if want("embed"):
        env = step_env(work, "home-embed")
        shutil.rmtree(env["ROOMCLF_HOME"], ignore_errors=True)
        steps.append(timed("embedding (empty cache)", [*ROOMCLF, "embed", "--batch", "batch_01"], env, total,
                           logs / "embed.log"))
        print(steps[-1], flush=True)
    if want("propagate") or want("train-prep"):
        steps += labelled_steps(work, rows, total, logs)
    if want("infer-loop") or want("infer-ray"):
        engines = [e for e in ("loop", "ray") if want(f"infer-{e}")]
        steps += infer_steps(work, rows, total, logs, backbone, model, engines, rounds)
    fp32 = model or speed_model(work, backbone)
    from roomclf.models.onnx_file import OnnxModel

    meta = OnnxModel(fp32).meta
    return {"photos": n, "planted": total - n, "photo_size": "1024x768 (one in ten 768x1024) JPEG, quality 70-92",
            "model": f"{meta.get('backbone')} at {meta.get('input_size')} px" + (
                "" if model else " (pretrained body, untrained heads: speed only)"),
            "floors": {s["form"]: s["floor"] for s in steps if "floor" in s}, "steps": steps,
            "machine": f"{os.cpu_count()} CPUs ({platform.machine()})",
            "load": os.getloadavg()[0], "date": datetime.date.today().isoformat()}


def labelled_steps(work: Path, rows: list[dict], total: int, logs: Path) -> list[dict]:
    """Propagation from the first photos a person labelled, then training's data preparation, in the
    embedding step's working data (its embeddings cached)."""
    env = step_env(work, "home-embed")
    steps = []

    manual = work / "manual.csv"          # the first 1,000 photos a person labelled
    with open(manual, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "label"])
        writer.writerows([r["path"], r["label"]] for r in rows if r["path"].startswith("batch_01/"))
    valid = work / "valid.csv"
    with open(valid, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "label"])
        writer.writerows([r["path"], r["label"]] for r in rows if r["path"].startswith("batch_02/"))
    labels = min(MANUAL_LABELS, sum(r["path"].startswith("batch_01/") for r in rows) // 2)
    subprocess.run([*ROOMCLF, "import-labels", str(manual), "--as", "manual", "--limit", str(labels)], env=env,
                   check=True, stdout=subprocess.DEVNULL, cwd=PROJECT)
    subprocess.run([*ROOMCLF, "import-labels", str(valid), "--as", "imported"], env=env, check=True,
                   stdout=subprocess.DEVNULL, cwd=PROJECT)
    steps.append(timed(f"propagation from {labels:,} manual labels (embeddings cached)",
                       [*ROOMCLF, "propagate", "--batch", "batch_01"], env, total, logs / "propagate.log"))
    print(steps[-1], flush=True)
    steps.append(timed("training's data preparation (embeddings cached)",
                       [sys.executable, __file__, "--prepare-training-data", str(work / "listings")], env,
                       total + len(valid.read_text().splitlines()) - 1, logs / "train-prep.log"))
    print(steps[-1], flush=True)
    return steps


def infer_steps(work: Path, rows: list[dict], total: int, logs: Path, backbone: str, model: Path | None,
                engines: list[str], rounds: int = 1) -> list[dict]:
    """infer-all with each engine, fp32 and int8, each beside the floor of its model measured just before
    and just after it (their mean: this shared machine's speed drifts by tens of percent within the hour).
    With ``rounds`` > 1 the whole set is measured that many times, engines alternating within each form and
    their order reversed every other round, so that drift falls on every row alike; each row is then its
    round with the median ratio to the floor, carrying every round's figures (``rounds``)."""
    fp32 = model or speed_model(work, backbone)
    forms = {"fp32": fp32, "int8": int8_twin(fp32, work, rows)}
    env = step_env(work, "home-infer")
    measured: dict[str, list[dict]] = {}
    for r in range(rounds):
        order = engines if r % 2 == 0 else engines[::-1]
        for form, path in forms.items():
            for engine in order:
                out = work / f"infer-{engine}-{form}"
                shutil.rmtree(out, ignore_errors=True)
                before = floor(path, work, rows)
                step = timed(f"infer-all, {engine}, {form}",
                             [*ROOMCLF, "infer-all", "--batch", "batch_01", "--model", str(path), "--engine", engine,
                              "--out", str(out), "--no-progress"], env, total, logs / f"infer-{engine}-{form}.log")
                after = floor(path, work, rows)
                both = {k: (before[k] + after[k]) / 2 for k in before}
                step.update(floor_photos_per_s=both["photos_per_s"], form=form, floor=both,
                            floor_before_after=[before["photos_per_s"], after["photos_per_s"]])
                measured.setdefault(step["step"], []).append(step)
                print(f"round {r + 1}/{rounds}:", step, flush=True)
    steps = []
    for engine in engines:
        for form in forms:
            runs = measured[f"infer-all, {engine}, {form}"]
            ranked = sorted(runs, key=lambda s: s["photos_per_s"] / s["floor_photos_per_s"])
            steps.append({**ranked[(len(ranked) - 1) // 2], "rounds": [
                {k: s[k] for k in ("photos_per_s", "floor_photos_per_s", "when")}
                | {"all_cores_photos_per_s": s["floor"]["all_cores_photos_per_s"]} for s in runs]}
                if len(runs) > 1 else runs[0])
    return steps


def merged(earlier: dict | None, now: dict) -> dict:
    """``now``'s steps in place of the same steps of ``earlier`` (a run with --only); each step keeps the
    date and load average of the run that measured it."""
    if not earlier:
        return now
    fresh = {s["step"]: s for s in now["steps"]}
    steps = [fresh.pop(s["step"], {"when": earlier["date"], **s}) for s in earlier["steps"]] + list(fresh.values())
    return {**now, "steps": steps, "floors": {**earlier.get("floors", {}), **now["floors"]}}


def extrapolate(step: dict, nodes: int) -> str:
    """Hours for the whole crawl at this step's per-node rate on ``nodes`` nodes."""
    hours = CRAWL_BATCHES * CRAWL_PHOTOS / (step["photos_per_s"] * nodes) / 3600
    return f"{hours:.1f} h" if hours >= 1 else f"{hours * 60:.0f} min"


def engines_side_by_side(steps: list[dict]) -> list[str]:
    """For rows measured in rounds: Ray's photos/s over the loop's in each round, the two run one after the
    other (the least drift between them), per model form; no lines without rounds of both engines."""
    rounds = {s["step"]: s["rounds"] for s in steps if s.get("rounds")}
    parts = []
    for form in ("fp32", "int8"):
        ray, loop = rounds.get(f"infer-all, ray, {form}"), rounds.get(f"infer-all, loop, {form}")
        if ray and loop:
            each = sorted(r["photos_per_s"] / lp["photos_per_s"] for r, lp in zip(ray, loop))
            parts.append(f"{form} {statistics.median(each):.2f} ({', '.join(f'{x:.2f}' for x in each)})")
    return [f"Ray's photos/s over the loop's, the two run one after the other in each round: median (each round): "
            f"{'; '.join(parts)}.", ""] if parts else []


def render(result: dict) -> str:
    rows = []
    for s in result["steps"]:
        ratio = f"{s['photos_per_s'] / s['floor_photos_per_s']:.2f}" if s.get("floor_photos_per_s") else "-"
        if s.get("rounds"):                  # the median of several rounds, and their spread
            each = sorted(r["photos_per_s"] / r["floor_photos_per_s"] for r in s["rounds"])
            ratio += f" (rounds: {', '.join(f'{x:.2f}' for x in each)})"
        elif s.get("floor_before_after"):    # the spread the machine's drift puts on the ratio
            lo, hi = sorted(s["photos_per_s"] / f for f in s["floor_before_after"])
            ratio += f" ({lo:.2f}–{hi:.2f})"
        together = s.get("floor", {}).get("all_cores_photos_per_s")      # absent from rows measured before it was
        cores = f"{s['photos_per_s'] / together:.2f}" if together else "-"
        rows.append([s["step"], f"{s['seconds']:.0f}", f"{s['photos_per_s']:.1f}", ratio, cores,
                     f"{s['peak_mb']:.0f} / {s['tree_peak_mb']:.0f}", s.get("when", result["date"]).replace("T", " "),
                     *[extrapolate(s, k) for k in NODES]])
    fl = "; ".join(f"{form}: decode {f['decode_ms']:.1f} ms + model {f['model_ms']:.1f} ms per photo, "
                   f"floor {f['photos_per_s']:.1f} photos/s"
                   + (f", all cores at once {f['all_cores_photos_per_s']:.1f}" if "all_cores_photos_per_s" in f else "")
                   for form, f in result["floors"].items())
    return "\n".join([
        "## A crawl-size batch through every step (`bench/bench_crawl.py`)", "",
        (f"One synthetic batch of {result['photos']:,} listing-size photos ({result['photo_size']}, re-encodes of "
         f"corpus photos varied by crop, mirror image and quality) plus {result['planted']} planted bad files. "
         f"Each step is the product's command in a fresh process, wall-clock from launch to exit (startup "
         f"included); peak memory is sampled from /proc every half second: the largest single process of the "
         f"step's tree, and the whole tree's resident total. {result['machine']}; each step measured when its "
         f"row says (`--only` measures some steps again). infer-all's model: {result['model']}; its floor "
         f"(one thread each, medians; divided over the CPUs) is measured just before and just after each "
         f"infer-all row, and the row is compared with their mean (in brackets: with each of the two, or, for "
         f"a row measured in several interleaved rounds (`--rounds`), each round's ratio, the row being its median "
         f"round); "
         f"the last ones: {fl}. \"All cores at once\" is that decode and model work run on every core "
         f"together, in one thread per core as the loop engine runs it but without its output rows, commits and "
         f"tracking, measured beside the floor: what the cores deliver together; the floor assumes they add up."),
        "",
        table(["step", "seconds", "photos/s", "vs floor", "vs all cores at once", "peak MB: largest process / all",
               "measured",
               *[f"whole crawl, {k} node{'s' if k > 1 else ''}" for k in NODES]], rows), "",
        *engines_side_by_side(result["steps"]),
        (f"The whole crawl is {CRAWL_BATCHES} batches of {CRAWL_PHOTOS:,} photos; N nodes assume the per-node rate "
         "measured here adds up (Ray's overhead across machines is not measured by this bench).")])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--photos", type=int, default=CRAWL_PHOTOS, help="photos in the synthetic batch")
    ap.add_argument("--work", type=Path, default=None, help="where the batch and the steps' data go "
                    "(default: var/crawl-<photos> in the project)")
    ap.add_argument("--backbone", default=None, help="infer-all's network (default: the training default)")
    ap.add_argument("--model", type=Path, default=None, help="an ONNX room model for infer-all instead")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="processes making the batch")
    ap.add_argument("--no-write", action="store_true", help="print only; leave the result file and docs alone")
    ap.add_argument("--make-only", action="store_true", help="make the synthetic batch (untimed) and stop")
    ap.add_argument("--only", default=None, help=f"comma list of steps to measure again ({', '.join(STEPS)}); "
                    "the others keep their figures from bench/results/crawl.json")
    ap.add_argument("--rounds", type=int, default=1, help="measure the infer-all rows this many times, interleaved, "
                    "and keep each row's median round (the machine's drift shows in the spread across rounds)")
    ap.add_argument("--report", action="store_true", help="render the section again from bench/results/crawl.json")
    ap.add_argument("--prepare-training-data", metavar="ROOT", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.prepare_training_data:
        return prepare_training_data(args.prepare_training_data, "batch_02")
    if args.report:
        return report_saved("crawl", render, write=not args.no_write)
    from roomclf.train.config import TrainConfig

    work = (args.work or PROJECT / "var" / f"crawl-{args.photos}").resolve()
    if args.make_only:
        return print(f"{len(make_crawl(work, args.photos, args.jobs)['rows'])} photos in {work / 'listings'}")
    only = {s.strip() for s in args.only.split(",")} if args.only else None
    if only and only - set(STEPS):
        raise SystemExit(f"bench_crawl: unknown steps {', '.join(sorted(only - set(STEPS)))}; one of {', '.join(STEPS)}")
    result = run_bench(work, args.photos, args.backbone or TrainConfig.backbone, args.model, args.jobs, only,
                       args.rounds)
    publish("crawl", merged(load_result("crawl") if only else None, result), render, write=not args.no_write)


if __name__ == "__main__":
    main()
