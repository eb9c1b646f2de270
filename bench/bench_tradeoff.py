"""Benchmark: accuracy against speed, the README's headline table.

Each row is one model: its TEST accuracy and what infer-all does with it on this machine. Both come from one
pass of the product's ``roomclf.infer.run.infer_all`` (loop engine, the same photos for every model: every
file of TEST batch_14–19, the corpus's planted bad files included) over the model's ONNX file:

- TEST accuracy: its predictions against labels.csv on the honest split's TEST photos (bench/common.py:
  near-duplicates of TRAIN photos removed), photos never used for any choice;
- photos/s: infer-all's own figure (decode + model + writing the Parquet files, one process on this machine's
  cores), the median over ``--rounds`` rounds in which the models take turns, so that the machine's noise falls
  on all alike; the ratio to the first model is taken within this one run.

The models are saved ``bench/bench_train.py`` runs (``var/bench/train-NAME/model.onnx``); ``NAME:int8`` is the
run's static-int8 copy, quantised now as `roomclf train --quantize` does. var/ is not committed, so a run may be
gone from this machine: then its TEST accuracy is the one bench_train's section holds for it, and its photos/s
are measured on a stand-in, its network exported at its input size as training exports it with the pretrained
body and untrained heads (``bench_crawl.speed_model``): the time per photo depends on the network and the input
size, not on the weights. ``NAME:int8``'s stand-in is that network's int8 copy, its accuracy the one an earlier
run of this bench measured on the run's own int8 copy. The table says which rows were measured so. A run that is
neither here nor in that section is left out; one only an earlier run measured is kept, not compared.

It writes its section of docs/benchmarks.md and the README's headline table, both from that result file:

    python bench/bench_tradeoff.py                                       # the default rows
    python bench/bench_tradeoff.py --models lite2-300-teacher,lite0-distil-192 --rounds 3
    python bench/bench_tradeoff.py --report                              # render again, nothing measured
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from common import (
    PROJECT,
    SPLIT_NOTE,
    TEST_BATCHES,
    TRAIN_BATCHES,
    default_data,
    honest_split,
    load_result,
    publish,
    table,
    write_section,
)

sys.path.insert(0, str(PROJECT))
NAME = "tradeoff"
RUNS = PROJECT / "var" / "bench"
README = PROJECT / "README.md"
# name -> what the model is, as the README says it (the rows, in this order)
MODELS = {
    "lite2-300-teacher": "`roomclf train`'s default: efficientnet_lite2, 300 px",
    "lite2-300-teacher:int8": "the same, static int8 (`roomclf train --quantize`)",
    "lite0-distil-192": "efficientnet_lite0, 192 px, distilled from it (`roomclf distill`)",
    "lite0-distil-224": "efficientnet_lite0, 224 px, distilled from it (`roomclf distill`)",
    "default": "efficientnet_lite0, 224 px, trained on the labels (the demo's)",
}


def model_file(name: str, work: Path) -> Path | None:
    """The ONNX file of a saved run (``NAME:int8``: its static-int8 copy made in ``work``); None when the run is
    not on this machine."""
    run, _, variant = name.partition(":")
    fp32 = RUNS / f"train-{run}" / "model.onnx"
    if not fp32.is_file():
        return None
    if variant == "int8":
        from bench_ensemble import int8_model

        return int8_model(fp32, work)
    return fp32


def written_test(name: str) -> dict | None:
    """What bench_train's result file (bench/results/train.json) says of a run gone from this machine:
    {"test_accuracy", "backbone", "input_size"}, from its figures or, for a run carried as text, from its row
    (its recipe cell starts with the network and size, its last cell holds the TEST accuracy in bold); None
    when it has no TEST figure."""
    import re

    from bench_train import SECTION

    run = next((r for r in (load_result(SECTION) or {}).get("runs", []) if r["name"] == name), None)
    if run is None:
        return None
    if "carried" not in run:
        if not run.get("test"):
            return None
        return {"test_accuracy": run["test"]["accuracy"], "backbone": run["recipe"]["backbone"],
                "input_size": run["recipe"]["image_size"]}
    cells = [c.strip() for c in run["carried"].get("row", "").strip("|").split(" | ")]
    net = re.match(r"(\S+) (\d+) px", cells[1]) if len(cells) > 2 else None
    test = re.match(r"\*\*([0-9.]+)\*\*", cells[-1]) if cells else None
    if not (net and test):
        return None
    return {"test_accuracy": float(test[1]), "backbone": net[1], "input_size": int(net[2])}


def stand_in(name: str, work: Path, earlier: dict) -> tuple[Path, dict] | None:
    """(an ONNX file of the run's network for timing, its TEST accuracy as written before) for a run gone from
    this machine, or None. ``NAME``: its network at its size, the accuracy bench_train's section gives it;
    ``NAME:int8``: that network's static-int8 copy, quantised as `roomclf train --quantize` does (calibrated on
    TRAIN photos), the accuracy this bench measured for the run's own int8 copy (``earlier``: name -> row)."""
    from bench_crawl import speed_model

    run, _, variant = name.partition(":")
    said = written_test(run)
    if said is None or variant not in ("", "int8"):
        return None
    from roomclf.corpus import parse_batches

    trained_on = parse_batches(TRAIN_BATCHES, default_data() / "listings")
    fp32 = speed_model(work, said["backbone"], said["input_size"], {"train_batches": trained_on})
    if not variant:
        return fp32, said
    measured = earlier.get(name)          # the run's own int8 copy measured, or that figure carried since
    if not measured or (measured.get("stand_in") and measured.get("accuracy_from") != "earlier"):
        return None
    from bench_ensemble import int8_model

    return int8_model(fp32, work), {**said, "test_accuracy": measured["test_accuracy"], "accuracy_from": "earlier"}


def test_accuracy(out: Path, test: dict[str, str]) -> tuple[float, int]:
    """(accuracy, photos) of infer-all's predictions in ``out`` on the TEST photos ``test`` (path -> class)."""
    from roomclf.infer.output import read_photos

    rows = read_photos(out)
    predicted = dict(zip(rows["path"], rows["label"]))
    hits = [predicted.get(p) == c for p, c in test.items()]
    return sum(hits) / len(hits), len(hits)


def measure(names: list[str], rounds: int, earlier: dict) -> dict:
    from roomclf.infer.run import infer_all
    from roomclf.models.onnx_file import OnnxModel

    data = default_data()
    split = honest_split(data)
    test = dict(split["test"])
    rows: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="bench-tradeoff-") as tmp:
        work = Path(tmp)
        files, said = {}, {}
        for n in names:
            if (f := model_file(n, work)) is not None:
                files[n] = f
            elif found := stand_in(n, work, earlier):
                files[n], said[n] = found
        speeds: dict[str, list[float]] = {n: [] for n in files}
        for r in range(rounds):
            for n, f in files.items():
                out = work / f"out-{n.replace(':', '-')}-{r}"
                summary = infer_all(data / "listings", out, TEST_BATCHES, model=str(f), engine="loop",
                                    track=False, progress=False)
                speeds[n].append(summary.photos_per_s)
                if r == 0:
                    model = OnnxModel(f)
                    rows[n] = {"name": n, "what": MODELS.get(n, n), "backbone": model.meta.get("backbone"),
                               "input_size": model.input_size, "photos": summary.photos, "errors": summary.errors,
                               "stand_in": n in said}
                    if n in said:
                        rows[n].update(test_accuracy=said[n]["test_accuracy"], test_photos=None,
                                       accuracy_from=said[n].get("accuracy_from", "bench_train"))
                    else:
                        rows[n]["test_accuracy"], rows[n]["test_photos"] = test_accuracy(out, test)
                print(f"{n}: round {r + 1} {summary.photos_per_s:.1f} photos/s", flush=True)
    for n, s in speeds.items():
        rows[n].update(photos_per_s=statistics.median(s), rounds=s)
    return rows


def render(result: dict) -> str:
    rows = result["rows"]
    first = rows[0]["photos_per_s"] if rows else 1.0
    lines = ["## Accuracy against speed (`bench/bench_tradeoff.py`)", "",
             f"Split: {SPLIT_NOTE}. TEST accuracy and photos/s both come from one infer-all pass of each model over "
             f"every file of TEST batch_14–19 ({result['photos']:,} photos, the planted bad files included: they "
             "are error rows); accuracy on the honest split's TEST photos, photos/s = infer-all's own figure "
             "(loop engine: decode, model, Parquet output; one process), median of "
             f"{result['rounds']} interleaved rounds on this machine ({result['machine']}, load average "
             f"{result['load_end']:.1f} at the end), and the ratio to the first row measured in the same run.", "",
             table(["model", "network", "TEST accuracy", "infer-all photos/s", "vs first"],
                   [[f"`{r['name']}`", r["what"],
                     f"{r['test_accuracy']:.2%} " + (f"({r['test_photos']:,} photos)" if r["test_photos"] else
                                                      ACCURACY_FROM[r.get("accuracy_from", "bench_train")]),
                     f"{r['photos_per_s']:.1f}" + (" (stand-in)" if r.get("stand_in") else "")
                     + (" (earlier run)" if r["name"] in result.get("kept", []) else ""),
                     _ratio(r, first, result)] for r in rows])]
    if any(r.get("stand_in") for r in rows):
        lines += ["", "A row marked stand-in: the run's model is not on the machine that measured this table, so "
                      "its TEST accuracy is the one the training section gives it (for an int8 copy: the one this "
                      "bench measured on the run's own int8 copy in an earlier run), and its photos/s were measured "
                      "on its network with untrained heads (the same computation per photo)."]
    if result.get("kept"):
        lines += ["", "Rows kept from an earlier run (their models were not on the machine that measured the "
                      "rest, so they are not compared with it): " + ", ".join(f"`{n}`" for n in result["kept"]) + "."]
    return "\n".join(lines)


ACCURACY_FROM = {"bench_train": "(bench_train's figure)", "earlier": "(this bench, an earlier run)"}


def _ratio(row: dict, first: float, result: dict) -> str:
    """Its photos/s against the first row's, for rows measured in the same run."""
    return "-" if row["name"] in result.get("kept", []) else f"{row['photos_per_s'] / first:.2f}x"


def headline(result: dict) -> str:
    """The README's table: one short line per model."""
    rows = result["rows"]
    first = rows[0]["photos_per_s"] if rows else 1.0
    return "\n".join([
        table(["model", "TEST accuracy", "infer-all photos/s", "vs first"],
              [[r["what"], f"{r['test_accuracy']:.2%}", f"{r['photos_per_s']:.0f}", _ratio(r, first, result)]
               for r in rows]),
        "",
        f"TEST = batch_14–19, never used to choose anything; photos/s = infer-all on one machine "
        f"({result['machine']}); [how it was measured](docs/benchmarks.md#accuracy-against-speed-benchbench_tradeoffpy), "
        "and every other figure: [docs/benchmarks.md](docs/benchmarks.md)."])


def write_readme(result: dict) -> None:
    write_section("headline", headline(result), README)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=",".join(MODELS), help="saved bench_train run names (NAME:int8 for the "
                                                              "static-int8 copy); the first is the reference")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--report", action="store_true", help="render the section and the README table again from "
                                                          "bench/results/tradeoff.json, nothing measured")
    ap.add_argument("--no-write", action="store_true", help="print only")
    args = ap.parse_args()
    before = load_result(NAME) or {}
    if args.report:
        if not before:
            sys.exit("no bench/results/tradeoff.json yet: run the bench first")
        publish(NAME, before, render, write=not args.no_write)
        return None if args.no_write else write_readme(before)

    from roomclf.models.timing import machine

    names = args.models.split(",")
    earlier = {r["name"]: r for r in before.get("rows", [])}
    measured = measure(names, args.rounds, earlier)
    kept = [n for n in names if n not in measured and n in earlier]
    gone = [n for n in names if n not in measured and n not in earlier]
    if gone:
        print(f"no saved model and no earlier row for {', '.join(gone)}: left out (bench/bench_train.py makes them)")
    rows = [measured.get(n) or earlier[n] for n in names if n in measured or n in earlier]
    if not measured:
        sys.exit("no model of --models is on this machine: nothing measured")
    first = next(iter(measured.values()))
    result = {"rows": rows, "kept": kept, "rounds": args.rounds, "photos": first["photos"],
              "machine": machine(), "load_end": os.getloadavg()[0], "date": time.strftime("%Y-%m-%d %H:%M")}
    publish(NAME, result, render, write=not args.no_write)
    if not args.no_write:
        write_readme(result)


if __name__ == "__main__":
    main()
