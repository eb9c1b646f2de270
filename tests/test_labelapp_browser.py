"""The labelling app in a real browser (Debian's chromium + playwright) against a real server process.

Labels a few photos with the keyboard, ticks attributes, undoes a tick and a label, accepts a
confirm page with an outlier left out, reloads, SIGKILLs the server mid-session
and restarts it: the label store must hold exactly what was done, every time.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from roomclf.labels.store import LabelStore

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]
BATCH, LIMIT = "batch_01", 30


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(port: int, log: Path, limit: int = LIMIT) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "roomclf.cli", "label", "--batch", BATCH, "--limit", str(limit),
           "--port", str(port)]
    proc = subprocess.Popen(cmd, stdout=open(log, "ab"), stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.time() + 60
    while time.time() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited: {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/api/state", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.3)
    raise AssertionError("server did not answer within 60 s")


def kill(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


@pytest.fixture()
def seeded(home, corpus_root, ground_truth):
    """Suggestions (as prelabel stores them) for the first LIMIT photos of the batch."""
    from roomclf.corpus import discover

    paths = discover(corpus_root, BATCH).paths[:LIMIT]
    rows = [(p, ground_truth[p]["label"], 0.4 + (i % 7) / 12, {"top3": [[ground_truth[p]["label"], 0.9]]})
            for i, p in enumerate(paths) if ground_truth[p]["label"]]
    store = LabelStore()
    store.set_labels(rows, "predicted", "test")
    return store, {p: lab for p, lab, *_ in rows}


def test_label_confirm_reload_and_sigkill(seeded, tmp_path):
    if not CHROMIUM.exists():
        pytest.skip("Debian chromium not installed at /usr/bin/chromium (apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    store, suggestion = seeded
    port, log = free_port(), tmp_path / "server.log"
    server = start_server(port, log)
    url = f"http://127.0.0.1:{port}/?who=tester"
    expected: dict[str, str] = {}

    def manual():
        return {p: lab.label for p, lab in store.labels(["manual"]).items()}

    try:
        queue = [i["path"] for i in httpx.get(f"http://127.0.0.1:{port}/api/queue").json()]
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
            page = browser.new_page()

            def open_app():
                page.goto(url)
                page.wait_for_selector("body[data-ready='1']", timeout=20000)

            def key(k):
                page.keyboard.press(k)
                page.wait_for_function("window.roomclf.pending === 0", timeout=10000)

            def shown():
                return page.get_attribute("#photo", "data-path")

            open_app()
            assert shown() == queue[0]
            assert page.locator("#classes button.selected").inner_text().endswith(suggestion[queue[0]])
            key("2"), key("Enter")                     # choose bathroom, then accept and move on
            expected[queue[0]] = "bathroom"
            assert shown() == queue[1]
            key("Enter")                               # accept the suggestion
            expected[queue[1]] = suggestion[queue[1]]
            key("3")                                   # bedroom, tick "tv", accept
            page.check("#attr-list input[name='tv']")
            page.wait_for_function("window.roomclf.pending === 0")
            key("Enter")
            expected[queue[2]] = "bedroom"
            key("1")                                   # kitchen, tick "kitchen island", then undo both
            page.check("#attr-list input[name='kitchen_island']")
            page.wait_for_function("window.roomclf.pending === 0")
            key("Backspace")                           # the tick: kitchen stays, the box is cleared
            assert manual()[queue[3]] == "kitchen" and queue[3] not in store.attributes(["manual"])
            assert not page.is_checked("#attr-list input[name='kitchen_island']")
            key("Backspace")                           # the label
            assert shown() == queue[3]
            key("s")                                   # skip
            assert shown() == queue[4]
            assert manual() == expected
            assert store.attributes(["manual"]) == {queue[2]: {"bedroom.tv": 1}}

            page.click("button[data-mode='confirm']")
            page.wait_for_selector("#grid figure")
            page_label = page.evaluate("window.roomclf.pages[0].label")
            grid = page.eval_on_selector_all("#grid figure", "els => els.map(e => e.dataset.path)")
            assert grid and not set(grid) & set(expected) and {suggestion[g] for g in grid} == {page_label}
            page.click(f"#grid figure[data-path='{grid[0]}']")      # an outlier: left out
            key("Enter")
            expected.update({g: page_label for g in grid[1:]})
            assert manual() == expected
            after = page.eval_on_selector_all("#grid figure", "els => els.map(e => e.dataset.path)")
            assert after[0] == grid[0] and not set(after) & set(grid[1:])   # only the outlier is still open

            page.reload()
            page.wait_for_selector("body[data-ready='1']")
            assert page.inner_text("#progress-text") == f"{len(expected)} / {LIMIT}"
            assert shown() == queue[4]                 # resumed where the labeller was

            key("4")                                   # saved... then the server dies
            expected[queue[4]] = "dining_room"
            kill(server)
            server = start_server(port, log)
            open_app()
            assert page.inner_text("#progress-text") == f"{len(expected)} / {LIMIT}"
            assert shown() == queue[4]
            assert page.locator("#classes button.saved").inner_text().endswith("dining_room")
            browser.close()
        assert manual() == expected
        assert store.attributes(["manual"]) == {queue[2]: {"bedroom.tv": 1}}
        assert {h["who"] for p in expected for h in store.history(p) if h["source"] == "manual"} == {"tester"}
    finally:
        kill(server)
