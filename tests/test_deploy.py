"""Deploying registered versions: the `roomclf` pyfunc carries its code and public requirements (MLflow
builds its environment, no `--env-manager local`), the ONNX flavour declares the execution providers
roomclf chose, and every download from the registry is checked against the SHA-256 recorded at
registration. A temporary SQLite store; real photos; real `mlflow models serve` / `predict` processes."""
from __future__ import annotations

import base64
import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import isolated_store, pick_photos

MLFLOW_CLI = str(Path(sys.executable).parent / "mlflow")


@pytest.fixture(scope="module")
def deployed(tmp_path_factory, quick_onnx):
    """roomclf and roomclf-onnx v1 @champion, registered from quick_onnx. Yields the process env."""
    from roomclf.models.pyfunc import log_roomclf_pyfunc
    from roomclf.models.registry import register_onnx_file
    from roomclf.settings import setup_mlflow

    home = tmp_path_factory.mktemp("deploy_home")
    with isolated_store(home) as env:
        setup_mlflow()
        register_onnx_file(quick_onnx, alias="champion")
        log_roomclf_pyfunc(quick_onnx, alias="champion")
        yield {**os.environ, **env}


@pytest.fixture(scope="module")
def photos(corpus_root, ground_truth, quick_onnx):
    """(paths, bytes, roomclf's own predictions) for a few photos of batch_03."""
    from roomclf.models.onnx_file import OnnxModel

    paths = [corpus_root / p for p, _ in pick_photos(ground_truth, "batch_03", 4)]
    return paths, [p.read_bytes() for p in paths], OnnxModel(quick_onnx).predict_sources(paths)


def _download(uri: str, dst: Path) -> Path:
    import mlflow

    return Path(mlflow.artifacts.download_artifacts(uri, dst_path=str(dst)))


# --------------------------------------------------------------------------- self-contained pyfunc

def test_pyfunc_carries_its_code_and_public_requirements(deployed, tmp_path):
    from mlflow.models import Model

    from roomclf.models.pyfunc import PYFUNC_CODE

    local = _download("models:/roomclf@champion", tmp_path)
    code = local / "code" / "roomclf"
    shipped = {str(p.relative_to(code)) for p in code.rglob("*") if p.is_file() and "__pycache__" not in p.parts}
    assert shipped == set(PYFUNC_CODE)
    assert Model.load(str(local)).flavors["python_function"]["code"] == "code"
    reqs = [r.strip() for r in (local / "requirements.txt").read_text().splitlines() if r.strip()]
    names = {r.split("==")[0].lower() for r in reqs}
    assert {"mlflow", "onnxruntime", "numpy", "pandas", "pillow", "pyyaml"} <= names
    assert not names & {"roomclf", "torch", "torchvision", "fastai", "timm"}
    assert all("==" in r for r in reqs)                      # pinned, so the environment is reproducible
    import yaml

    env = yaml.safe_load((local / "python_env.yaml").read_text())
    assert env["python"] == platform.python_version()
    assert any(d.startswith("pip") for d in env["build_dependencies"])
    assert env["dependencies"] == ["-r requirements.txt"]


LOAD_ALONE = r"""
import json, sys
import mlflow.pyfunc, pandas as pd
model = mlflow.pyfunc.load_model(sys.argv[1])          # before anything imports roomclf
import roomclf
out = model.predict(pd.DataFrame({"image": [open(p, "rb").read() for p in sys.argv[2:]]}))
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "torchvision", "fastai", "timm"))
print(json.dumps({"roomclf": roomclf.__file__, "labels": list(out["label"]), "heavy": heavy,
                  "modules": sorted(m for m in sys.modules if m.startswith("roomclf"))}))
"""


def test_pyfunc_runs_from_its_own_code_without_torch(deployed, photos, tmp_path):
    """A fresh process loads the downloaded model first: roomclf comes from the model's code/, and
    nothing on the way imports torch or fast.ai."""
    from roomclf.models.pyfunc import PYFUNC_CODE

    local = _download("models:/roomclf@champion", tmp_path / "m")
    paths, _, expected = photos
    r = subprocess.run([sys.executable, "-c", LOAD_ALONE, str(local), *map(str, paths)], env=deployed,
                       capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    got = json.loads(r.stdout.strip().splitlines()[-1])
    assert Path(got["roomclf"]).resolve() == (local / "code" / "roomclf" / "__init__.py").resolve()
    assert got["heavy"] == []
    assert got["labels"] == [e.label for e in expected]
    shipped = {"roomclf." + p.removesuffix(".py").replace("/", ".").removesuffix(".__init__")
               for p in PYFUNC_CODE if p.endswith(".py")} | {"roomclf"}
    assert set(got["modules"]) <= shipped


def test_a_version_registered_before_the_code_was_carried_still_loads(deployed, photos, quick_onnx):
    """The compatibility path: the old form (class by import path, roomclf pinned, no code/, no digest
    tag) loads where roomclf is installed, and roomclf's own download takes it unchecked."""
    import mlflow

    from roomclf.models.pyfunc import IMAGE_COLUMN, ONNX_ARTIFACT, RoomclfPyfunc
    from roomclf.models.registry import local_onnx, serving_requirements

    with mlflow.start_run():
        info = mlflow.pyfunc.log_model(name="legacy", python_model=RoomclfPyfunc(),
                                       artifacts={ONNX_ARTIFACT: str(quick_onnx)},
                                       pip_requirements=[*serving_requirements(), "roomclf==0.1.0"],
                                       registered_model_name="roomclf-legacy")
    uri = f"models:/roomclf-legacy/{info.registered_model_version}"
    _, data, expected = photos
    out = mlflow.pyfunc.load_model(uri).predict(pd.DataFrame({IMAGE_COLUMN: data}))
    assert list(out["label"]) == [e.label for e in expected]
    assert local_onnx(uri).read_bytes() == Path(quick_onnx).read_bytes()


# --------------------------------------------------------------------------- execution providers

def test_execution_providers_cuda_only_with_onnxruntime_gpu_and_a_gpu(monkeypatch):
    import onnxruntime as ort

    from roomclf.models import onnx_file

    def choose(available, gpu):
        monkeypatch.setattr(ort, "get_available_providers", lambda: list(available))
        monkeypatch.setattr(onnx_file, "gpu_present", lambda: gpu)
        onnx_file._providers.cache_clear()
        return onnx_file.execution_providers()

    try:
        both = ["CUDAExecutionProvider", "CPUExecutionProvider"]
        assert choose(both, True) == both
        assert choose(both, False) == ["CPUExecutionProvider"]                # onnxruntime-gpu, no GPU
        assert choose(["CPUExecutionProvider"], True) == ["CPUExecutionProvider"]   # GPU, CPU-only build
    finally:
        onnx_file._providers.cache_clear()
    monkeypatch.undo()                                           # the real gpu_present again
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert onnx_file.gpu_present() is False


def test_sessions_and_the_onnx_flavour_use_the_chosen_providers(deployed, quick_onnx, tmp_path, caplog):
    import logging

    import mlflow
    from mlflow.models import Model

    from roomclf.models.onnx_file import OnnxModel, execution_providers

    chosen = execution_providers()
    assert OnnxModel(quick_onnx).provider == chosen[0]
    local = _download("models:/roomclf-onnx@champion", tmp_path)
    assert Model.load(str(local)).flavors["onnx"]["providers"] == chosen
    with caplog.at_level(logging.WARNING):
        model = mlflow.pyfunc.load_model(str(local))
    assert not [r for r in caplog.records if "execution providers" in r.getMessage()]
    size = OnnxModel(quick_onnx).input_size
    out = model.predict(np.full((1, 3, size, size), 0.5, np.float32))
    assert out["probs"].shape == (1, 7)


# --------------------------------------------------------------------------- the ONNX file's digest

def _stored_onnx(name: str, version: str) -> Path:
    """The registered version's .onnx file in the (local) artifact store itself."""
    from mlflow import MlflowClient

    from roomclf.models.onnx_file import find_onnx

    return find_onnx(MlflowClient().get_model_version_download_uri(name, version).removeprefix("file://"))


@pytest.mark.parametrize("name", ["roomclf-onnx", "roomclf"])
def test_registration_records_the_onnx_sha256_and_downloads_are_checked(deployed, quick_onnx, tmp_path, name):
    from mlflow import MlflowClient

    from roomclf.models.registry import ModelDigestMismatch, local_onnx, model_cache, resolve
    from roomclf.sample.download import sha256

    from roomclf.models.registry import register_onnx_file
    from roomclf.models.pyfunc import log_roomclf_pyfunc

    # a version of its own: this test damages its files
    version = (register_onnx_file(quick_onnx) if name == "roomclf-onnx"
               else str(log_roomclf_pyfunc(quick_onnx).registered_model_version))
    tags = MlflowClient().get_model_version(name, version).tags
    stored = _stored_onnx(name, version)
    assert tags["onnx_sha256"] == sha256(stored)
    ref = resolve(f"models:/{name}/{version}")
    assert sha256(local_onnx(ref, tmp_path / "ok")) == tags["onnx_sha256"]

    data = bytearray(stored.read_bytes())                    # the artifact store's copy goes bad
    data[len(data) // 2] ^= 0xFF
    stored.write_bytes(bytes(data))
    for dst in (tmp_path / "bad", None):                     # into a folder, and into the host's cache
        with pytest.raises(ModelDigestMismatch) as err:
            local_onnx(ref, dst)
        message = str(err.value)
        assert "\n" not in message and f"{name} v{version}" in message and "SHA-256" in message
    assert not model_cache(ref).exists()                     # nothing half-trusted is kept


# --------------------------------------------------------------------------- real processes, MLflow's env

@pytest.fixture(scope="module")
def mlflow_env(deployed, tmp_path_factory):
    """The environment for MLflow's `virtualenv` env manager, built once (both registered forms carry the
    same requirements, so serve and predict share it); skips when pyenv or the package index is missing."""
    from importlib.metadata import version

    env = dict(deployed)
    if not shutil.which("pyenv", path=env.get("PATH")):
        pyenv = Path(env.get("PYENV_ROOT") or Path.home() / ".pyenv") / "bin"
        if not (pyenv / "pyenv").exists():
            pytest.skip("pyenv not found: MLflow's virtualenv env manager needs it to provide Python")
        env["PATH"] = f"{pyenv}:{env['PATH']}"
    wanted = platform.python_version()
    have = subprocess.run(["pyenv", "versions", "--bare"], env=env, capture_output=True, text=True).stdout.split()
    if wanted not in have:
        pytest.skip(f"pyenv has no Python {wanted} (installing it needs the network and minutes)")
    pip = subprocess.run([sys.executable, "-m", "pip", "index", "versions", "mlflow"], env=env,
                         capture_output=True, text=True, timeout=120)
    if version("mlflow") not in pip.stdout:
        pytest.skip(f"mlflow=={version('mlflow')} not on the package index pip is configured with "
                    f"({(pip.stderr or pip.stdout).strip()[-200:]})")
    env["MLFLOW_ENV_ROOT"] = str(tmp_path_factory.mktemp("mlflow_envs"))
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
    return env


def _serve(env: dict, uri: str, log: Path):
    from serving.launch import ServerProcess

    return ServerProcess([MLFLOW_CLI, "models", "serve", "-m", uri, "--env-manager", "virtualenv",
                          "--host", "127.0.0.1", "--port", "{port}"], env=env, log=log, ready_path="/ping")


@pytest.mark.slow
def test_mlflow_serves_the_pyfunc_in_its_own_environment(mlflow_env, photos, tmp_path):
    import httpx

    _, data, expected = photos
    with _serve(mlflow_env, "models:/roomclf@champion", tmp_path / "serve.log") as srv:
        srv.wait_ready(900)
        rows = [[base64.b64encode(d).decode()] for d in data]
        r = httpx.post(srv.url + "/invocations", json={"dataframe_split": {"columns": ["image"], "data": rows}},
                       timeout=120)
        assert r.status_code == 200, r.text
        preds = r.json()["predictions"]
    assert [p["label"] for p in preds] == [e.label for e in expected]
    assert preds[0]["probabilities"] == pytest.approx(expected[0].probabilities, abs=1e-5)
    log = (tmp_path / "serve.log").read_text(errors="replace")
    assert "Creating a new environment" in log or "already exists" in log      # MLflow's env, not ours


@pytest.mark.slow
def test_mlflow_serves_the_onnx_flavour_in_its_own_environment(mlflow_env, photos, quick_onnx, tmp_path):
    import httpx

    from roomclf.models.onnx_file import OnnxModel
    from roomclf.photos import model_input

    paths, _, expected = photos
    model = OnnxModel(quick_onnx)
    batch = np.stack([model_input(p, model.input_size) for p in paths])
    with _serve(mlflow_env, "models:/roomclf-onnx@champion", tmp_path / "serve.log") as srv:
        srv.wait_ready(900)
        r = httpx.post(srv.url + "/invocations", json={"inputs": batch.tolist()}, timeout=120)
        assert r.status_code == 200, r.text
        probs = np.array(r.json()["predictions"]["probs"])
    assert [model.classes[i] for i in probs.argmax(1)] == [e.label for e in expected]
    np.testing.assert_allclose(probs.max(1), [e.confidence for e in expected], atol=1e-5)


def _reachable(host: str, port: int = 443) -> bool:
    import socket

    try:
        socket.create_connection((host, port), timeout=10).close()
        return True
    except OSError:
        return False


@pytest.mark.slow
def test_mlflow_models_predict_in_its_own_environment(mlflow_env, photos, tmp_path):
    if not _reachable("www.python.org"):
        pytest.skip("`mlflow models predict --env-manager virtualenv` installs Python with pyenv into a fresh root "
                    "on every call (MLflow 3.17 ignores MLFLOW_ENV_ROOT there), downloading it from "
                    "www.python.org, which is unreachable here")
    _, data, expected = photos
    frame = {"dataframe_split": {"columns": ["image"], "data": [[base64.b64encode(d).decode()] for d in data]}}
    (tmp_path / "in.json").write_text(json.dumps(frame))
    r = subprocess.run([MLFLOW_CLI, "models", "predict", "-m", "models:/roomclf@champion", "-i",
                        str(tmp_path / "in.json"), "-t", "json", "-o", str(tmp_path / "out.json"),
                        "--env-manager", "virtualenv"], env=mlflow_env, capture_output=True, text=True,
                       timeout=900, cwd=tmp_path)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    out = json.loads((tmp_path / "out.json").read_text())
    preds = out["predictions"] if isinstance(out, dict) else out
    assert [p["label"] for p in preds] == [e.label for e in expected]
