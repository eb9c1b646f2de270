"""roomclf.parallel: batches side by side in threads, results in input order, memory bounded."""
import threading
import time

import pytest

from roomclf.parallel import AHEAD_PER_WORKER, ordered_map, workers_for


def test_workers_fill_the_cores_with_the_sessions_threads():
    assert [workers_for(1, 4), workers_for(2, 4), workers_for(4, 4), workers_for(8, 4), workers_for(0, 2)] == [
        4, 2, 1, 1, 2]


def test_results_come_in_input_order_however_the_work_finishes():
    def slow_first(i):
        time.sleep(0.05 if i % 3 == 0 else 0.0)
        return i * i

    assert list(ordered_map(slow_first, range(20), workers=3)) == [i * i for i in range(20)]
    assert list(ordered_map(slow_first, range(5), workers=1)) == [i * i for i in range(5)]


def test_work_overlaps_and_never_runs_far_ahead_of_the_reader():
    lock, state = threading.Lock(), {"now": 0, "most": 0, "started": 0}

    def work(i):
        with lock:
            state["now"] += 1
            state["started"] += 1
            state["most"] = max(state["most"], state["now"])
        time.sleep(0.05)
        with lock:
            state["now"] -= 1
        return i

    results = ordered_map(work, iter(range(60)), workers=2)
    assert next(results) == 0
    time.sleep(0.3)                       # the reader waits: the work must not run on through the input
    assert state["started"] <= AHEAD_PER_WORKER * 2 + 1
    assert list(results) == list(range(1, 60))
    assert state["most"] == 2


def test_an_error_is_raised_at_its_items_turn_and_later_items_are_dropped():
    seen = []

    def work(i):
        if i == 3:
            raise ValueError("item 3")
        seen.append(i)
        return i

    got = []
    with pytest.raises(ValueError, match="item 3"):
        for r in ordered_map(work, range(100), workers=2):
            got.append(r)
    assert got == [0, 1, 2] and max(seen) < 3 + AHEAD_PER_WORKER * 2 + 1
