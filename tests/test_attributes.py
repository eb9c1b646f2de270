"""Attribute heads: real photos, real labels from attributes.csv, real ONNX export and MLflow store."""
from __future__ import annotations

import numpy as np
import pytest

from roomclf.labels.store import LabelStore
from roomclf.taxonomy import ATTRIBUTE_KEYS, ATTRIBUTES
from roomclf.train.attribute_report import (
    attribute_grid,
    log_attribute_grid,
    log_attribute_report,
)
from roomclf.train.attributes import (
    AttributeDataError,
    attribute_targets,
    choose_threshold,
    fit_attribute_head,
    fit_linear,
    implied_negatives,
    import_attributes,
    predict_attributes,
)

TRAIN, VAL = ("batch_01", "batch_02"), ("batch_03",)
K = {k: i for i, k in enumerate(ATTRIBUTE_KEYS)}


@pytest.fixture(scope="module")
def labelled(tmp_path_factory, shared_data, corpus_root, labels_csv, embedding_cache):
    """A label store with labels.csv + attributes.csv of batch_01..03, and raw features of every
    photo there that has an attribute label."""
    import os

    from roomclf.models.embeddings import embed

    store = LabelStore(tmp_path_factory.mktemp("attr_store") / "labels.sqlite")
    store.import_csv(labels_csv, corpus_root=corpus_root, batches=TRAIN + VAL)
    report = import_attributes(store, shared_data / "attributes.csv", corpus_root)
    old = os.environ.get("ROOMCLF_EMBEDDING_DIR")
    os.environ["ROOMCLF_EMBEDDING_DIR"] = str(embedding_cache)
    try:
        emb = embed(corpus_root, sorted(store.attributes()), "efficientnet_lite0", normalize=False, progress=False)
    finally:
        if old is None:
            os.environ.pop("ROOMCLF_EMBEDDING_DIR")
        else:
            os.environ["ROOMCLF_EMBEDDING_DIR"] = old
    rooms = {p: lab.label for p, lab in store.labels().items()}
    Y, M = attribute_targets(emb.paths, store, rooms)
    train = np.array([p.split("/")[0] in TRAIN for p in emb.paths])
    return {"store": store, "report": report, "emb": emb, "rooms": rooms, "Y": Y, "M": M,
            "train": train, "val": ~train}


@pytest.fixture(scope="module")
def fit(labelled):
    d, tr, va = labelled, labelled["train"], labelled["val"]
    X = d["emb"].vectors
    return fit_attribute_head(X[tr], d["Y"][tr], d["M"][tr], X[va], d["Y"][va], d["M"][va], seed=0)


def test_import_counts_unknown_attributes_and_photos_outside_the_corpus(tmp_path, corpus_root, labels_csv):
    store = LabelStore(tmp_path / "labels.sqlite")
    store.import_csv(labels_csv, corpus_root=corpus_root, batches=["batch_01"])
    kitchen = next(p for p, lab in store.labels().items() if lab.label == "kitchen")
    f = tmp_path / "attrs.csv"
    f.write_text("path,attribute,value\n"
                 f"{kitchen},fridge,1\n{kitchen},jacuzzi,1\n{kitchen},dishwasher,0\n"
                 "batch_01/listing_9999/photo_99.jpg,fridge,1\n")
    rep = import_attributes(store, f, corpus_root)
    assert rep.added == 2 and rep.not_in_corpus == 1
    assert rep.unknown_attribute == {"kitchen.jacuzzi": 1}
    assert store.attributes()[kitchen] == {"kitchen.refrigerator": 1, "kitchen.dishwasher": 0}
    dropped = LabelStore(tmp_path / "other.sqlite")
    dropped.import_csv(labels_csv, corpus_root=corpus_root, batches=["batch_01"])
    import_attributes(dropped, f, corpus_root, drop_zeros=["dishwasher"])
    assert dropped.attributes()[kitchen] == {"kitchen.refrigerator": 1}
    with pytest.raises(AttributeDataError, match="not found"):
        import_attributes(store, tmp_path / "nope.csv", corpus_root)
    (tmp_path / "bad.csv").write_text("photo,tag\nx,y\n")
    with pytest.raises(AttributeDataError, match="expected columns"):
        import_attributes(store, tmp_path / "bad.csv", corpus_root)


def test_targets_keep_unknown_apart_from_negative(labelled, ground_truth, tmp_path):
    d = labelled
    idx = {p: i for i, p in enumerate(d["emb"].paths)}
    Y, M = d["Y"], d["M"]
    # only attributes of the photo's own class are ever known
    for p, i in idx.items():
        known = {ATTRIBUTE_KEYS[j].split(".")[0] for j in np.flatnonzero(M[i])}
        assert known <= {d["rooms"][p]}
    # a laundry photo is a sound negative for home_office (exclusive) but says nothing about closet
    laundry = next(p for p in idx if ground_truth[p]["subtype"] == "laundry")
    i = idx[laundry]
    assert (Y[i, K["interior.laundry"]], M[i, K["interior.laundry"]]) == (1, True)
    assert (Y[i, K["interior.home_office"]], M[i, K["interior.home_office"]]) == (0, True)
    assert not M[i, K["interior.closet"]]
    # a foyer photo may show its staircase: unknown, not negative
    foyer = next(p for p in idx if ground_truth[p]["subtype"] == "foyer")
    assert M[idx[foyer], K["interior.foyer"]] and not M[idx[foyer], K["interior.staircase"]]
    # a kitchen photo without any attribute row is entirely unknown
    plain = next(p for p, lab in d["rooms"].items() if lab == "kitchen" and p not in d["store"].attributes())
    Y2, M2 = attribute_targets([plain], d["store"], d["rooms"])
    assert not M2.any()
    # a label carried over by name when the room label differs; dropped when the class lacks it
    store = LabelStore(tmp_path / "own.sqlite")
    path = d["emb"].paths[0]
    store.set_attributes(path, {"living_room.tv": 1}, source="manual")
    Yb, Mb = attribute_targets([path], store, {path: "bedroom"})
    _, Mc = attribute_targets([path], store, {path: "bathroom"})
    assert Mb[0, K["bedroom.tv"]] and Yb[0, K["bedroom.tv"]] == 1 and not Mc.any()
    assert implied_negatives("exterior", ["front"]) == {"backyard", "pool"}
    assert implied_negatives("kitchen", ["refrigerator"]) == set()


def test_choose_threshold_prefers_precision_at_least_080():
    scores = np.array([0.95, 0.9, 0.85, 0.8, 0.6, 0.55, 0.5, 0.3, 0.2])
    y = np.array([1, 1, 1, 1, 0, 1, 0, 1, 0])
    # best F1 (0.86) cuts below 0.3 at precision 0.75; at 0.525 precision is 0.83 and F1 0.83
    assert 0.5 < choose_threshold(scores, y) < 0.55
    # precision >= 0.8 would cost a third of the F1 here: plain max F1 (tag all three positives)
    assert choose_threshold(np.array([0.9, 0.8, 0.7, 0.6, 0.5]), np.array([1, 0, 1, 0, 1])) < 0.5


def test_raw_embeddings_are_roomnet_features(labelled, corpus_root):
    import torch

    from roomclf.models.backbones import get_spec
    from roomclf.models.network import RoomNet
    from roomclf.photos import model_input

    paths = labelled["emb"].paths[:3]
    spec = get_spec("efficientnet_lite0")
    net = RoomNet("efficientnet_lite0").eval()
    x = torch.from_numpy(np.stack([model_input(corpus_root / p, spec.weights_size) for p in paths]))
    mean, std = torch.tensor(spec.mean).view(1, 3, 1, 1), torch.tensor(spec.std).view(1, 3, 1, 1)
    with torch.no_grad():
        feats = net.features((x - mean) / std).numpy()
    assert np.abs(feats - labelled["emb"].vectors[:3]).max() <= 1e-4


def test_heads_train_on_real_labels_and_mark_untrained(fit, labelled):
    d, tr = labelled, labelled["train"]
    pos, neg = (d["M"][tr] & (d["Y"][tr] == 1)).sum(0), (d["M"][tr] & (d["Y"][tr] == 0)).sum(0)
    expected = {k for j, k in enumerate(ATTRIBUTE_KEYS) if pos[j] >= 5 and neg[j] >= 1}
    assert {"exterior.front", "exterior.pool", "interior.staircase"} <= set(fit.trained) <= expected
    assert set(fit.untrained) == set(ATTRIBUTE_KEYS) - set(fit.trained)
    for key in expected - set(fit.trained):                 # dropped: a head no better than guessing
        assert fit.report[key]["auc"] < 0.7 and "chance" in fit.report[key]["status"]
    assert all(0 < fit.thresholds[k] < 1 for k in fit.trained)
    assert fit.report["exterior.garden"]["status"].startswith("untrained")   # positives but no sound negatives
    # the heads learned something real: pool vs front on unseen photos of batch_03
    pool = fit.report["exterior.pool"]
    assert pool["support"] >= 3 and pool["f1"] >= 0.7, pool
    # untrained keys output ~0 and have no threshold
    probs = predict_attributes(fit.head, d["emb"].vectors[:20])
    assert probs[:, [K[k] for k in fit.untrained]].max() < 1e-3


def test_masked_cells_do_not_change_the_head(labelled):
    d, tr = labelled, labelled["train"]
    X, Y, M = d["emb"].vectors[tr], d["Y"][tr], d["M"][tr]
    cols = [K["exterior.front"], K["exterior.pool"], K["interior.laundry"]]
    scrambled = np.where(M, Y, 1 - Y)                       # flip every unknown cell
    wa, ba = fit_linear(X, Y[:, cols], M[:, cols])
    wb, bb = fit_linear(X, scrambled[:, cols], M[:, cols])
    assert np.allclose(wa, wb, atol=1e-6) and np.allclose(ba, bb, atol=1e-6)
    wc, _ = fit_linear(X, scrambled[:, cols], np.ones_like(M[:, cols]))   # unmasked: the noise is learned
    assert not np.allclose(wa, wc, atol=1e-3)


def test_thresholds_come_from_validation_or_cross_validation(fit):
    for key in fit.trained:
        e = fit.report[key]
        expected = "validation" if e["support"] >= 3 and e["val_negatives"] >= 1 else "cross-validation"
        assert e["threshold_from"] == expected and e["threshold"] == fit.thresholds[key]
        assert e["auc"] >= 0.7


def test_held_out_figures_travel_from_the_fit_to_the_version(fit):
    """What a version carries of each attribute (roomclf.models.attribute_scores): the fit's own held-out
    figures and label counts, the same numbers in the ONNX metadata and in the version tag copied from it."""
    import json

    from roomclf.models.attribute_scores import (
        SCORES_KEY,
        emitted,
        from_report,
        from_version_tags,
        key_line,
        score_lines,
        version_tags,
    )

    scores = from_report(fit.report)
    assert set(scores) == set(ATTRIBUTE_KEYS)
    assert {k for k, e in scores.items() if e["emitted"]} == set(fit.trained)
    for key in fit.trained:
        e, r = scores[key], fit.report[key]
        for name in ("precision", "recall", "f1"):
            assert e[name] == pytest.approx(r[name], abs=1e-4)
        assert (e["labels"], e["positives"]) == (r["positives"] + r["negatives"], r["positives"])
        assert (e["held_out"], e["held_out_positives"]) == (r["support"] + r["val_negatives"], r["support"])
        assert "why" not in e
    for key in fit.untrained:
        assert scores[key]["f1"] is None and scores[key]["why"] and "untrained" not in scores[key]["why"]
    tag = version_tags({SCORES_KEY: scores})[SCORES_KEY]
    assert emitted(from_version_tags({SCORES_KEY: tag})) == emitted(scores) == json.loads(json.dumps(emitted(scores)))
    every = {k: {**scores["exterior.pool"], "emitted": True} for k in ATTRIBUTE_KEYS}
    assert len(version_tags({SCORES_KEY: every})[SCORES_KEY]) < 5000    # fits a registry tag even if all are emitted
    assert version_tags({}) == {} and from_version_tags({}) is None
    lines = score_lines(scores, "batch_03")
    pool = next(line for line in lines if line.strip().startswith("exterior.pool"))
    assert f"{scores['exterior.pool']['f1']:.2f}" in pool and str(scores["exterior.pool"]["labels"]) in pool
    assert len(lines) == 1 + len(fit.trained) and not any("interior.basement" in line for line in lines)
    assert key_line(scores, "interior.basement").startswith("interior.basement: not emitted: ")
    assert "F1" in key_line(scores, "exterior.pool") and "not recorded" in key_line(None, "living_room.tv")


@pytest.mark.slow
def test_exported_onnx_matches_torch_and_emits_only_trained_tags(fit, labelled, corpus_root, tmp_path):
    import torch

    from roomclf.models.network import ExportNet, RoomNet
    from roomclf.models.onnx_file import OnnxModel, export_onnx
    from roomclf.photos import model_input

    net = RoomNet("efficientnet_lite0").eval()
    export = ExportNet(net, fit.head).eval()
    path = export_onnx(export, tmp_path / "model.onnx", {"attribute_thresholds": fit.thresholds})
    model = OnnxModel(path)
    assert model.thresholds == fit.thresholds
    paths = labelled["emb"].paths[:8]
    batch = np.stack([model_input(corpus_root / p, model.input_size) for p in paths])
    out = model.run(batch)
    with torch.no_grad():
        _, attrs, _ = export(torch.from_numpy(batch))
    assert np.abs(out["attributes"] - attrs.numpy()).max() <= 1e-4
    assert np.abs(out["attributes"] - predict_attributes(fit.head, labelled["emb"].vectors[:8])).max() <= 1e-4
    trained = set(fit.trained)
    for cls_i, cls in enumerate(model.classes):
        probs = np.eye(len(model.classes), dtype=np.float32)[cls_i]
        pred = model.decode(probs, np.ones(len(ATTRIBUTE_KEYS), np.float32))
        assert set(pred.tags) == {a for a in ATTRIBUTES[cls] if f"{cls}.{a}" in trained}
    for pred in model.predict_sources([corpus_root / p for p in paths]):
        assert all(f"{pred.label}.{t}" in trained for t in pred.tags)


def test_report_goes_to_mlflow_and_grid_is_drawn(fit, labelled, corpus_root, home):
    import mlflow

    from roomclf.tracking.experiments import use_experiment

    use_experiment("attributes-test")
    d = labelled
    val_paths = [p for p, v in zip(d["emb"].paths, d["val"]) if v]
    assert fit.val_scores.shape == (len(val_paths), len(ATTRIBUTE_KEYS))
    with mlflow.start_run() as run:
        log_attribute_report(fit)
        logged = log_attribute_grid(fit, corpus_root, val_paths, d["rooms"], home)
    client = mlflow.MlflowClient()
    got = client.get_run(run.info.run_id)
    assert got.data.metrics["attr_f1.exterior.pool"] == pytest.approx(fit.report["exterior.pool"]["f1"])
    assert got.data.metrics["attr_threshold.exterior.pool"] == pytest.approx(fit.thresholds["exterior.pool"])
    assert got.data.metrics["attr_trained"] == len(fit.trained)
    assert "interior.basement" in got.data.tags["attributes.untrained"].split(",")
    assert set(got.data.tags["attributes.trained"].split(",")) == set(fit.trained)
    saved = mlflow.artifacts.load_dict(f"{got.info.artifact_uri}/report/attributes_report.json")
    assert saved["thresholds"] == fit.thresholds
    assert "report/attribute_tags.png" in {f.path for f in client.list_artifacts(run.info.run_id, "report")}

    from PIL import Image

    assert Image.open(logged).size[1] == len(fit.trained) * (112 + 18)
    probs = predict_attributes(fit.head, d["emb"].vectors)
    png = attribute_grid(corpus_root, d["emb"].paths, probs, d["rooms"], fit.thresholds, home / "grid.png",
                         per_attribute=4, size=64)
    img = Image.open(png)
    assert img.size[1] == len(fit.trained) * (64 + 18)
    assert np.asarray(img).std() > 10       # photos were pasted, not a blank sheet


# ---- evidence by source -------------------------------------------------------------------
def test_evidence_policy_leaves_out_annotation_zeros_where_better_evidence_exists(tmp_path, corpus_root, labels_csv):
    """``reliable`` (the default): an object-annotation zero is unknown, not negative, when the same
    photo has a better label for that attribute or the file holds by-eye negatives for it; where it
    is the only negative evidence (microwave here) it stays. ``as_is`` keeps all, ``no_annotation_zeros`` none."""
    from roomclf.train.attributes import select_evidence

    base = LabelStore(tmp_path / "base.sqlite")
    base.import_csv(labels_csv, corpus_root=corpus_root, batches=["batch_01"])
    kitchens = sorted(p for p, lab in base.labels().items() if lab.label == "kitchen")[:4]
    a, b, c, d = kitchens
    f = tmp_path / "attrs.csv"
    ann = "miniplaces_object_annotation"
    f.write_text("path,attribute,value,method\n"
                 f"{a},refrigerator,0,by_eye\n{b},refrigerator,0,{ann}\n{c},refrigerator,1,{ann}\n"
                 f"{d},refrigerator,1,by_eye\n{d},refrigerator,0,{ann}\n"      # the same photo: by eye wins
                 f"{b},microwave,0,{ann}\n{c},microwave,1,{ann}\n{a},kitchen_island,1,by_eye\n")
    got = {}
    for policy in ("reliable", "as_is", "no_annotation_zeros"):
        store = LabelStore(tmp_path / f"{policy}.sqlite")
        store.import_csv(labels_csv, corpus_root=corpus_root, batches=["batch_01"])
        rep = import_attributes(store, f, corpus_root, evidence=policy)
        got[policy] = (store.attributes(), rep)
    rel, rep = got["reliable"]
    assert rel[a] == {"kitchen.refrigerator": 0, "kitchen.kitchen_island": 1}
    assert rel[b] == {"kitchen.microwave": 0}                           # fridge zero left out, microwave zero kept
    assert rel[c] == {"kitchen.refrigerator": 1, "kitchen.microwave": 1}
    assert rel[d] == {"kitchen.refrigerator": 1}
    assert rep.dropped_zeros == {"refrigerator": 2} and "left out as unknown" in rep.summary()
    assert got["as_is"][0][b] == {"kitchen.refrigerator": 0, "kitchen.microwave": 0}
    assert got["as_is"][0][d] == {"kitchen.refrigerator": 0}            # as is: the file's last row wins
    assert b not in got["no_annotation_zeros"][0]
    assert got["no_annotation_zeros"][1].dropped_zeros == {"refrigerator": 2, "microwave": 1}
    only, _ = select_evidence([{"path": a, "attribute": "tv", "value": "0", "method": "by_eye"},
                               {"path": b, "attribute": "tv", "value": "0", "method": ann}], only=[b])
    assert only == []                                                     # the policy still sees the whole file
    with pytest.raises(AttributeDataError, match="unknown evidence policy"):
        import_attributes(base, f, corpus_root, evidence="trust-me")


# ---- a box ticked in the labelling app trains on the next `roomclf train` ----------------
def test_a_box_ticked_in_the_labelling_app_trains_its_attribute(tmp_path, corpus_root, ground_truth, embedding_cache,
                                                               monkeypatch):
    """``interior.garage`` has no label anywhere in the corpus: ticked in the app on enough photos
    (and unticked on others), the store -> targets -> head path trains it; basement, attic and
    closet, never ticked, stay untrained."""
    from roomclf.labels.app.session import LabelSession
    from roomclf.models.embeddings import embed

    monkeypatch.setenv("ROOMCLF_EMBEDDING_DIR", str(embedding_cache))
    store = LabelStore(tmp_path / "labels.sqlite")
    ticked = {}
    for batch in ("batch_01", "batch_02", "batch_03", "batch_04", "batch_05", "batch_06"):
        session = LabelSession(corpus_root, batch, store)
        for p, r in sorted(ground_truth.items()):
            if p.startswith(batch + "/") and r["label"] == "interior" and r["subtype"] in ("laundry", "staircase", "foyer"):
                value = int(r["subtype"] == "laundry")          # this user files laundry rooms under garage
                session.label(p, "interior", "alice", {"garage": value})
                ticked[p] = value
    paths = sorted(ticked)
    emb = embed(corpus_root, paths, "efficientnet_lite0", normalize=False, progress=False)
    rooms = {p: lab.label for p, lab in store.labels(["manual"]).items()}
    Y, M = attribute_targets(emb.paths, store, rooms, ["manual"])
    train = np.array([p < "batch_05" for p in emb.paths])
    j = K["interior.garage"]
    assert (Y[train, j] == 1).sum() >= 5 and (M[train, j] & (Y[train, j] == 0)).sum() >= 5
    X = emb.vectors
    fit = fit_attribute_head(X[train], Y[train], M[train], X[~train], Y[~train], M[~train], seed=0)
    assert "interior.garage" in fit.trained and fit.thresholds["interior.garage"] is not None
    assert fit.report["interior.garage"]["positives"] == int((Y[train, j] == 1).sum())
    assert fit.report["interior.garage"]["f1"] >= 0.8
    for key in ("interior.basement", "interior.attic", "interior.closet"):
        assert key in fit.untrained and fit.report[key]["status"] == "untrained: 0 positives"


# ---- the main job: a small train with attribute labels, then infer-all --------------------
def _attribute_photos(shared_data, ground_truth, batches, classes=("exterior", "interior")) -> list[str]:
    import csv

    with open(shared_data / "attributes.csv", newline="") as f:
        paths = {r["path"] for r in csv.DictReader(f)}
    return sorted(p for p in paths if p.split("/")[0] in batches and ground_truth[p]["label"] in classes)


@pytest.fixture(scope="module")
def tagged(tmp_path_factory, shared_data, corpus_root, ground_truth, embedding_cache):
    """One small tracked train (96 px, 1 frozen epoch) with attribute labels of the exterior and
    interior photos of batch_01-02 (valid batch_03), then infer-all (loop engine) over three
    listings of batch_03 with the registered ONNX version."""
    from conftest import isolated_store, pick_photos

    from roomclf.infer.run import infer_all
    from roomclf.models.registry import ONNX_NAME
    from roomclf.train.config import TrainConfig
    from roomclf.train.run import run_training

    home = tmp_path_factory.mktemp("tags_home")
    with isolated_store(home), pytest.MonkeyPatch.context() as mp:
        mp.setenv("ROOMCLF_EMBEDDING_DIR", str(embedding_cache))
        mp.setenv("ROOMCLF_DATA", str(corpus_root))
        mp.delenv("ROOMCLF_LABEL_DB", raising=False)
        store = LabelStore()
        train_extra = _attribute_photos(shared_data, ground_truth, ("batch_01", "batch_02"))
        valid_extra = _attribute_photos(shared_data, ground_truth, ("batch_03",))
        store.set_labels(pick_photos(ground_truth, "batch_01", 30)
                         + [(p, ground_truth[p]["label"]) for p in train_extra], "manual")
        store.set_labels(pick_photos(ground_truth, "batch_03", 20)
                         + [(p, ground_truth[p]["label"]) for p in valid_extra], "imported")
        import_attributes(store, shared_data / "attributes.csv", corpus_root, paths=train_extra + valid_extra)
        cfg = TrainConfig(data=str(corpus_root), train_batches="batch_01,batch_02", valid_batches="batch_03",
                          image_size=96, frozen_epochs=1, epochs=0, batch_size=16, lr=1e-2, seed=0, run_name="tags")
        result = run_training(cfg, store, echo=lambda *_: None)
        # three listings of batch_03 with the most labelled exterior/interior photos, linked into a mini crawl
        per_listing: dict[str, int] = {}
        for p in valid_extra:
            listing = "/".join(p.split("/")[:2])
            per_listing[listing] = per_listing.get(listing, 0) + 1
        listings = sorted(per_listing, key=lambda k: (-per_listing[k], k))[:3]
        mini = home / "mini"
        for listing in listings:
            (mini / listing).mkdir(parents=True)
            for f in sorted((corpus_root / listing).iterdir()):
                (mini / listing / f.name).symlink_to(f)
        version = result.versions[ONNX_NAME]
        summary = infer_all(mini, home / "infer", batches="all", model=f"models:/{ONNX_NAME}/{version}",
                            engine="loop", progress=False)
        yield {"home": home, "result": result, "summary": summary, "listings": listings, "version": version}


@pytest.mark.slow
def test_small_train_with_attribute_labels_tags_photos_and_listings(tagged):
    import pandas as pd

    from roomclf.infer.run import resolve_model
    from roomclf.models.onnx_file import OnnxModel
    from roomclf.models.registry import ONNX_NAME

    model = OnnxModel(resolve_model(f"models:/{ONNX_NAME}/{tagged['version']}").path)
    trained = {k for k, t in model.thresholds.items() if t is not None}
    assert {"exterior.front"} <= trained, model.thresholds
    assert not trained & {"interior.basement", "interior.attic", "interior.closet", "interior.garage"}
    out = tagged["home"] / "infer"
    photos = pd.read_parquet(out / "photos" / "batch_03.parquet")
    listings = pd.read_parquet(out / "listings" / "batch_03.parquet")
    assert len(photos) == tagged["summary"].photos and photos["error"].isna().all()
    emitted = [f"{lab}.{t}" for lab, tags in zip(photos["label"], photos["tags"]) for t in tags]
    assert emitted, "no photo got a tag"
    assert set(emitted) <= trained                       # only trained attributes of the predicted room
    for row in listings.itertuples():
        mine = photos[photos["listing"] == row.listing]
        expected = sorted({f"{lab}.{t}" for lab, tags in zip(mine["label"], mine["tags"]) for t in tags})
        assert list(row.tags) == expected
    assert sorted(listings["listing"]) == sorted(k.split("/")[1] for k in tagged["listings"])
    assert any(len(t) for t in listings["tags"])
    for probs in photos["tag_probs"]:                    # per-photo scores only for trained attributes
        assert set(json_keys(probs)) <= {k.split(".", 1)[1] for k in trained}


def json_keys(text: str) -> list[str]:
    import json

    return list(json.loads(text or "{}"))


@pytest.mark.slow
def test_models_and_get_model_list_untrained_attributes(tagged):
    from click.testing import CliRunner
    from fastapi.testclient import TestClient

    from roomclf.cli import main
    from roomclf.models.registry import ONNX_NAME
    from serving.app import create_app

    res = CliRunner().invoke(main, ["models"])
    assert res.exit_code == 0, res.output
    block = res.output.split("attribute tags of", 1)[1]
    trained_line = next(line for line in block.splitlines() if "trained (" in line and "untrained" not in line)
    untrained_line = next(line for line in block.splitlines() if "untrained, never emitted" in line)
    assert "exterior.front" in trained_line and "interior.basement" not in trained_line
    for key in ("interior.basement", "interior.attic", "interior.closet", "interior.garage"):
        assert key in untrained_line
    with TestClient(create_app(f"models:/{ONNX_NAME}/{tagged['version']}"), base_url="http://localhost") as client:
        info = client.get("/model").json()
    assert "exterior.front" in info["attributes"]["trained"]
    assert {"interior.basement", "interior.attic", "interior.closet", "interior.garage"} <= set(info["attributes"]["untrained"])

    # the held-out figures: the training run's own (its attr_* metrics), carried by the version, and the same
    # in `roomclf models`, GET /model and the demo's summary
    from mlflow import MlflowClient

    from roomclf.demo import format_tag_summary, tag_summary
    from roomclf.infer.run import resolve_model
    from roomclf.models.attribute_scores import SCORES_KEY, emitted
    from roomclf.models.onnx_file import OnnxModel

    model = OnnxModel(resolve_model(f"models:/{ONNX_NAME}/{tagged['version']}").path)
    carried = model.meta[SCORES_KEY]
    logged = MlflowClient().get_run(tagged["result"].run_id).data.metrics
    assert set(emitted(carried)) == set(info["attributes"]["trained"])
    for key, e in emitted(carried).items():
        for name in ("precision", "recall", "f1"):
            if f"attr_{name}.{key}" in logged:
                assert e[name] == pytest.approx(logged[f"attr_{name}.{key}"], abs=1e-4)
        assert e["held_out_positives"] == logged[f"attr_support.{key}"] and e["labels"] >= e["positives"] >= 5
    assert info["attributes"]["scores"] == emitted(carried)
    demo = format_tag_summary(tag_summary(tagged["home"] / "infer", model.thresholds), carried, "batch_03")
    for key in emitted(carried):
        cli_line = next(line for line in block.splitlines() if line.strip().startswith(key + " "))
        assert cli_line in demo, (cli_line, demo)
