"""The champion/challenger gate compares on photos neither model trained on, in a real
SQLite MLflow registry with real onnxruntime sessions."""
from __future__ import annotations

import pytest
from conftest import isolated_store, pick_photos


def test_fair_items_by_photo_list_else_by_batch():
    from roomclf.train.gate import fair_items

    items = [("batch_02/l/1.jpg", "kitchen"), ("batch_02/l/2.jpg", "bedroom"), ("batch_03/l/3.jpg", "bedroom")]
    assert fair_items(items, {"batch_02/l/1.jpg"}, ["batch_02"]) == items[1:]       # the photo list wins
    assert fair_items(items, set(), ["batch_02"]) == items[2:]                      # else whole batches
    assert fair_items(items, set(), []) == items


def _register_champion(quick_onnx, trained_on: list[str]) -> str:
    """quick_onnx registered from a run whose training list is ``trained_on``; returns the version."""
    import mlflow

    from roomclf.models.registry import register_onnx_file
    from roomclf.tracking.experiments import step_run

    with step_run("roomclf-train", "champion"):
        mlflow.log_text("path,label,source\n" + "".join(f"{p},x,manual\n" for p in trained_on), "data/train.csv")
        return register_onnx_file(quick_onnx, tags={"train_batches": "batch_01"}, alias="champion")


@pytest.mark.parametrize("champion_saw_validation", [False, True])
def test_gate_on_photos_neither_model_trained_on(tmp_path, quick_onnx, corpus_root, ground_truth,
                                                 champion_saw_validation):
    from roomclf.models.registry import (
        ONNX_NAME,
        model_version_info,
        register_onnx_file,
    )
    from roomclf.train.gate import gate

    items = pick_photos(ground_truth, "batch_02", 24)
    seen = [p for p, _ in items[:20]] if champion_saw_validation else [p for p, _ in pick_photos(ground_truth, "batch_01", 10)]
    with isolated_store(tmp_path):
        v1 = _register_champion(quick_onnx, seen)
        v2 = register_onnx_file(quick_onnx)           # the same network: a tie on any photos
        result = gate(quick_onnx, {ONNX_NAME: v2}, corpus_root, items)
        champion = model_version_info(f"models:/{ONNX_NAME}@champion")["version"]
    assert result.champion_version == v1
    if champion_saw_validation:      # 20 of 24 photos seen: cannot be judged, does not block
        assert "trained on 20 of the 24 validation photos" in result.champion_unfair
        assert result.alias == "champion" and champion == v2 and result.champion is None
    else:                            # a fair tie keeps the champion
        assert result.champion_unfair == "" and result.compared_on == 24
        assert result.alias == "challenger" and champion == v1
        assert result.champion.accuracy == pytest.approx(result.new.accuracy)


def test_an_ensemble_champion_is_judged_without_its_members_training_photos(tmp_path, quick_onnx, corpus_root,
                                                                            ground_truth):
    """`roomclf combine --register` records the union of its members' training photos, so a later gate
    does not score the ensemble on photos one of its members learnt."""
    from roomclf.models.ensemble import combine_models
    from roomclf.models.registry import ONNX_NAME, register_onnx_file, training_photos
    from roomclf.train.gate import gate, promote

    items = pick_photos(ground_truth, "batch_02", 24)
    with isolated_store(tmp_path):
        a = _register_champion(quick_onnx, [p for p, _ in items[:4]])
        b = _register_champion(quick_onnx, [p for p, _ in items[4:20]])
        _, versions = combine_models([f"models:/{ONNX_NAME}/{a}", f"models:/{ONNX_NAME}/{b}"], tmp_path / "e.onnx",
                                     register=True)
        photos, batches = training_photos(versions[ONNX_NAME])
        assert photos == {p for p, _ in items[:20]} and batches == ["batch_01"]
        promote(ONNX_NAME, versions[ONNX_NAME])
        new = register_onnx_file(quick_onnx)
        result = gate(quick_onnx, {ONNX_NAME: new}, corpus_root, items)
    assert result.champion_version == versions[ONNX_NAME]
    assert "trained on 20 of the 24 validation photos" in result.champion_unfair


@pytest.mark.parametrize("new, old, tolerance, wins, why", [
    ((0.90, 0.88, 10.0), (0.89, 0.90, 10.0), 0.0, True, "more accurate"),
    ((0.897, 0.88, 5.0), (0.90, 0.90, 10.0), 0.003, True, "faster at equal accuracy"),
    ((0.897, 0.88, 5.0), (0.90, 0.90, 10.0), 0.0, False, "less accurate"),        # no tolerance: accuracy only
    ((0.890, 0.88, 5.0), (0.90, 0.90, 10.0), 0.003, False, "less accurate"),      # 1 point lost: too much
    ((0.897, 0.88, 9.5), (0.90, 0.90, 10.0), 0.003, False, "less accurate"),      # 5% faster is noise
    ((0.90, 0.90, 12.0), (0.90, 0.90, 10.0), 0.003, False, "not better"),         # a slower tie keeps the champion
    ((0.90, 0.90, 5.0), (0.90, 0.90, 10.0), 0.0, True, "faster at equal accuracy"),
    ((0.90, 0.91, None), (0.90, 0.90, None), 0.003, True, "higher macro-F1"),
])
def test_decide_lets_a_faster_model_win_within_the_tolerance(new, old, tolerance, wins, why):
    from roomclf.train.gate import Score, decide

    result = decide(Score(new[0], new[1], 100, new[2]), Score(old[0], old[1], 100, old[2]), tolerance)
    assert result[0] is wins and why in result[1]


def test_gate_makes_the_faster_of_two_equally_accurate_models_champion(tmp_path, corpus_root, ground_truth):
    """The same network exported plainly and with flip TTA (twice the compute): with a tolerance that covers
    any accuracy difference, speed decides, measured side by side in the gate."""
    import torch

    from roomclf.models.network import ExportNet, RoomNet
    from roomclf.models.onnx_file import export_onnx
    from roomclf.models.registry import ONNX_NAME, model_version_info, register_onnx_file
    from roomclf.train.gate import gate

    torch.manual_seed(0)
    net = RoomNet("efficientnet_lite0").eval()
    slow = export_onnx(ExportNet(net, flip_tta=True), tmp_path / "slow.onnx", {"note": "flip TTA"})
    fast = export_onnx(ExportNet(net), tmp_path / "fast.onnx", {"note": "plain"})
    items = pick_photos(ground_truth, "batch_02", 16)
    with isolated_store(tmp_path):
        v_slow = register_onnx_file(slow, alias="champion")
        v_fast = register_onnx_file(fast)
        result = gate(fast, {ONNX_NAME: v_fast}, corpus_root, items, tolerance=1.0)
        champion = model_version_info(f"models:/{ONNX_NAME}@champion")["version"]
    assert result.champion_version == v_slow
    assert result.new.ms_per_photo < 0.85 * result.champion.ms_per_photo
    assert result.alias == "champion" and champion == v_fast
    assert "faster at equal accuracy" in result.reason or "more accurate" in result.reason
