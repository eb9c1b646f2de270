"""`mlflow run . -e NAME --env-manager local` reaches the package, offline, on a real store."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

PROJECT = Path(__file__).resolve().parent.parent


def test_every_entry_point_is_one_call_into_the_package():
    spec = yaml.safe_load((PROJECT / "MLproject").read_text())
    assert set(spec["entry_points"]) >= {"embed", "prelabel", "label", "propagate", "train", "infer", "serve"}
    for name, entry in spec["entry_points"].items():
        module = entry["command"].split()[2]
        assert entry["command"].startswith("python -m mlproject.") and (PROJECT / (module.replace(".", "/") + ".py")).is_file()
        body = [l for l in (PROJECT / (module.replace(".", "/") + ".py")).read_text().splitlines()
                if l.strip() and not l.startswith(('"""', "from", "import", "if __name__"))]
        assert body == ["    run(" + body[0].strip()[4:]], name      # just `run(command)`


def test_the_train_entry_point_leaves_every_default_to_roomclf_train():
    # one place decides the recipe (TrainConfig, which the CLI reads): MLproject passes "" = "roomclf's default"
    params = yaml.safe_load((PROJECT / "MLproject").read_text())["entry_points"]["train"]["parameters"]
    assert {"backbone", "epochs", "frozen_epochs", "batch_size", "seed"} <= set(params)
    assert {name: p["default"] for name, p in params.items() if p["default"] != ""} == {}


@pytest.mark.slow
def test_mlflow_run_embed_offline(home, tmp_path, corpus_root):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    spaced = tmp_path / "my corpus"            # a value with a space reaches the package as one argument
    spaced.symlink_to(corpus_root, target_is_directory=True)

    def cmd(batches):
        return [sys.executable, "-m", "mlflow", "run", str(PROJECT), "-e", "embed", "--env-manager", "local",
                "-P", f"batches={batches}", "-P", f"data={spaced}", "--experiment-name", "mlproject-test"]
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    result = subprocess.run(cmd("batch_19"), capture_output=True, text=True, env=env, timeout=600, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "3 unreadable photos, 2 non-photo files skipped" in result.stdout + result.stderr
    bad = subprocess.run(cmd("batch_77"), capture_output=True, text=True, env=env, timeout=600, cwd=tmp_path)
    assert bad.returncode != 0 and "Error: batch batch_77 not found" in bad.stderr
    assert "Traceback" not in bad.stderr.split("Error: batch batch_77")[0][-500:]
