"""The labelling app's attribute mode over HTTP, on real photos, real embeddings and a real label store.

Room labels are seeded as ``predicted`` (what prelabel writes): a photo's class in the attribute mode is
its effective room label, so no model is needed.
"""
from __future__ import annotations

import numpy as np
import pytest
from fastapi.testclient import TestClient

from roomclf.labels.app.app import create_app
from roomclf.labels.attribute_picks import CHECK_SHARE, GRID_SIZE
from roomclf.labels.store import UNSURE, LabelStore

BATCH = "batch_01"
LOCAL = "http://localhost"
ROOM, ATTRIBUTE, KEY = "bedroom", "tv", "bedroom.tv"


@pytest.fixture()
def store(home):
    return LabelStore()


@pytest.fixture()
def rooms(store, ground_truth):
    rows = [(p, r["label"], 0.9) for p, r in sorted(ground_truth.items()) if p.startswith(BATCH + "/") and r["label"]]
    store.set_labels(rows, "predicted", "test")
    return {p: lab for p, lab, _ in rows}


@pytest.fixture()
def client(corpus_root, store, rooms, tmp_path):
    return TestClient(create_app(corpus_root, BATCH, store, thumbs=tmp_path / "thumbs"), base_url=LOCAL)


def grid(client, room=ROOM, attribute=ATTRIBUTE):
    res = client.get("/api/tags/grid", params={"room": room, "attribute": attribute})
    assert res.status_code == 200, res.text
    return res.json()


def answer(client, path, value, room=ROOM, attribute=ATTRIBUTE, who="ann"):
    return client.post(f"/api/tags/answer?who={who}", json={"path": path, "room": room, "attribute": attribute,
                                                             "answer": value})


def logit(p):
    p = np.clip(np.asarray(p, float), 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


def test_grid_answers_retrain_and_a_restart(client, store, rooms, corpus_root, tmp_path):
    first = grid(client)
    paths = [p["path"] for p in first["photos"]]
    bedrooms = {p for p, lab in rooms.items() if lab == ROOM}
    assert len(paths) == GRID_SIZE == len(set(paths)) and set(paths) <= bedrooms
    assert first["picked_by"] == "spread" and first["open"] == len(bedrooms)
    assert first["head"]["positives"] == first["head"]["negatives"] == 0 and first["head"]["f1"] is None
    assert "at least" in first["head"]["note"]

    said = {}
    for i, path in enumerate(paths):
        value = "yes" if i < 8 else "no" if i < 20 else "unsure"
        assert answer(client, path, value).json() == {"path": path, "key": KEY, "answer": value}
        said[path] = value
    manual = store.attributes(["manual"])
    assert {p: t[KEY] for p, t in manual.items()} == {p: int(v == "yes") for p, v in said.items() if v != "unsure"}
    assert store.attribute_unsure(KEY) == {p for p, v in said.items() if v == "unsure"}
    assert {h["who"] for p in paths for h in store.attribute_history(p)} == {"ann"}

    second = grid(client)
    head = second["head"]
    assert (head["positives"], head["negatives"], second["unsure"]) == (8, 12, 4)
    assert second["picked_by"] == "head" and head["folds"] >= 2
    assert all(head[m] is not None and 0 <= head[m] <= 1 for m in ("precision", "recall", "f1"))
    again = [p["path"] for p in second["photos"]]
    assert not set(again) & set(paths) and set(again) <= bedrooms
    assert second["open"] == len(bedrooms) - len(paths) > GRID_SIZE and len(again) == GRID_SIZE
    # least sure first (scores nearest the threshold), then the highest scored, highest first
    scores = np.array([p["score"] for p in second["photos"]])
    checks = GRID_SIZE // CHECK_SHARE
    unsure, checks = scores[:len(again) - checks], scores[len(again) - checks:]
    margin = np.abs(logit(unsure) - logit(second["threshold"]))
    assert np.all(np.diff(margin) >= -1e-3)
    assert np.all(np.diff(checks) <= 1e-6)

    # a new app on the same store (a restart): the answers hold, the grid and the head say so
    fresh = TestClient(create_app(corpus_root, BATCH, LabelStore(store.path), thumbs=tmp_path / "thumbs"),
                       base_url=LOCAL)
    after = grid(fresh)
    assert (after["head"]["positives"], after["head"]["negatives"], after["unsure"]) == (8, 12, 4)
    assert not {p["path"] for p in after["photos"]} & set(paths)


def test_answer_taken_back_and_bad_input_writes_nothing(client, store, rooms, ground_truth):
    path = sorted(p for p, lab in rooms.items() if lab == ROOM)[0]
    assert answer(client, path, "unsure").status_code == 200
    assert answer(client, path, "yes").status_code == 200          # a changed answer: the "not sure" goes
    assert store.attributes(["manual"]) == {path: {KEY: 1}} and store.attribute_unsure(KEY) == set()
    assert answer(client, path, None).status_code == 200           # the undo of a first answer
    assert store.attributes(["manual"]) == {} and store.attribute_unsure(KEY) == set()
    assert [h["value"] for h in store.attribute_history(path)] == [UNSURE, 1, None]

    other = sorted(p for p in ground_truth if p.startswith("batch_02/"))[0]
    for body, status, fragment in [
        ({"answer": "maybe"}, 400, "one of yes, no, unsure"),
        ({"attribute": "sauna"}, 400, "unknown attribute 'sauna'"),
        ({"room": "garage"}, 400, "unknown class"),
        ({"path": other}, 404, "not in batch_01"),
        ({"path": "../labels.csv"}, 400, "bad photo path"),
    ]:
        res = client.post("/api/tags/answer", json={"path": path, "room": ROOM, "attribute": ATTRIBUTE,
                                                    "answer": "yes", **body})
        assert res.status_code == status and fragment in res.json()["error"], (body, res.text)
    assert store.attributes(["manual"]) == {} and len(store.attribute_history(path)) == 3
    assert client.get("/api/tags/grid", params={"room": ROOM, "attribute": "sauna"}).status_code == 400


def test_a_typed_attribute_joins_the_taxonomy(client, store, rooms, home):
    from roomclf.taxonomy import ATTRIBUTE_KEYS, added_attributes_file, class_attributes
    from roomclf.train.attributes import attribute_targets

    res = client.post("/api/tags/attribute", json={"room": "Living room", "name": "Ceiling fan"})
    assert res.status_code == 200, res.text
    assert res.json() == {"key": "living_room.ceiling_fan", "room": "living_room", "attribute": "ceiling_fan",
                          "attributes": ["fireplace", "tv", "stairs", "ceiling_fan"]}
    assert class_attributes("living_room")[-1] == "ceiling_fan" and "ceiling_fan" in added_attributes_file().read_text()
    assert client.get("/api/state").json()["attributes"]["living_room"][-1] == "ceiling_fan"
    assert "living_room.ceiling_fan" not in ATTRIBUTE_KEYS        # no model output until taxonomy.yaml lists it
    # a name the class knows (an alias) chooses it and adds nothing
    assert client.post("/api/tags/attribute", json={"room": "living_room", "name": "Television"}).json()["key"] == \
        "living_room.tv"
    assert client.post("/api/tags/attribute", json={"room": "living_room", "name": "2 fans!"}).status_code == 400
    assert client.post("/api/tags/attribute", json={"room": "sauna", "name": "bench"}).status_code == 400
    assert class_attributes("living_room") == ("fireplace", "tv", "stairs", "ceiling_fan")

    living = sorted(p for p, lab in rooms.items() if lab == "living_room")
    assert answer(client, living[0], "yes", "living_room", "ceiling_fan").status_code == 200
    assert answer(client, living[1], "no", "living_room", "ceiling fan").status_code == 200
    assert store.attributes(["manual"]) == {living[0]: {"living_room.ceiling_fan": 1},
                                            living[1]: {"living_room.ceiling_fan": 0}}
    assert grid(client, "living_room", "ceiling_fan")["head"]["positives"] == 1
    # training reads the store: the added tag is no model output and is left out, not an error
    Y, M = attribute_targets(living[:2], store, rooms)
    assert not M.any()


def test_a_broken_file_of_added_attributes_is_one_clear_message(client, home):
    from roomclf.taxonomy import added_attributes_file

    added_attributes_file().write_text("living_room: [ceiling_fan\n")
    res = client.post("/api/tags/attribute", json={"room": "living_room", "name": "skylight"})
    assert res.status_code == 400 and "cannot read the added attributes" in res.json()["error"]
    assert str(home) not in res.text
    assert client.get("/api/tags/grid", params={"room": "living_room", "attribute": "tv"}).status_code == 200
