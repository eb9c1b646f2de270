"""The MLflow UI compares registered versions: two versions' accuracy and model time side by side, in Debian's
chromium against a real `mlflow server` on a SQLite store that roomclf registered into."""
from __future__ import annotations

import json
import urllib.parse
from pathlib import Path

import pytest
from conftest import isolated_store
from hosts import TrackingServer

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]


def _register(quick_onnx, name: str, accuracy: float) -> tuple[str, str]:
    """quick_onnx registered from a run of its own, with its validation metrics and model time logged on the
    run and on the logged model, as `roomclf train` does; (version, run id)."""
    import mlflow

    from roomclf.models.registry import MS_PER_PHOTO_TAG, log_version_metrics, model_cost_tags, register_onnx_file
    from roomclf.tracking.experiments import step_run

    with step_run("roomclf-train", name) as run:
        cost = model_cost_tags(quick_onnx)
        metrics = {"val_accuracy": accuracy, "val_macro_f1": accuracy - 0.05,
                   "model_ms_per_photo": float(cost[MS_PER_PHOTO_TAG])}
        mlflow.log_metrics(metrics)
        version = register_onnx_file(quick_onnx, tags=cost)
        log_version_metrics({"roomclf-onnx": version}, metrics)
        return version, run.info.run_id


def test_two_versions_side_by_side_in_the_mlflow_ui(tmp_path, quick_onnx):
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed (make test installs it)")
    from playwright.sync_api import sync_playwright

    with isolated_store(tmp_path):
        first = _register(quick_onnx, "first", 0.812)
        second = _register(quick_onnx, "second", 0.846)
    server = TrackingServer(tmp_path).start()
    try:
        runs = json.dumps({first[0]: first[1], second[0]: second[1]})
        name = urllib.parse.quote(json.dumps("roomclf-onnx"))           # the page JSON-decodes both parameters
        url = f"{server.url}/#/compare-model-versions?name={name}&runs={urllib.parse.quote(runs)}"
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
            page = browser.new_page()
            page.goto(url)
            try:
                page.get_by_text("val_accuracy").first.wait_for(timeout=60_000)
            finally:
                page.screenshot(path=str(tmp_path / "compare.png"), full_page=True)
                (tmp_path / "compare.txt").write_text(page.inner_text("body"))
            text = page.inner_text("body")
            browser.close()
    finally:
        server.kill()
    rows = {parts[0]: parts[1:] for parts in (line.split() for line in text.splitlines())
            if len(parts) == 3 and parts[0].startswith(("val_", "model_"))}       # the Metrics table's rows
    assert rows["val_accuracy"] == ["0.812", "0.846"]          # version 1 and version 2, side by side
    assert rows["val_macro_f1"] == ["0.762", "0.796"]
    assert len(rows["model_ms_per_photo"]) == 2 and all(float(v) > 0 for v in rows["model_ms_per_photo"])
