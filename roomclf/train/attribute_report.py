"""Showing an attribute fit: a text table, MLflow metrics and a grid of tagged photos.

The fit itself lives in ``roomclf.train.attributes``; these take its ``AttributeFit``
(``thresholds``, ``report``, ``untrained``) and only present it.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from roomclf.taxonomy import ATTRIBUTE_KEYS


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.2f}"


def format_report(fit, keys: list[str] | None = None) -> str:
    """A markdown table: one row per attribute key (precision, recall, F1 on validation photos)."""
    lines = ["| attribute | train pos | val support | val neg | AUC | threshold | from | precision | recall | F1 |",
             "|---|---:|---:|---:|---:|---:|---|---:|---:|---:|"]
    for key in keys or list(fit.report):
        e = fit.report[key]
        if e["positives"] == 0 and e["support"] == 0 and e["negatives"] == 0:
            continue
        thr = "untrained" if e["threshold"] is None else f"{e['threshold']:.3f}"
        lines.append(f"| {key} | {e['positives']} | {e['support']} | {e['val_negatives']} | {_fmt(e.get('auc'))} | {thr} | "
                     f"{e['threshold_from'] or '-'} | {_fmt(e['precision'])} | {_fmt(e['recall'])} | {_fmt(e['f1'])} |")
    return "\n".join(lines)


def log_attribute_report(fit, artifact: str = "report/attributes_report.json") -> dict:
    """Log an attribute fit to the active MLflow run: per attribute its precision, recall, F1 and AUC
    (``attr_f1.kitchen.island``…), the threshold and support of each emitted head, the macro-F1 over
    them, the tags ``attributes.trained`` / ``attributes.untrained`` (what ``roomclf models`` lists)
    and the whole report as a JSON artifact. Returns that JSON payload."""
    import mlflow

    metrics = {}
    for key, e in fit.report.items():
        for name in ("precision", "recall", "f1", "auc"):
            if e.get(name) is not None:
                metrics[f"attr_{name}.{key}"] = float(e[name])
        if key in fit.trained:
            metrics[f"attr_threshold.{key}"] = float(fit.thresholds[key])
            metrics[f"attr_support.{key}"] = float(e["support"])
    f1s = [fit.report[k]["f1"] for k in fit.trained if fit.report[k].get("f1") is not None]
    if f1s:
        metrics["attr_macro_f1"] = float(np.mean(f1s))
    metrics["attr_trained"] = float(len(fit.trained))
    mlflow.log_metrics(metrics)
    mlflow.set_tags({"attributes.trained": ",".join(fit.trained) or "none",
                     "attributes.untrained": ",".join(fit.untrained) or "none"})
    payload = {"thresholds": fit.thresholds, "trained": fit.trained, "untrained": fit.untrained,
               "report": fit.report}
    mlflow.log_dict(payload, artifact)
    return payload


def attribute_grid(root: str | os.PathLike, paths: list[str], probs: np.ndarray, room_labels: dict[str, str],
                   thresholds: dict[str, float | None], out: str | os.PathLike, per_attribute: int = 8,
                   size: int = 112) -> Path:
    """A PNG with one row per trained attribute: the photos of its class it tags, best first.

    ``probs`` is N x len(ATTRIBUTE_KEYS) (attribute probabilities of ``paths``); ``room_labels``
    gives each photo's class (true or predicted), since a tag is only emitted within its class.
    """
    from PIL import Image, ImageDraw

    from roomclf.photos import PhotoError, thumbnail

    keys = [k for k in ATTRIBUTE_KEYS if thresholds.get(k) is not None]
    label_w, pad = 190, 4
    sheet = Image.new("RGB", (label_w + per_attribute * (size + pad), max(1, len(keys)) * (size + 18)), "white")
    draw = ImageDraw.Draw(sheet)
    rooms = np.array([room_labels.get(p, "") for p in paths])
    for row, key in enumerate(keys):
        j, y0 = ATTRIBUTE_KEYS.index(key), row * (size + 18)
        room = key.split(".")[0]
        cand = np.flatnonzero((rooms == room) & (probs[:, j] >= thresholds[key]))
        cand = cand[np.argsort(-probs[cand, j], kind="stable")][:per_attribute]
        draw.text((4, y0 + 4), f"{key}\nthr {thresholds[key]:.2f}\n{len(cand)} shown", fill="black")
        for col, i in enumerate(cand):
            x0 = label_w + col * (size + pad)
            try:
                thumb = thumbnail(Path(root) / paths[i], size)
            except PhotoError:
                continue
            sheet.paste(thumb, (x0, y0))
            draw.text((x0 + 2, y0 + size + 2), f"{probs[i, j]:.2f}", fill="black")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp{os.getpid()}.png")
    sheet.save(tmp, format="PNG")
    os.replace(tmp, out)
    return out

