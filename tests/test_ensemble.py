"""`roomclf combine`: several exported room models as one ONNX graph, run by real onnxruntime sessions."""
from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from click.testing import CliRunner

from roomclf.cli import main
from roomclf.taxonomy import CLASSES


def _member(tmp_path, name: str, backbone: str, size: int, seed: int):
    """A real exported room network (random weights, so no download; its outputs still depend on the input)."""
    import torch

    from roomclf.models.network import AttributeHead, ExportNet, RoomNet
    from roomclf.models.onnx_file import export_onnx
    from roomclf.taxonomy import ATTRIBUTE_KEYS

    torch.manual_seed(seed)
    net = RoomNet(backbone, pretrained=False).eval()
    with torch.no_grad():     # a sharper head than the random one, so members disagree visibly
        net.head[1].weight.mul_(20)
    head = AttributeHead(net.head[1].in_features, len(ATTRIBUTE_KEYS)).eval()
    thresholds = {key: 0.5 if i % 2 == 0 else None for i, key in enumerate(ATTRIBUTE_KEYS)}
    path = export_onnx(ExportNet(net, head), tmp_path / f"{name}.onnx",
                       {"input_size": size, "attribute_thresholds": thresholds, "note": name,
                        "val_accuracy": 0.8 + seed / 100, "train_batches": [f"batch_0{seed + 1}", "batch_09"],
                        "sure_confidence": {"0.95": 0.7}})
    return path, net, head


@pytest.fixture(scope="module")
def members(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("members")
    return [_member(tmp, "a", "efficientnet_lite0", 64, 0), _member(tmp, "b", "efficientnet_lite0", 64, 1),
            _member(tmp, "c", "efficientnet_lite1", 80, 2)]


def test_combined_model_is_the_mean_of_its_members(members, tmp_path):
    from roomclf.models.ensemble import combine_onnx
    from roomclf.models.onnx_file import OnnxModel

    (a, _, _), (b, _, _), _ = members
    out = combine_onnx([a, b], tmp_path / "ens.onnx")
    ens, ma, mb = OnnxModel(out), OnnxModel(a), OnnxModel(b)
    x = np.random.default_rng(0).random((5, 3, 64, 64), dtype=np.float32)
    got, pa, pb = ens.run(x), ma.run(x), mb.run(x)
    assert not np.allclose(pa["probs"], pb["probs"], atol=1e-3)          # the members differ...
    np.testing.assert_allclose(got["probs"], (pa["probs"] + pb["probs"]) / 2, atol=1e-5)   # ...and are averaged
    np.testing.assert_allclose(got["attributes"], pa["attributes"], atol=1e-5)    # tags: the first member's
    np.testing.assert_allclose(got["embedding"], pa["embedding"], atol=1e-5)
    assert ens.thresholds == ma.thresholds and ens.classes == list(CLASSES)
    assert [m["note"] for m in ens.meta["members"]] == ["a", "b"]
    # the members' own figures stay theirs; the mean has none until the gate measures it
    assert [m["val_accuracy"] for m in ens.meta["members"]] == [0.8, 0.81]
    assert "val_accuracy" not in ens.meta and "sure_confidence" not in ens.meta
    assert ens.meta["train_batches"] == ["batch_01", "batch_02", "batch_09"]


def test_members_of_other_sizes_see_the_photo_resized_inside_the_graph(members, tmp_path):
    import torch
    import torch.nn.functional as F

    from roomclf.models.ensemble import combine_onnx
    from roomclf.models.network import ExportNet
    from roomclf.models.onnx_file import OnnxModel

    (a, net_a, head_a), _, (c, net_c, head_c) = members
    ens = OnnxModel(combine_onnx([a, c], tmp_path / "ens.onnx"))
    assert ens.input_size == 80 and ens.meta["backbone"] == "efficientnet_lite0+efficientnet_lite1"
    x = torch.rand(3, 3, 80, 80, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        small = F.interpolate(x, size=(64, 64), mode="bilinear", align_corners=False)
        want = (ExportNet(net_a, head_a)(small)[0] + ExportNet(net_c, head_c)(x)[0]) / 2
    np.testing.assert_allclose(ens.run(x.numpy())["probs"], want.numpy(), atol=1e-4)


def test_combine_command_writes_registers_and_refuses_in_one_line(members, home, tmp_path):
    import mlflow
    import pandas as pd
    from PIL import Image

    from roomclf.models.onnx_file import OnnxModel
    from roomclf.models.registry import ONNX_NAME, TORCH_NAME

    (a, _, _), (b, _, _), _ = members
    runner = CliRunner()
    done = runner.invoke(main, ["combine", str(a), str(b), "--out", str(tmp_path / "e.onnx"), "--register"])
    assert done.exit_code == 0, done.output
    assert "registered as roomclf-onnx v1, roomclf v1" in done.output
    client = mlflow.MlflowClient()
    for name in (ONNX_NAME, TORCH_NAME):
        version = client.get_model_version(name, "1")
        assert version.tags["ensemble_of"] == f"{a} + {b}" and "Mean of the class probabilities" in version.description
        assert not client.get_registered_model(name).aliases     # the champion is not moved
    registered = OnnxModel(mlflow.artifacts.download_artifacts(f"models:/{ONNX_NAME}/1", dst_path=str(tmp_path / "d")))
    x = np.random.default_rng(1).random((2, 3, 64, 64), dtype=np.float32)
    np.testing.assert_allclose(registered.run(x)["probs"], OnnxModel(tmp_path / "e.onnx").run(x)["probs"], atol=1e-6)
    photo = io.BytesIO()
    Image.fromarray((x[0].transpose(1, 2, 0) * 255).astype(np.uint8)).save(photo, format="PNG")
    served = mlflow.pyfunc.load_model(f"models:/{TORCH_NAME}/1").predict(
        pd.DataFrame({"image": [base64.b64encode(photo.getvalue()).decode()]}))
    assert served["label"][0] == OnnxModel(tmp_path / "e.onnx").predict_sources([photo.getvalue()])[0].label
    promoted = runner.invoke(main, ["promote", ONNX_NAME, "1"])       # both forms move together
    assert promoted.exit_code == 0 and "roomclf-onnx v1" in promoted.output, promoted.output
    assert {n: client.get_registered_model(n).aliases for n in (ONNX_NAME, TORCH_NAME)} == {
        ONNX_NAME: {"champion": 1}, TORCH_NAME: {"champion": 1}}
    listed = runner.invoke(main, ["models"])       # the ensemble emits the first member's tags, and says so
    from roomclf.taxonomy import ATTRIBUTE_KEYS

    trained = len(ATTRIBUTE_KEYS[::2])
    assert f"trained ({trained}): {ATTRIBUTE_KEYS[0]}," in listed.output, listed.output

    for args, needle in (([str(a)], "at least two"), ([str(a), str(tmp_path / "nope.onnx")], "nope.onnx")):
        bad = runner.invoke(main, ["combine", *args, "--out", str(tmp_path / "x.onnx")])
        assert bad.exit_code != 0 and bad.output.startswith("Error: ") and needle in bad.output
        assert "Traceback" not in bad.output and len(bad.output.strip().splitlines()) == 1


def _upstream_ops(graph, tensor: str, stop: str = "Shape") -> list[str]:
    """The op types that compute ``tensor``, walking up to (not through) ``stop`` nodes."""
    made_by = {out: node for node in graph.node for out in node.output}
    ops, todo, seen = [], [tensor], set()
    while todo:
        node = made_by.get(todo.pop())
        if node is None or node.name in seen:
            continue
        seen.add(node.name)
        ops.append(node.op_type)
        if node.op_type != stop:
            todo.extend(node.input)
    return ops


def _noise_photos(folder, n: int = 4) -> list[str]:
    """Calibration photos: any real JPEG will do for a graph's structure."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (90, 120, 3), dtype=np.uint8)).save(folder / f"p{i}.jpg")
    return [f"p{i}.jpg" for i in range(n)]


def test_int8_keeps_the_first_and_last_convolutions_of_every_member_in_fp32_and_has_no_pad(members, tmp_path):
    import onnx

    from roomclf.models.ensemble import combine_onnx
    from roomclf.models.quantize import (
        FP32_FIRST_CONVS,
        FP32_LAST_CONVS,
        quantize_static_int8,
    )

    (a, _, _), _, (c, _, _) = members
    combined = combine_onnx([a, c], tmp_path / "ens.onnx")
    int8 = onnx.load(str(quantize_static_int8(combined, tmp_path / "int8.onnx", tmp_path, _noise_photos(tmp_path))))
    made_by = {out: node.op_type for node in int8.graph.node for out in node.output}
    for member in ("m0/", "m1/"):
        convs = [n for n in int8.graph.node if n.op_type == "Conv" and n.name.startswith(member)]
        weight_is_int8 = [made_by.get(n.input[1]) == "DequantizeLinear" for n in convs]
        kept = FP32_FIRST_CONVS + FP32_LAST_CONVS
        assert not any(weight_is_int8[:FP32_FIRST_CONVS] + weight_is_int8[len(convs) - FP32_LAST_CONVS:]), member
        assert sum(weight_is_int8) == len(convs) - kept, member       # every other convolution is int8
    # "same" padding was fixed at export and folded into the convolutions: nothing computes a pad at run time
    assert [n.name for n in int8.graph.node if n.op_type == "Pad"] == []


def test_int8_keeps_the_pad_arithmetic_of_a_graph_exported_with_timms_padding_in_fp32(tmp_path):
    """Models exported before padding was fixed (registered earlier) compute their pads from shapes:
    quantised, a pad of 1 pixel became 0.996, then 0 as int64, so those nodes stay fp32."""
    import onnx
    import torch

    from roomclf.models.export_graph import export_graph
    from roomclf.models.network import ExportNet, RoomNet
    from roomclf.models.onnx_file import OUTPUTS, save_onnx
    from roomclf.models.quantize import quantize_static_int8

    torch.manual_seed(0)
    graph = export_graph(ExportNet(RoomNet("efficientnet_lite0", pretrained=False)), 64, list(OUTPUTS), tmp_path,
                         fixed_padding=False)
    old = save_onnx(graph, tmp_path / "old.onnx", {"backbone": "efficientnet_lite0", "input_size": 64,
                                                   "classes": list(CLASSES)})
    int8 = onnx.load(str(quantize_static_int8(old, tmp_path / "int8.onnx", tmp_path, _noise_photos(tmp_path))))
    pads = [n for n in int8.graph.node if n.op_type == "Pad"]
    assert pads
    upstream = {pad.name: _upstream_ops(int8.graph, pad.input[1]) for pad in pads}
    assert any("Shape" in ops for ops in upstream.values())          # pad amounts computed at run time
    assert [name for name, ops in upstream.items() if "QuantizeLinear" in ops] == []
