"""The labelling loop of bench/bench_labels.py (how many hand labels it takes), on a few dozen real photos."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from conftest import pick_photos

from roomclf.taxonomy import CLASSES

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
import bench_labels as loop  # noqa: E402


def test_the_simulated_labelling_loop_picks_labels_propagates_and_learns(corpus_root, ground_truth, home):
    pool = pick_photos(ground_truth, "batch_01", 48)
    held = pick_photos(ground_truth, "batch_14", 28)
    index = {c: i for i, c in enumerate(CLASSES)}
    paths, X, unit = loop.features(corpus_root, [p for p, _ in pool], "efficientnet_lite0")
    y = np.array([index[dict(pool)[p]] for p in paths])
    tpaths, Xt, _ = loop.features(corpus_root, [p for p, _ in held], "efficientnet_lite0")
    yt = np.array([index[dict(held)[p]] for p in tpaths])
    probs0 = loop.cold_start(corpus_root, paths, "efficientnet_lite0")
    assert probs0.shape == (len(paths), len(CLASSES))

    rounds = [16, 32, len(paths)]
    curves, picked = {}, {"queue": {}, "random": {}}
    for strategy in ("queue", "random"):
        curves[strategy] = loop.simulate(X, unit, y, probs0, Xt, yt, rounds, strategy, with_propagation=True,
                                         C=1.0, n_classes=len(CLASSES), log=lambda *_: None, picked=picked[strategy])
    # what the person labelled by each round (--save-picks writes it): it grows, and the queue's choice is its own
    for got in picked.values():
        assert sorted(got) == rounds and set(got[16]) < set(got[32]) and len(set(got[32])) == 32
    assert set(picked["queue"][16]) != set(picked["random"][16])
    for rows in curves.values():
        assert [r["hand"] for r in rows] == rounds
        lent = [r for r in rows[:-1] if r["propagated"]]   # labels lent before the whole pool is labelled
        assert lent and all(0 <= r["prop_precision"] <= 1 for r in lent), rows
        assert rows[-1]["propagated"] == 0          # the whole pool labelled: nothing left to lend to
        assert rows[-1]["test_acc"] >= 0.6          # 7 classes: chance is 0.14
    # with every photo labelled both strategies train on the same labels: the same model
    assert curves["queue"][-1]["test_acc"] == curves["random"][-1]["test_acc"]
