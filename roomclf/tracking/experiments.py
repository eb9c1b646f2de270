"""One MLflow experiment per step, and the run of a step.

``step_run("roomclf-train", name)`` opens the step's run in its own experiment
(created marked for the MLflow UI's model-training view, with its artifacts in
the working-data folder for a local store, or under $MLFLOW_DEFAULT_ARTIFACT_ROOT
(e.g. s3://), and where the server keeps them for a tracking server), whatever an
earlier step or ``mlflow run`` set in the process.
``ui_link`` makes links into that view.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

from roomclf.processes import pid_alive
from roomclf.settings import artifact_root, home, is_remote_tracking, setup_mlflow

# The MLflow UI opens an experiment in its model-training view when it carries this tag, or (MLflow
# 3.17, whose sidebar toggles between GenAI and model training) when the link asks for that view.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
MODEL_TRAINING_KIND = "custom_model_development"
UI_VIEW = "?workflowType=machine_learning"


def ui_link(base_url: str, page: str = "experiments") -> str:
    """A link into the MLflow UI's model-training view, e.g. ``ui_link(url, "models/roomclf-onnx")``."""
    return f"{base_url.rstrip('/')}/#/{page}{UI_VIEW}"


LAUNCHER_TAG = "roomclf.launched_by"      # on a step's run: the `mlflow run` run that started it
LAUNCHER_ENV = "ROOMCLF_LAUNCHED_BY"


def _launcher_run_experiment(client) -> tuple[str, str] | None:
    """Inside ``mlflow run`` (MLFLOW_RUN_ID set): (run id, experiment name) of the run it created."""
    run_id = os.environ.get("MLFLOW_RUN_ID")
    if not run_id:
        return None
    try:
        exp_id = client.get_run(run_id).info.experiment_id
        return run_id, client.get_experiment(exp_id).name
    except Exception:  # a stale id from another store: not ours to follow
        return None


def use_experiment(name: str) -> str:
    """Make ``name`` the active MLflow experiment (one experiment per step), creating it
    marked as a model-training experiment; returns its id.

    Whatever an earlier step set in this process (``mlflow.set_experiment`` exports
    MLFLOW_EXPERIMENT_ID) is ignored. Inside ``mlflow run``: if the user named an
    experiment (``--experiment-name``), the step logs into the run ``mlflow run``
    created; if it landed in ``Default``, the step starts its own run in ``name`` and
    the launcher run gets a tag pointing to it. With a local store the artifacts go
    to the working-data folder; with a tracking server, where the server keeps them.
    """
    setup_mlflow()
    import mlflow
    from mlflow import MlflowClient

    client = MlflowClient()
    launcher = _launcher_run_experiment(client)
    if launcher and launcher[1] != "Default":
        exp_id = os.environ["MLFLOW_EXPERIMENT_ID"] = client.get_run(launcher[0]).info.experiment_id
        check_artifact_store(client.get_experiment(exp_id).artifact_location)
        return exp_id
    if launcher:   # detach from the launcher's run in Default: this step logs in its own experiment
        os.environ.pop("MLFLOW_RUN_ID", None)
        os.environ[LAUNCHER_ENV] = launcher[0]
    os.environ.pop("MLFLOW_EXPERIMENT_ID", None)
    found = client.get_experiment_by_name(name)
    if found is None:
        location = None if is_remote_tracking() else f"{artifact_root()}/{name}"
        check_artifact_store(location)        # before the experiment keeps it: a fixed variable then takes effect
        try:
            exp_id = client.create_experiment(name, artifact_location=location,
                                              tags={EXPERIMENT_KIND_TAG: MODEL_TRAINING_KIND})
        except Exception:   # created meanwhile by another host
            exp_id = client.get_experiment_by_name(name).experiment_id
        if location is None:                  # the server chose it
            check_artifact_store(client.get_experiment(exp_id).artifact_location)
    else:
        exp_id = found.experiment_id
        if found.tags.get(EXPERIMENT_KIND_TAG) != MODEL_TRAINING_KIND:
            client.set_experiment_tag(exp_id, EXPERIMENT_KIND_TAG, MODEL_TRAINING_KIND)
        check_artifact_store(found.artifact_location)
    mlflow.set_experiment(experiment_id=exp_id)
    return exp_id


def check_artifact_store(location: str | None) -> None:
    """An experiment whose artifacts this host writes to S3 itself (an ``s3://`` artifact location: a local
    store with ``MLFLOW_DEFAULT_ARTIFACT_ROOT``, or a server that does not serve artifacts): one line
    (``roomclf.storage.StorageError``, naming the bucket and the variable to set) when its bucket is missing
    or the credentials are refused, before the step does any work. A server that serves artifacts
    (``mlflow-artifacts:``) writes them with its own credentials: nothing to check here."""
    from roomclf import storage

    if location and location.startswith(storage.S3):
        storage.ensure_folder(location)


def _link_launcher(run_id: str) -> None:
    """After ``use_experiment`` detached from an ``mlflow run`` launcher run: tag both runs
    with each other, so the launcher in ``Default`` points at where the step logged."""
    launcher = os.environ.pop(LAUNCHER_ENV, None)
    if not launcher:
        return
    from mlflow import MlflowClient

    client = MlflowClient()
    exp = client.get_experiment(client.get_run(run_id).info.experiment_id).name
    client.set_tag(run_id, LAUNCHER_TAG, launcher)
    client.set_tag(launcher, "roomclf.step_run", run_id)
    client.set_tag(launcher, "mlflow.note.content",
                   f"roomclf logged this step as run {run_id} in experiment {exp}.")


def _open_runs_file() -> Path:
    return home() / "open-runs.json"


def _track_open_runs(client, add: str | None = None, remove: str | None = None) -> None:
    """Remember which runs this host has open (with their process), and close as FAILED the
    ones a dead process left RUNNING (e.g. the tracking server stopped before it could be told)."""
    import json

    path = _open_runs_file()
    try:
        runs = json.loads(path.read_text())
    except (OSError, ValueError):
        runs = {}
    runs.pop(remove, None)
    for rid, pid in list(runs.items()):
        if pid_alive(int(pid)):
            continue
        try:
            if client.get_run(rid).info.status == "RUNNING":
                client.set_terminated(rid, "FAILED")
            runs.pop(rid)
        except Exception:   # still unreachable, or another store: try again next time
            continue
    if add:
        runs[add] = os.getpid()
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(runs))
    os.replace(tmp, path)


@contextmanager
def step_run(experiment: str, run_name: str | None = None):
    """``with step_run("roomclf-train", "demo") as run:`` the MLflow run of one step, in the
    step's own experiment (see ``use_experiment``). A step that fails ends its run as FAILED;
    if the store cannot be told (a stopped server), the step's own error is what is raised,
    and the next step on this host closes that run as FAILED."""
    use_experiment(experiment)
    import mlflow
    from mlflow import MlflowClient

    client = MlflowClient()
    run = mlflow.start_run(run_name=run_name)
    try:
        _track_open_runs(client, add=run.info.run_id)
        _link_launcher(run.info.run_id)
        yield run
    except BaseException:
        try:
            mlflow.end_run("FAILED")
        except Exception:   # the store is gone too: forget the run here, keep the step's error
            while mlflow.active_run() is not None:
                mlflow.tracking.fluent._active_run_stack.get().pop()
        else:
            _track_open_runs(client, remove=run.info.run_id)
        raise
    mlflow.end_run()
    _track_open_runs(client, remove=run.info.run_id)
