"""The crawl bench (bench/bench_crawl.py) on a 200-photo version of itself: it makes listing-size photos,
runs every step as the product's command, and writes nothing into docs/ with --no-write."""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_crawl_bench_runs_on_200_photos(tmp_path, shared_data):
    import pandas as pd
    from PIL import Image

    doc = (PROJECT / "docs" / "benchmarks.md").read_text()
    work = tmp_path / "crawl"
    run = subprocess.run([sys.executable, "bench/bench_crawl.py", "--photos", "200", "--no-write", "--work", str(work),
                          "--backbone", "efficientnet_lite0"],                  # the cheapest model: a quick check
                         cwd=PROJECT, capture_output=True, text=True, timeout=1200,
                         env={**os.environ, "ROOMCLF_TEST_DATA": str(shared_data)})
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert (PROJECT / "docs" / "benchmarks.md").read_text() == doc          # --no-write
    photos = sorted((work / "listings" / "batch_01").glob("listing_0*/photo_*.jpg"))
    assert len(photos) == 200
    assert {Image.open(p).size for p in photos} <= {(1024, 768), (768, 1024)}
    assert len({hashlib.sha256(p.read_bytes()).hexdigest() for p in photos}) == 200    # none byte-identical
    planted = list((work / "listings" / "batch_01" / "listing_bad").iterdir())
    assert len(planted) >= 5
    table = [line for line in run.stdout.splitlines() if line.startswith("| ")]
    steps = [row.split("|")[1].strip() for row in table[1:]]         # after the header (the rule starts "|-")
    assert steps[:2] == ["cold prelabel + first labelling page", "embedding (empty cache)"]
    assert {"infer-all, loop, fp32", "infer-all, loop, int8", "infer-all, ray, fp32", "infer-all, ray, int8"} <= set(steps)
    header = [c.strip() for c in table[0].split("|")[1:-1]]
    for row in table[1:]:                          # each infer-all row against both floors measured beside it
        cells = dict(zip(header, (c.strip() for c in row.split("|")[1:-1])))
        if cells["step"].startswith("infer-all"):
            assert float(cells["vs floor"].split()[0]) > 0 and float(cells["vs all cores at once"]) > 0, row
    for engine in ("loop", "ray"):                 # one row per photo, bad files as rows with an error
        rows = pd.read_parquet(work / f"infer-{engine}-fp32" / "photos" / "batch_01.parquet")
        photo_rows = rows[~rows["path"].str.contains("listing_bad")]
        assert rows["path"].is_unique and len(photo_rows) == 200 and photo_rows["error"].isna().all()
        assert rows[rows["path"].str.contains("listing_bad")]["error"].notna().any()
