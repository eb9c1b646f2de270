"""The bench sections of docs/benchmarks.md: a re-render keeps the runs whose result files are gone."""
from __future__ import annotations

import sys
from pathlib import Path

from roomclf.taxonomy import CLASSES

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
import bench_infer  # noqa: E402
import bench_train  # noqa: E402
from common import read_section, write_section  # noqa: E402


def result(name: str, tune: float, test: float | None = None, note: str = "") -> dict:
    scores = {"n": 100, "accuracy": tune, "macro_f1": tune - 0.02, "f1": dict.fromkeys(CLASSES, 0.9),
              "support": dict.fromkeys(CLASSES, 10), "by_source": {"places": [100, tune]}}
    return {"name": name, "note": note, "load_end": 1.5, "history": [],
            "recipe": {"backbone": "efficientnet_lite0", "image_size": 224, "frozen_epochs": 2, "epochs": 3,
                       "lr": 1.6e-3, "hand_labels": 1000},
            "tune": scores, "times": {"train_total_s": 600.0},
            **({"test": {**scores, "accuracy": test}} if test is not None else {})}


def test_a_rerender_keeps_runs_without_result_files_and_updates_the_others(tmp_path):
    doc = tmp_path / "benchmarks.md"
    write_section("train", bench_train.render([result("old", 0.85, 0.84, note="the first run"),
                                               result("mid", 0.86, note="no TEST")], "split A"), doc)
    # a new checkout: only "mid" (measured again) and "new" have result files
    text = bench_train.render([result("mid", 0.87, note="again"), result("new", 0.88, 0.89)], "split B",
                              read_section("train", doc))
    lines = text.splitlines()
    rows = [line for line in lines if line.startswith("| `")]
    assert [r.split("`")[1] for r in rows] == ["old", "mid", "new"]      # first-written order, new runs last
    assert "| 0.8500 |" in rows[0] and "**0.8400**" in rows[0]           # kept as written
    assert "| 0.8700 |" in rows[1] and "0.8600" not in rows[1]           # the fresh figures replace the old
    assert "- `old`: the first run" in lines and "- `mid`: again" in lines and "- `mid`: no TEST" not in lines
    headings = [line for line in lines if line.startswith("### ")]
    assert [h.split("`")[1] for h in headings] == ["old", "new"]        # TEST tables of both, none for mid
    old_tables = text[text.index("### `old`"):text.index("### `new`")]
    assert "**0.8400**" in old_tables and "| places | 100 | 0.850 |" in old_tables
    assert "split B" in text and "split A" not in text
    # and rendering it again from the same files changes nothing
    write_section("train", text, doc)
    again = bench_train.render([result("mid", 0.87, note="again"), result("new", 0.88, 0.89)], "split B",
                               read_section("train", doc))
    assert again == text


def _accuracy(fp32: float, int8: float | None = None) -> dict:
    def score(acc):
        return {"tune": {"acc": acc, "macro_f1": acc - 0.02}, "test": {"acc": acc, "macro_f1": acc - 0.03}}
    return {"notes": ["a note"], "date": "2026-12-01 10:00", "split_line": "split",
            "scores": {"fp32": score(fp32), **({"int8": score(int8)} if int8 is not None else {})}}


def test_the_infer_accuracy_section_keeps_models_measured_on_another_checkout(tmp_path):
    doc = tmp_path / "benchmarks.md"
    write_section("infer-accuracy", bench_infer.accuracy_section({"a.onnx": _accuracy(0.9, 0.89),
                                                                  "b.onnx": _accuracy(0.8)}), doc)
    # a new checkout measured b again and c for the first time; a's results file is gone
    text = bench_infer.accuracy_section({"b.onnx": _accuracy(0.85), "c.onnx": _accuracy(0.95, 0.949)},
                                        read_section("infer-accuracy", doc))
    blocks = text.split("\n### ")[1:]
    assert [b.split("`")[1] for b in blocks] == ["a.onnx", "b.onnx", "c.onnx"]
    assert "**0.9000**" in blocks[0] and "int8 costs 1.00 points" in blocks[0]       # kept as written
    assert "**0.8500**" in blocks[1] and "0.8000" not in blocks[1]                   # measured again
    assert "int8 costs 0.10 points" in blocks[2]
    write_section("infer-accuracy", text, doc)
    assert bench_infer.accuracy_section({"b.onnx": _accuracy(0.85), "c.onnx": _accuracy(0.95, 0.949)},
                                        read_section("infer-accuracy", doc)) == text


def test_the_ensemble_section_keeps_an_earlier_table_whose_models_are_not_measured_again():
    import bench_ensemble

    first = ("## What an ensemble costs\n\nModel time only, 7 rounds.\n\n| model | ms |\n|---|---|\n"
             "| `default` | 14.5 |\n| `lite1` | 20.9 |")
    assert bench_ensemble.earlier_run(first, ["default", "lite1"]) == ""        # all measured again
    kept = bench_ensemble.earlier_run(first, ["lite2", "lite2:int8"])
    assert kept.startswith("### Earlier run\n\nModel time only, 7 rounds.") and "| `lite1` | 20.9 |" in kept
    # the next run keeps the same earlier table once, not nested
    second = "## What an ensemble costs\n\nNew.\n\n| model | ms |\n|---|---|\n| `lite2` | 28 |\n\n" + kept
    assert bench_ensemble.earlier_run(second, ["lite2"]) == kept                # the same models again
    assert bench_ensemble.earlier_run(second, ["lite0"]).count("### Earlier run") == 1
    assert "| `lite1` |" not in bench_ensemble.earlier_run(second, ["lite0"])
