"""The labelling app's HTTP API on real photos and a real label store (FastAPI TestClient).

Suggestions are seeded into the store as ``predicted`` labels (what prelabel
writes), so these tests need no model.
"""
from __future__ import annotations

import csv
import io
import json
import shutil
import time

import pytest
from fastapi.testclient import TestClient

from roomclf.labels.app.app import create_app
from roomclf.labels.store import LabelStore

BATCH = "batch_01"
LOCAL = "http://localhost"     # the app answers only the hosts it is reached by, not TestClient's "testserver"


def first_photos(ground_truth, n):
    return sorted(p for p, r in ground_truth.items() if p.startswith(BATCH + "/") and r["label"])[:n]


@pytest.fixture()
def store(home):
    return LabelStore()


@pytest.fixture()
def seeded(store, ground_truth):
    """Suggestions for the whole batch: the ground truth, with a confidence."""
    rows = [(p, r["label"], 0.5 + (i % 10) / 20, {"top3": [[r["label"], 0.9]], "model": "seed"})
            for i, (p, r) in enumerate(sorted(ground_truth.items())) if p.startswith(BATCH + "/") and r["label"]]
    store.set_labels(rows, "predicted", "test")
    return dict((p, lab) for p, lab, *_ in rows)


@pytest.fixture()
def client(corpus_root, store, seeded, tmp_path):
    return TestClient(create_app(corpus_root, BATCH, store, thumbs=tmp_path / "thumbs"), base_url=LOCAL)


def manual(store):
    return {p: lab.label for p, lab in store.labels(["manual"]).items()}


@pytest.mark.parametrize("path", ["../labels.csv", "/etc/passwd", "batch_01/../../labels.csv",
                                  "batch_01/listing_0003/../../../labels.csv", "..", "", "batch_01\\..\\x.jpg"])
def test_paths_escaping_the_root_are_refused(client, path):
    for url in ("/api/thumb", "/api/photo"):
        res = client.get(url, params={"path": path})
        assert res.status_code in (400, 404), (url, path, res.status_code)
        assert "error" in res.json()


def test_photo_of_another_batch_is_404_and_unwritable(client, store, ground_truth):
    other = sorted(p for p in ground_truth if p.startswith("batch_02/"))[0]
    assert client.get("/api/thumb", params={"path": other}).status_code == 404
    res = client.post("/api/label", json={"path": other, "label": "kitchen"})
    assert res.status_code == 404 and "not in batch_01" in res.json()["error"]
    assert manual(store) == {}


def test_symlink_out_of_the_root_is_refused(tmp_path, corpus_root, ground_truth, home):
    """A corpus whose batch holds a symlink to a photo outside the root: never served, never labelled."""
    src = corpus_root / first_photos(ground_truth, 1)[0]
    root = tmp_path / "corpus"
    listing = root / BATCH / "listing_0001"
    listing.mkdir(parents=True)
    shutil.copy(src, listing / "photo_01.jpg")
    outside = tmp_path / "secret.jpg"
    shutil.copy(src, outside)
    (listing / "photo_02.jpg").symlink_to(outside)
    (listing / "photo_03.jpg").write_bytes(b"")  # an empty file: a broken photo
    store = LabelStore()
    client = TestClient(create_app(root, BATCH, store, thumbs=tmp_path / "thumbs"), base_url=LOCAL)
    ok = client.get("/api/thumb", params={"path": f"{BATCH}/listing_0001/photo_01.jpg"})
    assert ok.status_code == 200 and ok.headers["content-type"] == "image/jpeg" and ok.content[:2] == b"\xff\xd8"
    for url in ("/api/thumb", "/api/photo"):
        assert client.get(url, params={"path": f"{BATCH}/listing_0001/photo_02.jpg"}).status_code == 404
    res = client.post("/api/label", json={"path": f"{BATCH}/listing_0001/photo_02.jpg", "label": "kitchen"})
    assert res.status_code == 404
    broken = client.get("/api/thumb", params={"path": f"{BATCH}/listing_0001/photo_03.jpg"})
    assert broken.status_code == 422 and "empty file" in broken.json()["error"]
    assert store.labels(["manual"]) == {}
    (listing / "photo_03.jpg").unlink()             # removed from the disk after the app started
    for url in ("/api/thumb", "/api/photo"):
        gone = client.get(url, params={"path": f"{BATCH}/listing_0001/photo_03.jpg"})
        assert gone.status_code == 404 and "no longer on the disk" in gone.json()["error"]


@pytest.mark.parametrize("body,fragment", [
    ({"label": "garage"}, "unknown class"),
    ({"label": "kitchen", "attributes": {"bathtub": 1}}, "bathtub"),
    ({"label": "kitchen", "attributes": {"kitchen_island": 5}}, "0 or 1"),
])
def test_bad_label_writes_nothing(client, store, ground_truth, body, fragment):
    path = first_photos(ground_truth, 1)[0]
    res = client.post("/api/label", json={"path": path, **body})
    assert res.status_code == 400 and fragment in res.json()["error"]
    assert manual(store) == {} and store.attributes(["manual"]) == {}


def test_label_with_attributes_who_and_history(client, store, ground_truth):
    path = first_photos(ground_truth, 1)[0]
    res = client.post("/api/label?who=alice", json={"path": path, "label": "kitchen",
                                                    "attributes": {"kitchen_island": 1, "range_hood": 0}})
    assert res.status_code == 200 and res.json()["labelled"] == 1 and res.json()["per_class"]["kitchen"] == 1
    assert store.attributes(["manual"]) == {path: {"kitchen.kitchen_island": 1, "kitchen.range_hood": 0}}
    client.post("/api/label?who=bob", json={"path": path, "label": "dining_room"})
    assert manual(store) == {path: "dining_room"}
    manual_history = [(h["who"], h["label"]) for h in store.history(path) if h["source"] == "manual"]
    assert manual_history == [("alice", "kitchen"), ("bob", "dining_room")]
    # an attribute ticked later is saved alone
    res = client.post("/api/attributes?who=bob", json={"path": path, "label": "dining_room",
                                                       "attributes": {"chandelier": 1}})
    assert res.status_code == 200 and res.json()["attributes"]["dining_room.chandelier"] == 1
    # undo removes the manual label; the suggestion is untouched
    assert client.post("/api/unlabel", json={"paths": [path]}).json()["removed"] == 1
    assert manual(store) == {} and path in store.labels(["predicted"])


def test_restore_puts_label_and_ticks_back_as_they_were(client, store, ground_truth):
    a, b = first_photos(ground_truth, 2)
    client.post("/api/label", json={"path": a, "label": "kitchen", "attributes": {"kitchen_island": 1}})
    client.post("/api/attributes", json={"path": a, "label": "kitchen", "attributes": {"range_hood": 1}})
    client.post("/api/label", json={"path": b, "label": "bedroom", "attributes": {"tv": 1}})
    # undo the tick: kitchen with the island only; undo b's label: no label, no ticks
    res = client.post("/api/restore", json={"items": [{"path": a, "label": "kitchen",
                                                       "attributes": {"kitchen.kitchen_island": 1}},
                                                      {"path": b, "label": None}]})
    assert res.status_code == 200 and res.json()["restored"] == 2
    assert manual(store) == {a: "kitchen"} and store.attributes(["manual"]) == {a: {"kitchen.kitchen_island": 1}}
    # without attributes, only the label is put back; a bad item changes nothing
    client.post("/api/restore", json={"items": [{"path": a, "label": "dining_room"}]})
    assert manual(store) == {a: "dining_room"} and store.attributes(["manual"]) == {a: {"kitchen.kitchen_island": 1}}
    bad = client.post("/api/restore", json={"items": [{"path": a, "label": None},
                                                      {"path": b, "label": "kitchen", "attributes": {"sauna": 1}}]})
    assert bad.status_code == 400 and "sauna" in bad.json()["error"]
    assert manual(store) == {a: "dining_room"}
    assert [h["label"] for h in store.history(b) if h["source"] == "manual"] == ["bedroom", None]


def test_confirm_is_all_or_nothing(client, store, ground_truth):
    paths = first_photos(ground_truth, 3)
    bad = [{"path": paths[0], "label": "kitchen"}, {"path": paths[1], "label": "attic"}]
    assert client.post("/api/confirm", json={"items": bad}).status_code == 400
    assert client.post("/api/confirm", json={"items": [{"path": "../x.jpg", "label": "kitchen"}]}).status_code == 400
    typed = client.post("/api/confirm", json={"items": [{"path": 5, "label": "kitchen"}]})
    assert typed.status_code == 400 and "must be a string" in typed.json()["error"]
    assert manual(store) == {}
    good = [{"path": p, "label": "bedroom"} for p in paths]
    assert client.post("/api/confirm?who=carol", json={"items": good}).json()["confirmed"] == 3
    assert manual(store) == {p: "bedroom" for p in paths}


def test_confirm_pages_group_by_suggestion(client, store, seeded):
    pages = client.get("/api/pages").json()
    assert all(1 <= len(pg["paths"]) <= 24 for pg in pages)
    assert any(len(pg["paths"]) == 24 for pg in pages), "a batch this size fills at least one 24-photo page"
    for pg in pages:
        assert {seeded[p] for p in pg["paths"]} == {pg["label"]}
        assert pg["confidences"] == sorted(pg["confidences"], reverse=True)
    assert sorted(p for pg in pages for p in pg["paths"]) == sorted(seeded)
    first = pages[0]
    client.post("/api/confirm", json={"items": [{"path": p, "label": first["label"]} for p in first["paths"]]})
    again = [p for pg in client.get("/api/pages").json() for p in pg["paths"]]
    assert not set(first["paths"]) & set(again) and len(again) == len(seeded) - len(first["paths"])


def test_position_survives_a_new_app(client, store, corpus_root, ground_truth, tmp_path):
    path = first_photos(ground_truth, 5)[4]
    assert client.post("/api/position?who=dan", json={"path": path}).status_code == 200
    again = TestClient(create_app(corpus_root, BATCH, LabelStore(store.path), thumbs=tmp_path / "thumbs"),
                       base_url=LOCAL)
    assert again.get("/api/state?who=dan").json()["position"] == path
    assert again.get("/api/state?who=erin").json()["position"] is None


def test_queue_follows_prelabel_order_and_shows_labels(store, corpus_root, seeded, ground_truth, tmp_path):
    order = sorted(seeded, reverse=True)
    store.set_meta(f"queue:{BATCH}", json.dumps(order[:10]))
    client = TestClient(create_app(corpus_root, BATCH, store, thumbs=tmp_path / "thumbs"), base_url=LOCAL)
    client.post("/api/label", json={"path": order[0], "label": "exterior"})
    items = client.get("/api/queue").json()
    assert [i["path"] for i in items[:10]] == order[:10]
    assert len(items) == len({i["path"] for i in items}) >= len(seeded)
    assert items[0]["label"] == "exterior" and items[0]["suggestion"] == seeded[order[0]]
    assert items[1]["label"] is None and items[1]["top3"]


def test_review_shows_this_batch_suspects(client, store, ground_truth):
    inside, outside = first_photos(ground_truth, 1)[0], sorted(p for p in ground_truth if p.startswith("batch_02/"))[0]
    store.set_meta("suspects", json.dumps([{"path": inside, "label": "kitchen", "vote": "bedroom", "share": 0.8},
                                           {"path": outside, "label": "kitchen", "vote": "bedroom", "share": 0.9}]))
    found = client.get("/api/review").json()
    assert [s["path"] for s in found] == [inside] and found[0]["vote"] == "bedroom"
    assert client.get("/api/state").json()["suspects"] == 1


def test_export_csv(client, ground_truth):
    paths = first_photos(ground_truth, 2)
    client.post("/api/label?who=fay", json={"path": paths[0], "label": "bathroom", "attributes": {"shower": 1}})
    assert client.get("/api/export.csv", params={"sources": "nonsense"}).status_code == 400
    res = client.get("/api/export.csv")
    assert res.status_code == 200 and res.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(res.text)))
    assert [(r["path"], r["label"], r["who"], r["attributes"]) for r in rows] == \
        [(paths[0], "bathroom", "fay", "bathroom.shower=1")]
    everything = list(csv.DictReader(io.StringIO(client.get("/api/export.csv?sources=manual,predicted").text)))
    assert len(everything) > 300


def test_thumbnails_are_cached_on_disk(client, ground_truth, tmp_path):
    path = first_photos(ground_truth, 1)[0]
    t0 = time.perf_counter()
    first = client.get("/api/thumb", params={"path": path})
    cold = time.perf_counter() - t0
    files = list((tmp_path / "thumbs").rglob("*.jpg"))
    assert first.status_code == 200 and len(files) == 1
    stamp = files[0].stat().st_mtime_ns
    t0 = time.perf_counter()
    second = client.get("/api/thumb", params={"path": path})
    warm = time.perf_counter() - t0
    assert second.content == first.content and files[0].stat().st_mtime_ns == stamp
    assert warm < max(cold, 0.05) * 5  # served from disk, not remade (loose: the machine is shared)
    large = client.get("/api/thumb", params={"path": path, "size": "large"})
    assert large.status_code == 200 and len(list((tmp_path / "thumbs").rglob("*.jpg"))) == 2
    assert client.get("/api/thumb", params={"path": path, "size": "huge"}).status_code == 400


def test_index_page_and_who_cookie(client):
    res = client.get("/?who=gus")
    assert res.status_code == 200 and "roomclf label" in res.text
    assert client.cookies.get("roomclf_who") == "gus"
    assert client.get("/api/state").json()["who"] == "gus"
    assert client.get("/static/app.js").status_code == 200


def test_thumbnails_warmed_in_the_background(corpus_root, store, seeded, tmp_path):
    create_app(corpus_root, BATCH, store, limit=6, thumbs=tmp_path / "warm", warm_thumbs=True)
    deadline = time.time() + 60
    while time.time() < deadline and len(list((tmp_path / "warm").rglob("*.jpg"))) < 6:
        time.sleep(0.2)
    assert len(list((tmp_path / "warm").rglob("*.jpg"))) == 6


@pytest.mark.parametrize("url", ["/api/export.csv", "/api/state", "/", "/api/queue", "/static/app.js"])
def test_foreign_host_is_refused(corpus_root, store, seeded, tmp_path, url):
    """DNS rebinding: a page on evil.example that resolves to 127.0.0.1 must not read the labels."""
    client = TestClient(create_app(corpus_root, BATCH, store, thumbs=tmp_path / "thumbs"), base_url=LOCAL)
    assert client.get(url).status_code == 200
    for host in ("evil.example", "evil.example:8000", "localhost.evil.example", "127.0.0.1.nip.io", "testserver"):
        res = client.get(url, headers={"host": host})
        assert res.status_code == 400, (host, res.status_code)
        assert "not allowed" in res.json()["error"]
    res = client.post("/api/label", json={"path": sorted(seeded)[0], "label": "kitchen"},
                      headers={"host": "evil.example"})
    assert res.status_code == 400 and manual(store) == {}
    for host in ("localhost", "localhost:8000", "127.0.0.1:8000", "[::1]:8000", "LOCALHOST"):
        assert client.get(url, headers={"host": host}).status_code == 200, host


def test_bound_and_extra_hosts_are_answered(corpus_root, store, seeded, tmp_path, monkeypatch):
    monkeypatch.setenv("ROOMCLF_ALLOWED_HOSTS", "labels.internal, proxy.example")
    app = create_app(corpus_root, BATCH, store, thumbs=tmp_path / "thumbs", host="10.1.2.3", allow_hosts=["box.lan"])
    client = TestClient(app, base_url=LOCAL)
    for host in ("10.1.2.3:8000", "box.lan", "labels.internal", "proxy.example:443", "localhost"):
        assert client.get("/api/export.csv", headers={"host": host}).status_code == 200, host
    assert client.get("/api/export.csv", headers={"host": "evil.example"}).status_code == 400


def test_answers_hold_no_absolute_paths(client, store, ground_truth, corpus_root, tmp_path):
    """Nothing the app answers tells where the corpus, the store or the thumbnails live on this machine."""
    path = first_photos(ground_truth, 1)[0]
    client.post("/api/label?who=ann", json={"path": path, "label": "kitchen"})
    answers = [client.get(u) for u in ("/api/state", "/api/queue", "/api/pages", "/api/review", "/api/export.csv",
                                       "/api/export.csv?sources=bogus", "/api/photo?path=batch_01/nope.jpg",
                                       "/api/photo?path=../labels.csv", "/api/thumb?path=batch_02/x.jpg")]
    answers.append(client.post("/api/label", json={"path": path, "label": "sauna"}))
    for res in answers:
        text = res.text + " ".join(f"{k}: {v}" for k, v in res.headers.items())
        for secret in (str(corpus_root), str(store.path.parent), str(tmp_path), str(corpus_root.parent)):
            assert secret not in text, (res.url, secret)
