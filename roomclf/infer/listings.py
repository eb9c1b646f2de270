"""The listing summary: one row per listing from the per-photo predictions.

For each listing: how many photos, predictions and unreadable files it has,
how many photos of each room class (``n_bedroom`` = 3 means three bedroom
photos), which attribute tags appear (``kitchen.kitchen_island``), and a cover
photo: the most confident exterior tagged ``front``, else the most confident
exterior, else none.
"""
from __future__ import annotations

from roomclf.taxonomy import CLASSES

COVER_CLASS, COVER_TAG = "exterior", "front"


def _cover(group) -> tuple[str | None, float | None, bool]:
    """(path, confidence, tagged_front) of the listing's cover photo."""
    import pandas as pd

    ext = group[(group["label"] == COVER_CLASS) & group["error"].isna()]
    if ext.empty:
        return None, None, False
    front = ext[ext["tags"].map(lambda t: pd.api.types.is_list_like(t) and COVER_TAG in list(t))]
    pool = front if not front.empty else ext
    best = pool.loc[pool["confidence"].idxmax()]
    return str(best["path"]), float(best["confidence"]), not front.empty


def listing_schema():
    """The Parquet schema of the listing rows."""
    import pyarrow as pa

    ints = ["photos", "predictions", "errors"] + [f"n_{c}" for c in CLASSES]
    return pa.schema([("batch", pa.string()), ("listing", pa.string())] + [(n, pa.int64()) for n in ints]
                     + [("tags", pa.list_(pa.string())), ("cover_photo", pa.string()),
                        ("cover_confidence", pa.float64()), ("cover_is_front", pa.bool_())])


def summarize(photos):
    """Per-photo rows (pandas; columns batch, listing, path, label, confidence, tags, error) -> listing rows."""
    import pandas as pd

    columns = (["batch", "listing", "photos", "predictions", "errors"] + [f"n_{c}" for c in CLASSES]
               + ["tags", "cover_photo", "cover_confidence", "cover_is_front"])
    if photos.empty:
        return pd.DataFrame(columns=columns)
    rows = []
    for (batch, listing), group in photos.groupby(["batch", "listing"], sort=True):
        ok = group[group["error"].isna()]
        counts = ok["label"].value_counts()
        tags = sorted({f"{label}.{t}" for label, ts in zip(ok["label"], ok["tags"])      # no tags: None or NA
                       if pd.api.types.is_list_like(ts) for t in ts})
        cover, cover_conf, is_front = _cover(group)
        rows.append({"batch": batch, "listing": listing, "photos": len(group), "predictions": len(ok),
                     "errors": len(group) - len(ok), **{f"n_{c}": int(counts.get(c, 0)) for c in CLASSES},
                     "tags": tags, "cover_photo": cover, "cover_confidence": cover_conf, "cover_is_front": is_front})
    return pd.DataFrame(rows, columns=columns)
