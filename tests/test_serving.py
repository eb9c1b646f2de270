"""`roomclf serve`: a real uvicorn server process on localhost, serving a model
registered in a temporary MLflow store (SQLite), queried over real HTTP and
from a real browser."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
from conftest import isolated_store, pick_photos

from serving.launch import ServerProcess, roomclf_serve

MB = 1024 * 1024
B19 = "batch_19"
EMPTY = f"{B19}/listing_0001/photo_90.jpg"
TRUNCATED = f"{B19}/listing_0001/photo_91.jpg"
HTML = f"{B19}/listing_0001/photo_92.jpg"
ODD = [f"{B19}/listing_0052/photo_90.png", f"{B19}/listing_0052/photo_91.jpg", f"{B19}/listing_0052/photo_92.jpg",
       f"{B19}/listing_0059/photo_90.jpg", f"{B19}/listing_0059/photo_91.jpg", f"{B19}/listing_0059/photo_92.jpg"]


def v2_scores() -> dict:
    """The held-out figures v2 carries (``roomclf.models.attribute_scores``): two keys emitted, one not."""
    from roomclf.models.attribute_scores import from_report
    from roomclf.taxonomy import ATTRIBUTE_KEYS

    report = {k: {"status": "untrained: 0 positives", "positives": 0, "negatives": 0} for k in ATTRIBUTE_KEYS}
    report["living_room.tv"] = {"status": "trained", "threshold": 0.4, "precision": 0.8, "recall": 0.5,
                                "f1": 0.615384, "positives": 20, "negatives": 60, "support": 8, "val_negatives": 30}
    report["kitchen.refrigerator"] = {"status": "trained", "threshold": 0.6, "precision": 1.0, "recall": 0.75,
                                      "f1": 0.857143, "positives": 30, "negatives": 25, "support": 4,
                                      "val_negatives": 9}
    report["living_room.fireplace"] = {"status": "untrained: no better than chance (AUC 0.61 on validation)",
                                       "positives": 12, "negatives": 40, "support": 3, "val_negatives": 10}
    return from_report(report)


V2_SCORES = v2_scores()


@pytest.fixture(scope="module")
def store(tmp_path_factory, quick_onnx):
    """A tmp MLflow store with roomclf-onnx v1 (@champion) and v2 (same weights, every
    attribute threshold 0: its predictions carry tags, so a swap is visible). Yields the env."""
    import onnx

    from roomclf.models.attribute_scores import SCORES_KEY
    from roomclf.models.onnx_file import META_KEY
    from roomclf.models.registry import register_onnx_file
    from roomclf.settings import setup_mlflow

    home = tmp_path_factory.mktemp("serve_home")
    with isolated_store(home) as env:
        setup_mlflow()
        v1 = register_onnx_file(quick_onnx, tags={"val_accuracy": 0.875, "trained_on": "batch_01"}, alias="champion")
        model = onnx.load(str(quick_onnx))
        entry = next(p for p in model.metadata_props if p.key == META_KEY)
        import json

        meta = json.loads(entry.value)
        meta["attribute_thresholds"] = {k: 0.0 for k in meta["attribute_keys"]}
        meta["note"] = "v2: every attribute trained"
        meta[SCORES_KEY] = V2_SCORES
        entry.value = json.dumps(meta)
        v2_path = home / "v2.onnx"
        onnx.save(model, str(v2_path))
        v2 = register_onnx_file(v2_path)
        assert (v1, v2) == ("1", "2")
        yield {**os.environ, **env, "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"}


def start(store_env, tmp_path_factory, *extra) -> ServerProcess:
    log = tmp_path_factory.mktemp("serve_log") / "server.log"
    return roomclf_serve("models:/roomclf-onnx@champion", env=store_env, log=log, extra=list(extra)).wait_ready(120)


@pytest.fixture(scope="module")
def server(store, tmp_path_factory):
    """Default limits (20 MB per photo), batches of at most 4, no polling."""
    srv = start(store, tmp_path_factory, "--poll", "0", "--max-batch", "4", "--threads", "1")
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def reference(quick_onnx):
    from roomclf.models.onnx_file import OnnxModel

    return OnnxModel(quick_onnx)


def post(url, name, data, ctype="image/jpeg", timeout=60):
    return httpx.post(url + "/predict", files={"file": (name, data, ctype)}, timeout=timeout)


def assert_clean_error(r, status, *words):
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"detail"} and body["detail"]
    assert "Traceback" not in r.text and 'File "' not in r.text
    for w in words:
        assert w in body["detail"]


def test_good_photos_equal_the_onnx_model(server, corpus_root, ground_truth, reference):
    paths = [p for p, _ in pick_photos(ground_truth, "batch_02", 8)] + ODD
    expected = reference.predict_sources([corpus_root / p for p in paths])
    for rel, exp in zip(paths, expected):
        r = post(server.url, Path(rel).name, (corpus_root / rel).read_bytes())
        assert r.status_code == 200, (rel, r.text)
        got = r.json()
        assert got["label"] == exp.label, rel
        assert got["confidence"] == pytest.approx(exp.confidence, abs=1e-5)
        assert got["probabilities"] == pytest.approx(exp.probabilities, abs=1e-5)
        assert got["tags"] == {}     # v1 has no trained attribute
        assert got["model"]["name"] == "roomclf-onnx" and got["model"]["version"] == "1"
        assert got["filename"] == Path(rel).name
    # the quick model is useful: most labels match the ground truth
    hits = sum(e.label == ground_truth[p]["label"] for p, e in zip(paths, expected) if ground_truth[p]["label"])
    assert hits >= len(paths) // 2


def test_raw_image_body(server, corpus_root, reference):
    rel = "batch_02/" + sorted(os.listdir(corpus_root / "batch_02"))[0]
    photo = sorted((corpus_root / rel).glob("photo_*.jpg"))[0]
    r = httpx.post(server.url + "/predict", content=photo.read_bytes(), headers={"content-type": "image/jpeg"})
    assert r.status_code == 200
    assert r.json()["label"] == reference.predict_sources([photo])[0].label


def test_batch(server, corpus_root, ground_truth, reference):
    paths = [p for p, _ in pick_photos(ground_truth, "batch_03", 3)]
    files = [("files", (Path(p).name, (corpus_root / p).read_bytes(), "image/jpeg")) for p in paths]
    files.append(("files", ("broken.jpg", (corpus_root / TRUNCATED).read_bytes(), "image/jpeg")))
    r = httpx.post(server.url + "/predict/batch", files=files, timeout=60)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["count"] == 4 and body["ok"] == 3 and body["model"]["version"] == "1"
    expected = reference.predict_sources([corpus_root / p for p in paths])
    assert [x["label"] for x in body["results"][:3]] == [e.label for e in expected]
    assert body["results"][3]["status"] == 422 and "truncated image" in body["results"][3]["error"]


def test_bad_uploads(server, corpus_root):
    url = server.url
    assert_clean_error(post(url, "empty.jpg", (corpus_root / EMPTY).read_bytes()), 400, "empty")
    assert_clean_error(post(url, "page.jpg", (corpus_root / HTML).read_bytes()), 415, "not an image")
    assert_clean_error(post(url, "archive.zip", b"PK\x03\x04" + bytes(2000), "application/zip"), 415, "not an image")
    assert_clean_error(post(url, "cut.jpg", (corpus_root / TRUNCATED).read_bytes()), 422, "truncated image")
    # just over 20 MB: refused after reading; far over: refused from its Content-Length
    assert_clean_error(post(url, "big.jpg", b"\xff\xd8" + bytes(20 * MB)), 413, "too large", "20 MB")
    assert_clean_error(post(url, "huge.jpg", b"\xff\xd8" + bytes(30 * MB)), 413, "too large")

    def chunks():      # no Content-Length: counted while it arrives
        for _ in range(25):
            yield bytes(MB)

    r = httpx.post(url + "/predict", content=chunks(), headers={"content-type": "image/jpeg"}, timeout=60)
    assert_clean_error(r, 413, "too large")
    photo = (corpus_root / ODD[1]).read_bytes()
    r = httpx.post(url + "/predict/batch", files=[("files", (f"p{i}.jpg", photo, "image/jpeg")) for i in range(5)])
    assert_clean_error(r, 413, "too many photos")
    r = httpx.post(url + "/predict", files=[("file", ("a.jpg", photo)), ("file", ("b.jpg", photo))])
    assert_clean_error(r, 413, "/predict takes one")
    r = httpx.post(url + "/predict", files=[("note", (None, "a text field, no file"))])
    assert_clean_error(r, 400, "no photo")
    assert_clean_error(httpx.post(url + "/predict", data={"note": "a form, no file"}), 415, "multipart")
    assert_clean_error(httpx.post(url + "/predict", content=b"hello", headers={"content-type": "text/plain"}), 415)
    assert httpx.get(url + "/health").json()["status"] == "ok" and server.alive()


def test_health_and_model(server):
    from roomclf.taxonomy import ATTRIBUTE_KEYS, CLASSES

    h = httpx.get(server.url + "/health").json()
    assert h["status"] == "ok" and h["model"] == {"name": "roomclf-onnx", "version": "1",
                                                  "uri": "models:/roomclf-onnx@champion"}
    m = httpx.get(server.url + "/model").json()
    assert m["version"] == "1" and m["classes"] == list(CLASSES) and m["backbone"] == "efficientnet_lite0"
    assert m["attributes"]["trained"] == {} and m["attributes"]["untrained"] == list(ATTRIBUTE_KEYS)
    assert m["attributes"]["scores"] is None and m["attributes"]["why_untrained"] == {}   # v1 carries none
    assert m["metrics"]["val_accuracy"] == 0.875 and m["tags"]["trained_on"] == "batch_01"


def test_model_gives_the_held_out_figures_the_version_carries(store):
    """GET /model of v2: each emitted attribute's held-out precision/recall/F1 and label counts, as its ONNX
    file carries them and as registration copied them into the version's tag; why the others are not."""
    from fastapi.testclient import TestClient
    from mlflow import MlflowClient

    from roomclf.models.attribute_scores import SCORES_KEY, emitted, from_version_tags
    from serving.app import create_app

    tags = MlflowClient().get_model_version("roomclf-onnx", "2").tags
    assert emitted(from_version_tags(tags)) == emitted(V2_SCORES)
    assert SCORES_KEY not in MlflowClient().get_model_version("roomclf-onnx", "1").tags
    with TestClient(create_app("models:/roomclf-onnx/2"), base_url="http://localhost") as client:
        attrs = client.get("/model").json()["attributes"]
    assert set(attrs["scores"]) == {"living_room.tv", "kitchen.refrigerator"}
    assert attrs["scores"]["living_room.tv"] == {"precision": 0.8, "recall": 0.5, "f1": 0.6154, "labels": 80,
                                                 "positives": 20, "held_out": 38, "held_out_positives": 8}
    assert attrs["scores"] == emitted(from_version_tags(tags))
    assert attrs["why_untrained"]["living_room.fireplace"].startswith("no better than chance (AUC 0.61")


def test_50_concurrent_clients_mixing_good_and_bad(server, corpus_root, ground_truth):
    good = [(corpus_root / p).read_bytes() for p, _ in pick_photos(ground_truth, "batch_04", 10)]
    cases = [(g, 200) for g in good]
    cases += [((corpus_root / EMPTY).read_bytes(), 400), ((corpus_root / HTML).read_bytes(), 415),
              ((corpus_root / TRUNCATED).read_bytes(), 422), (b"\xff\xd8" + bytes(21 * MB), 413)]
    jobs = [cases[i % len(cases)] for i in range(50)]
    barrier = threading.Barrier(50)

    def one(job):
        data, status = job
        barrier.wait(timeout=60)
        r = post(server.url, "photo.jpg", data, timeout=180)
        return status, r.status_code, r.headers.get("content-type", "")

    with ThreadPoolExecutor(50) as pool:
        results = list(pool.map(one, jobs))
    assert [got for _, got, _ in results] == [want for want, _, _ in results]
    assert all(ct.startswith("application/json") for _, _, ct in results)
    assert server.alive() and httpx.get(server.url + "/health").status_code == 200


@pytest.mark.browser
def test_page_in_a_real_browser(server, corpus_root, ground_truth, reference):
    if not Path("/usr/bin/chromium").exists():
        pytest.skip("Debian chromium not installed at /usr/bin/chromium")
    from playwright.sync_api import sync_playwright

    rel = pick_photos(ground_truth, "batch_05", 1)[0][0]
    expected = reference.predict_sources([corpus_root / rel])[0]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"])
        try:
            page = browser.new_page()
            page.goto(server.url + "/")
            page.wait_for_selector("#model:has-text('version 1')", timeout=30_000)
            page.set_input_files("#file", str(corpus_root / rel))
            page.wait_for_selector("#label", timeout=60_000)
            assert page.inner_text("#label") == expected.label
            assert f"{100 * expected.confidence:.1f}%" in page.inner_text("#confidence")
            assert "version 1" in page.inner_text("#served-by")
            page.set_input_files("#file", str(corpus_root / HTML))
            page.wait_for_selector("#error", timeout=60_000)
            assert page.inner_text("#error").startswith("415") and "not an image" in page.inner_text("#error")
        finally:
            browser.close()


def test_reload_and_polling_swap_without_failing_requests(store, tmp_path_factory, corpus_root, ground_truth):
    from mlflow import MlflowClient

    from roomclf.settings import setup_mlflow

    srv = start(store, tmp_path_factory, "--poll", "1", "--threads", "1")
    client = MlflowClient(tracking_uri=store["MLFLOW_TRACKING_URI"], registry_uri=store["MLFLOW_TRACKING_URI"])
    photos = [(corpus_root / p).read_bytes() for p, _ in pick_photos(ground_truth, "batch_06", 6)]
    seen: list[tuple[int, str | None, bool]] = []
    stop = threading.Event()

    def hammer(k):
        with httpx.Client(timeout=120) as c:
            i = k
            while not stop.is_set():
                r = c.post(srv.url + "/predict", files={"file": ("p.jpg", photos[i % len(photos)], "image/jpeg")})
                body = r.json()
                seen.append((r.status_code, body.get("model", {}).get("version"), bool(body.get("tags"))))
                i += 1

    try:
        setup_mlflow()
        threads = [threading.Thread(target=hammer, args=(k,)) for k in range(3)]
        for t in threads:
            t.start()
        time.sleep(2)
        client.set_registered_model_alias("roomclf-onnx", "champion", "2")
        r = httpx.post(srv.url + "/reload", timeout=120)     # the poller may have been first: either way v2
        assert r.status_code == 200 and r.json()["version"] == "2"
        n_at_swap = len(seen)
        time.sleep(3)
        stop.set()
        for t in threads:
            t.join(timeout=120)
        assert seen and all(s == 200 for s, _, _ in seen), [s for s, _, _ in seen if s != 200]
        versions = [v for _, v, _ in seen]
        assert "1" in versions[:n_at_swap] and versions[-1] == "2"
        # v2's metadata really is in service: its (all-trained) attributes give tags; v1's never
        assert all(tags == (v == "2") for _, v, tags in seen)
        assert httpx.get(srv.url + "/model").json()["attributes"]["untrained"] == []

        # a broken alias: the reload fails with 503, the old model keeps serving
        client.delete_registered_model_alias("roomclf-onnx", "champion")
        r = httpx.post(srv.url + "/reload", timeout=120)
        assert_clean_error(r, 503, "still serving version 2")
        assert post(srv.url, "p.jpg", photos[0]).json()["model"]["version"] == "2"

        # polling alone follows the alias back to v1
        client.set_registered_model_alias("roomclf-onnx", "champion", "1")
        deadline = time.monotonic() + 60
        while httpx.get(srv.url + "/health").json()["model"]["version"] != "1":
            assert time.monotonic() < deadline, srv.tail()
            time.sleep(0.5)
        assert httpx.get(srv.url + "/health").json()["last_reload_error"] is None
    finally:
        stop.set()
        client.set_registered_model_alias("roomclf-onnx", "champion", "1")
        srv.stop()


def test_file_model_reloads_when_the_file_changes(quick_onnx, tmp_path):
    from serving.holder import ModelHolder

    path = tmp_path / "model.onnx"
    shutil.copy(quick_onnx, path)
    holder = ModelHolder(str(path), threads=1)
    first = holder.current
    assert holder.reload() == {"changed": False, "version": None, "name": "model"}
    shutil.copy(quick_onnx, tmp_path / "new.onnx")
    os.utime(tmp_path / "new.onnx", ns=(time.time_ns(), time.time_ns() + 10**9))
    os.replace(tmp_path / "new.onnx", path)
    assert holder.reload()["changed"] is True and holder.current is not first
    size = first.model.input_size          # the old model still serves the requests that hold it
    assert first.model.run(np.zeros((1, 3, size, size), np.float32))["probs"].shape == (1, 7)


def test_status_for_loader_errors():
    """Serving maps the loader's error kind, not its wording, to an HTTP status. No corpus needed."""
    import io

    from PIL import Image

    from roomclf.photos import PhotoError, open_photo
    from serving.uploads import status_for

    buf = io.BytesIO()
    Image.new("RGB", (200, 150), (90, 120, 30)).save(buf, format="JPEG")
    jpeg = buf.getvalue()

    def status(data: bytes) -> int:
        try:
            open_photo(data)
        except PhotoError as exc:
            return status_for(exc.kind)
        return 200

    assert status(b"") == 400
    assert status(b"<!doctype html><html>error</html>") == 415
    assert status(b"\x00\x01 not any image format") == 415
    assert status(jpeg[: len(jpeg) // 2]) == 422            # truncated
    assert status(jpeg) == 200
    assert status_for(PhotoError.TOO_LARGE) == 413 and status_for(None) == 422


def test_missing_model_is_a_one_line_error(store):
    env = {**store, "ROOMCLF_HOME": store["ROOMCLF_HOME"]}
    r = subprocess.run([sys.executable, "-m", "roomclf.cli", "serve", "--model", "models:/nope@champion"],
                       env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode != 0
    assert "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith("Error: no model version at models:/nope@champion")


# ---- hardening: Host allow-list, admission before reading, decoder allow-list, no absolute paths --------------

def test_foreign_host_is_refused(server, corpus_root):
    """DNS rebinding: a request for another name than the server's gets 400 before anything runs."""
    photo = (corpus_root / ODD[1]).read_bytes()
    for host in ("evil.example", "evil.example:8080", "localhost.evil.example"):
        for r in (httpx.get(server.url + "/health", headers={"host": host}),
                  httpx.get(server.url + "/model", headers={"host": host}),
                  httpx.post(server.url + "/predict", files={"file": ("p.jpg", photo, "image/jpeg")},
                             headers={"host": host})):
            assert_clean_error(r, 400, "not allowed")
    for host in ("localhost", f"localhost:{server.port}", f"127.0.0.1:{server.port}", "[::1]"):
        assert httpx.get(server.url + "/health", headers={"host": host}).status_code == 200, host


A_PHOTO = "batch_02/listing_0498/photo_10.jpg"    # ~104 KB
B_PHOTO = "batch_06/listing_0045/photo_05.jpg"    # ~95 KB: either alone fits in 0.15 MB in flight, not both


@pytest.fixture(scope="module")
def file_server(quick_onnx, tmp_path_factory):
    """Serving the ONNX file at its absolute path, one slot, at most 0.15 MB of uploads in flight,
    3 s in the admission queue, and one extra Host name."""
    log = tmp_path_factory.mktemp("serve_file_log") / "server.log"
    env = {**os.environ, "ROOMCLF_HOME": str(tmp_path_factory.mktemp("serve_file_home"))}
    env.pop("ROOMCLF_ALLOWED_HOSTS", None)
    srv = roomclf_serve(str(quick_onnx), env=env, log=log, extra=[
        "--poll", "0", "--threads", "1", "--slots", "1", "--max-mb", "0.5", "--max-inflight-mb", "0.15",
        "--queue-seconds", "3", "--allow-host", "proxy.example"]).wait_ready(120)
    yield srv
    srv.stop()


def stalled_upload(url: str, photo: bytes):
    """A POST /predict whose headers (with its Content-Length) and first half of the body are sent;
    returns (socket, rest of the request)."""
    import socket
    from urllib.parse import urlsplit

    req = httpx.Request("POST", url + "/predict", files={"file": ("a.jpg", photo, "image/jpeg")})
    body = req.read()
    head = "".join(f"{k}: {v}\r\n" for k, v in req.headers.items())
    raw = f"POST /predict HTTP/1.1\r\n{head}Connection: close\r\n\r\n".encode() + body
    cut = len(raw) - len(body) // 2
    parts = urlsplit(url)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=60)
    sock.sendall(raw[:cut])
    return sock, raw[cut:]


def finish(sock, rest: bytes) -> tuple[int, dict]:
    import json

    sock.sendall(rest)
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    sock.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


def admission(srv) -> dict:
    return httpx.get(srv.url + "/health").json()["admission"]


def wait_until(cond, what: str, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def test_admission_comes_before_reading_and_caps_bytes_in_flight(file_server, corpus_root):
    """A request is admitted (its Content-Length counted against the bytes in flight) before its upload
    is read; one that does not fit waits unread, then runs when the first is done, or gets 503."""
    a, b = (corpus_root / A_PHOTO).read_bytes(), (corpus_root / B_PHOTO).read_bytes()
    url = file_server.url
    assert admission(file_server)["max_inflight_mb"] == 0.15

    sock, rest = stalled_upload(url, a)              # admitted, half read, holding ~0.1 MB
    wait_until(lambda: admission(file_server)["requests"] == 1, "the stalled upload is admitted")
    with ThreadPoolExecutor(1) as pool:
        second = pool.submit(post, url, "b.jpg", b)
        wait_until(lambda: admission(file_server)["waiting"] == 1, "the second request waits for admission")
        time.sleep(1.0)
        assert not second.done()                     # not read, not answered: it waits its turn
        assert admission(file_server)["requests"] == 1
        status, body = finish(sock, rest)
        assert status == 200 and body["label"]
        r = second.result(timeout=60)
    assert r.status_code == 200 and r.json()["label"]

    sock, rest = stalled_upload(url, a)              # again, and the waiter gives up after --queue-seconds
    wait_until(lambda: admission(file_server)["requests"] == 1, "the stalled upload is admitted")
    t0 = time.monotonic()
    assert_clean_error(post(url, "b.jpg", b), 503, "server busy")
    assert 2.5 < time.monotonic() - t0 < 30
    assert finish(sock, rest)[0] == 200
    wait_until(lambda: admission(file_server)["requests"] == 0, "every place is given back")
    assert admission(file_server)["inflight_mb"] == 0 and admission(file_server)["waiting"] == 0


def test_extra_host_names_are_answered(file_server):
    assert httpx.get(file_server.url + "/health", headers={"host": "proxy.example"}).status_code == 200
    assert_clean_error(httpx.get(file_server.url + "/health", headers={"host": "evil.example"}), 400, "not allowed")


def absolute_paths(value, found=None) -> list[str]:
    """Every string in a JSON answer that looks like an absolute path of this machine."""
    found = [] if found is None else found
    if isinstance(value, dict):
        for v in value.values():
            absolute_paths(v, found)
    elif isinstance(value, list):
        for v in value:
            absolute_paths(v, found)
    elif isinstance(value, str) and (value.startswith("/") or "/tmp/" in value or "/home/" in value):
        found.append(value)
    return found


def test_model_answers_hold_no_absolute_paths(file_server, quick_onnx, corpus_root):
    model = httpx.get(file_server.url + "/model").json()
    health = httpx.get(file_server.url + "/health").json()
    pred = post(file_server.url, "p.jpg", (corpus_root / B_PHOTO).read_bytes()).json()
    for answer in (model, health, pred):
        assert absolute_paths(answer) == [], answer
        assert str(quick_onnx.parent) not in str(answer)
    assert model["uri"] == model["source"] == quick_onnx.name and model["name"] == quick_onnx.stem
    assert pred["model"]["uri"] == quick_onnx.name


def test_failed_reload_of_a_file_model_tells_no_path(quick_onnx, tmp_path):
    from fastapi.testclient import TestClient

    from serving.app import create_app

    path = tmp_path / "served" / "model.onnx"
    path.parent.mkdir()
    shutil.copy(quick_onnx, path)
    with TestClient(create_app(str(path), threads=1), base_url="http://localhost") as client:
        path.unlink()
        r = client.post("/reload")
        assert_clean_error(r, 503, "still serving", "model.onnx")
        assert str(tmp_path) not in r.text
        health = client.get("/health").json()
        assert health["last_reload_error"] and str(tmp_path) not in str(health), health


def test_unsupported_formats_are_a_415_and_a_row_error(server, reference, corpus_root, tmp_path):
    """A TIFF or EPS upload is refused before its decoder runs; in a crawl it is a row with an error."""
    import io

    from PIL import Image

    good = corpus_root / B_PHOTO
    files = []
    for fmt in ("TIFF", "EPS", "BMP"):
        buf = io.BytesIO()
        Image.open(good).convert("RGB").save(buf, format=fmt)
        files.append(("files", (f"photo.{fmt.lower()}", buf.getvalue(), "image/jpeg")))
        assert_clean_error(post(server.url, "photo.jpg", buf.getvalue()), 415, f"unsupported image format {fmt}")
    files.append(("files", ("good.jpg", good.read_bytes(), "image/jpeg")))
    body = httpx.post(server.url + "/predict/batch", files=files, timeout=60).json()
    assert [x["status"] for x in body["results"]] == [415, 415, 415, 200]
    (tmp_path / "photo_01.jpg").write_bytes(files[0][1][1])    # a TIFF named .jpg in a crawl
    rows = reference.predict_sources([tmp_path / "photo_01.jpg", good])
    assert rows[0].label is None and rows[0].error.startswith("unsupported image format TIFF")
    assert rows[1].label and rows[1].error is None
