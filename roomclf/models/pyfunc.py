"""The registered ``roomclf`` model: an MLflow pyfunc that classifies photos.

Input: a DataFrame with a column ``image`` holding each photo as bytes or as a
base64 string (a ``data:image/...;base64,`` prefix is allowed), so both
``mlflow.pyfunc.load_model(...).predict(df)`` and ``mlflow models serve``'s
``/invocations`` (JSON carries base64 strings) work:

    curl -H 'Content-Type: application/json' http://127.0.0.1:5000/invocations \\
         -d '{"dataframe_split": {"columns": ["image"], "data": [["<base64 of a jpeg>"]]}}'

Output: a DataFrame, one row per photo: ``label``, ``confidence``,
``probabilities`` (class -> p), ``tags`` (attribute -> p, trained attributes of
the predicted class above their threshold) and ``error`` (the loader's reason
for a photo that cannot be read; ``None`` otherwise; a bad photo never fails
the call). Preprocessing and decoding are ``roomclf.photos`` and
``roomclf.models.onnx_file``: the same numbers as infer-all and ``roomclf serve``.

The model's artifacts: ``onnx`` (the exported network, with its metadata),
optionally ``learner`` (the fast.ai learner, to continue fine-tuning) and any
extra ones. The model carries the code it runs: ``code/roomclf`` holds the few
roomclf modules this one imports (``PYFUNC_CODE``: no torch, no fast.ai), and its
requirements are public packages only (``registry.SERVING_REQUIREMENTS``, no roomclf pin),
so MLflow builds its environment anywhere: ``mlflow models serve -m
models:/roomclf@champion`` (default ``--env-manager virtualenv``).

Versions registered before the code was carried pin ``roomclf==0.1.0`` and name
this class by import path: they still load where roomclf is installed
(roomclf's own commands, ``mlflow.pyfunc.load_model``, ``--env-manager local``),
not in an environment MLflow builds.
"""
from __future__ import annotations

import base64
import binascii
import os
from pathlib import Path

import mlflow.pyfunc

from roomclf.errors import RoomclfError

IMAGE_COLUMN = "image"
ONNX_ARTIFACT = "onnx"
LEARNER_ARTIFACT = "learner"
MODEL_NAME_IN_RUN = "pyfunc-model"
OUTPUT_COLUMNS = ("label", "confidence", "probabilities", "tags", "error")
# What loading and running this pyfunc imports from roomclf (paths in the package): shipped as code/roomclf.
PYFUNC_CODE = ("__init__.py", "errors.py", "photos.py", "storage.py", "taxonomy.py", "taxonomy.yaml",
               "settings.py", "parallel.py", "models/__init__.py", "models/onnx_file.py", "models/pyfunc.py")


class PyfuncError(RoomclfError):
    pass


def image_bytes(value) -> bytes:
    """A cell of the ``image`` column -> the photo's bytes; ``PyfuncError`` if it is neither bytes nor base64."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("data:") and "," in text:
            text = text.split(",", 1)[1]
        try:
            return base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise PyfuncError("not base64 text") from None
    raise PyfuncError(f"expected bytes or a base64 string, got {type(value).__name__}")


def image_column(model_input) -> list:
    """The photos of a pyfunc input: a DataFrame (column ``image``, or its only column),
    a dict with key ``image``, or a plain list."""
    import pandas as pd

    if isinstance(model_input, pd.DataFrame):
        if IMAGE_COLUMN in model_input.columns:
            return list(model_input[IMAGE_COLUMN])
        if len(model_input.columns) == 1:
            return list(model_input.iloc[:, 0])
        raise PyfuncError(f"input needs a column '{IMAGE_COLUMN}' (got {list(model_input.columns)})")
    if isinstance(model_input, dict):
        if IMAGE_COLUMN not in model_input:
            raise PyfuncError(f"input needs the key '{IMAGE_COLUMN}'")
        value = model_input[IMAGE_COLUMN]
        return list(value) if isinstance(value, (list, tuple)) else [value]
    if isinstance(model_input, pd.Series):
        return list(model_input)
    if isinstance(model_input, (list, tuple)):
        return list(model_input)
    raise PyfuncError(f"unsupported input type {type(model_input).__name__}")


def predict_frame(model, values: list):
    """OnnxModel + cells -> the output DataFrame (one row per cell, errors in ``error``)."""
    import pandas as pd

    from roomclf.models.onnx_file import Prediction

    sources, errors = [], {}
    for i, value in enumerate(values):
        try:
            sources.append(image_bytes(value))
        except PyfuncError as exc:
            errors[i] = exc
            sources.append(b"")
    preds = model.predict_sources(sources)
    rows = [Prediction(None, None, error=str(errors[i])).as_dict() if i in errors else p.as_dict()
            for i, p in enumerate(preds)]
    # object columns keep None (JSON null) for a bad photo instead of NaN
    return pd.DataFrame({c: pd.Series([r[c] for r in rows], dtype=object) for c in OUTPUT_COLUMNS})


class RoomclfPyfunc(mlflow.pyfunc.PythonModel):
    """Photos in, room class and attribute tags out (see the module docstring)."""

    def load_context(self, context):
        from roomclf.models.onnx_file import OnnxModel
        from roomclf.settings import cpus

        threads = int(os.environ.get("ROOMCLF_PYFUNC_THREADS", "0")) or min(4, cpus())
        self.model = OnnxModel(context.artifacts[ONNX_ARTIFACT], threads=threads)

    def predict(self, context, model_input, params=None):
        return predict_frame(self.model, image_column(model_input))

    def __getstate__(self):
        """The session is rebuilt by ``load_context``: MLflow pickles this object after
        running it once to infer the signature."""
        return {k: v for k, v in self.__dict__.items() if k != "model"}


def _code_package(dst: Path) -> Path:
    """A copy of the modules in ``PYFUNC_CODE`` as a package folder ``dst/roomclf`` (for ``code_paths``)."""
    import shutil

    import roomclf

    src, pkg = Path(roomclf.__file__).parent, dst / "roomclf"
    for rel in PYFUNC_CODE:
        (pkg / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src / rel, pkg / rel)
    return pkg


def _check_artifacts(onnx_path, learner_path, extra_artifacts) -> tuple[dict[str, str], dict]:
    from roomclf.models.onnx_file import OnnxModel, find_onnx

    try:
        onnx_file = find_onnx(onnx_path)
        meta = OnnxModel(onnx_file).meta   # fails now, not at serving time, for a non-roomclf file
    except (FileNotFoundError, ValueError) as exc:
        raise PyfuncError(f"not a roomclf ONNX model: {exc}") from None
    artifacts = {ONNX_ARTIFACT: str(onnx_file)}
    if learner_path is not None:
        if not Path(learner_path).is_file():
            raise PyfuncError(f"learner file not found: {learner_path}")
        artifacts[LEARNER_ARTIFACT] = str(learner_path)
    for key, path in (extra_artifacts or {}).items():
        if key in artifacts:
            raise PyfuncError(f"artifact name '{key}' is reserved")
        if not Path(path).exists():
            raise PyfuncError(f"artifact '{key}' not found: {path}")
        artifacts[key] = str(path)
    return artifacts, meta


def log_roomclf_pyfunc(onnx_path: str | os.PathLike, registered_model_name: str | None = "roomclf",
                       learner_path: str | os.PathLike | None = None, extra_artifacts: dict | None = None,
                       tags: dict | None = None, alias: str | None = None, description: str | None = None,
                       example_photo: bytes | None = None):
    """Log the photo-classifying pyfunc in the active MLflow run (one is started, and
    ended, in experiment ``roomclf`` if none is active) and register it.

    ``onnx_path``: the exported ``.onnx`` (or a folder holding one); checked to be
    a roomclf model. ``learner_path``: the fast.ai learner (``learner.pkl``),
    stored as artifact ``learner`` so fine-tuning can continue from the registered
    version (``mlflow.artifacts.download_artifacts(uri)`` -> ``artifacts/``).
    ``extra_artifacts``: more {name: path}. ``registered_model_name``: ``None``
    logs without registering. ``tags`` (plus the ONNX file's SHA-256, tag ``onnx_sha256``)
    and ``description`` go on the model version,
    ``alias`` (e.g. ``champion``) is moved to it. ``example_photo`` (JPEG bytes)
    becomes the input example, from which MLflow infers the signature (default: a
    small grey JPEG). Returns MLflow's ``ModelInfo``
    (``.model_uri``, ``.registered_model_version``).
    """
    from roomclf.settings import setup_mlflow
    from roomclf.tracking.experiments import use_experiment

    artifacts, meta = _check_artifacts(onnx_path, learner_path, extra_artifacts)
    setup_mlflow()
    import tempfile

    import mlflow
    import pandas as pd

    from roomclf.models.registry import ONNX_DIGEST_TAG, finish_version, serving_requirements, set_aliases
    from roomclf.sample.download import sha256

    started = mlflow.active_run() is None
    if started:
        use_experiment("roomclf")
        mlflow.start_run(run_name=f"register-{registered_model_name or 'pyfunc'}")
    try:
        with tempfile.TemporaryDirectory(prefix="roomclf-pyfunc-code-") as code:
            info = mlflow.pyfunc.log_model(
                name=MODEL_NAME_IN_RUN, python_model=RoomclfPyfunc(), artifacts=artifacts,
                code_paths=[str(_code_package(Path(code)))], registered_model_name=registered_model_name,
                pip_requirements=serving_requirements(),
                input_example=pd.DataFrame({IMAGE_COLUMN: [base64.b64encode(example_photo or _grey_jpeg()).decode()]}),
                metadata={"roomclf": {k: meta.get(k) for k in ("backbone", "input_size", "classes")},
                          "input": f"DataFrame column '{IMAGE_COLUMN}': photo bytes or base64 strings"})
    finally:
        if started:
            mlflow.end_run()
    if registered_model_name:
        version = str(info.registered_model_version)
        tags = {**(tags or {}), ONNX_DIGEST_TAG: sha256(artifacts[ONNX_ARTIFACT])}
        finish_version(registered_model_name, version, tags, description)
        if alias:
            set_aliases({registered_model_name: version}, alias)
    return info


def _grey_jpeg(size: int = 64) -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (size, size), (128, 128, 128)).save(buf, format="JPEG")
    return buf.getvalue()


def artifact_file(model_dir: str | os.PathLike, name: str = LEARNER_ARTIFACT) -> Path | None:
    """A named artifact (default: the learner) inside a downloaded pyfunc model folder, or None."""
    from mlflow.models import Model

    conf = Model.load(str(model_dir)).flavors.get("python_function", {}).get("artifacts", {})
    rel = (conf.get(name) or {}).get("path")
    return Path(model_dir) / rel if rel else None
