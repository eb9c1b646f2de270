"""`roomclf predict`: real photos of the corpus and bad files through the registered champion (``quick_onnx``
in a real SQLite MLflow registry, ``home``), real onnxruntime."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

GOOD = ["batch_01/listing_0439/photo_01.jpg", "batch_01/listing_0439/photo_02.jpg", "batch_01/listing_0439/photo_03.jpg"]
EMPTY, HTML = "batch_19/listing_0001/photo_90.jpg", "batch_19/listing_0001/photo_92.jpg"


@pytest.fixture()
def champion(home, quick_onnx) -> str:
    from roomclf.models.registry import register_onnx_file

    return register_onnx_file(quick_onnx, alias="champion")


def test_predict_table_json_and_exit_codes(champion, corpus_root, ground_truth, quick_onnx, tmp_path):
    from roomclf.cli import main
    from roomclf.models.onnx_file import OnnxModel
    from roomclf.taxonomy import CLASSES

    good = [str(corpus_root / p) for p in GOOD]
    direct = OnnxModel(quick_onnx).predict_sources(good)

    # every photo read: exit 0, one table row each with class, confidence and top 3
    res = CliRunner().invoke(main, ["predict", *good])
    assert res.exit_code == 0, res.output
    assert "model roomclf-onnx 1 (models:/roomclf-onnx@champion)" in res.output
    table = res.stdout.strip().splitlines()
    assert table[0].split()[:3] == ["photo", "class", "conf"] and len(table) == 1 + len(good)
    for line, pred in zip(table[1:], direct):
        assert pred.label in line.split() and f"{pred.confidence:.2f}" in line

    # a missing file, an empty one and an HTML page among them: rows with errors, exit 1, same order
    missing = str(tmp_path / "nope.jpg")
    photos = [good[0], str(corpus_root / EMPTY), str(corpus_root / HTML), missing, good[1]]
    res = CliRunner().invoke(main, ["predict", "--json", *photos])
    assert res.exit_code == 1, res.output
    rows = [json.loads(line) for line in res.stdout.strip().splitlines()]   # stdout: nothing but JSON lines
    assert [r["photo"] for r in rows] == photos
    for r, pred in ((rows[0], direct[0]), (rows[4], direct[1])):
        assert r["error"] is None and r["label"] == pred.label and r["label"] in CLASSES
        assert abs(r["confidence"] - pred.confidence) < 1e-4
        assert len(r["top"]) == 3 and r["top"][0]["label"] == r["label"]
        assert [t["p"] for t in r["top"]] == sorted((t["p"] for t in r["top"]), reverse=True)
        assert isinstance(r["tags"], dict) and (r["model"], r["model_version"]) == ("roomclf-onnx", "1")
    assert rows[1]["error"] == "empty file" and rows[1]["label"] is None and rows[1]["top"] == []
    assert "HTML" in rows[2]["error"]
    assert "cannot read file" in rows[3]["error"]
    assert "3 of 5 photos could not be read" in res.output

    table = CliRunner().invoke(main, ["predict", *photos])
    assert table.exit_code == 1
    lines = table.stdout.strip().splitlines()
    assert len(lines) == 6 and "error: empty file" in lines[2] and "nope.jpg" in lines[4]

    # another model by file path
    by_file = CliRunner().invoke(main, ["predict", "--json", "--model", str(quick_onnx), good[0]])
    assert by_file.exit_code == 0 and json.loads(by_file.stdout)["label"] == direct[0].label


def test_bad_model_is_one_line_exit_2(champion, corpus_root, tmp_path):
    from roomclf.cli import main

    photo = str(corpus_root / GOOD[0])
    (tmp_path / "damaged.onnx").write_bytes(b"not a graph")
    for model, needle in (("models:/nope@champion", "nope"), (str(tmp_path / "missing.onnx"), "model not found"),
                          (str(tmp_path / "damaged.onnx"), "not a readable ONNX model")):
        res = CliRunner().invoke(main, ["predict", "--model", model, photo])
        assert res.exit_code == 2, res.output
        assert res.output.strip().splitlines() == [res.output.strip().splitlines()[-1]]
        assert res.output.startswith("Error:") and needle in res.output and "Traceback" not in res.output
    assert CliRunner().invoke(main, ["predict"]).exit_code == 2          # no photo: a usage error


def test_a_model_folder_means_its_model_onnx_and_several_others_are_refused(champion, corpus_root, quick_onnx,
                                                                            tmp_path):
    """A training run's folder can hold other .onnx files beside model.onnx (a probe's export): the folder
    means model.onnx, whatever sorts first; a folder of several other files is refused in one line."""
    import shutil

    from roomclf.cli import main

    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(quick_onnx, run / "model.onnx")
    (run / "attributes-max.onnx").write_bytes(b"not a graph")      # sorts first; reading it would fail
    photo = str(corpus_root / GOOD[0])
    ok = CliRunner().invoke(main, ["predict", "--json", "--model", str(run), photo])
    assert ok.exit_code == 0, ok.output
    (run / "model.onnx").rename(run / "other.onnx")
    refused = CliRunner().invoke(main, ["predict", "--model", str(run), photo])
    assert refused.exit_code == 2 and "2 .onnx files and no model.onnx" in refused.output
    assert "Traceback" not in refused.output and len(refused.output.strip().splitlines()) == 1
