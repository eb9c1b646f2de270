"""The bench sections of docs/benchmarks.md: a re-render keeps the runs whose result files are gone; every
section is rendered from the structured result kept in bench/results; the benches take the product's reader,
split and ensemble."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pytest

from roomclf.taxonomy import CLASSES

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
import bench_attributes  # noqa: E402
import bench_crawl  # noqa: E402
import bench_infer  # noqa: E402
import bench_train  # noqa: E402
import common  # noqa: E402
from common import load_result, read_section, save_result, write_section  # noqa: E402


def result(name: str, tune: float, test: float | None = None, note: str = "") -> dict:
    scores = {"n": 100, "accuracy": tune, "macro_f1": tune - 0.02, "f1": dict.fromkeys(CLASSES, 0.9),
              "support": dict.fromkeys(CLASSES, 10), "by_source": {"places": [100, tune]}}
    return {"name": name, "note": note, "load_end": 1.5, "history": [],
            "recipe": {"backbone": "efficientnet_lite0", "image_size": 224, "frozen_epochs": 2, "epochs": 3,
                       "lr": 1.6e-3, "hand_labels": 1000},
            "tune": scores, "times": {"train_total_s": 600.0},
            **({"test": {**scores, "accuracy": test}} if test is not None else {})}


def _carried(name: str, tune: str, test: str | None = None, note: str = "") -> dict:
    """A run of train.json whose result file was lost before train.json kept runs: the section's text of it."""
    section = (f"### `{name}`: an old recipe\n\n| metric | TUNE | TEST |\n|---|---|---|\n| accuracy | {tune} | "
               f"**{test}** |\n\n| source | TEST photos | TEST acc |\n|---|---|---|\n| places | 100 | {test} |"
               if test else None)
    return {"name": name, "carried": {"row": f"| `{name}` | an old recipe | {tune} | - | - | 9 min | 1.0 | "
                                             + (f"**{test}** |" if test else "not measured |"),
                                      "note": f"- `{name}`: {note}" if note else None, "section": section}}


def test_the_train_section_keeps_carried_runs_and_a_run_measured_again_replaces_its_own(docs, tmp_path,
                                                                                        monkeypatch):
    var = tmp_path / "var"
    monkeypatch.setattr(bench_train, "RESULTS", var)
    key = bench_train.split_key_of(argparse.Namespace(train=common.TRAIN_BATCHES, tune=common.TUNE_BATCHES,
                                                      test_batches=common.TEST_BATCHES, limit=0))
    earlier = [["a frozen-feature head", "0.869", "-", "-"]]
    save_result("train", {"split_key": key, "split_line": "split A", "earlier": earlier,
                          "runs": [_carried("old", "0.8500", "0.8400", note="the first run"),
                                   _carried("mid", "0.8600", note="no TEST"), _carried("last", "0.8800")]})
    before = bench_train.render_result(load_result("train"))
    lines = before.splitlines()
    assert [line.split("`")[1] for line in lines if line.startswith("| `")] == ["old", "mid", "last"]
    assert "- `old`: the first run" in lines and "- `last`:" not in before
    assert [line.split("`")[1] for line in lines if line.startswith("### ")] == ["old"]
    assert "split A" in before and "| a frozen-feature head | 0.869 | - | - |" in lines
    # a new checkout measures "mid" again and "new" for the first time (var/bench result files of this split,
    # "new" the older one), and "stray" on another split
    fresh = [result("mid", 0.87, note="again"), result("new", 0.88, 0.89), result("stray", 0.99)]
    for r, date, split_key in zip(fresh, ("2026-12-07 10:00", "2026-12-06 10:00", "2026-12-05 10:00"),
                                  (key, key, "other")):
        (var / f"train-{r['name']}").mkdir(parents=True)
        r.update(split_key=split_key, split_line="split B", date=date)
        (var / f"train-{r['name']}" / "result.json").write_text(json.dumps(r))
    (var / "train-mid" / "result.json").write_text(json.dumps({**fresh[0], "tune_attributes": {
        "keys": {"kitchen.refrigerator": {"f1": 0.8, "auc": 0.9}}, "macro_f1": 0.7, "macro_keys": ["a", "b"]}}))
    bench_train.finish(key, "split B", argparse.Namespace(no_write=False, limit=0))
    saved = load_result("train")
    assert [r["name"] for r in saved["runs"]] == ["old", "mid", "last", "new"]     # in place, then joined
    assert "carried" not in saved["runs"][1] and saved["runs"][1]["tune"]["accuracy"] == 0.87
    assert saved["earlier"] == earlier and saved["split_line"] == "split B"
    text = read_section("train", docs)
    assert text == bench_train.render_result(saved)
    lines = text.splitlines()
    rows = [line for line in lines if line.startswith("| `")]
    assert [r.split("`")[1] for r in rows] == ["old", "mid", "last", "new"]
    assert rows[0] == _carried("old", "0.8500", "0.8400")["carried"]["row"]     # kept as written
    assert "| 0.8700 |" in rows[1] and "0.8600" not in rows[1]                   # the fresh figures replace the old
    assert "- `old`: the first run" in lines and "- `mid`: no TEST" not in lines
    mid_note = next(line for line in lines if line.startswith("- `mid`: "))
    assert mid_note.startswith("- `mid`: again; TUNE attributes: macro-F1 0.700 over the 2 tags")
    assert "kitchen.refrigerator F1 0.800, AUC 0.900" in mid_note
    assert [h.split("`")[1] for h in lines if h.startswith("### ")] == ["old", "new"]   # TEST tables of both
    old_tables = text[text.index("### `old`"):text.index("### `new`")]
    assert "**0.8400**" in old_tables and "| places | 100 | 0.8400 |" in old_tables
    assert "| places | 100 | 0.880 |" in text[text.index("### `new`"):]
    # the result files gone (a new checkout): the same section from train.json alone
    for f in var.glob("*/result.json"):
        f.unlink()
    bench_train.finish(key, None, argparse.Namespace(no_write=False, limit=0))
    assert load_result("train") == saved and read_section("train", docs) == text


def _accuracy(fp32: float, int8: float | None = None) -> dict:
    def score(acc):
        return {"tune": {"acc": acc, "macro_f1": acc - 0.02}, "test": {"acc": acc, "macro_f1": acc - 0.03}}
    return {"notes": ["a note"], "date": "2026-12-01 10:00", "split_line": "split",
            "scores": {"fp32": score(fp32), **({"int8": score(int8)} if int8 is not None else {})}}


def test_the_infer_accuracy_section_is_every_saved_model_a_model_measured_again_in_its_place():
    kept = {"a.onnx": _accuracy(0.9, 0.89), "b.onnx": _accuracy(0.8)}
    kept = bench_infer.with_model(bench_infer.with_model(kept, "b.onnx", _accuracy(0.85)), "c.onnx",
                                  _accuracy(0.95, 0.949))
    text = bench_infer.accuracy_section(kept)
    blocks = text.split("\n### ")[1:]
    assert [b.split("`")[1] for b in blocks] == ["a.onnx", "b.onnx", "c.onnx"]
    assert "**0.9000**" in blocks[0] and "int8 costs 1.00 points" in blocks[0]
    assert "**0.8500**" in blocks[1] and "0.8000" not in blocks[1]                   # measured again
    assert "int8 costs 0.10 points" in blocks[2]


def _ensemble_run(load: float, models: list[tuple[str, float]]) -> dict:
    return {"photos": 32, "photos_from": "batch_11", "rounds": 7, "load": load,
            "models": [{"name": n, "backbone": "efficientnet_lite0", "input_px": 224, "ms": ms} for n, ms in models]}


def test_the_ensemble_result_keeps_an_earlier_run_whose_models_are_not_measured_again():
    import bench_ensemble

    first = _ensemble_run(1.0, [("default", 14.5), ("lite1", 20.9)])
    assert bench_ensemble.earlier_run(None, ["default"]) is None
    assert bench_ensemble.earlier_run(first, ["default", "lite1"]) is None           # all measured again
    assert bench_ensemble.earlier_run(first, ["lite2", "lite2:int8"]) == first
    # the next run keeps the same earlier run once, not nested
    second = {**_ensemble_run(0.9, [("lite2", 28.0)]), "earlier": first}
    assert bench_ensemble.earlier_run(second, ["lite2"]) == first                     # the same models again
    assert bench_ensemble.earlier_run(second, ["lite0"]) == _ensemble_run(0.9, [("lite2", 28.0)])
    text = bench_ensemble.render_saved(second)
    now, _, earlier = text.partition("\n\n### Earlier run\n\n")
    assert "load average 0.9 at the end" in now and "| `lite2` | efficientnet_lite0 | 224 | 28.0 | 1.00x |" in now
    assert "load average 1.0 at the end" in earlier
    assert "| `lite1` | efficientnet_lite0 | 224 | 20.9 | 1.44x |" in earlier
    assert "### Earlier run" not in bench_ensemble.render_saved(first)


def test_the_ensemble_section_rendered_from_its_saved_result_equals_the_printed_one(docs, monkeypatch, capsys):
    import bench_ensemble

    saved = {**_ensemble_run(0.9, [("lite2", 28.0), ("lite0", 14.0)]), "earlier": _ensemble_run(1.0, [("a", 2.0)])}
    save_result("ensemble", saved)
    run_main(bench_ensemble, monkeypatch, "--report")
    assert capsys.readouterr().out == bench_ensemble.render_saved(saved) + "\n" == read_section("ensemble", docs) + "\n"
    assert "| `lite0` | efficientnet_lite0 | 224 | 14.0 | 0.50x |" in read_section("ensemble", docs)


# ---- results kept as data (bench/results/NAME.json) ---------------------------------------------------------

def test_save_result_and_load_result_round_trip_and_write_whole_files_or_nothing(tmp_path, monkeypatch):
    data = {"runs": [{"name": "a", "tune": {"accuracy": 0.9}, "classes": list(CLASSES)}], "note": "é ×"}
    path = save_result("x", data, tmp_path)
    assert path == tmp_path / "x.json" and load_result("x", tmp_path) == data
    assert [f.name for f in tmp_path.iterdir()] == ["x.json"]                 # no temporary file left
    assert load_result("missing", tmp_path) is None
    # data that is not JSON fails before anything is written: the old file stays whole
    with pytest.raises(TypeError):
        save_result("x", {"bad": object()}, tmp_path)
    assert load_result("x", tmp_path) == data
    # a write that fails at the last step (the rename) leaves the old file and no temporary one

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(common.os, "replace", broken_replace)
    with pytest.raises(OSError):
        save_result("x", {"new": 1}, tmp_path)
    assert load_result("x", tmp_path) == data and [f.name for f in tmp_path.iterdir()] == ["x.json"]
    monkeypatch.undo()
    # the default folder is bench/results (looked up when called)
    monkeypatch.setattr(common, "RESULTS_DIR", tmp_path / "results")
    save_result("y", [1, 2])
    assert (tmp_path / "results" / "y.json").is_file() and load_result("y") == [1, 2]


@pytest.fixture()
def docs(tmp_path, monkeypatch):
    """bench/results and docs/benchmarks.md in tmp_path for the benches that write them."""
    doc = tmp_path / "benchmarks.md"
    monkeypatch.setattr(common, "RESULTS_DIR", tmp_path / "results")
    import bench_ensemble

    for module in (bench_train, bench_infer, bench_attributes, bench_ensemble):
        monkeypatch.setattr(module, "write_section", lambda name, text: write_section(name, text, doc), raising=False)
        monkeypatch.setattr(module, "read_section", lambda name: read_section(name, doc), raising=False)
    return doc


def run_main(module, monkeypatch, *argv: str) -> None:
    monkeypatch.setattr(sys, "argv", [module.__file__, *argv])
    module.main()


def test_the_train_section_rendered_from_its_saved_result_equals_the_printed_one(docs, tmp_path, monkeypatch,
                                                                                 capsys):
    var = tmp_path / "var"
    monkeypatch.setattr(bench_train, "RESULTS", var)
    key = bench_train.split_key_of(argparse.Namespace(train=common.TRAIN_BATCHES, tune=common.TUNE_BATCHES,
                                                      test_batches=common.TEST_BATCHES, limit=0))
    for i, r in enumerate([result("a", 0.85, 0.84, note="first"), result("b", 0.86)]):
        (var / f"train-{r['name']}").mkdir(parents=True)
        r.update(split_key=key, split_line="split A", date=f"2026-12-0{i + 1} 10:00")
        (var / f"train-{r['name']}" / "result.json").write_text(json.dumps(r))
    bench_train.finish(key, "split A", argparse.Namespace(no_write=False, limit=0))
    printed = capsys.readouterr().out
    saved = load_result("train")
    assert [r["name"] for r in saved["runs"]] == ["a", "b"] and saved["split_line"] == "split A"
    assert printed == read_section("train", docs) + "\n" == bench_train.render_result(saved) + "\n"
    # a new checkout: var/bench is gone; --report renders the same section from bench/results alone
    for f in var.glob("*/result.json"):
        f.unlink()
    run_main(bench_train, monkeypatch, "--report")
    assert capsys.readouterr().out == printed and read_section("train", docs) + "\n" == printed


def _engine(name, engine, prec, rate):
    acc = {"tune": {"acc": 0.9, "macro_f1": 0.88, "n": 100, "missing": 0},
           "test": {"acc": 0.89, "macro_f1": 0.87, "n": 200, "missing": 0}}
    return {"name": name, "engine": engine, "precision": prec, "rate": rate, "wall": 60.0, "peak": 900.0,
            "acc": acc, "errors": 0}


def test_the_infer_sections_rendered_from_their_saved_results_equal_the_printed_ones(docs, monkeypatch, capsys):
    args = argparse.Namespace(no_write=False, accuracy_only=False)
    infer = {"date": "2026-12-01", "photos": 7170, "batches": "all", "cpus": 2, "notes": ["model: a"], "split": True,
             "engines": [_engine("Ray Data infer-all", "ray", "fp32", 40.0),
                         _engine("plain onnxruntime loop", "loop", "fp32", 35.0),
                         _engine("Ray Data infer-all", "ray", "int8", 70.0)],
             "fastai": {"rate": 5.0, "wall": 30.0, "peak": 1200.0, "photos": 40},
             "speedups": {"ray_vs_loop": 40.0 / 35.0, "ray_vs_fastai": 8.0},
             "scaling": [{"batches": 1, "photos": 380, "wall": 20.0, "rate": 19.0}]}
    bench_infer.publish("infer", infer, bench_infer.infer_section, args)
    bench_infer.publish("infer-accuracy", {"a.onnx": _accuracy(0.9, 0.89)}, bench_infer.accuracy_section, args)
    printed = capsys.readouterr().out
    assert load_result("infer") == infer
    assert "| Ray Data infer-all | int8 | 70.0 | 2.00 |" in printed and "int8 costs 1.00 points" in printed
    assert "| TUNE acc | TEST acc |" in printed and "| 0.900 (n=100) | 0.890 (n=200) |" in printed
    assert "Ray / plain loop (fp32): **1.14×**; Ray / learn.predict: **8.0×**" in printed
    run_main(bench_infer, monkeypatch, "--report")
    assert capsys.readouterr().out == printed
    assert printed == "\n" + read_section("infer", docs) + "\n" + "\n" + read_section("infer-accuracy", docs) + "\n"


def _attributes_result() -> dict:
    targets = list(bench_attributes.TARGETS)
    variant = {"name": "reliable", "macro_f1": 0.61, "f1": dict.fromkeys(targets, 0.5),
               "f1_by_eye": {**dict.fromkeys(targets, 0.4), targets[0]: None}, "emitted": 3, "keys_emitted": 9,
               "fit_s": 1.25}
    per_key = [{"key": k, "positives": 30, "support": 8, "auc": 0.81, "threshold": 0.42, "threshold_from": "pooled",
                "status": "emitted", "test": {"support": 12, "negatives": 50, "precision": 0.8, "recall": 0.6,
                                              "f1": 0.69},
                "by_eye": {"support": 3, "negatives": 9, "f1": 0.5}} for k in targets]
    per_key.append({"key": "interior.staircase", "positives": 4, "support": 1, "auc": None, "threshold": None,
                    "threshold_from": None, "status": "untrained: 4 positives", "test": None, "by_eye": None})
    return {"backbone": "efficientnet_lite0", "split_line": "TRAIN batch_01–batch_10 100 photos",
            "part_names": bench_attributes.PART_NAMES,
            "photos": {"train": 100, "val": 30, "test": 60}, "min_test_positives": 10, "chosen": "reliable",
            "targets": targets, "big": targets, "variants": [variant], "per_key": per_key, "macro_f1": 0.61,
            "untrained": [{"key": "interior.staircase", "status": "untrained: 4 positives", "labelled": True},
                          {"key": "exterior.pool", "status": "untrained: 0 positives", "labelled": False}],
            "dropped_zeros": {"kitchen.stove": 3}, "probe": {"keys": ["living_room.tv"],
                                                             "rows": [{"reading": "average-pooled",
                                                                       "auc": {"living_room.tv": [0.7, None]}}]},
            "seconds": 12.0}


def test_the_attributes_section_rendered_from_its_saved_result_equals_the_printed_one(docs, monkeypatch, capsys):
    res = _attributes_result()
    text = bench_attributes.render(res)
    assert "| interior.staircase | 4 | 1 | - | - | 0 | 0 | - | - | **-** | - | untrained: 4 positives |" in text
    assert "| average-pooled | 0.70 / - |" in text and "drops 3 zeros (kitchen.stove 3)" in text
    assert common.SPLIT_NOTE in text and "reported on TEST" in text and "TRAIN batch_01–batch_10 100 photos." in text
    save_result("attributes", res)
    run_main(bench_attributes, monkeypatch, "--report")
    assert capsys.readouterr().out == text + "\n" == read_section("attributes", docs) + "\n"
    # a run made before the honest split says which batches it used, and claims no near-duplicate filter
    older = bench_attributes.render({**res, "split_line": None, "part_names": {
        "train": "batch_01..10", "val": "batch_11..13", "test": "batch_14..19", "cv": "batch_01..13"}})
    assert common.SPLIT_NOTE not in older and "reported on batch_14..19" in older
    assert "AUC cross-validated on batch_01..13 (5 folds) / on batch_14..19" in older


# ---- the benches use the product's reader, split and ensemble ------------------------------------------------

def _corpus(tmp_path, rows: list[tuple[str, str]]) -> Path:
    data = tmp_path / "data"
    for n in range(1, 20):
        (data / "listings" / f"batch_{n:02d}").mkdir(parents=True)
    (data / "labels.csv").write_text("path,label,subtype,source,upstream\n"
                                     + "".join(f"{p},{lab},,x,y\n" for p, lab in rows))
    return data


def test_a_crawl_row_measured_in_rounds_shows_each_rounds_ratio_and_ray_over_the_loop_per_round():
    def step(engine: str, speeds: list[float], floors: list[float]) -> dict:
        rounds = [{"photos_per_s": p, "floor_photos_per_s": f, "when": "2026-12-07T21:00", "all_cores_photos_per_s": f}
                  for p, f in zip(speeds, floors)]
        mid = sorted(range(3), key=lambda i: speeds[i] / floors[i])[1]
        return {"step": f"infer-all, {engine}, fp32", "seconds": 200.0, "photos_per_s": speeds[mid],
                "floor_photos_per_s": floors[mid], "floor": {"all_cores_photos_per_s": floors[mid]},
                "floor_before_after": [floors[mid] - 5, floors[mid] + 5], "peak_mb": 1.0, "tree_peak_mb": 2.0,
                "when": "2026-12-07T21:00", "rounds": rounds}

    result = {"photos": 20000, "planted": 11, "photo_size": "1024x768", "model": "lite0", "machine": "2 CPUs",
              "date": "2026-12-07", "floors": {"fp32": {"decode_ms": 6.0, "model_ms": 14.0, "photos_per_s": 100.0}},
              "steps": [step("loop", [90.0, 100.0, 95.0], [100.0, 100.0, 100.0]),
                        step("ray", [81.0, 80.0, 95.0], [90.0, 100.0, 100.0])]}
    text = bench_crawl.render(result)
    rows = {line.split("|")[1].strip(): line for line in text.splitlines() if line.startswith("| infer-all")}
    assert "| 0.95 (rounds: 0.90, 0.95, 1.00) |" in rows["infer-all, loop, fp32"]
    assert "| 0.90 (rounds: 0.80, 0.90, 0.95) |" in rows["infer-all, ray, fp32"]          # the median round (mean 0.88)
    assert "each round): fp32 0.90 (0.80, 0.90, 1.00)." in text         # ray/loop in each round: 81/90, 80/100, 95/95


def test_ground_truth_is_the_products_reader_with_aliases_resolved(tmp_path):
    data = _corpus(tmp_path, [("batch_01/listing_1/photo_01.jpg", "Dinning"),
                              ("batch_01/listing_1/photo_02.jpg", "Livingroom"),
                              ("batch_01/listing_1/photo_03.jpg", "kitchen"),
                              ("batch_01/listing_1/photo_04.jpg", "")])
    assert common.ground_truth(data) == {"batch_01/listing_1/photo_01.jpg": "dining_room",
                                         "batch_01/listing_1/photo_02.jpg": "living_room",
                                         "batch_01/listing_1/photo_03.jpg": "kitchen"}


def test_the_attributes_split_is_the_honest_split(tmp_path, monkeypatch):
    import roomclf.train.data

    rows = [(f"batch_{n:02d}/listing_{n}/photo_0{i}.jpg", CLASSES[(n + i) % len(CLASSES)])
            for n in range(1, 20) for i in (1, 2)]
    data = _corpus(tmp_path, rows)
    leak = "batch_12/listing_12/photo_01.jpg"          # a near-duplicate of a TRAIN photo: in no part
    monkeypatch.setattr(roomclf.train.data, "duplicate_paths", lambda root, train, held, **kw: [leak])
    split = common.honest_split(data)
    paths = [p for p, _ in rows] + ["batch_05/listing_5/photo_09.jpg"]      # the last one has no label
    parts = bench_attributes.split_parts(paths, split)
    for part, name in (("train", "train"), ("val", "tune"), ("test", "test")):
        chosen = [p for p, inside in zip(paths, parts[part]) if inside]
        assert chosen == [p for p, _ in split[name]]
        assert sorted({p.split("/")[0] for p in chosen}) == split["batches"][name]
    assert split["batches"]["train"][-1] == "batch_10" and split["batches"]["tune"] == ["batch_11", "batch_12",
                                                                                         "batch_13"]
    assert not any(part[paths.index(leak)] for part in parts.values())
    assert not any(part[-1] for part in parts.values())


def _member(folder: Path, backbone: str, size: int, seed: int) -> Path:
    """A real exported room network with random weights (no download), as bench_train saves one."""
    import torch

    from roomclf.models.network import ExportNet, RoomNet
    from roomclf.models.onnx_file import export_onnx

    torch.manual_seed(seed)
    net = RoomNet(backbone, pretrained=False).eval()
    with torch.no_grad():
        net.head[1].weight.mul_(20)
    folder.mkdir(parents=True)
    (folder / "result.json").write_text(json.dumps({"times": {"train_total_s": 60.0}, "tune": {"accuracy": 0.5}}))
    return export_onnx(ExportNet(net), folder / "model.onnx", {"input_size": size, "note": folder.name})


def test_the_train_ensemble_is_the_products_combined_model(tmp_path, monkeypatch):
    from PIL import Image

    from roomclf.models.onnx_file import OnnxModel

    var = tmp_path / "var"
    monkeypatch.setattr(bench_train, "RESULTS", var)
    _member(var / "train-a", "efficientnet_lite0", 64, 0)
    _member(var / "train-b", "efficientnet_lite0", 48, 1)
    root = tmp_path / "listings"
    items = []
    for i in range(6):
        path = f"batch_11/listing_1/photo_0{i}.jpg"
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (96, 72), ((40 * i) % 256, 255 - 30 * i, 17 * i)).save(root / path)
        items.append((path, CLASSES[i % len(CLASSES)]))
    out = var / "train-ens-a-b"
    out.mkdir()
    got = bench_train.ensemble(["a", "b"], root, {"tune": items}, {}, with_test=False, flip=False, out=out)
    combined = OnnxModel(out / "model.onnx")            # what `roomclf combine a b` writes
    assert [m["note"] for m in combined.meta["members"]] == ["train-a", "train-b"] and combined.input_size == 64
    preds = combined.predict_sources([root / p for p, _ in items])
    hits = [max(p.probabilities, key=p.probabilities.get) == c for p, (_, c) in zip(preds, items)]
    assert got["tune"]["accuracy"] == pytest.approx(sum(hits) / len(hits)) and got["tune"]["n"] == len(items)
    assert got["recipe"] == {"ensemble": ["a", "b"], "combined": True}
    assert "combined by `roomclf combine`" in bench_train.recipe_text(got["recipe"])
    assert "averaged" in bench_train.recipe_text({"ensemble": ["a", "b"]})     # runs made before say what they were


def test_bench_infer_takes_its_figures_from_the_summary_infer_all_returns(home, tmp_path):
    from PIL import Image

    from roomclf.infer.output import done_record

    model = _member(tmp_path / "model", "efficientnet_lite0", 48, 0)
    root = tmp_path / "listings"
    for batch, n in (("batch_01", 3), ("batch_02", 2)):
        for i in range(n):
            (root / batch / "listing_1").mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (64, 48), (50 * i, 90, 120)).save(root / batch / "listing_1" / f"photo_0{i}.jpg")
    (root / "batch_02" / "listing_1" / "photo_09.jpg").write_bytes(b"not a photo")      # a row with an error
    summary, wall, peak = bench_infer.run_infer(root, str(model), tmp_path / "out", "all", "loop")
    assert summary["photos"] == 6 and summary["errors"] == 1 and summary["predictions"] == 5
    assert summary["rate"] == pytest.approx(summary["photos"] / summary["seconds"]) and wall > 0 and peak > 0
    records = [done_record(tmp_path / "out", b) for b in ("batch_01", "batch_02")]
    assert sum(r["photos"] for r in records) == summary["photos"]
    items = [("batch_01/listing_1/photo_00.jpg", "kitchen"), ("batch_02/listing_1/photo_09.jpg", "bedroom")]
    assert bench_infer.accuracy(tmp_path / "out", items)["n"] == 2


def test_the_tradeoff_bench_reads_a_gone_runs_test_figure_from_train_json(tmp_path, monkeypatch):
    import bench_tradeoff

    monkeypatch.setattr(common, "RESULTS_DIR", tmp_path)
    row = ("| `old` | efficientnet_lite2 300 px, 2 frozen + 3 unfrozen, lr 0.0016 | 0.93 | 0.91 | 0.93 | 76 min | 2.0 "
           "| **0.9177** |")
    save_result("train", {"runs": [{"name": "old", "carried": {"row": row}},
                                   {"name": "tune-only", "carried": {"row": row.replace("**0.9177**", "-")}},
                                   {**result("new", 0.9, 0.8812), "name": "new"},
                                   result("untested", 0.9)]})
    assert bench_tradeoff.written_test("old") == {"test_accuracy": 0.9177, "backbone": "efficientnet_lite2",
                                                  "input_size": 300}
    assert bench_tradeoff.written_test("new") == {"test_accuracy": 0.8812, "backbone": "efficientnet_lite0",
                                                  "input_size": 224}
    assert bench_tradeoff.written_test("tune-only") is None and bench_tradeoff.written_test("untested") is None
    assert bench_tradeoff.written_test("absent") is None


def test_bench_train_scores_a_saved_models_attribute_tags_on_test_photos_at_its_own_thresholds(
        quick_onnx, shared_data, tmp_path):
    """``--score-attributes``: the model's attribute output cut at the thresholds in its metadata, judged
    within each photo's true class, against the reliable labels and the by-eye ones alone. The fixture's
    model outputs 0 for every attribute, so a threshold of 0 tags every photo of the class (recall 1,
    precision = the share of positives) and 0.5 tags none (emitted, F1 0); a key without a threshold is
    not emitted."""
    import csv

    import onnx

    from roomclf.models.onnx_file import read_meta, save_onnx

    model = onnx.load(str(quick_onnx))
    path = save_onnx(model, tmp_path / "model.onnx", {**read_meta(model), "attribute_thresholds": {
        "kitchen.refrigerator": 0.0, "living_room.tv": 0.5}})
    truth = common.ground_truth(shared_data)
    with open(shared_data / "attributes.csv", newline="") as f:
        eye = [r for r in csv.DictReader(f) if r["method"] == "by_eye" and r["path"].startswith("batch_19/")]
    photos = sorted({r["path"] for r in eye} & set(truth))
    found = bench_train.attribute_scores_on_test(path, shared_data, {"test": [(p, truth[p]) for p in photos]})

    fridge = [int(r["value"]) for r in eye if r["attribute"] == "refrigerator" and truth.get(r["path"]) == "kitchen"]
    got = found["keys"]["kitchen.refrigerator"]
    assert got["emitted"] and sum(fridge) > 0
    assert got["by_eye"]["positives"] == sum(fridge) and got["by_eye"]["negatives"] == len(fridge) - sum(fridge)
    assert got["by_eye"]["recall"] == 1.0
    assert got["by_eye"]["precision"] == pytest.approx(sum(fridge) / len(fridge))
    tv = found["keys"]["living_room.tv"]
    assert tv["emitted"] and tv["by_eye"]["positives"] > 0 and tv["by_eye"]["f1"] == 0.0
    assert not found["keys"]["living_room.fireplace"]["emitted"]
    assert found["keys"]["living_room.fireplace"]["by_eye"]["f1"] == 0.0
    assert found["photos"] == len(photos) and found["unreadable"] == 0
    text = bench_train.attribute_table_on_test(found)
    assert text.splitlines()[4].startswith("| kitchen.refrigerator |")      # the named tags first
    assert f"| **{got['reliable']['f1']:.2f}** |" in text
    # a run scored on TEST for its tags only gets a section of its own, headed by its name
    section = bench_train.run_parts({**result("tags-only", 0.9), "test_attributes": found})["section"]
    assert section.startswith("### `tags-only`: ") and text in section
    assert bench_train.run_parts(result("plain", 0.9))["section"] is None
    probed = bench_train.run_parts({**result("probed", 0.9), "pooling_probe_test": {"pooling": "max", **found}})
    assert probed["section"].startswith("### `probed`: ") and "read with max pooling" in probed["section"]
    assert text in probed["section"]
    line = bench_train.pooling_line({"avg": {"macro_f1": 0.5, "keys": {"living_room.fireplace": {"auc": 0.6}}},
                                     "max": {"macro_f1": None, "keys": {}}})
    assert line.endswith("avg 0.500 / 0.600 / -; max - / - / -")
    # a probe at another size than the run's (--probe-pooling RUN --image-size 416) renders after the run's own
    probe = {"avg": {"macro_f1": 0.5, "keys": {}}}
    sized = bench_train.run_parts({**result("sized", 0.9), "pooling_probe_416": probe, "pooling_probe": probe,
                                   "pooling_probe_test_416": {"pooling": "max", **found}})
    own, larger = sized["note"].split("its body read")[1:]
    assert "416" not in own and larger.startswith(" with each pooling at 416 px") and "--image-size 416" in larger
    assert "read with max pooling at 416 px" in sized["section"] and text in sized["section"]
