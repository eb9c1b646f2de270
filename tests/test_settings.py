"""Where runs go: one experiment per step in a real SQLite store, remote vs local stores,
which Ray cluster infer-all joins. No photos needed."""
from __future__ import annotations

import socket

import pytest


@pytest.fixture()
def store(tmp_path, monkeypatch):
    monkeypatch.setenv("ROOMCLF_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    for var in ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_ID", "MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_NAME"):
        monkeypatch.delenv(var, raising=False)
    return tmp_path / "home"


def test_each_step_gets_its_own_experiment_whatever_ran_before(store):
    import mlflow
    from mlflow import MlflowClient

    from roomclf.tracking.experiments import MODEL_TRAINING_KIND, step_run

    with step_run("roomclf-propagate", "first") as first:
        pass
    with step_run("roomclf-train", "second") as second:     # set_experiment exported the first id meanwhile
        pass
    client = MlflowClient()
    names = {client.get_experiment(r.info.experiment_id).name for r in (first, second)}
    assert names == {"roomclf-propagate", "roomclf-train"}
    for name in names:
        exp = client.get_experiment_by_name(name)
        assert exp.tags["mlflow.experimentKind"] == MODEL_TRAINING_KIND
        assert exp.artifact_location == (store / "mlartifacts" / name).as_uri()   # local store: our folder
    assert client.get_run(second.info.run_id).info.status == "FINISHED"
    assert mlflow.active_run() is None


def test_a_failing_step_ends_its_run_as_failed(store):
    from mlflow import MlflowClient

    from roomclf.tracking.experiments import step_run

    with pytest.raises(ValueError), step_run("roomclf-train", "broken") as run:
        raise ValueError("bad")
    assert MlflowClient().get_run(run.info.run_id).info.status == "FAILED"


def test_an_existing_experiment_gets_marked_for_the_model_training_view(store):
    from mlflow import MlflowClient

    from roomclf.settings import setup_mlflow
    from roomclf.tracking.experiments import use_experiment

    setup_mlflow()
    exp_id = MlflowClient().create_experiment("roomclf-train")
    assert use_experiment("roomclf-train") == exp_id
    assert MlflowClient().get_experiment(exp_id).tags["mlflow.experimentKind"] == "custom_model_development"


@pytest.mark.parametrize("uri, remote", [("http://mlflow:5000", True), ("https://m.example", True),
                                         ("sqlite:////x/mlflow.db", False), ("file:///x", False)])
def test_remote_tracking(uri, remote):
    from roomclf.settings import is_remote_tracking

    assert is_remote_tracking(uri) is remote


def test_cluster_address_from_flag_or_environment(monkeypatch):
    from roomclf.infer.batch import InferError
    from roomclf.infer.ray_engine import cluster_address

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert cluster_address(None) is None                      # start a local Ray
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.5:6379")
    assert cluster_address(None) == "10.0.0.5:6379"           # join, without --address
    assert cluster_address("auto") == "auto"
    with pytest.raises(InferError, match="Ray Client"):
        cluster_address("ray://head:10001")


def test_unreachable_server_is_recognised():
    from mlflow.exceptions import MlflowException

    from roomclf.models.registry import is_unreachable

    down = MlflowException("API request to http://127.0.0.1:1/api/2.0/mlflow/runs/get failed with exception "
                           "HTTPConnectionPool(host='127.0.0.1', port=1): Max retries exceeded with url")
    assert is_unreachable(down) and is_unreachable(ConnectionRefusedError())
    cut = MlflowException("API request to http://127.0.0.1:1/api/2.0/mlflow/registered-models/get failed with "
                          "exception ('Connection broken: IncompleteRead(0 bytes read, 2033 more expected)')")
    assert is_unreachable(cut)          # the server died while answering
    assert not is_unreachable(MlflowException("RESOURCE_DOES_NOT_EXIST: Registered Model not found"))


def test_a_server_failure_that_mlflow_wraps_is_still_recognised(monkeypatch):
    """Registration tags the logged model through ``set_logged_model_tags``, which reports a dead server as
    "Failed to get logged model" (an invalid parameter); the connection error is its cause."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from roomclf.models.registry import is_unreachable

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    with socket.socket() as s:                      # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(MlflowException, match="Failed to get logged model") as err:
        MlflowClient(tracking_uri=f"http://127.0.0.1:{port}").set_logged_model_tags("m-0123", {"k": "v"})
    assert is_unreachable(err.value)
    try:                                            # a bad request wrapped alike is not a dead server
        raise MlflowException("Failed to get logged model") from MlflowException("RESOURCE_DOES_NOT_EXIST: no model")
    except MlflowException as exc:
        assert not is_unreachable(exc)


def test_the_corpus_defaults_to_the_downloaded_sample_on_a_machine_without_shared(tmp_path, monkeypatch):
    from roomclf import settings

    project = tmp_path / "machine" / "roomclf-checkout"
    (project / "roomclf").mkdir(parents=True)
    (project / "pyproject.toml").write_text("")
    monkeypatch.chdir(project)
    monkeypatch.setenv("ROOMCLF_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("ROOMCLF_DATA", raising=False)
    shared = tmp_path / "machine" / "shared" / "data" / "listings"
    assert settings.data_root() == shared                        # nothing anywhere: the error names ../shared
    sample = tmp_path / "home" / "sample" / "listings"
    sample.mkdir(parents=True)
    assert settings.data_root() == sample                        # after `make demo` / `roomclf sample-data`
    shared.mkdir(parents=True)
    assert settings.data_root() == shared                        # a corpus beside the checkout wins
    monkeypatch.setenv("ROOMCLF_DATA", str(tmp_path / "mine"))
    assert settings.data_root() == tmp_path / "mine"


def test_a_dead_server_is_one_line_that_says_what_did_not_happen(store, monkeypatch):
    from click.testing import CliRunner

    from roomclf.cli import main

    with socket.socket() as s:                      # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    listed = CliRunner().invoke(main, ["models"])
    assert listed.exit_code == 1 and listed.output.count("\n") == 1, listed.output
    assert listed.output.startswith("Error: listing registered models failed: the MLflow tracking store")
    assert "champion" not in listed.output          # a read: no alias to move, none said to be kept
    moved = CliRunner().invoke(main, ["promote", "roomclf-onnx", "3"])
    assert moved.exit_code == 1 and moved.output.startswith("Error: promote failed: the MLflow tracking store"), \
        moved.output
    assert "nothing was made champion" in moved.output and "no version 3" not in moved.output


def test_cores_are_roomclf_cpus_else_the_ones_this_process_may_run_on(monkeypatch):
    import os

    from roomclf import settings

    monkeypatch.delenv("ROOMCLF_CPUS", raising=False)
    allowed = os.sched_getaffinity(0)
    try:
        os.sched_setaffinity(0, {min(allowed)})             # as `taskset -c N` would
        assert settings.cpus() == 1
    finally:
        os.sched_setaffinity(0, allowed)
    assert settings.cpus() == len(allowed)
    monkeypatch.setenv("ROOMCLF_CPUS", "3")
    assert settings.cpus() == 3
    for bad in ("0", "two", "-1", "1.5"):
        monkeypatch.setenv("ROOMCLF_CPUS", bad)
        with pytest.raises(settings.SettingsError, match=f"ROOMCLF_CPUS='{bad}'"):
            settings.cpus()
