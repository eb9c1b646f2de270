"""The labelling app's attribute mode in a real browser (Debian's chromium + playwright) against a real server.

Chooses a class and an attribute, answers a whole grid with the keys (yes, no, not sure, a move, an undo),
sees the head retrain and its cross-validated estimate, undoes an answer of the finished grid, SIGKILLs
the server and restarts it: the label store holds exactly the answers given, and the new grid leaves
them out.
"""
from __future__ import annotations

import pytest
from test_labelapp_browser import BATCH, CHROMIUM, FLAGS, free_port, kill, start_server

from roomclf.labels.store import LabelStore

pytestmark = pytest.mark.browser

LIMIT = 150                     # the first 150 photos of batch_01 hold 29 bedrooms: a full grid and some
ROOM, ATTRIBUTE, KEY = "bedroom", "tv", "bedroom.tv"


@pytest.fixture()
def rooms(home, corpus_root, ground_truth):
    """Room suggestions (as prelabel stores them) for the first LIMIT photos: the attribute mode's classes."""
    from roomclf.corpus import discover

    paths = discover(corpus_root, BATCH).paths[:LIMIT]
    rows = [(p, ground_truth[p]["label"], 0.8) for p in paths if ground_truth[p]["label"]]
    store = LabelStore()
    store.set_labels(rows, "predicted", "test")
    return store, {p: lab for p, lab, _ in rows}


def test_attribute_grid_keys_retrain_undo_and_sigkill(rooms, tmp_path):
    if not CHROMIUM.exists():
        pytest.skip("Debian chromium not installed at /usr/bin/chromium (apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    store, room_of = rooms
    bedrooms = {p for p, lab in room_of.items() if lab == ROOM}
    port, log = free_port(), tmp_path / "server.log"
    server = start_server(port, log, LIMIT)
    expected: dict[str, int] = {}

    def answers():
        return {p: tags[KEY] for p, tags in store.attributes(["manual"]).items() if KEY in tags}

    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
            page = browser.new_page()

            def loaded():
                return page.evaluate("window.roomclf.tags.loaded")

            def wait_grid(after):
                page.wait_for_function(f"window.roomclf.tags.loaded > {after} && !window.roomclf.tags.loading "
                                       "&& window.roomclf.pending === 0", timeout=120000)

            def open_tags():
                page.goto(f"http://127.0.0.1:{port}/?who=tester")
                page.wait_for_selector("body[data-ready='1']", timeout=20000)
                page.click("button[data-mode='tags']")
                wait_grid(0)                                 # the first class with attributes
                before = loaded()
                page.select_option("#tag-room", ROOM)        # its first attribute (tv) comes with it
                wait_grid(before)
                assert page.input_value("#tag-attr") == ATTRIBUTE

            def grid():
                return page.eval_on_selector_all("#tag-grid figure", "els => els.map(e => e.dataset.path)")

            def cursor():
                return page.evaluate("window.roomclf.tags.grid[window.roomclf.tags.cursor].path")

            def key(k):
                page.keyboard.press(k)
                page.wait_for_function("window.roomclf.pending === 0", timeout=20000)

            def head():
                el = page.locator("#tag-head")
                return (int(el.get_attribute("data-positives")), int(el.get_attribute("data-negatives")),
                        el.get_attribute("data-f1"))

            open_tags()
            first = grid()
            assert len(first) == 24 and set(first) <= bedrooms
            assert head() == (0, 0, "") and "No head yet" in page.inner_text("#tag-head")
            assert cursor() == first[0]

            key("y")                                         # yes, and the cursor moves on
            expected[first[0]] = 1
            assert cursor() == first[1]
            key("n")
            expected[first[1]] = 0
            key("u")                                         # not sure: no tag, but the photo is not asked again
            assert store.attribute_unsure(KEY) == {first[2]}
            key("Backspace")                                 # undo the "not sure"
            assert store.attribute_unsure(KEY) == set() and cursor() == first[2]
            assert page.get_attribute(f"#tag-grid figure[data-path='{first[2]}']", "data-answer") == ""
            key("ArrowRight")                                # skip it for now
            assert cursor() == first[3]
            assert answers() == expected
            assert page.get_attribute(f"#tag-grid figure[data-path='{first[0]}']", "data-answer") == "yes"

            before = loaded()
            for i in range(22):                              # the rest of the grid: every fourth a yes
                path, value = cursor(), int(i % 4 == 0)
                key("y" if value else "n")
                expected[path] = value
            assert first[2] in expected                      # the skipped photo came round again
            wait_grid(before)                                # the grid is done: the head retrained
            assert answers() == expected
            positives = sum(expected.values())
            pos, neg, f1 = head()
            assert (pos, neg) == (positives, len(expected) - positives) and f1 != ""
            assert "cross-validated" in page.inner_text("#tag-head")
            second = grid()
            assert second and not set(second) & set(expected) and set(second) <= bedrooms

            last = list(expected)[-1]                        # undo the grid's last answer: it comes back first
            key("Backspace")
            del expected[last]
            assert answers() == expected and grid()[0] == last and cursor() == last
            key("n")
            expected[last] = 0

            kill(server)                                     # every answer was saved; the server dies
            server = start_server(port, log, LIMIT)
            open_tags()
            pos, neg, _ = head()
            assert (pos, neg) == (positives, len(expected) - positives)
            assert not set(grid()) & set(expected)
            browser.close()
        assert answers() == expected
        assert {h["who"] for p in expected for h in store.attribute_history(p)} == {"tester"}
    finally:
        kill(server)
