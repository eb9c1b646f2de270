"""The demo's plan (batches from what the corpus holds), its manual pick, its one-line refusal,
and the tag summary it prints from infer-all's outputs."""
from __future__ import annotations

import pandas as pd
import pytest
from click.testing import CliRunner

from roomclf.demo import (
    DemoError,
    format_tag_summary,
    pick_manual,
    plan_demo,
    tag_summary,
)
from roomclf.taxonomy import ATTRIBUTE_KEYS, CLASSES


def _corpus(batches: int, per_class: int = 4, classes=CLASSES, skip: dict | None = None) -> dict[str, str]:
    """path -> class for a synthetic corpus; ``skip`` maps a batch number to classes it lacks."""
    truth = {}
    for b in range(1, batches + 1):
        for c in classes:
            if c in (skip or {}).get(b, ()):
                continue
            for i in range(per_class):
                truth[f"batch_{b:02d}/listing_{CLASSES.index(c):04d}/photo_{i:02d}.jpg"] = c
    return truth


@pytest.mark.parametrize("n, train, valid", [
    (19, ["batch_01", "batch_02", "batch_03"], ["batch_04"]),
    (4, ["batch_01", "batch_02", "batch_03"], ["batch_04"]),
    (3, ["batch_01", "batch_02"], ["batch_03"]),
    (2, ["batch_01"], ["batch_02"]),
])
def test_plan_follows_the_batches_the_corpus_holds(n, train, valid):
    truth = _corpus(n)
    plan = plan_demo(set(truth), truth)
    assert (plan.manual, plan.train, plan.valid, plan.batches) == (["batch_01"], train, valid, n)
    assert not set(plan.train) & set(plan.valid)


def test_plan_widens_manual_and_training_batches_to_cover_every_class():
    truth = _corpus(5, skip={1: ("interior",), 2: ("interior",), 3: ("interior",)})
    plan = plan_demo(set(truth), truth)
    assert plan.manual == ["batch_01", "batch_02", "batch_03", "batch_04"]
    assert plan.train == plan.manual and plan.valid == ["batch_05"]
    # labelled photos missing from the corpus do not count
    present = {p for p in truth if not p.startswith("batch_04/")}
    with pytest.raises(DemoError, match="have no photos of interior"):
        plan_demo(present, truth)


def test_plan_refuses_in_one_line_naming_the_missing_classes():
    four = _corpus(4, classes=("kitchen", "bathroom", "bedroom", "exterior"))
    with pytest.raises(DemoError) as exc:
        plan_demo(set(four), four)
    msg = str(exc.value)
    assert "dining_room, living_room, interior" in msg and "\n" not in msg
    one = _corpus(1)
    with pytest.raises(DemoError, match="at least 2 labelled batches"):
        plan_demo(set(one), one)


def test_manual_pick_holds_every_class_and_is_deterministic():
    truth = _corpus(2, per_class=30)
    truth.update({f"batch_01/listing_0099/photo_{i:02d}.jpg": "interior" for i in range(5)})
    picked = pick_manual(truth, ["batch_01"], 40)
    assert len(picked) == 40 and picked == pick_manual(truth, ["batch_01"], 40)
    assert {c for _, c in picked} == set(CLASSES)
    assert all(p.startswith("batch_01/") for p, _ in picked)
    assert len(pick_manual(truth, ["batch_01"], 10_000)) == 7 * 30 + 5      # all there is


def test_demo_on_a_corpus_without_all_classes_stops_with_one_line(tmp_path, monkeypatch, corpus_root, ground_truth):
    """`roomclf demo` on a 4-class corpus (real photos, linked): exit 1, one line naming the missing classes."""
    from roomclf.cli import main

    corpus = tmp_path / "corpus"
    rows = []
    for p, r in sorted(ground_truth.items()):
        if r["label"] in ("kitchen", "bathroom", "bedroom", "exterior") and p.startswith(("batch_01/listing_04", "batch_02/listing_04")):
            dst = corpus / "listings" / p
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.symlink_to(corpus_root / p)
            rows.append(f"{p},{r['label']}")
    assert rows
    (corpus / "labels.csv").write_text("path,label\n" + "\n".join(rows) + "\n")
    monkeypatch.setenv("ROOMCLF_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("ROOMCLF_SAMPLE_SOURCE", str(corpus))
    result = CliRunner().invoke(main, ["demo"])
    assert result.exit_code == 1, result.output
    error = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(error) == 1 and "cannot train all 7 classes" in error[0]
    assert "dining_room, living_room, interior" in error[0] and "Traceback" not in result.output


def test_tag_summary_counts_tags_and_shows_the_figures_the_version_carries(tmp_path):
    """Tags per attribute over every batch from infer-all's outputs; the held-out precision/recall/F1 and
    label counts of each emitted attribute come from the model version (its ``attribute_scores``), and the
    summary says in one line whether the living-room TV is emitted and, if not, why."""
    from roomclf.infer.batch import row_schema
    from roomclf.infer.listings import listing_schema, summarize
    from roomclf.infer.output import commit_batch, to_table
    from roomclf.models.attribute_scores import from_report

    def rows(batch, items):
        return pd.DataFrame([{"batch": batch, "listing": p.split("/")[1], "path": p, "label": lab, "confidence": 0.9,
                              "tags": tags, "error": None} for p, lab, tags in items])

    valid = [("batch_02/listing_0001/photo_01.jpg", "exterior", ["front"]),
             ("batch_02/listing_0001/photo_02.jpg", "exterior", ["front"]),
             ("batch_02/listing_0001/photo_03.jpg", "exterior", ["pool"]),
             ("batch_02/listing_0002/photo_01.jpg", "kitchen", []),
             ("batch_02/listing_0002/photo_02.jpg", "interior", ["laundry"])]
    other = [("batch_01/listing_0001/photo_01.jpg", "exterior", ["front"])]
    for batch, items in (("batch_01", other), ("batch_02", valid)):
        photos = rows(batch, items)
        commit_batch(tmp_path / "out", batch, to_table(photos, row_schema(False)),
                     to_table(summarize(photos), listing_schema()), {"batch": batch})
    thresholds = {k: None for k in ATTRIBUTE_KEYS}
    thresholds.update({"exterior.front": 0.5, "exterior.pool": 0.5, "interior.laundry": 0.5})
    s = tag_summary(tmp_path / "out", thresholds)
    assert s["per_key"]["exterior.front"] == {"trained": True, "tagged": 3}
    assert s["per_key"]["exterior.pool"]["tagged"] == 1 and s["per_key"]["interior.laundry"]["tagged"] == 1
    assert s["per_key"]["living_room.tv"] == {"trained": False, "tagged": 0}
    assert s["photos_tagged"] == 5 and (s["listings"], s["listings_tagged"]) == (3, 3)
    assert s["example"]["listing"] == "batch_02/listing_0001"
    assert s["example"]["tags"] == ["exterior.front", "exterior.pool"]

    report = {k: {"status": "untrained: 1 positives", "positives": 1, "negatives": 4} for k in ATTRIBUTE_KEYS}
    for key, (p, r, f1, pos, neg) in {"exterior.front": (0.5, 0.75, 0.6, 30, 12), "exterior.pool": (1.0, 0.5, 0.6667, 9, 33),
                                      "interior.laundry": (0.9, 0.9, 0.9, 7, 40)}.items():
        report[key] = {"status": "trained", "threshold": 0.5, "precision": p, "recall": r, "f1": f1,
                       "positives": pos, "negatives": neg, "support": 4, "val_negatives": 6}
    report["living_room.tv"] = {"status": "untrained: no better than chance (AUC 0.65 on out-of-fold training "
                                          "+ validation photos)", "positives": 12, "negatives": 28}
    scores = from_report(report)
    lines = format_tag_summary(s, scores, "batch_02")
    front = next(line.split() for line in lines if line.strip().startswith("exterior.front"))
    assert front == ["exterior.front", "0.50", "0.75", "0.60", "42", "(", "30)", "10", "(4)"]
    assert any("on validation batch_02" in line for line in lines)
    assert any("photos infer-all tagged: exterior.front 3, exterior.pool 1, interior.laundry 1" in line
               for line in lines)
    assert any("untrained, never emitted" in line and "interior.basement" in line for line in lines)
    tv = [line for line in lines if line.strip().startswith("living_room.tv")]
    assert tv == ["  living_room.tv: not emitted: no better than chance (AUC 0.65 on out-of-fold training + "
                  "validation photos); 40 labels (12 positive)"]
    report["living_room.tv"] = {**report["exterior.pool"]}                         # enough labels: emitted
    lines = format_tag_summary(s, from_report(report), "batch_02")
    assert any(line.strip().startswith("living_room.tv: emitted, trained from 42 labels (9 positive); held-out F1 "
                                       "0.67") for line in lines)
    assert any("not recorded" in line for line in format_tag_summary(s, None, "batch_02"))
