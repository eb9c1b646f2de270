"""The command line: help, the embed command end to end, one-line errors."""
import subprocess
import sys

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
