"""The MLflow model registry: registering models, finding and fetching them.

Names: ``roomclf`` (the fast.ai/PyTorch model) and ``roomclf-onnx`` (the
exported graph). The alias ``champion`` marks the version in service.

Every version registered here carries the SHA-256 of its ONNX file (version tag
``onnx_sha256``); each download from the registry is checked against it
(``ModelDigestMismatch``). Versions registered before the tag existed are not checked.
"""
from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from roomclf.errors import RoomclfError
from roomclf.settings import setup_mlflow

ONNX_NAME = "roomclf-onnx"
TORCH_NAME = "roomclf"
INT8_NAME = f"{ONNX_NAME}-int8"
FORMS = (TORCH_NAME, ONNX_NAME, INT8_NAME)   # the registered forms of one trained model
CHAMPION, CHALLENGER = "champion", "challenger"
ONNX_DIGEST_TAG = "onnx_sha256"   # model-version tag: the hex SHA-256 of the version's .onnx file
# What the registered pyfunc's shipped modules (pyfunc.PYFUNC_CODE) need, all on the public index (pinned
# to the versions installed here), plus onnx for the ONNX flavour: both forms of a model are registered
# with this one list, so a host that serves both builds one environment.
SERVING_REQUIREMENTS = ("mlflow", "onnx", "onnxruntime", "numpy", "pandas", "pillow", "pyyaml", "tqdm")
DEFAULT_ONNX_URI = f"models:/{ONNX_NAME}@{CHAMPION}"
DATA_LISTS = {"train": "data/train.csv", "valid": "data/valid.csv"}   # a training run's photo lists
TRAIN_LIST = DATA_LISTS["train"]  # (path,label,source; roomclf/train/run.py), or an ensemble's training
                                  # list: the union of its members' (path,member)

# What each registered model is, shown on its page in the MLflow UI.
MODEL_DESCRIPTIONS = {
    TORCH_NAME: ("roomclf's room classifier as an MLflow pyfunc: photos in (DataFrame column `image`, "
                 "JPEG/PNG bytes or base64), one row per photo out (label, confidence, probabilities, "
                 "attribute tags, error). Carries the fast.ai learner (artifact `learner`) to fine-tune "
                 "further. The same run's ONNX graph is `roomclf-onnx`; the alias `champion` moves on both."),
    ONNX_NAME: ("roomclf's room classifier as an ONNX graph, what infer-all and `roomclf serve` run: input "
                "`image` float32 N×3×H×W RGB in [0, 1] (normalisation baked in), outputs `probs` (softmax "
                "over the classes), `attributes` (sigmoid per attribute) and `embedding`. Classes, input "
                "size and attribute thresholds are in the graph's metadata."),
    INT8_NAME: "The static-int8 (QDQ) twin of `roomclf-onnx`, calibrated on training photos: faster on CPUs.",
}


class ModelNotFound(RoomclfError, LookupError):
    """No model at a registry URI or path."""


class ModelDigestMismatch(RoomclfError):
    """A registry version's ONNX file, as downloaded, is not the file that was registered."""


class RegistryUnavailable(RoomclfError):
    """The tracking server did not answer (stopped, unreachable)."""


def unreachable(exc: Exception, doing: str, moves_aliases: bool = False) -> RegistryUnavailable:
    """One line for a tracking-server failure while ``doing`` something (``moves_aliases``: something
    that would have moved an alias, which it then did not)."""
    from roomclf.settings import tracking_uri

    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
    moved = "nothing was made champion, " if moves_aliases else ""
    return RegistryUnavailable(f"{doing} failed: the MLflow tracking store at {tracking_uri()} did not answer "
                               f"({first}); {moved}run the same command again when it is back")


def is_unreachable(exc: BaseException) -> bool:
    """Whether an exception means the tracking server did not answer (not a bad request), also when MLflow
    wrapped that failure in another error (``set_logged_model_tags`` reports "Failed to get logged model")."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if _did_not_answer(exc):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _did_not_answer(exc: BaseException) -> bool:
    if isinstance(exc, ConnectionError) or type(exc).__name__ in ("ConnectionError", "ConnectTimeout", "ReadTimeout"):
        return True
    text = str(exc)
    return type(exc).__name__ == "MlflowException" and "failed with exception" in text and any(
        k in text for k in ("Max retries exceeded", "Connection refused", "Connection aborted", "Connection broken",
                            "timed out"))


def finish_version(name: str, version: str, tags: dict | None = None, description: str | None = None) -> None:
    """What every registered version carries: its tags and description, and the model's description."""
    from mlflow import MlflowClient

    client = MlflowClient()
    for k, v in (tags or {}).items():
        client.set_model_version_tag(name, version, k, str(v))
    if description:
        client.update_model_version(name, version, description=description)
    if name in MODEL_DESCRIPTIONS:
        client.update_registered_model(name, description=MODEL_DESCRIPTIONS[name])


def log_version_metrics(versions: dict[str, str], metrics: dict[str, float]) -> None:
    """Log ``metrics`` against the logged model (MLflow 3 ``model_id``) behind each registered version
    ({name: version}), in that model's run: the MLflow UI's model views then show accuracy and cost
    beside each other for every version."""
    import mlflow
    from mlflow import MlflowClient

    client = MlflowClient()
    for name, version in versions.items():
        mv = client.get_model_version(name, str(version))
        model_id = logged_model_id(mv)
        if model_id:
            mlflow.log_metrics({k: float(v) for k, v in metrics.items() if v is not None}, run_id=mv.run_id,
                               model_id=model_id)


def logged_model_id(model_version) -> str | None:
    """The MLflow 3 logged model behind a registered version (a SQLite store leaves ``model_id`` empty and
    names it only in the version's source, ``models:/<model id>``)."""
    source = model_version.source or ""
    return model_version.model_id or (source.removeprefix("models:/") if source.startswith("models:/m-") else None)


def serving_requirements() -> list[str]:
    """``SERVING_REQUIREMENTS`` pinned to the installed versions: what MLflow installs in the environment
    it builds for a registered model. onnxruntime-gpu stands in for onnxruntime where that is installed."""
    from importlib.metadata import PackageNotFoundError, version

    reqs = []
    for pkg in SERVING_REQUIREMENTS:
        for dist in ((pkg, f"{pkg}-gpu") if pkg == "onnxruntime" else (pkg,)):
            try:
                reqs.append(f"{dist}=={version(dist)}")
                break
            except PackageNotFoundError:
                continue
        else:
            reqs.append(pkg)
    return reqs


def onnx_signature(onnx_path: str | os.PathLike, example):
    """The ONNX graph's MLflow signature, from what it returns on ``example`` (N×3×H×W float32)."""
    from mlflow.models import infer_signature

    from roomclf.models.onnx_file import OnnxModel

    out = OnnxModel(onnx_path).run(example)
    return infer_signature(example, {k: v for k, v in out.items()})


MS_PER_PHOTO_TAG, TIMED_ON_TAG = "model_ms_per_photo", "model_ms_timed_on"


def model_cost_tags(onnx_path: str | os.PathLike) -> dict[str, str]:
    """What a version records of its cost: model time per photo on the fixed probe, and where it was
    measured (``roomclf.models.timing``), so `roomclf models` and the MLflow UI show it beside accuracy."""
    from roomclf.models.timing import machine, ms_per_photo

    return {MS_PER_PHOTO_TAG: f"{ms_per_photo(onnx_path):.2f}", TIMED_ON_TAG: machine()}


def register_onnx_file(onnx_path: str | os.PathLike, name: str = ONNX_NAME, tags: dict | None = None,
                       alias: str | None = None, description: str | None = None, input_example=None) -> str:
    """Log an exported ONNX file in the active run (one is started if none) and register it,
    with a signature and an input example (``input_example``: N×3×H×W float32; default: a
    mid-grey image), and its model time per photo on the fixed probe with the machine it was timed
    on (``model_cost_tags``, unless ``tags`` already carry them). Returns the new version number.
    """
    setup_mlflow()
    import hashlib

    import mlflow
    import numpy as np
    import onnx

    from roomclf.models.attribute_scores import version_tags
    from roomclf.models.onnx_file import OnnxModel, execution_providers, read_meta

    if input_example is None:
        size = OnnxModel(onnx_path).input_size
        input_example = np.full((1, 3, size, size), 0.5, np.float32)
    signature = onnx_signature(onnx_path, input_example)
    model = onnx.load(str(onnx_path))
    digest = hashlib.sha256(model.SerializeToString()).hexdigest()   # the bytes MLflow stores as model.onnx
    started = mlflow.active_run() is None
    if started:
        from roomclf.tracking.experiments import use_experiment
        use_experiment("roomclf")
        mlflow.start_run(run_name=f"register-{name}")
    try:
        info = mlflow.onnx.log_model(model, name="onnx-model", registered_model_name=name,
                                     save_as_external_data=False, signature=signature,
                                     input_example=input_example, onnx_execution_providers=execution_providers(),
                                     pip_requirements=serving_requirements())
    finally:
        if started:
            mlflow.end_run()
    version = str(info.registered_model_version)
    tags = {**version_tags(read_meta(model)), **(tags or {})}     # what the file carries of its attribute tags
    if MS_PER_PHOTO_TAG not in tags:
        tags.update(model_cost_tags(onnx_path))
    finish_version(name, version, {**tags, ONNX_DIGEST_TAG: digest}, description)
    if alias:
        set_aliases({name: version}, alias)
    return version


def set_aliases(versions: dict[str, str], alias: str) -> None:
    """Point ``alias`` at each {name: version}, after checking that every version's files are
    in the artifact store (an alias never points at a half-registered version)."""
    from mlflow import MlflowClient

    client = MlflowClient()
    for name, version in versions.items():
        source = client.get_model_version_download_uri(name, version)
        try:
            import mlflow

            listed = mlflow.artifacts.list_artifacts(artifact_uri=source)
        except Exception as exc:
            raise unreachable(exc, f"checking {name} v{version}", moves_aliases=True) from None
        if not any(f.path.endswith("MLmodel") for f in listed):
            raise ModelNotFound(f"{name} v{version} has no model files at {source}: not moving @{alias}")
    for name, version in versions.items():
        client.set_registered_model_alias(name, alias, str(version))


def drop_alias(alias: str, names) -> list[str]:
    """Take ``alias`` off the registered models ``names`` (those that have it); returns which lost it."""
    from mlflow import MlflowClient

    client = MlflowClient()
    dropped = []
    for name in names:
        try:
            aliases = client.get_registered_model(name).aliases or {}
        except Exception as exc:
            if is_unreachable(exc):
                raise unreachable(exc, f"moving @{alias}", moves_aliases=True) from None
            continue                     # no such registered model: nothing to drop
        if alias in aliases:
            client.delete_registered_model_alias(name, alias)
            dropped.append(name)
    return dropped


def versions_of_run(run_id: str, names=FORMS) -> dict[str, str]:
    """{registered name: version} of every form one training run registered."""
    from mlflow import MlflowClient

    client = MlflowClient()
    found = {}
    for name in names:
        try:
            versions = client.search_model_versions(f"name='{name}' and run_id='{run_id}'")
        except Exception:   # no such registered model
            continue
        if versions:
            found[name] = str(max(int(v.version) for v in versions))
    return found


def training_photos(version: str, name: str = ONNX_NAME) -> tuple[set[str], list[str]]:
    """(photos, batches) a registered version was trained on: the run's ``data/train.csv``
    when it has one, and the version's ``train_batches`` tag."""
    import csv
    import tempfile

    import mlflow
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    setup_mlflow()
    mv = MlflowClient().get_model_version(name, version)
    batches = [b for b in (mv.tags or {}).get("train_batches", "").split(",") if b]
    photos: set[str] = set()
    if mv.run_id:
        try:
            with tempfile.TemporaryDirectory() as tmp:
                path = mlflow.artifacts.download_artifacts(run_id=mv.run_id, artifact_path=TRAIN_LIST,
                                                           dst_path=tmp)
                with open(path, newline="") as f:
                    photos = {row["path"] for row in csv.DictReader(f)}
        except (MlflowException, OSError):   # a version logged before training lists were kept
            photos = set()
    return photos, batches


@dataclass(frozen=True)
class ModelRef:
    """Where a model reference points right now: a registry version or an ONNX file.

    The one answer to "is this a ``models:/`` URI or a path?", used by infer-all,
    serving, prelabel and the gate. ``resolve`` is cheap (one registry query or a
    stat), so serving can poll it; ``local_onnx`` fetches the file.
    """
    uri: str                   # as given: models:/NAME@ALIAS, models:/NAME/VERSION, or a path
    name: str                  # registered model name, or the file's stem
    version: str | None        # registry version; None for a file
    location: str              # where this model stays: models:/NAME/VERSION, or the file's path
    identity: str              # changes exactly when a different model is meant
    run_id: str | None = None
    tags: dict = field(default_factory=dict)

    @property
    def in_registry(self) -> bool:
        return self.location.startswith("models:/")


def resolve(uri: str = DEFAULT_ONNX_URI) -> ModelRef:
    """Where ``uri`` points now; ``ModelNotFound`` (one line) if nowhere."""
    from roomclf.models.onnx_file import find_onnx

    if uri.startswith("models:/"):
        info = model_version_info(uri)
        fixed = f"models:/{info['name']}/{info['version']}"
        return ModelRef(uri, info["name"], str(info["version"]), fixed, fixed, info.get("run_id"), info["tags"])
    if "://" not in uri and Path(uri).exists():
        try:
            path = find_onnx(uri).resolve()
        except Exception as exc:
            raise ModelNotFound(f"no ONNX model at {uri} ({str(exc).splitlines()[0][:200]})") from None
        st = path.stat()
        return ModelRef(uri, path.stem, None, str(path), f"{path}:{st.st_size}:{st.st_mtime_ns}")
    raise ModelNotFound(f"model not found: {uri} (give models:/NAME@ALIAS, models:/NAME/VERSION, or a .onnx path)")


def local_onnx(ref: ModelRef | str, dst: str | os.PathLike | None = None) -> Path:
    """The model's ``.onnx`` file on this machine: a file as it is; a registry version downloaded into
    ``dst``, or by default once per host into the model cache (``model_cache``)."""
    from roomclf.models.onnx_file import find_onnx

    ref = resolve(ref) if isinstance(ref, str) else ref
    if not ref.in_registry:
        return find_onnx(ref.location)
    if dst is not None:
        return checked_onnx(ref, fetch_model(ref.location, dst))
    folder = model_cache(ref)
    if not folder.is_dir():
        tmp = folder.with_name(f".{folder.name}.{os.getpid()}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            checked_onnx(ref, fetch_model(ref.location, tmp))
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        try:
            os.replace(tmp, folder)              # whole or not at all; another process may have won
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
    return find_onnx(folder)


def checked_onnx(ref: ModelRef, folder: str | os.PathLike) -> Path:
    """The ``.onnx`` file in ``folder`` (just downloaded for ``ref``), after checking it against the
    SHA-256 recorded at registration; ``ModelDigestMismatch`` (the file removed) if it differs."""
    from roomclf.models.onnx_file import find_onnx
    from roomclf.sample.download import sha256

    path = find_onnx(folder)
    expected = (ref.tags or {}).get(ONNX_DIGEST_TAG)
    if expected:
        actual = sha256(path)
        if actual != expected:
            path.unlink(missing_ok=True)
            raise ModelDigestMismatch(
                f"{ref.name} v{ref.version}: the downloaded {path.name} has SHA-256 {actual[:12]}..., not "
                f"{expected[:12]}... as registered (tag {ONNX_DIGEST_TAG}): the artifact store's copy is damaged "
                "or was replaced; nothing was kept, register the model again")
    return path


def model_cache(ref: ModelRef) -> Path:
    """Where a registry version's files are kept on this host: ``$ROOMCLF_HOME/models/<store>/<name>/<version>-<run>``.
    A version never changes, so it is downloaded once; the store and the training run are in the
    name, so another server's (or a re-created model's) version N is another folder."""
    from roomclf.settings import home, tracking_uri

    store = hashlib.sha256(tracking_uri().encode()).hexdigest()[:12]
    folder = home() / "models" / store / ref.name / f"{ref.version}-{(ref.run_id or 'none')[:12]}"
    folder.parent.mkdir(parents=True, exist_ok=True)
    return folder


def fetch_model(uri: str = DEFAULT_ONNX_URI, dst: str | os.PathLike | None = None) -> Path:
    """A local folder holding the files of the registry model at ``uri`` (``models:/...``), downloaded.
    For any model reference, registry or file, ``local_onnx`` is the entry point."""
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
