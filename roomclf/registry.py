"""The MLflow model registry: registering models, finding and fetching them.

Names: ``roomclf`` (the fast.ai/PyTorch model) and ``roomclf-onnx`` (the
exported graph). The alias ``champion`` marks the version in service.
"""
from __future__ import annotations

import os
from pathlib import Path

from roomclf.settings import setup_mlflow

ONNX_NAME = "roomclf-onnx"
TORCH_NAME = "roomclf"
DEFAULT_ONNX_URI = f"models:/{ONNX_NAME}@champion"


class ModelNotFound(LookupError):
    pass


def register_onnx_file(onnx_path: str | os.PathLike, name: str = ONNX_NAME, tags: dict | None = None,
                       alias: str | None = None) -> str:
    """Log an exported ONNX file in the active run (one is started if none) and register it.

    Returns the new version number as a string.
    """
    setup_mlflow()
    import mlflow
    import onnx
    from mlflow import MlflowClient

    model = onnx.load(str(onnx_path))
    started = mlflow.active_run() is None
    if started:
        from roomclf.settings import use_experiment
        use_experiment("roomclf")
        mlflow.start_run(run_name=f"register-{name}")
    try:
        info = mlflow.onnx.log_model(model, name="onnx-model", registered_model_name=name,
                                     save_as_external_data=False)
    finally:
        if started:
            mlflow.end_run()
    version = str(info.registered_model_version)
    client = MlflowClient()
    for k, v in (tags or {}).items():
        client.set_model_version_tag(name, version, k, str(v))
    if alias:
        client.set_registered_model_alias(name, alias, version)
    return version


def fetch_model(uri: str = DEFAULT_ONNX_URI, dst: str | os.PathLike | None = None) -> Path:
    """A local folder holding the model's files: a ``models:/`` URI is downloaded, a path is used as is."""
    if "://" not in uri and Path(uri).exists():
        return Path(uri)
    setup_mlflow()
    import mlflow

    try:
        return Path(mlflow.artifacts.download_artifacts(uri, dst_path=str(dst) if dst else None))
    except Exception as exc:  # MLflow raises several kinds for a missing model or alias
        raise ModelNotFound(f"no model at {uri} ({str(exc).splitlines()[0][:200]})") from None


def model_version_info(uri: str) -> dict:
    """{'name', 'version', 'tags', 'aliases'} for a ``models:/name@alias`` or ``models:/name/N`` URI."""
    setup_mlflow()
    from mlflow import MlflowClient

    client = MlflowClient()
    ref = uri.removeprefix("models:/")
    try:
        if "@" in ref:
            name, alias = ref.split("@", 1)
            mv = client.get_model_version_by_alias(name, alias)
        else:
            name, version = ref.split("/", 1)
            mv = client.get_model_version(name, version)
    except Exception as exc:
        raise ModelNotFound(f"no model version at {uri} ({str(exc).splitlines()[0][:200]})") from None
    return {"name": mv.name, "version": str(mv.version), "tags": dict(mv.tags), "aliases": list(mv.aliases),
            "run_id": mv.run_id}
