"""The command line: help, the embed command end to end, one-line errors."""
import subprocess
import sys

import pytest
from click.testing import CliRunner

from roomclf.cli import COMMANDS, main


def test_help_lists_every_existing_command_with_one_line_each():
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    listed = result.output.split("Commands:")[1]
    for name in ("embed", "import-labels", "export-labels", "stats"):
        assert f"  {name} " in listed
    for line in listed.strip().splitlines():
        assert len(line.split(None, 1)) == 2, line      # name and a help line
    for name in COMMANDS:
        sub = CliRunner().invoke(main, [name, "--help"])
        assert sub.exit_code == 0, (name, sub.output)
        assert sub.output.startswith(f"Usage: main {name} [OPTIONS]") or sub.output.startswith("Usage: "), name
        assert len(sub.output.splitlines()) > 3, name          # says more than its usage line


def test_bad_input_is_one_line_not_a_traceback(home, tmp_path):
    result = subprocess.run([sys.executable, "-m", "roomclf.cli", "embed", "--data", str(tmp_path / "missing")],
                            capture_output=True, text=True)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [f"Error: corpus root not found: {tmp_path / 'missing'}"]
    corpus = tmp_path / "corpus"
    (corpus / "batch_01" / "listing_0001").mkdir(parents=True)
    result = CliRunner().invoke(main, ["embed", "--data", str(corpus), "--batches", "batch_77"])
    assert result.exit_code == 1 and "batch_77 not found" in result.output


def test_embed_batch_19_reports_broken_and_skipped(home, corpus_root):
    result = CliRunner().invoke(main, ["embed", "--batches", "batch_19"])
    assert result.exit_code == 0, result.output
    assert "3 unreadable photos, 2 non-photo files skipped" in result.output
    again = CliRunner().invoke(main, ["embed", "--batches", "batch_19"])
    assert "(0 computed" in again.output


def test_import_stats_export(home, labels_csv, tmp_path):
    runner = CliRunner()
    out = runner.invoke(main, ["import-labels", str(labels_csv), "--batches", "batch_01", "--as", "manual"])
    assert out.exit_code == 0 and "383 added" in out.output
    stats = runner.invoke(main, ["stats"])
    assert "manual" in stats.output and "383" in stats.output
    exported = runner.invoke(main, ["export-labels", str(tmp_path / "e.csv")])
    assert exported.exit_code == 0 and (tmp_path / "e.csv").read_text().count("\n") == 384


def one_line_error(result, *words):
    """A click error (exit 1 or 2, "Error: ..." as the last line), never a traceback."""
    assert result.exit_code in (1, 2), result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("Error:"), result.output
    for w in words:
        assert w in last, result.output


def test_import_labels_takes_every_batch_spec_form(home, labels_csv, ground_truth):
    """The range form works in import-labels as everywhere (it used to import 0 labels, silently)."""
    want = sum(1 for p, r in ground_truth.items() if r["label"] and p.split("/")[0] in ("batch_01", "batch_02", "batch_03"))
    out = CliRunner().invoke(main, ["import-labels", str(labels_csv), "--batches", "batch_01-batch_03"])
    assert out.exit_code == 0, out.output
    assert f"{want} added" in out.output and want > 1000


BATCH_COMMANDS = [
    ["embed", "--batches", "{spec}"],
    ["import-labels", "{labels}", "--batches", "{spec}"],
    ["export-labels", "{out}", "--batch", "{spec}"],
    ["prelabel", "--batch", "{spec}"],
    ["propagate", "--batches", "{spec}"],
    ["label", "--batch", "{spec}", "--port", "1"],
    ["infer-all", "--out", "{out}", "--batches", "{spec}", "--engine", "loop"],
    ["train", "--train-batches", "{spec}", "--valid-batches", "batch_19"],
]


@pytest.mark.parametrize("spec, words", [("batch_99", "batch_99 not found"),
                                         ("batch_01-batch_99", "batch_99 not found"),
                                         ("batch_01--batch_03", "bad batch range")])
@pytest.mark.parametrize("command", BATCH_COMMANDS, ids=lambda c: c[0])
def test_every_batch_option_refuses_unknown_batches(home, labels_csv, tmp_path, command, spec, words):
    args = [a.format(spec=spec, labels=labels_csv, out=tmp_path / "out") for a in command]
    one_line_error(CliRunner().invoke(main, args), *words)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("bad", ["batch_01/../batch_02/listing_0018/photo_01.jpg",
                                 "./batch_01/listing_0003/photo_01.jpg",
                                 "batch_01//listing_0003/photo_01.jpg",
                                 "batch_01\\listing_0003\\photo_01.jpg",
                                 "/batch_01/listing_0003/photo_01.jpg",
                                 "{root}/batch_01/listing_0003/photo_01.jpg",
                                 "batch_01/listing_0003/./photo_01.jpg"])
def test_import_labels_refuses_non_canonical_paths(home, corpus_root, tmp_path, bad):
    """Such a path used to be stored as it was, under batch_01 (the split's batch) for another batch's photo."""
    from roomclf.labels.store import LabelStore

    bad = bad.format(root=corpus_root)
    rows = tmp_path / "rows.csv"
    rows.write_text(f"path,label\nbatch_01/listing_0003/photo_02.jpg,kitchen\n{bad},kitchen\n")
    result = CliRunner().invoke(main, ["import-labels", str(rows), "--as", "manual"])
    one_line_error(result, "rows.csv:3", repr(bad))
    assert LabelStore().labels() == {}                     # the whole file is refused
    result = CliRunner().invoke(main, ["import-labels", str(rows), "--batches", "batch_01"])
    one_line_error(result, "rows.csv:3")


def test_models_lists_the_held_out_figures_each_champion_carries(home, quick_onnx, tmp_path):
    """`roomclf models`: under the champion's attribute tags, one line per emitted attribute with the held-out
    precision/recall/F1 and label counts its ONNX file carries (copied into the version's tag at
    registration); a champion registered before versions carried them says so."""
    import json

    import mlflow
    import onnx

    from roomclf.models.attribute_scores import NOT_RECORDED, SCORES_KEY, from_report
    from roomclf.models.onnx_file import read_meta, save_onnx
    from roomclf.models.registry import register_onnx_file
    from roomclf.settings import setup_mlflow
    from roomclf.taxonomy import ATTRIBUTE_KEYS
    from roomclf.tracking.experiments import use_experiment

    report = {k: {"status": "untrained: 2 positives", "positives": 2, "negatives": 9} for k in ATTRIBUTE_KEYS}
    report["living_room.tv"] = {"status": "trained", "threshold": 0.4, "precision": 0.8, "recall": 0.5,
                                "f1": 0.615384, "positives": 20, "negatives": 60, "support": 8, "val_negatives": 30}
    model = onnx.load(str(quick_onnx))
    meta = read_meta(model)
    meta["attribute_thresholds"] = {k: (0.4 if k == "living_room.tv" else None) for k in ATTRIBUTE_KEYS}
    meta[SCORES_KEY] = from_report(report)
    carrying = save_onnx(model, tmp_path / "tv.onnx", meta)
    setup_mlflow()
    use_experiment("roomclf")
    runner = CliRunner()
    for path in (carrying, quick_onnx):
        with mlflow.start_run():
            mlflow.set_tags({"attributes.trained": "living_room.tv",
                             "attributes.untrained": ",".join(k for k in ATTRIBUTE_KEYS if k != "living_room.tv")})
            register_onnx_file(path, tags={"valid_batches": "batch_03"}, alias="champion")
        out = runner.invoke(main, ["models"])
        assert out.exit_code == 0, out.output
        block = out.output.split("attribute tags of", 1)[1].splitlines()
        if path == carrying:
            tv = [line.split() for line in block if line.strip().startswith("living_room.tv")]
            assert tv == [["living_room.tv", "0.80", "0.50", "0.62", "80", "(", "20)", "38", "(8)"]], out.output
            assert any("on validation batch_03" in line for line in block)
            assert json.loads(mlflow.MlflowClient().get_model_version("roomclf-onnx", "1").tags[SCORES_KEY])
        else:
            assert NOT_RECORDED in out.output and not any(line.strip().startswith("living_room.tv") for line in block)
