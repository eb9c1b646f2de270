"""Benchmark infer-all: Ray Data vs a plain onnxruntime loop vs fastai learn.predict, fp32 and int8.

Every engine runs as its own process (the product's ``roomclf.infer.run.infer_all``,
what `roomclf infer-all --force` runs; wall time includes imports and Ray
start-up; photos/s and errors from the summary it returns), watched for the peak
memory of its whole process tree (sum of PSS, so shared pages such as Ray's
object store count once).
Also: infer time vs number of batches (Ray), and accuracy against labels.csv on
the honest split of ``bench/common.py``: TUNE (batch_11-13, where choices are
made) and TEST (batch_14-19, reported only), near-duplicates of batch_01-10
photos removed. Writes the `infer` section of docs/benchmarks.md.

``--accuracy-only`` skips the speed runs: fp32 vs int8 accuracy on TUNE and
TEST with infer-all's plain loop engine, in its own section `infer-accuracy`.

The results are kept as data in ``bench/results/infer.json`` and
``bench/results/infer-accuracy.json`` and the sections rendered from them;
``--report`` (with ``--accuracy-only``: that section only) renders them again
without measuring.

The model: `models:/roomclf-onnx@champion` (and `roomclf-onnx-int8@champion`)
when registered in $ROOMCLF_HOME, else a quick one built here (pretrained
EfficientNet-Lite0 body, logistic-regression head on 150 photos of batch_01)
and an int8 copy quantised here with `roomclf.models.quantize` (static QDQ, calibrated as `roomclf train --quantize` is).

``--model DIR/model.onnx`` uses a network saved by ``bench/bench_train.py --save DIR``
instead (its ``roomnet.pt`` beside it serves the learn.predict row; accuracy
then excludes the batches in its ``train_batches`` metadata).

    python bench/bench_infer.py [--model var/bench/train-default/model.onnx] [--batches all] [--scaling 1,2,4,8,19]
    python bench/bench_infer.py --accuracy-only --model var/bench/train-default/model.onnx
    python bench/bench_infer.py --report
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from common import (
    SPLIT_NOTE,
    ground_truth,
    honest_split,
    load_result,
    save_result,
    split_summary,
    table,
    table_row,
    write_section,
)

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT))
SECTION = "infer"
ACCURACY = SECTION + "-accuracy"
# the accuracy columns of the infer table, by the key of an engine's "acc" (another key, e.g. a run made before
# the split was fixed, is shown as "accuracy, KEY")
ACCURACY_COLUMNS = {"tune": "TUNE acc", "test": "TEST acc"}
METHOD_NOTE = ("each engine is its own process (`roomclf.infer.run.infer_all(..., force=True)`, what "
               "`roomclf infer-all --force` runs); photos/s from the summary it returns (includes Ray start-up); "
               "peak = largest sum of PSS over the process tree (Ray's workers included)")


# --------------------------------------------------------------------------- memory of a process tree

def _children(pid: int) -> list[int]:
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            kids.append(int(stat.parent.name))
    return kids


def _tree(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += _children(p)
    return out


def _pss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def run_watched(cmd: list[str], env: dict | None = None) -> tuple[str, float, float]:
    """Run a command; returns (output, wall seconds, peak MB of its process tree)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    peak = [0]

    def watch():
        while proc.poll() is None:
            peak[0] = max(peak[0], sum(_pss_kb(p) for p in _tree(proc.pid)))
            time.sleep(0.5)

    t = threading.Thread(target=watch, daemon=True)
    t.start()
    output = proc.communicate()[0].decode(errors="replace")
    t.join()
    if proc.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{output[-3000:]}")
    return output, time.perf_counter() - t0, peak[0] / 1024


# --------------------------------------------------------------------------- models

def quick_model(work: Path, root: Path, labels: dict) -> Path:
    """Pretrained body + logistic-regression head on 150 photos of batch_01 (like the tests' quick_onnx)."""
    import numpy as np
    import torch
    from sklearn.linear_model import LogisticRegression

    from roomclf.models.embeddings import embed
    from roomclf.models.network import ExportNet, RoomNet
    from roomclf.models.onnx_file import export_onnx
    from roomclf.taxonomy import CLASSES

    rows = sorted(p for p, lab in labels.items() if p.startswith("batch_01/") and lab)[::2][:150]
    emb = embed(root, rows, "efficientnet_lite0", normalize=False, progress=False)
    clf = LogisticRegression(max_iter=2000, C=0.5).fit(emb.vectors, [CLASSES.index(labels[p]) for p in emb.paths])
    net = RoomNet("efficientnet_lite0", pretrained=True).eval()
    coef = np.zeros((len(CLASSES), emb.vectors.shape[1]), np.float32)
    bias = np.full(len(CLASSES), -20.0, np.float32)
    coef[clf.classes_], bias[clf.classes_] = clf.coef_, clf.intercept_
    with torch.no_grad():
        net.head[1].weight.copy_(torch.from_numpy(coef))
        net.head[1].bias.copy_(torch.from_numpy(bias))
    torch.save(net.state_dict(), work / "quick_head.pt")
    return export_onnx(ExportNet(net), work / "quick.onnx", {"note": "bench: logistic-regression head on batch_01"})


def quantize(fp32: Path, root: Path, trained_on: list[str], out: Path) -> Path:
    """Static int8 with roomclf's own quantiser, calibrated as `roomclf train --quantize` calibrates (the
    recipe's number of photos, evenly spaced through the model's training photos)."""
    from roomclf.models.quantize import calibration_sample, quantize_static_int8
    from roomclf.train.config import DEFAULT_RECIPE

    calib = calibration_sample(trained_on, DEFAULT_RECIPE.int8_calibration_photos)
    return quantize_static_int8(fp32, out, root, calib)


def registered(uri: str) -> bool:
    try:
        from roomclf.models.registry import model_version_info

        model_version_info(uri)
        return True
    except Exception:
        return False


# --------------------------------------------------------------------------- engines

INFER_SCRIPT = r"""
import json, sys
from pathlib import Path
from roomclf.infer.run import infer_all
root, out, batches, model, engine, result = sys.argv[1:]
s = infer_all(root, out, batches=batches, model=model, engine=engine, force=True, progress=False)
Path(result).write_text(json.dumps({"photos": s.photos, "predictions": s.predictions, "errors": s.errors,
                                    "skipped": s.skipped, "seconds": s.seconds, "rate": s.photos_per_s}))
"""


def script(work: Path, name: str, text: str) -> Path:
    """``text`` as a Python script in ``work`` (run in its own process by ``run_watched``)."""
    path = work / name
    path.write_text(text)
    return path


def run_infer(root: Path, model: str, out: Path, batches: str, engine: str) -> tuple[dict, float, float]:
    """One infer-all run in its own process: (the summary ``infer_all`` returned, as a dict; wall seconds;
    peak MB of its process tree)."""
    result = out.with_name(out.name + "-summary.json")
    result.unlink(missing_ok=True)
    cmd = [sys.executable, str(script(out.parent, "infer_all.py", INFER_SCRIPT)), str(root), str(out), batches,
           model, engine, str(result)]
    _, wall, peak = run_watched(cmd)
    return json.loads(result.read_text()), wall, peak


FASTAI_SCRIPT = r"""
import sys, time, json, torch
from pathlib import Path
from fastai.vision.all import CategoryBlock, ImageDataLoaders, Learner, Normalize, Resize
from roomclf.models.network import RoomNet
from roomclf.models.backbones import get_spec
from roomclf.taxonomy import CLASSES
root, head, paths = Path(sys.argv[1]), sys.argv[2], sys.argv[3:]
spec = get_spec("efficientnet_lite0")
net = RoomNet("efficientnet_lite0", pretrained=False)
net.load_state_dict(torch.load(head))
fn = [root / p for p in paths]
dls = ImageDataLoaders.from_lists(root, fn[:14], [CLASSES[i % 7] for i in range(14)], valid_pct=0.5, seed=0,
                                  y_block=CategoryBlock(vocab=CLASSES), item_tfms=Resize(224),
                                  batch_tfms=Normalize.from_stats(spec.mean, spec.std), bs=4, num_workers=0)
learn = Learner(dls, net)
learn.predict(fn[0])
t0 = time.perf_counter()
for f in fn:
    learn.predict(f)
print(json.dumps({"photos": len(fn), "seconds": time.perf_counter() - t0}))
"""


def bench_fastai(root: Path, work: Path, weights: Path, paths: list[str]) -> dict:
    """learn.predict per photo, in its own process, with a RoomNet state_dict."""
    output, wall, peak = run_watched([sys.executable, str(script(work, "fastai_predict.py", FASTAI_SCRIPT)),
                                      str(root), str(weights), *paths])
    res = json.loads(output.strip().splitlines()[-1])
    return {"rate": res["photos"] / res["seconds"], "wall": wall, "peak": peak, "photos": res["photos"]}


# --------------------------------------------------------------------------- report

def accuracy(out: Path, items: list[tuple[str, str]]) -> dict:
    """Accuracy and macro-F1 of infer-all's predictions on ``items`` ([(path, class)], one split of
    ``common.honest_split``); a labelled photo without a prediction counts as wrong."""
    from roomclf.infer.output import read_photos
    from roomclf.taxonomy import CLASSES
    from roomclf.train.report import class_report

    df = read_photos(out)
    got = {p: lab for p, lab, err in zip(df.path, df.label, df.error) if err is None or err != err}
    y = [CLASSES.index(c) for _, c in items]
    pred = [CLASSES.index(got[p]) if got.get(p) in CLASSES else -1 for p, _ in items]
    rep = class_report(y, pred)
    return {"acc": rep["accuracy"], "macro_f1": rep["macro_f1"], "n": len(items),
            "missing": sum(1 for v in pred if v < 0)}


def split_scores(out: Path, split: dict | None) -> dict:
    """{"tune": ..., "test": ...} for the honest split (empty without one)."""
    return {k: accuracy(out, split[k]) for k in ("tune", "test")} if split else {}


def fmt_acc(scores: dict, key: str) -> str:
    s = scores.get(key)
    return f"{s['acc']:.3f} (n={s['n']})" if s else "-"


# where --accuracy-only kept its results before bench/results (not committed; read once, when bench/results
# has no infer-accuracy.json yet)
OLD_ACCURACY_STORE = PROJECT / "var" / "bench" / "infer-accuracy.json"


def kept_accuracy() -> dict:
    """The models measured so far by --accuracy-only: bench/results/infer-accuracy.json."""
    kept = load_result(ACCURACY)
    if kept is None and OLD_ACCURACY_STORE.is_file():
        kept = json.loads(OLD_ACCURACY_STORE.read_text())
    return kept or {}


def accuracy_only(args, root: Path, fp32: str, int8: str | None, notes: list[str], split: dict, work: Path) -> None:
    """fp32 vs int8 accuracy on TUNE and TEST with the plain loop engine (what infer-all computes), and
    its own section ``infer-accuracy`` of docs/benchmarks.md: one block per model measured (results kept
    in bench/results/infer-accuracy.json, keyed by the model's path relative to the project)."""
    batches = ",".join(split["batches"]["tune"] + split["batches"]["test"])
    res = {}
    for prec, model in (("fp32", fp32), ("int8", int8)):
        if not model:
            continue
        out = work / f"acc-{prec}"
        _, wall, _ = run_infer(root, model, out, batches, "loop")
        res[prec] = split_scores(out, split)
        print(f"{prec}: TUNE {fmt_acc(res[prec], 'tune')}, TEST {fmt_acc(res[prec], 'test')} ({wall:.0f}s)",
              flush=True)
    key = str(Path(fp32).relative_to(PROJECT)) if args.model and Path(fp32).is_relative_to(PROJECT) else fp32
    entry = {"notes": notes, "scores": res, "date": time.strftime("%Y-%m-%d %H:%M"),
             "split_line": split_summary(split)}
    publish(ACCURACY, with_model(kept_accuracy(), key, entry), accuracy_section, args)


def with_model(kept: dict, key: str, entry: dict) -> dict:
    """The models of the ``infer-accuracy`` result with ``key`` measured (again): a model measured before keeps
    its place with the new figures, a new one comes last."""
    return {**kept, key: entry}


def publish(name: str, data: dict, render, args) -> None:
    """Keep ``data`` as bench/results/NAME.json and write the section ``render`` makes of what that file
    holds (unless --no-write); print it."""
    data = json.loads(json.dumps(data))       # render what the JSON file holds
    text = render(data)
    print("\n" + text)
    if not args.no_write:
        save_result(name, data)
        write_section(name, text)


def report(args) -> None:
    """--report: the sections again from bench/results alone, nothing measured."""
    names = [ACCURACY] if args.accuracy_only else [SECTION, ACCURACY]
    found = {name: load_result(name) for name in names}
    if not any(found.values()):
        raise SystemExit(f"no saved results ({', '.join(f'bench/results/{n}.json' for n in names)})")
    for name, data in found.items():
        if data:
            text = (accuracy_section if name == ACCURACY else infer_section)(data)
            print("\n" + text)
            if not args.no_write:
                write_section(name, text)


def model_block(name: str, entry: dict) -> str:
    """One model's fp32/int8 table."""
    r = entry["scores"]
    lines = [f"### `{name}` ({entry['date']})", "", *[f"- {x}" for x in entry["notes"]], "",
             table(["precision", "TUNE acc", "TUNE macro-F1", "TEST acc", "TEST macro-F1"],
                   [[prec, f"{s['tune']['acc']:.4f}", f"{s['tune']['macro_f1']:.4f}", f"**{s['test']['acc']:.4f}**",
                     f"{s['test']['macro_f1']:.4f}"] for prec, s in r.items()])]
    if "int8" in r and "fp32" in r:
        gap = 100 * (r["fp32"]["test"]["acc"] - r["int8"]["test"]["acc"])
        lines += ["", f"int8 costs {gap:.2f} points on TEST (target: within 0.5)."]
    return "\n".join(lines)


def accuracy_section(kept: dict) -> str:
    """The ``infer-accuracy`` section from what bench/results/infer-accuracy.json holds: one block per model,
    in the order they were first measured."""
    split_line = next(iter(kept.values())).get("split_line", "")
    blocks = [model_block(name, entry) for name, entry in kept.items()]
    lines = ["## infer-all accuracy by split, fp32 vs int8 (`bench/bench_infer.py --accuracy-only`)", "",
             f"Split: {SPLIT_NOTE}. {split_line}. The plain onnxruntime loop engine of `roomclf infer-all` "
             "over batch_11–19, scored against labels.csv; a photo without a prediction counts as wrong."]
    for block in blocks:
        lines += ["", block]
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batches", default="all")
    ap.add_argument("--scaling", default="1,2,4,8,19", help="numbers of batches for the Ray scaling runs")
    ap.add_argument("--fastai-photos", type=int, default=40)
    ap.add_argument("--repeats", type=int, default=1, help="runs per engine (the median is reported)")
    ap.add_argument("--accuracy-only", action="store_true",
                    help="only fp32 vs int8 accuracy on TUNE and TEST (plain loop engine; section infer-accuracy)")
    ap.add_argument("--no-write", action="store_true",
                    help="print only, leave docs/benchmarks.md and bench/results alone")
    ap.add_argument("--report", action="store_true",
                    help="measure nothing: render the sections again from bench/results")
    ap.add_argument("--model", help="an ONNX file saved by bench/bench_train.py --save (default: the champion, "
                                    "else a quick model built here)")
    ap.add_argument("--note", action="append", default=[],
                    help="a line to add to the model's block (e.g. what an earlier measurement said)")
    args = ap.parse_args()
    if args.report:
        return report(args)

    from roomclf.corpus import discover, list_batches
    from roomclf.settings import data_root

    root = data_root()
    labels = ground_truth(root.parent)
    work = Path(tempfile.mkdtemp(prefix="bench-infer-"))
    all_batches = list_batches(root)

    fp32 = "models:/roomclf-onnx@champion"
    int8 = "models:/roomclf-onnx-int8@champion"
    notes = []
    if args.model:
        from roomclf.models.onnx_file import OnnxModel

        fp32 = str(Path(args.model).resolve())
        shown = Path(fp32).relative_to(PROJECT) if Path(fp32).is_relative_to(PROJECT) else fp32
        trained_on = list(OnnxModel(fp32).meta.get("train_batches") or [])
        weights = Path(fp32).with_name("roomnet.pt")
        weights = weights if weights.exists() else None
        train_photos = sorted(p for p, lab in labels.items() if p.split("/")[0] in trained_on and lab)
        int8 = str(quantize(Path(fp32), root, train_photos, work / "model-int8.onnx"))
        members = OnnxModel(fp32).meta.get("members")
        made = (f"the mean of {len(members)} fast.ai-trained models ({', '.join(m['note'] for m in members)}), "
                "combined by `roomclf.models.ensemble`" if members else "fast.ai-trained by `bench/bench_train.py`")
        notes.append(f"model: `{shown}` ({made}, fitted on {trained_on[0]}-{trained_on[-1]}) and its "
                     "static-int8 copy quantised here with `roomclf.models.quantize` (calibrated as "
                     "`roomclf train --quantize` does)")
    elif registered(fp32):
        notes.append(f"model: the registered champion `{fp32}`")
        int8 = int8 if registered(int8) else None
        weights = None
        try:   # the registered ONNX carries its training batches in its metadata
            from roomclf.models.onnx_file import OnnxModel, find_onnx
            from roomclf.models.registry import fetch_model

            trained_on = list(OnnxModel(find_onnx(fetch_model(fp32))).meta.get("train_batches") or []) or None
        except Exception:
            trained_on = None
        if trained_on is None:
            notes.append("accuracy: the champion's training batches are unknown, so no accuracy")
        if int8 is None:
            notes.append("int8: no `roomclf-onnx-int8@champion` registered, so no int8 rows")
    else:
        fp32 = str(quick_model(work, root, labels))
        train_photos = sorted(p for p, lab in labels.items() if p.startswith("batch_01/") and lab)
        int8 = str(quantize(Path(fp32), root, train_photos, work / "quick-int8.onnx"))
        trained_on, weights = ["batch_01"], work / "quick_head.pt"
        notes.append("model: no champion registered here, so a quick one (pretrained EfficientNet-Lite0 + "
                     "logistic-regression head on 150 photos of batch_01) and its static-int8 copy")
    notes += args.note
    # accuracy is reported on the honest split: TUNE (batch_11-13) and TEST (batch_14-19), near-duplicates
    # of batch_01-10 photos removed; batches the model was fitted on never count
    split = honest_split(root.parent) if trained_on else None
    fitted = set(trained_on or [])
    if split and fitted & set(split["batches"]["tune"] + split["batches"]["test"]):
        notes.append(f"accuracy: the model was fitted on some TUNE/TEST batches ({sorted(fitted)}), so no accuracy")
        split = None
    if args.accuracy_only and not split:
        raise SystemExit("no honest split for this model (see above): " + "; ".join(notes))
    if args.accuracy_only:
        return accuracy_only(args, root, fp32, int8, notes, split, work)
    notes += [METHOD_NOTE, f"accuracy: {SPLIT_NOTE}; TUNE = batch_11–13, TEST = batch_14–19" if split else "accuracy: not reported (see above)"]
    corpus = discover(root, args.batches)
    n = len(corpus.photos)
    print(f"{n} photos in {args.batches}; work folder {work}", flush=True)

    engines = []
    runs = [("Ray Data infer-all", "ray", fp32, "fp32"), ("plain onnxruntime loop", "loop", fp32, "fp32")]
    if int8:
        runs += [("Ray Data infer-all", "ray", int8, "int8"), ("plain onnxruntime loop", "loop", int8, "int8")]
    for name, engine, model, prec in runs:
        rates, walls, peaks = [], [], []
        for _ in range(args.repeats):
            out = work / f"out-{engine}-{prec}"
            s, wall, peak = run_infer(root, model, out, args.batches, engine)
            rates.append(s["rate"]); walls.append(wall); peaks.append(peak)
        acc = split_scores(out, split)
        engines.append({"name": name, "engine": engine, "precision": prec, "rate": statistics.median(rates),
                        "wall": statistics.median(walls), "peak": max(peaks), "acc": acc, "errors": s["errors"]})
        print(f"{name:24} {prec}: {engines[-1]['rate']:.1f} photos/s, peak {max(peaks):.0f} MB, "
              f"TUNE {fmt_acc(acc, 'tune')}, TEST {fmt_acc(acc, 'test')}", flush=True)

    fa = None
    if weights and args.fastai_photos:
        sample = [p for p in corpus.paths if labels.get(p)][::max(1, n // args.fastai_photos)][:args.fastai_photos]
        fa = bench_fastai(root, work, weights, sample)
        print(f"fastai learn.predict fp32: {fa['rate']:.1f} photos/s on {fa['photos']} photos, peak {fa['peak']:.0f} MB",
              flush=True)

    scaling = []
    ray32 = next((e for e in engines if (e["engine"], e["precision"]) == ("ray", "fp32")), None)
    for k in [int(x) for x in args.scaling.split(",") if x]:
        if k == len(all_batches) and args.batches == "all" and ray32:
            scaling.append({"batches": k, "photos": n, "wall": ray32["wall"], "rate": ray32["rate"]})
            continue
        s, wall, _ = run_infer(root, fp32, work / f"scale-{k}", ",".join(all_batches[:k]), "ray")
        scaling.append({"batches": k, "photos": s["photos"], "wall": wall, "rate": s["rate"]})
        print(f"scaling {k} batches: {s['photos']} photos, {wall:.1f}s wall, {s['rate']:.1f} photos/s", flush=True)

    rate = {(e["engine"], e["precision"]): e["rate"] for e in engines}
    ray32 = rate[("ray", "fp32")]
    speedups = {"ray_vs_loop": ray32 / rate[("loop", "fp32")], "ray_vs_fastai": ray32 / fa["rate"] if fa else None}
    publish(SECTION, {"date": time.strftime("%Y-%m-%d"), "photos": n, "batches": args.batches,
                      "cpus": os.cpu_count(), "notes": notes, "split": bool(split), "engines": engines,
                      "fastai": fa, "speedups": speedups, "scaling": scaling}, infer_section, args)


def infer_section(res: dict) -> str:
    """The ``infer`` section from what bench/results/infer.json holds (every run measures every row again, so
    nothing of an earlier section is kept). ``notes``: the run's bullet lines (the model, how it was measured,
    what the accuracy columns cover); an engine's ``acc``: {column key: {"acc", "n"}} (``ACCURACY_COLUMNS``);
    ``speedups``: the ratios of the summary line, taken from the unrounded rates when measured."""
    rate = {(e["engine"], e["precision"]): e["rate"] for e in res["engines"]}
    loop, fa = rate[("loop", "fp32")], res["fastai"]
    columns = list(next((e["acc"] for e in res["engines"] if e["acc"]), {}))
    lines = [(f"## infer-all ({res['photos']} photos, batches `{res['batches']}`, {res['cpus']} CPUs; "
             f"run {res['date']})"), "", *[f"- {x}" for x in res["notes"]], "",
             table_row(["engine", "precision", "photos/s", "× plain loop fp32", "wall s", "peak MB",
                        *(ACCURACY_COLUMNS.get(k, f"accuracy, {k}") for k in columns)]),
             "|---|---|" + "---:|" * (4 + len(columns))]
    for r in res["engines"]:
        lines.append(table_row([r["name"], r["precision"], f"{r['rate']:.1f}", f"{r['rate'] / loop:.2f}",
                                f"{r['wall']:.0f}", f"{r['peak']:.0f}", *(fmt_acc(r["acc"], k) for k in columns)]))
    if fa:
        lines.append(table_row([f"fastai `learn.predict` per photo ({fa['photos']} photos)", "fp32",
                                f"{fa['rate']:.1f}", f"{fa['rate'] / loop:.2f}", f"{fa['wall']:.0f}",
                                f"{fa['peak']:.0f}", *("-" for _ in columns)]))
    speedups = res["speedups"]
    lines += ["", f"Ray / plain loop (fp32): **{speedups['ray_vs_loop']:.2f}×**"
              + (f"; Ray / learn.predict: **{speedups['ray_vs_fastai']:.1f}×**" if fa else "")
              + (f"; int8 Ray: **{rate[('ray', 'int8')]:.1f} photos/s**" if ("ray", "int8") in rate else ""),
              "", "Infer time vs number of batches (Ray, fp32):", "",
              "| batches | photos | wall s | photos/s |", "|---:|---:|---:|---:|"]
    lines += [f"| {s['batches']} | {s['photos']} | {s['wall']:.1f} | {s['rate']:.1f} |" for s in res["scaling"]]
    lines += ["", ("Projection for 380k photos (~1,000 batches): throughput is per-core bound (decode + one "
              "onnxruntime thread per actor) and Ray adds a fixed ~10 s start-up, so time ≈ photos / "
              "(per-core photos/s × cores). From the int8 rate here on 2 cores, a cluster of 8 nodes × 16 cores "
              "(128 cores) would take about 380,000 / (int8 rate / 2 × 128) seconds; the output is per batch, so "
              "a lost node costs at most the batches in flight, and a rerun resumes.")]
    if ("ray", "int8") in rate:
        per_core = rate[("ray", "int8")] / (res["cpus"] or 2)
        lines[-1] += f" With {per_core:.0f} photos/s per core: ~{380_000 / (per_core * 128) / 60:.0f} min."
    return "\n".join(lines)


if __name__ == "__main__":
    main()
