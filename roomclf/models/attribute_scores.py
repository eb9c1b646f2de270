"""The held-out figures a model version carries for its attribute tags, and the one way they are shown.

Training (``roomclf.train.run``) turns its attribute fit's report (``roomclf.train.attributes``) into
``from_report``'s dict and stores it in the ONNX file's metadata under ``SCORES_KEY``: for every attribute
key, whether the version emits it, its precision, recall and F1 on the held-out (validation) photos at the
threshold it emits with, how many labels its head learnt from, how many held-out photos judged it, and for
a key it does not emit, why. Registration copies the emitted keys' entries into the version tag
``SCORES_KEY`` (``version_tags``, read from the file itself), so ``roomclf models`` lists them without
downloading the model. ``roomclf models``, the demo's summary and serving's ``GET /model`` read them from
there; nothing recomputes them.
"""
from __future__ import annotations

import json

SCORES_KEY = "attribute_scores"     # ONNX metadata key and registered-version tag
FIGURES = ("precision", "recall", "f1")
NOT_RECORDED = "held-out figures not recorded by this version (trained before versions carried them)"


def _figure(value) -> float | None:
    return None if value is None else round(float(value), 4)


def from_report(report: dict[str, dict]) -> dict[str, dict]:
    """An attribute fit's ``report`` ({key: entry}) -> {key: carried entry}.

    Carried entry: ``emitted``; ``precision``/``recall``/``f1`` on the held-out photos (None where none
    of them is positive); ``labels`` and ``positives`` (the training labels the head learnt from);
    ``held_out`` and ``held_out_positives`` (the labelled held-out photos); ``why`` for a key not emitted.
    """
    out = {}
    for key, e in report.items():
        emitted = e.get("status") == "trained" and e.get("threshold") is not None
        positives, negatives = int(e.get("positives") or 0), int(e.get("negatives") or 0)
        held_pos, held_neg = int(e.get("support") or 0), int(e.get("val_negatives") or 0)
        entry = {"emitted": emitted, **{f: _figure(e.get(f)) if emitted else None for f in FIGURES},
                 "labels": positives + negatives, "positives": positives,
                 "held_out": held_pos + held_neg, "held_out_positives": held_pos}
        if not emitted:
            entry["why"] = str(e.get("status") or "untrained").removeprefix("untrained: ")
        out[key] = entry
    return out


def emitted(scores: dict[str, dict] | None) -> dict[str, dict]:
    """The entries of the keys a version emits (without ``emitted``/``why``)."""
    return {k: {f: v for f, v in e.items() if f not in ("emitted", "why")}
            for k, e in (scores or {}).items() if e.get("emitted")}


def version_tags(meta: dict | None) -> dict[str, str]:
    """The version tag registration sets from an ONNX file's metadata: its emitted keys' entries as compact
    JSON (none when the file carries no figures)."""
    scores = (meta or {}).get(SCORES_KEY)
    if scores is None:
        return {}
    return {SCORES_KEY: json.dumps(emitted(scores), separators=(",", ":"), sort_keys=True)}


def from_version_tags(tags: dict[str, str]) -> dict[str, dict] | None:
    """The carried entries of the keys a registered version emits, from its tags; None when it carries none."""
    text = (tags or {}).get(SCORES_KEY)
    if text is None:
        return None
    try:
        return {k: {**e, "emitted": True} for k, e in json.loads(text).items()}
    except (ValueError, AttributeError, TypeError):
        return None


def _cell(value) -> str:
    return "    -" if value is None else f"{value:5.2f}"


def score_lines(scores: dict[str, dict] | None, held_out: str = "held-out photos") -> list[str]:
    """One line per emitted key: precision, recall, F1 on ``held_out`` and the label counts."""
    if scores is None:
        return [f"  {NOT_RECORDED}"]
    rows = emitted(scores)
    if not rows:
        return ["  emits no attribute tag"]
    lines = [f"  {'attribute':<26}{'prec':>6}{'rec':>6}{'F1':>6}   {'labels (pos)':>13}   on {held_out} (pos)"]
    for key in sorted(rows):
        e = rows[key]
        lines.append(f"  {key:<26}" + "".join(f" {_cell(e.get(f))}" for f in FIGURES)
                     + f"   {e['labels']:>7} ({e['positives']:>3})   {e['held_out']:>5} ({e['held_out_positives']})")
    return lines


def key_line(scores: dict[str, dict] | None, key: str) -> str:
    """One line on one key: its figures when the version emits it, else why it does not."""
    e = (scores or {}).get(key)
    if e is None:
        return f"{key}: {NOT_RECORDED}"
    labels = f"{e['labels']} labels ({e['positives']} positive)"
    if e["emitted"]:
        f1 = "not measured (no held-out positive)" if e["f1"] is None else f"{e['f1']:.2f}"
        return (f"{key}: emitted, trained from {labels}; held-out F1 {f1} on {e['held_out']} photos "
                f"({e['held_out_positives']} positive)")
    return f"{key}: not emitted: {e['why']}; {labels}"
