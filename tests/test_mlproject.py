"""`mlflow run . -e NAME --env-manager local` reaches the package, offline, on a real store; MLproject's
parameters are the commands' own, with the package's defaults."""
import os
import shlex
import subprocess
import sys
from dataclasses import MISSING, fields
from pathlib import Path

import click
import pytest
import yaml
from conftest import pick_photos

import mlproject
from mlproject import sync

PROJECT = Path(__file__).resolve().parent.parent


def spec() -> dict:
    return yaml.safe_load((PROJECT / "MLproject").read_text())


def test_every_entry_point_is_one_call_into_the_package():
    entries = spec()["entry_points"]
    assert set(entries) >= {"embed", "prelabel", "label", "propagate", "train", "infer", "serve", "import-labels",
                            "export-labels", "promote", "combine"}
    for name, entry in entries.items():
        module = entry["command"].split()[2]
        assert entry["command"].startswith("python -m mlproject.") and (PROJECT / (module.replace(".", "/") + ".py")).is_file()
        body = [l for l in (PROJECT / (module.replace(".", "/") + ".py")).read_text().splitlines()
                if l.strip() and not l.startswith(('"""', "from", "import", "if __name__"))]
        assert body == ["    run(" + body[0].strip()[4:]], name      # just `run(command)`


def test_mlproject_and_python_env_are_written_from_the_package():
    # `python -m mlproject.sync` rewrites both; a default changed in the package and not here fails
    assert (PROJECT / "MLproject").read_text() == sync.render_mlproject(), "run `python -m mlproject.sync`"
    assert (PROJECT / "python_env.yaml").read_text() == sync.render_python_env(), "run `python -m mlproject.sync`"


def _cli_default(entry: str, p: click.Parameter):
    """The default MLproject must carry for ``p``, read from the command (not from sync's rendering)."""
    if (entry, mlproject.param_name(p)) in sync.OVERRIDES:
        return sync.OVERRIDES[entry, mlproject.param_name(p)][0]
    if p.required:
        return None
    d = p.default
    if isinstance(p, click.Option) and p.is_flag and not p.secondary_opts and (d is None or type(d).__name__ == "Sentinel"):
        return False
    if d is None or callable(d) or type(d).__name__ == "Sentinel" or d == ():
        return ""
    return ",".join(d) if isinstance(d, tuple) else d


def test_every_default_is_the_commands_own_and_typed():
    entries = spec()["entry_points"]
    assert set(entries) == set(sync.entry_modules())
    kinds = {"int": int, "float": float, "bool": bool, "string": str}
    for entry, module in sync.entry_modules().items():
        command = sync.command_of(module)
        declared = entries[entry].get("parameters", {})
        assert list(declared) == [mlproject.param_name(p) for p in command.params if p.expose_value], entry
        for p in command.params:
            name = mlproject.param_name(p)          # the option as on the command line: --share-min, share_min
            got, want = declared[name].get("default"), _cli_default(entry, p)
            assert got == want and type(got) is type(want), (entry, name, got, want)
            kind = declared[name]["type"]
            if got not in ("", None):
                assert type(got) is kinds[kind], (entry, p.name, kind, got)     # 10 is an int, 0.9 a float...
            listed = p.nargs != 1 or getattr(p, "multiple", False)
            numeric = {click.types.IntParamType: "int", click.types.FloatParamType: "float",
                       click.types.BoolParamType: "bool"}
            want_kind = next((k for t, k in numeric.items() if isinstance(p.type, t)), None)
            want_kind = "int" if p.type.name == "integer" else want_kind          # train's WholeNumber
            if want_kind is None or listed and want_kind != "bool":
                assert kind in ("string", "path"), (entry, p.name)              # a string only where it is one
            else:
                assert kind == want_kind, (entry, p.name, kind)


def test_an_empty_default_says_in_its_comment_what_roomclf_decides():
    for line in (PROJECT / "MLproject").read_text().splitlines():
        if 'default: ""' in line:
            assert "# " in line and "empty: " in line.split("# ", 1)[1], line


def test_train_defaults_are_train_configs_and_the_recipe_is_listed():
    from roomclf.train.config import DEFAULT_RECIPE, TrainConfig

    params = spec()["entry_points"]["train"]["parameters"]
    checked = set()
    for f in fields(TrainConfig):
        if f.default is MISSING or f.name == "recipe" or f.name not in params:
            continue              # data, batches: the CLI's own defaults; recipe: below; no option: not a param
        want = "" if f.default is None else ",".join(f.default) if isinstance(f.default, tuple) else f.default
        assert params[f.name]["default"] == want, f.name
        checked.add(f.name)
    assert {"backbone", "image_size", "epochs", "frozen_epochs", "batch_size", "lr", "seed", "sources"} <= checked
    assert params["recipe"]["default"] == "defaults"
    text = (PROJECT / "MLproject").read_text()
    recipe_note = text[text.index("#   recipe:"):text.index("  train:")]
    for f in fields(DEFAULT_RECIPE):
        value = getattr(DEFAULT_RECIPE, f.name)
        shown = str(value).lower() if isinstance(value, bool) else str(value)
        assert f" {f.name}={shown}," in recipe_note.replace("\n", ",") + ",", f.name


def test_propagate_defaults_are_the_propagation_defaults():
    from roomclf.propagate.defaults import PROPAGATION

    params = spec()["entry_points"]["propagate"]["parameters"]
    for f in fields(PROPAGATION):
        name = "from" if f.name == "seed_sources" else f.name         # --from
        want = getattr(PROPAGATION, f.name)
        want = "" if want is None else ",".join(want) if isinstance(want, tuple) else want
        assert params[name]["default"] == want, f.name


def _required_values(tmp_path) -> dict:
    existing = tmp_path / "labels.csv"
    existing.write_text("path,label\n")
    return {"source_file": str(existing), "out": str(tmp_path / "out"), "models": "models:/a/1,models:/a/2",
            "name": "roomclf-onnx", "version": "2", "photos": "a.jpg,b.jpg"}


def test_mlflow_builds_each_command_and_roomclf_reads_it_as_its_defaults(tmp_path):
    # MLflow's own reading of MLproject and its command line, then roomclf's parsing of that line:
    # with the defaults, every entry point runs its command as `roomclf NAME` with no options would
    from mlflow.projects._project_spec import load_project

    project = load_project(str(PROJECT))
    required = _required_values(tmp_path)
    for entry, module in sync.entry_modules().items():
        command = sync.command_of(module)
        ep = project.get_entry_point(entry)
        given = {k: v for k, v in required.items() if k in ep.parameters and ep.parameters[k].default is None}
        line = ep.compute_command(given, str(tmp_path / "storage"))
        argv = shlex.split(line)
        assert argv[:3] == ["python", "-m", module]
        args = mlproject.command_args(command, argv[3:])
        ctx = command.make_context(command.name, list(args), resilient_parsing=False)
        resolved = ep.compute_parameters(given, str(tmp_path / "storage"))[0]     # a path made absolute
        plain = command.make_context(command.name, _plain_required(command, {k: resolved[k] for k in given}))
        declared = {p.name: mlproject.param_name(p) for p in command.params}
        for name, value in ctx.params.items():
            if (entry, declared[name]) in sync.OVERRIDES:
                assert value == sync.OVERRIDES[entry, declared[name]][0], (entry, name)
            else:
                assert value == plain.params[name], (entry, name, value, plain.params[name])


def _plain_required(command: click.Command, given: dict) -> list[str]:
    opts, pos = [], []
    for p in command.params:
        if p.name in given:
            if isinstance(p, click.Argument):
                pos += given[p.name].split(",") if p.nargs != 1 else [given[p.name]]
            else:
                opts.append(f"{p.opts[0]}={given[p.name]}")
    return opts + pos


def test_parameters_reach_the_command_as_its_options():
    from roomclf.commands.label import label
    from roomclf.commands.models import combine
    from roomclf.commands.propagate import propagate

    assert mlproject.command_args(propagate, ["--data", "", "--search_k", "-1", "--share_min", "0.6",
                                              "--dry_run", "True", "--sources=manual,imported"]) == \
        ["--share-min=0.6", "--search-k=-1", "--from=manual,imported", "--dry-run"]     # in the command's order
    assert mlproject.command_args(combine, ["--models", "models:/a/1,models:/a/2", "--register", "false"]) == \
        ["--", "models:/a/1", "models:/a/2"]
    assert mlproject.command_args(label, ["--prelabel", "false", "--allow_host", "a,b"]) == \
        ["--no-prelabel", "--allow-host=a", "--allow-host=b"]
    # other spellings of an option (README: -P batch=...) come after the declared default and win
    assert mlproject.command_args(label, ["--batches", "batch_01", "--do_prelabel", "true", "--batch", "batch_02"]) == \
        ["--batches=batch_02", "--prelabel"]
    for bad in (["--nope", "1"], ["--prelabel", "maybe"], ["k"]):
        with pytest.raises(click.UsageError):
            mlproject.command_args(label, bad)


def test_python_env_is_what_mlflow_reads_with_pyprojects_requirements():
    import tomllib

    from mlflow.utils.environment import _PythonEnv

    env = _PythonEnv.from_yaml(str(PROJECT / "python_env.yaml"))
    deps = tomllib.loads((PROJECT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert env.python.startswith("3.11") and env.dependencies == [*deps, "-e ."]
    assert spec()["python_env"] == "python_env.yaml" and "conda_env" not in spec()   # MLflow takes one
    assert (PROJECT / "conda.yaml").is_file()


def _mlflow_env(tmp_path) -> dict:
    return {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
            "MLFLOW_DISABLE_TELEMETRY": "true", "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}


@pytest.mark.slow
def test_mlflow_run_embed_offline(home, tmp_path, corpus_root):
    spaced = tmp_path / "my corpus"            # a value with a space reaches the package as one argument
    spaced.symlink_to(corpus_root, target_is_directory=True)

    def cmd(batches):
        return [sys.executable, "-m", "mlflow", "run", str(PROJECT), "-e", "embed", "--env-manager", "local",
                "-P", f"batches={batches}", "-P", f"data={spaced}", "--experiment-name", "mlproject-test"]
    env = _mlflow_env(tmp_path)
    result = subprocess.run(cmd("batch_19"), capture_output=True, text=True, env=env, timeout=600, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "3 unreadable photos, 2 non-photo files skipped" in result.stdout + result.stderr
    bad = subprocess.run(cmd("batch_77"), capture_output=True, text=True, env=env, timeout=600, cwd=tmp_path)
    assert bad.returncode != 0 and "Error: batch batch_77 not found" in bad.stderr
    assert "Traceback" not in bad.stderr.split("Error: batch batch_77")[0][-500:]


@pytest.mark.slow
def test_mlflow_run_propagate_one_run_or_two_with_the_same_params(home, tmp_path, corpus_root, ground_truth):
    """MLflow 3.17 creates a run before the command starts, always. With --experiment-name the step logs into
    it: one run. In Default the step logs its own run in roomclf-propagate; the two carry the same params."""
    from mlflow import MlflowClient

    from roomclf.labels.store import LabelStore

    LabelStore().set_labels(pick_photos(ground_truth, "batch_01", 40), "manual", who="test")
    env = _mlflow_env(tmp_path)

    def mlflow_run(*extra):
        cmd = [sys.executable, "-m", "mlflow", "run", str(PROJECT), "-e", "propagate", "--env-manager", "local",
               "-P", f"data={corpus_root}", "-P", "k=5", "-P", "folds=3", "-P", "dry_run=true", *extra]
        result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900, cwd=tmp_path)
        assert result.returncode == 0, result.stderr[-3000:]
        return result.stdout

    os.environ["MLFLOW_TRACKING_URI"] = env["MLFLOW_TRACKING_URI"]
    try:
        client = MlflowClient(tracking_uri=env["MLFLOW_TRACKING_URI"])   # not a store an earlier test set
        said = mlflow_run("--experiment-name", "my-propagation")
        runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
        assert len(runs) == 1                                      # the launcher is the step's run
        one = runs[0]
        assert client.get_experiment(one.info.experiment_id).name == "my-propagation"
        assert f"MLflow run {one.info.run_id} (experiment my-propagation)" in said
        assert one.data.params["k"] == "5" and one.data.params["backbone"] == "efficientnet_lite0"
        assert one.data.params["used_share_min"] and "cv_coverage" in one.data.metrics   # what the step logged

        mlflow_run()                                               # no experiment named: Default
        launcher = client.search_runs([client.get_experiment_by_name("Default").experiment_id])
        assert len(launcher) == 1
        launcher = launcher[0]
        step = client.get_run(launcher.data.tags[mlproject.STEP_RUN_TAG])
        assert client.get_experiment(step.info.experiment_id).name == "roomclf-propagate"
        assert step.data.tags["roomclf.launched_by"] == launcher.info.run_id
        a, b = launcher.data.params, step.data.params
        assert a.keys() == b.keys() and all(mlproject.same_value(a[k], b[k]) for k in a)   # given and resolved
        assert {k for k in a if a[k] != b[k]} == {"dry_run"}       # 'true' given, True logged by the step
        assert {"k", "folds", "share_min", "used_share_min", "seed_sources", "target_precision"} <= set(step.data.params)
        assert launcher.data.params["target_precision"] == "0.9"    # MLproject's typed default, as the step logs it
        assert mlproject.PARAMS_DIFFER_TAG not in launcher.data.tags
    finally:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
