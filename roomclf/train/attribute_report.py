"""Showing an attribute fit in its MLflow run: metrics, the report and a grid of tagged validation photos.

The fit itself lives in ``roomclf.train.attributes``; these take its ``AttributeFit``
(``thresholds``, ``report``, ``untrained``, ``val_scores``) and only present it.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from roomclf import storage
from roomclf.taxonomy import ATTRIBUTE_KEYS


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
                thumb = thumbnail(storage.join(root, paths[i]), size)
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


def log_attribute_grid(fit, root: str | os.PathLike, paths: list[str], room_labels: dict[str, str],
                       out_dir: str | os.PathLike) -> Path | None:
    """The grid of the validation photos each trained head tags (``attribute_grid``), written to
    ``out_dir/attribute_tags.png`` and logged to the active run as ``report/attribute_tags.png``;
    None when no head was trained or judged on them."""
    import mlflow

    if fit.val_scores is None or not len(paths) or not fit.trained:
        return None
    png = attribute_grid(root, paths, fit.val_scores, room_labels, fit.thresholds, Path(out_dir) / "attribute_tags.png")
    mlflow.log_artifact(str(png), "report")
    return png
