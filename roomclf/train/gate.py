"""Champion / challenger: who serves, decided on validation photos neither model trained on.

``evaluate`` scores an ONNX model (a file, folder or ``models:/`` URI) on
labelled photos; ``decide`` compares two scores: the more accurate wins (ties
broken by macro-F1), and a clearly faster model wins when its accuracy is within
a tolerance of the other's (a distilled student, a smaller network), so one
champion serves at the lowest cost that keeps the accuracy. ``gate`` evaluates a
new model against the current champion, times both side by side on this machine,
and moves the alias on every registered name of the run (``roomclf`` and
``roomclf-onnx`` always point at the same run), with the reason. ``promote`` backs
``roomclf promote``: it too moves the alias on every form of the version's run.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from roomclf import storage
from roomclf.errors import RoomclfError
from roomclf.models.registry import (
    CHALLENGER,
    CHAMPION,
    DEFAULT_ONNX_URI,
    FORMS,
    ONNX_NAME,
    ModelNotFound,
    drop_alias,
    is_unreachable,
    local_onnx,
    set_aliases,
    training_photos,
    unreachable,
    versions_of_run,
)
from roomclf.settings import setup_mlflow


class GatingError(RoomclfError):
    """A promote or list request that cannot be done (unknown model or version)."""


@dataclass
class Score:
    accuracy: float
    macro_f1: float
    n: int
    ms_per_photo: float | None = None      # model time on the fixed probe (roomclf.models.timing), if timed


# How much faster a model must be to count as faster: a model time within this share of the other's is
# the same speed (side-by-side timings on a shared machine move by about that much).
FASTER_SHARE = 0.85


def evaluate(model: str | os.PathLike, root: str | os.PathLike, items: list[tuple[str, str]],
             label: str | None = None) -> Score:
    """Accuracy and macro-F1 of an ONNX room model on (path, class) items; unreadable photos count as wrong."""
    from roomclf.models.onnx_file import OnnxModel
    from roomclf.train.report import class_report

    onnx = OnnxModel(local_onnx(str(model)))
    preds = onnx.predict_sources([storage.join(root, p) for p, _ in items], progress=label)
    classes = onnx.classes
    y = np.array([classes.index(c) for _, c in items])
    pred = np.array([classes.index(p.label) if p.label in classes else -1 for p in preds])
    report = class_report(y, pred, classes)
    return Score(report["accuracy"], report["macro_f1"], len(items))


def decide(new: Score, old: Score | None, tolerance: float) -> tuple[bool, str]:
    """(does ``new`` replace ``old``, why): the more accurate wins, ties broken by macro-F1; a model whose
    accuracy is at most ``tolerance`` (a fraction: 0.003 = 0.3 points) below the other's wins when its
    model time is at most ``FASTER_SHARE`` of the other's."""
    if old is None:
        return True, "no champion to compare with"
    acc = f"accuracy {new.accuracy:.4f} vs {old.accuracy:.4f}"
    faster = (new.ms_per_photo is not None and old.ms_per_photo is not None
              and new.ms_per_photo <= FASTER_SHARE * old.ms_per_photo)
    speed = ("" if new.ms_per_photo is None or old.ms_per_photo is None else
             f", {new.ms_per_photo:.1f} vs {old.ms_per_photo:.1f} ms per photo")
    if not np.isclose(new.accuracy, old.accuracy, atol=1e-9):
        if new.accuracy > old.accuracy:
            return True, f"more accurate: {acc}{speed}"
        if faster and old.accuracy - new.accuracy <= tolerance + 1e-9:
            return True, f"faster at equal accuracy (within {tolerance:.4f}): {acc}{speed}"
        return False, f"less accurate: {acc}{speed}"
    if new.macro_f1 > old.macro_f1 + 1e-9:
        return True, f"same accuracy, higher macro-F1 ({new.macro_f1:.4f} vs {old.macro_f1:.4f}){speed}"
    if faster:
        return True, f"faster at equal accuracy: {acc}{speed}"
    return False, f"not better: {acc}, macro-F1 {new.macro_f1:.4f} vs {old.macro_f1:.4f}{speed}"


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
    compared_on: int = 0                  # photos neither model trained on
    champion_unfair: str = ""             # why the champion could not be compared fairly ("" if it could)
    reason: str = ""                      # why the alias went where it did


MIN_FAIR_SHARE = 0.5   # below this share of the validation photos left, the champion cannot be judged


def fair_items(items: list[tuple[str, str]], trained_photos: set[str], trained_batches: list[str]):
    """The validation items a model did not train on (by photo list, else by batch)."""
    if trained_photos:
        return [it for it in items if it[0] not in trained_photos]
    return [it for it in items if it[0].split("/", 1)[0] not in set(trained_batches)]


def gate(new_onnx: str | os.PathLike, versions: dict[str, str], root: str | os.PathLike,
         items: list[tuple[str, str]], tolerance: float = 0.0) -> GateResult:
    """Score the new model and the current champion on the photos of ``items`` that neither
    trained on, time both side by side, and give ``versions`` ({registered name: version}) the alias
    ``champion`` if ``decide`` says so (``tolerance``: how much accuracy a faster model may give up),
    else ``challenger``. A champion that trained on most of these photos cannot be judged on them: it
    is flagged and does not block the new model."""
    from roomclf.models.timing import side_by_side

    champ_version = current_champion(ONNX_NAME)
    if champ_version is not None and champ_version == versions.get(ONNX_NAME):
        champ_version = None
    fair, unfair = items, ""
    if champ_version is not None:
        photos, batches = training_photos(champ_version)
        fair = fair_items(items, photos, batches)
        if len(fair) < MIN_FAIR_SHARE * len(items):
            unfair = (f"champion v{champ_version} trained on {len(items) - len(fair)} of the "
                      f"{len(items)} validation photos (batches {','.join(batches) or '?'})")
            fair = items
    new = evaluate(new_onnx, root, fair, label="gate: the new model")
    champ = None
    if champ_version is not None and not unfair:
        champ_uri = f"models:/{ONNX_NAME}/{champ_version}"
        try:
            champ = evaluate(champ_uri, root, fair, label=f"gate: champion v{champ_version}")
            new.ms_per_photo, champ.ms_per_photo = side_by_side([local_onnx(str(new_onnx)), local_onnx(champ_uri)])
        except ModelNotFound:
            champ = None
    wins, reason = decide(new, champ, tolerance)
    if unfair:
        reason = f"the champion cannot be judged: {unfair}"
    alias = CHAMPION if wins else CHALLENGER
    move_alias(versions, alias)
    return GateResult(alias, new, champ, champ_version, len(fair), unfair, reason)


def promote(name: str, version: str, alias: str = CHAMPION) -> dict[str, str]:
    """Move ``alias`` by hand to version ``version`` of ``name`` and to every other form the
    same training run registered (so ``roomclf`` and ``roomclf-onnx`` never part); returns
    {registered name: version} of what moved."""
    setup_mlflow()
    from mlflow import MlflowClient

    client = MlflowClient()
    try:
        mv = client.get_model_version(name, str(version))
    except Exception as exc:
        if is_unreachable(exc):
            raise unreachable(exc, "promote", moves_aliases=True) from None
        raise GatingError(f"no version {version} of registered model {name!r} "
                          f"(see `roomclf models`)") from None
    together = {**(versions_of_run(mv.run_id) if mv.run_id else {}), name: str(version)}
    move_alias(together, alias)
    return together


def move_alias(versions: dict[str, str], alias: str) -> None:
    """Point ``alias`` at every form of one model ({registered name: version}) and take it off the forms
    that model lacks (the int8 twin of a run that did not quantise): an alias never names another
    model's form, so `infer-all --quantized` cannot run an old champion's int8 graph."""
    set_aliases(versions, alias)
    drop_alias(alias, [n for n in FORMS if n not in versions])


__all__ = [
    "CHALLENGER",
    "CHAMPION",
    "DEFAULT_ONNX_URI",
    "GateResult",
    "GatingError",
    "Score",
    "current_champion",
    "decide",
    "evaluate",
    "gate",
    "promote",
    "fair_items",
]
