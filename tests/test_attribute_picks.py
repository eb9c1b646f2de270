"""The attribute mode's picks (roomclf.labels.attribute_picks) and its few-shot head (roomclf.labels.attribute_head)."""
from __future__ import annotations

import numpy as np

from roomclf.labels.attribute_head import MIN_EACH, fit_head
from roomclf.labels.attribute_picks import pick_grid, spread_picks


def blobs(sizes, dim=16, seed=0):
    rng = np.random.default_rng(seed)
    centres = np.eye(dim)[:len(sizes)] * 10
    X = np.concatenate([c + rng.normal(0, 0.3, (n, dim)) for c, n in zip(centres, sizes)])
    return X, np.repeat(np.arange(len(sizes)), sizes)


def test_with_a_head_least_sure_first_then_the_highest_scored():
    rng = np.random.default_rng(1)
    scores = rng.random(100)
    picks = pick_grid(rng.random((100, 8)), scores, threshold=0.3, size=24, checks=6)
    assert len(picks) == len(set(picks)) == 24
    unsure, checks = picks[:18], picks[18:]
    margin = np.abs(np.log(scores / (1 - scores)) - np.log(0.3 / 0.7))
    assert unsure == list(np.argsort(margin)[:18])
    rest = [i for i in np.argsort(-scores) if i not in unsure]
    assert checks == rest[:6] and all(scores[c] >= scores[r] for c in checks for r in rest[6:])


def test_fewer_open_photos_than_a_grid_shows_them_all():
    rng = np.random.default_rng(2)
    assert sorted(pick_grid(rng.random((5, 4)), rng.random(5), size=24)) == list(range(5))
    assert sorted(pick_grid(rng.random((5, 4)), None, size=24)) == list(range(5))
    assert pick_grid(np.zeros((0, 4)), None) == []


def test_without_a_head_the_grid_is_spread_largest_cluster_first():
    X, group = blobs([30, 20, 10])
    picks = spread_picks(X, 3)
    assert [int(group[i]) for i in picks] == [0, 1, 2]
    assert pick_grid(X, None, size=3) == picks


def test_head_needs_both_answers_then_reports_a_cross_validated_estimate():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(120, 16)).astype(np.float32)
    y = (X[:, 0] > 0.4).astype(int)
    head, est = fit_head(X[:MIN_EACH + 1], np.array([1] * (MIN_EACH - 1) + [0, 0]))
    assert head is None and est.f1 is None and est.positives == MIN_EACH - 1 and "at least" in est.note
    head, est = fit_head(X, y)
    assert (est.positives, est.negatives) == (int(y.sum()), int(len(y) - y.sum())) and est.folds == 5
    assert est.f1 > 0.75 and 0 < head.threshold < 1
    held = rng.normal(size=(300, 16)).astype(np.float32)
    tagged = head.scores(held) >= head.threshold
    assert np.mean(tagged == (held[:, 0] > 0.4)) > 0.85
    # labels the features cannot know: the estimate says so
    _, noise = fit_head(X, rng.permutation(y))
    assert noise.f1 < est.f1 - 0.2
