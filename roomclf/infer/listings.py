"""The listing summary: one row per listing from the per-photo predictions.

For each listing: how many photos, predictions and unreadable files it has,
how many photos of each room class (``n_bedroom`` = 3 means three bedroom
photos), which attribute tags appear (``kitchen.kitchen_island``), and a cover
photo: the most confident exterior tagged ``front``, else the most confident
exterior, else none.

It is one pass over the rows' columns: a batch's summary is made after its
last photo is predicted, so for a run's last batch it is time the cores sit
idle (a pandas group per listing was most of that time on a crawl-size batch;
bench/bench_crawl.py, infer-all).
"""
from __future__ import annotations

from roomclf.taxonomy import CLASSES

COVER_CLASS, COVER_TAG = "exterior", "front"


def listing_schema():
    """The Parquet schema of the listing rows."""
    import pyarrow as pa

    ints = ["photos", "predictions", "errors"] + [f"n_{c}" for c in CLASSES]
    return pa.schema([("batch", pa.string()), ("listing", pa.string())] + [(n, pa.int64()) for n in ints]
                     + [("tags", pa.list_(pa.string())), ("cover_photo", pa.string()),
                        ("cover_confidence", pa.float64()), ("cover_is_front", pa.bool_())])


def _tag_list(tags) -> list:
    """A row's tags as a list: none may come as None, NaN, pandas NA (Ray's Parquet path) or []."""
    import pandas as pd

    return list(tags) if pd.api.types.is_list_like(tags) else []


def summarize(photos):
    """Per-photo rows (pandas; columns batch, listing, path, label, confidence, tags, error) -> listing rows,
    sorted by batch and listing."""
    import pandas as pd

    columns = (["batch", "listing", "photos", "predictions", "errors"] + [f"n_{c}" for c in CLASSES]
               + ["tags", "cover_photo", "cover_confidence", "cover_is_front"])
    if photos.empty:
        return pd.DataFrame(columns=columns)
    listings: dict[tuple, dict] = {}
    cover: dict[tuple, tuple] = {}                  # listing -> ((is_front, confidence), path)
    failed = photos["error"].notna().tolist()
    for key, path, label, confidence, tags, bad in zip(zip(photos["batch"], photos["listing"]), photos["path"],
                                                       photos["label"], photos["confidence"], photos["tags"], failed):
        row = listings.get(key)
        if row is None:
            row = listings[key] = {"batch": key[0], "listing": key[1], "photos": 0, "predictions": 0, "errors": 0,
                                   **{f"n_{c}": 0 for c in CLASSES}, "tags": set()}
        row["photos"] += 1
        if bad:
            row["errors"] += 1
            continue
        row["predictions"] += 1
        if f"n_{label}" in row:
            row[f"n_{label}"] += 1
        tags = _tag_list(tags)
        row["tags"].update(f"{label}.{t}" for t in tags)
        if label == COVER_CLASS and not pd.isna(confidence):
            rank = (COVER_TAG in tags, float(confidence))
            if key not in cover or rank > cover[key][0]:      # ties: the first photo keeps it
                cover[key] = (rank, str(path))
    rows = []
    for key in sorted(listings):
        row = listings[key]
        (is_front, confidence), path = cover.get(key, ((False, None), None))
        rows.append({**row, "tags": sorted(row["tags"]), "cover_photo": path, "cover_confidence": confidence,
                     "cover_is_front": is_front})
    return pd.DataFrame(rows, columns=columns)
