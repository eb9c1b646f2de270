"""The registered `roomclf` pyfunc: logged in a temporary MLflow store (SQLite),
loaded back with mlflow.pyfunc and served by `mlflow models serve`, fed real photos."""
from __future__ import annotations

import base64
import json
import os
import sys
from pathlib import Path

import pandas as pd
import pytest
from conftest import isolated_store, pick_photos

TRUNCATED = "batch_19/listing_0001/photo_91.jpg"


@pytest.fixture(scope="module")
def store(tmp_path_factory, quick_onnx):
    """A tmp store holding roomclf v1 @champion (with a learner and an extra artifact). Yields (env, info, files)."""
    from roomclf.models.pyfunc import log_roomclf_pyfunc
    from roomclf.settings import setup_mlflow

    home = tmp_path_factory.mktemp("pyfunc_home")
    learner = home / "learner.pkl"
    learner.write_bytes(b"a fastai learner would be here" * 10)
    report = home / "report.json"
    report.write_text(json.dumps({"accuracy": 0.9}))
    with isolated_store(home) as env:
        setup_mlflow()
        info = log_roomclf_pyfunc(quick_onnx, learner_path=learner, extra_artifacts={"report": report},
                                  tags={"val_accuracy": 0.9}, alias="champion")
        yield {**os.environ, **env}, info, {"learner": learner, "report": report}


@pytest.fixture(scope="module")
def photos(corpus_root, ground_truth):
    paths = [corpus_root / p for p, _ in pick_photos(ground_truth, "batch_02", 6)]
    return paths, [p.read_bytes() for p in paths]


@pytest.fixture(scope="module")
def expected(quick_onnx, photos):
    from roomclf.models.onnx_file import OnnxModel

    return OnnxModel(quick_onnx).predict_sources(photos[0])


def check(out: pd.DataFrame, expected) -> None:
    assert list(out.columns) == ["label", "confidence", "probabilities", "tags", "error"]
    assert list(out["label"]) == [e.label for e in expected]
    for (_, row), e in zip(out.iterrows(), expected):
        assert row["confidence"] == pytest.approx(e.confidence, abs=1e-5)
        assert row["probabilities"] == pytest.approx(e.probabilities, abs=1e-5)
        assert row["error"] is None


def test_registered_with_alias_tags_and_artifacts(store):
    import mlflow
    from mlflow import MlflowClient

    from roomclf.models.pyfunc import artifact_file

    _, info, files = store
    assert str(info.registered_model_version) == "1"
    mv = MlflowClient().get_model_version_by_alias("roomclf", "champion")
    assert str(mv.version) == "1" and mv.tags["val_accuracy"] == "0.9"
    local = mlflow.artifacts.download_artifacts("models:/roomclf@champion")
    assert artifact_file(local).read_bytes() == files["learner"].read_bytes()
    assert json.loads(artifact_file(local, "report").read_text()) == {"accuracy": 0.9}
    assert artifact_file(local, "onnx").suffix == ".onnx"
    # what a user sees in the registry: a signature, an input example that runs, a description
    from mlflow.models import Model

    meta = Model.load(local)
    assert meta.signature.inputs.input_names() == ["image"]
    assert {"label", "confidence", "error"} <= set(meta.signature.outputs.input_names())
    example = meta.load_input_example(local)
    assert mlflow.pyfunc.load_model(local).predict(example)["error"].iloc[0] is None
    assert "pyfunc" in MlflowClient().get_registered_model("roomclf").description


def test_predicts_bytes_and_base64(store, photos, expected):
    import mlflow

    model = mlflow.pyfunc.load_model("models:/roomclf@champion")
    _, data = photos
    check(model.predict(pd.DataFrame({"image": data})), expected)
    b64 = [base64.b64encode(d).decode() for d in data]
    check(model.predict(pd.DataFrame({"image": b64})), expected)
    data_urls = [f"data:image/jpeg;base64,{s}" for s in b64]
    check(model.predict(pd.DataFrame({"image": data_urls})), expected)


def test_bad_cells_get_errors_not_exceptions(store, photos, expected, corpus_root):
    import mlflow

    model = mlflow.pyfunc.load_model("models:/roomclf@champion")
    good = photos[1][0]
    cells = [good, (corpus_root / TRUNCATED).read_bytes(), "this is not base64!", b"", 42, good]
    out = model.predict(pd.DataFrame({"image": cells}))
    assert list(out["error"]) == [None, "truncated image", "not base64 text", "empty file",
                                  "expected bytes or a base64 string, got int", None]
    assert list(out["label"]) == [expected[0].label, None, None, None, None, expected[0].label]
    with pytest.raises(Exception, match=r"missing inputs \['image'\]"):    # the registered signature
        model.predict(pd.DataFrame({"a": [good], "b": [good]}))


def test_logs_into_the_active_run(store, quick_onnx):
    import mlflow

    from roomclf.tracking.experiments import use_experiment

    use_experiment("pyfunc-test")
    from roomclf.models.pyfunc import log_roomclf_pyfunc

    with mlflow.start_run() as run:
        info = log_roomclf_pyfunc(quick_onnx, registered_model_name=None)
        assert mlflow.active_run().info.run_id == run.info.run_id
    assert info.run_id == run.info.run_id and info.registered_model_version is None


def test_refuses_bad_artifacts(store, tmp_path, quick_onnx):
    from roomclf.models.pyfunc import PyfuncError, log_roomclf_pyfunc

    with pytest.raises(PyfuncError, match="not a roomclf ONNX model"):
        log_roomclf_pyfunc(tmp_path)
    with pytest.raises(PyfuncError, match="learner file not found"):
        log_roomclf_pyfunc(quick_onnx, learner_path=tmp_path / "missing.pkl")
    with pytest.raises(PyfuncError, match="reserved"):
        log_roomclf_pyfunc(quick_onnx, extra_artifacts={"onnx": quick_onnx})


@pytest.mark.slow
def test_mlflow_models_serve_classifies_photos(store, photos, expected, tmp_path):
    import httpx

    from serving.launch import ServerProcess

    env, _, _ = store
    env = {**env, "PATH": f"{Path(sys.executable).parent}:{env.get('PATH', '')}"}   # it execs `uvicorn`
    mlflow_cli = str(Path(sys.executable).parent / "mlflow")
    args = [mlflow_cli, "models", "serve", "-m", "models:/roomclf@champion", "--env-manager", "local",
            "--port", "{port}", "--host", "127.0.0.1"]
    with ServerProcess(args, env=env, log=tmp_path / "mlflow-serve.log", ready_path="/ping") as srv:
        srv.wait_ready(90)
        rows = [[base64.b64encode(d).decode()] for d in photos[1]] + [["not base64!"]]
        r = httpx.post(srv.url + "/invocations", json={"dataframe_split": {"columns": ["image"], "data": rows}},
                       timeout=60)
        assert r.status_code == 200, r.text
        preds = r.json()["predictions"]
        assert [p["label"] for p in preds] == [e.label for e in expected] + [None]
        assert preds[0]["probabilities"] == pytest.approx(expected[0].probabilities, abs=1e-5)
        assert preds[-1]["error"] == "not base64 text"
