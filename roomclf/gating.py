"""Champion / challenger: who serves, decided on the same validation photos.

``evaluate`` scores an ONNX model (a file, folder or ``models:/`` URI) on
labelled photos; ``is_better`` compares two scores (accuracy, ties broken by
macro-F1); ``gate`` evaluates a new model against the current champion and
moves the alias on every registered name of the run (``roomclf`` and
``roomclf-onnx`` always point at the same run). ``list_versions`` and
``promote`` back ``roomclf models`` and ``roomclf promote``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from roomclf.errors import RoomclfError
from roomclf.registry import DEFAULT_ONNX_URI, ONNX_NAME, TORCH_NAME, ModelNotFound, fetch_model
from roomclf.settings import setup_mlflow

CHAMPION, CHALLENGER = "champion", "challenger"


class GatingError(RoomclfError):
    """A promote or list request that cannot be done (unknown model or version)."""


@dataclass
class Score:
    accuracy: float
    macro_f1: float
    n: int


def evaluate(model: str | os.PathLike, root: str | os.PathLike, items: list[tuple[str, str]]) -> Score:
    """Accuracy and macro-F1 of an ONNX room model on (path, class) items; unreadable photos count as wrong."""
    from roomclf.onnx_model import OnnxModel
    from roomclf.tracking import class_report

    location = fetch_model(str(model)) if str(model).startswith("models:/") else model
    onnx = OnnxModel(location)
    preds = onnx.predict_sources([Path(root) / p for p, _ in items])
    classes = onnx.classes
    y = np.array([classes.index(c) for _, c in items])
    pred = np.array([classes.index(p.label) if p.label in classes else -1 for p in preds])
    report = class_report(y, pred, classes)
    return Score(report["accuracy"], report["macro_f1"], len(items))


def is_better(new: Score, old: Score | None) -> bool:
    if old is None:
        return True
    if not np.isclose(new.accuracy, old.accuracy, atol=1e-9):
        return new.accuracy > old.accuracy
    return new.macro_f1 > old.macro_f1 + 1e-9


def current_champion(name: str = ONNX_NAME) -> str | None:
    """The version holding ``champion`` on ``name``, or None."""
    setup_mlflow()
    from mlflow import MlflowClient

    try:
        return str(MlflowClient().get_model_version_by_alias(name, CHAMPION).version)
    except Exception:  # no such model or alias
        return None


@dataclass
class GateResult:
    alias: str
    new: Score
    champion: Score | None
    champion_version: str | None


def gate(new_onnx: str | os.PathLike, versions: dict[str, str], root: str | os.PathLike,
         items: list[tuple[str, str]]) -> GateResult:
    """Score the new model and the current champion on ``items``; give ``versions``
    ({registered name: version}) the alias ``champion`` if the new one is better, else ``challenger``."""
    new = evaluate(new_onnx, root, items)
    champ_version = current_champion(ONNX_NAME)
    if champ_version is not None and champ_version == versions.get(ONNX_NAME):
        champ_version = None
    champ = None
    if champ_version is not None:
        try:
            champ = evaluate(f"models:/{ONNX_NAME}/{champ_version}", root, items)
        except ModelNotFound:
            champ = None
    alias = CHAMPION if is_better(new, champ) else CHALLENGER
    for name, version in versions.items():
        set_alias(name, version, alias)
    return GateResult(alias, new, champ, champ_version)


def set_alias(name: str, version: str, alias: str) -> None:
    setup_mlflow()
    from mlflow import MlflowClient

    MlflowClient().set_registered_model_alias(name, alias, str(version))


def promote(name: str, version: str, alias: str = CHAMPION) -> dict:
    """Move ``alias`` to ``name`` version ``version`` by hand; returns that version's info."""
    setup_mlflow()
    from mlflow import MlflowClient

    client = MlflowClient()
    try:
        client.get_model_version(name, str(version))
    except Exception:
        raise GatingError(f"no version {version} of registered model {name!r} "
                          f"(see `roomclf models`)") from None
    client.set_registered_model_alias(name, alias, str(version))
    return {"name": name, "version": str(version), "alias": alias}


def list_versions(names=(TORCH_NAME, ONNX_NAME)) -> list[dict]:
    """Every version of the given registered models, newest first:
    {'name', 'version', 'aliases', 'tags', 'run_id', 'created'}."""
    setup_mlflow()
    from mlflow import MlflowClient

    client = MlflowClient()
    rows = []
    for name in names:
        try:
            found = client.search_model_versions(f"name='{name}'")
            by_version: dict[str, list[str]] = {}
            for alias, version in (client.get_registered_model(name).aliases or {}).items():
                by_version.setdefault(str(version), []).append(alias)   # search results carry no aliases
        except Exception:
            found, by_version = [], {}
        for mv in found:
            rows.append({"name": mv.name, "version": str(mv.version),
                         "aliases": sorted(by_version.get(str(mv.version), [])),
                         "tags": dict(mv.tags or {}), "run_id": mv.run_id,
                         "created": mv.creation_timestamp})
    return sorted(rows, key=lambda r: (r["name"], -int(r["version"])))


__all__ = [
    "CHALLENGER",
    "CHAMPION",
    "DEFAULT_ONNX_URI",
    "GateResult",
    "GatingError",
    "Score",
    "current_champion",
    "evaluate",
    "gate",
    "is_better",
    "list_versions",
    "promote",
    "set_alias",
]
