"""roomclf.metrics: one answer for precision/recall/F1 in the empty cases, wherever they are computed."""
import numpy as np
import pytest

from roomclf.metrics import auc, binary_scores, class_report, fold_ids, threshold_sweep
from roomclf.propagate.votes import Votes, threshold_table
from roomclf.train.attributes import choose_threshold, scores_metrics

ZERO = {"precision": 0.0, "recall": 0.0, "f1": 0.0}

# (truth, predicted): no positives and no predictions; no positives; no predictions; nothing at all
EMPTY_CASES = {
    "no positives, no predictions": ([0, 0, 0], [0, 0, 0]),
    "no positives": ([0, 0, 0], [1, 0, 0]),
    "no predictions": ([1, 1, 0], [0, 0, 0]),
    "no photos": ([], []),
}


@pytest.mark.parametrize("case", EMPTY_CASES)
def test_empty_cases_score_zero_in_every_caller(case):
    truth, pred = (np.asarray(a, bool) for a in EMPTY_CASES[case])
    s = binary_scores(truth, pred)
    assert {k: s[k] for k in ZERO} == ZERO
    assert (s["support"], s["predicted"]) == (int(truth.sum()), int(pred.sum()))
    # the attribute heads' report
    assert scores_metrics(pred.astype(float), truth.astype(float), 0.5) == ZERO
    # training's class report: class 1 plays "positive", class 0 the rest
    per = class_report(truth.astype(int), pred.astype(int), ["other", "positive"])["per_class"]["positive"]
    assert {k: per[k] for k in ZERO} == ZERO and per["support"] == int(truth.sum())
    # propagation's threshold table: "predicted" = accepted, "truth" = the vote was right
    n = len(truth)
    votes = Votes(pred=np.where(truth, 0, 1), share=np.where(pred, 1.0, 0.0), top_sim=np.ones(n),
                  probs=np.zeros((n, 2)))
    row = threshold_table(votes, np.zeros(n, int), share_grid=(0.5,), sim_grid=(0.0,))[0]
    assert row["accepted"] == int(pred.sum())
    if not pred.any():
        assert row["precision"] == 0.0


def test_binary_scores_match_the_definitions():
    s = binary_scores([1, 1, 1, 0, 0], [1, 1, 0, 1, 0])
    assert s["precision"] == pytest.approx(2 / 3) and s["recall"] == pytest.approx(2 / 3)
    assert s["f1"] == pytest.approx(2 / 3) and (s["support"], s["predicted"]) == (3, 3)


def test_class_report_macro_f1_counts_only_classes_present():
    rep = class_report(np.array([0, 0, 1]), np.array([0, 2, 1]), ["a", "b", "c"])
    assert rep["per_class"]["c"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert rep["macro_f1"] == pytest.approx((2 / 3 + 1.0) / 2) and rep["accuracy"] == pytest.approx(2 / 3)


def test_auc_ties_count_half_and_one_class_has_none():
    assert auc([0.1, 0.5, 0.5, 0.9], [0, 0, 1, 1]) == pytest.approx(0.875)
    assert auc([0.1, 0.2], [1, 1]) is None and auc([0.1, 0.2], [0, 0]) is None


def test_threshold_sweep_is_every_distinct_cut_highest_first():
    scores, y = np.array([0.9, 0.8, 0.8, 0.4, 0.1]), np.array([1, 0, 1, 1, 0])
    thr, p, r, f1 = threshold_sweep(scores, y)
    assert list(thr) == [0.9, 0.8, 0.4, 0.1]
    for t, pi, ri, fi in zip(thr, p, r, f1):
        s = binary_scores(y == 1, scores >= t)
        assert (pi, ri, fi) == pytest.approx((s["precision"], s["recall"], s["f1"]))
    assert 0.4 > choose_threshold(scores, y) > 0.1     # best F1 with precision >= 0.8 not reachable: best F1


def test_fold_ids_are_stratified_balanced_and_repeatable():
    y = np.array([0] * 10 + [1] * 5 + [2] * 3)
    ids = fold_ids(y, 5, seed=3)
    assert np.array_equal(ids, fold_ids(y, 5, seed=3))
    assert set(ids) == set(range(5)) and np.ptp(np.bincount(ids)) <= 1
    for cls, n in ((0, 10), (1, 5)):
        assert np.bincount(ids[y == cls], minlength=5).tolist() == [n // 5] * 5
    assert sorted(fold_ids(np.arange(4), 2)) == [0, 0, 1, 1]      # no class as big as the folds: plain folds
