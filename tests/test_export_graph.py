"""Export fixed to the input size: TF-style padding written as numbers and folded into the convolutions,
with the same outputs as timm's own padding, through real onnxruntime sessions."""
from __future__ import annotations

import numpy as np
import pytest

from roomclf.models.onnx_file import OUTPUTS


def _run(model, x: np.ndarray) -> list[np.ndarray]:
    import onnxruntime as ort

    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"image": x})


@pytest.mark.parametrize("size", [64, 67])
def test_fixed_padding_gives_timms_outputs_with_no_pad_left(size, tmp_path):
    import torch
    from timm.layers import Conv2dSame

    from roomclf.models.export_graph import export_graph
    from roomclf.models.network import ExportNet, RoomNet

    torch.manual_seed(0)
    net = ExportNet(RoomNet("efficientnet_lite0", pretrained=False, with_attributes=True)).eval()
    fixed = export_graph(net, size, list(OUTPUTS), tmp_path)
    timm = export_graph(net, size, list(OUTPUTS), tmp_path, fixed_padding=False)
    assert sum(n.op_type == "Pad" for n in timm.graph.node) == 5          # one per strided convolution...
    assert [n.op_type for n in fixed.graph.node if n.op_type in ("Pad", "Ceil")] == []     # ...folded away
    x = np.random.default_rng(0).random((3, 3, size, size), dtype=np.float32)
    for a, b in zip(_run(fixed, x), _run(timm, x)):
        np.testing.assert_allclose(a, b, atol=1e-5)
    with torch.no_grad():           # the torch network is as it was: it still pads for whatever size it reads
        np.testing.assert_allclose(net(torch.from_numpy(x))[0].numpy(), _run(fixed, x)[0], atol=1e-5)
        assert net(torch.rand(1, 3, size + 13, size + 13))[0].shape == (1, 7)
    assert not any("forward" in vars(m) for m in net.modules() if isinstance(m, Conv2dSame))


def _pad_then_conv(value: float):
    """A hand-written graph: Pad (1 pixel below and right, constant ``value``) then a 3x3 convolution."""
    from onnx import TensorProto, helper, numpy_helper

    weight = np.random.default_rng(1).random((2, 3, 3, 3), dtype=np.float32)
    inits = [numpy_helper.from_array(np.array([0, 0, 0, 0, 0, 0, 1, 1], np.int64), "pads"),
             numpy_helper.from_array(np.array(value, np.float32), "value"), numpy_helper.from_array(weight, "w")]
    nodes = [helper.make_node("Pad", ["image", "pads", "value"], ["padded"], name="pad"),
             helper.make_node("Conv", ["padded", "w"], ["out"], name="conv", strides=[2, 2])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, None)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_only_zero_pads_before_convolutions_are_folded():
    from roomclf.models.export_graph import fold_pads

    x = np.random.default_rng(0).random((1, 3, 8, 8), dtype=np.float32)
    zero, before = _pad_then_conv(0.0), _run(_pad_then_conv(0.0), x)[0]
    folded = fold_pads(zero)
    assert [n.op_type for n in folded.graph.node] == ["Conv"]
    assert "pads" not in {t.name for t in folded.graph.initializer}
    np.testing.assert_allclose(_run(folded, x)[0], before, atol=1e-6)
    one = fold_pads(_pad_then_conv(1.0))          # a pad of ones is not the convolution's zero padding
    assert [n.op_type for n in one.graph.node] == ["Pad", "Conv"]


def test_an_embedder_exported_before_padding_was_fixed_is_exported_again(tmp_path, monkeypatch):
    import onnx

    from roomclf.models import embeddings

    monkeypatch.setenv("ROOMCLF_EMBEDDING_DIR", str(tmp_path))
    fp32 = embeddings.embedder_file()
    folder = fp32.parent
    embeddings.export_embedder(embeddings.EMBEDDING_BACKBONE, fp32, fixed_padding=False)   # as made before
    assert any(n.op_type == "Pad" for n in onnx.load(str(fp32)).graph.node)
    int8 = folder / fp32.name.replace("-fp32", "-int8")
    int8.write_bytes(b"quantised from the old graph")
    assert embeddings.embedder_file() == fp32
    assert not any(n.op_type == "Pad" for n in onnx.load(str(fp32)).graph.node)
    assert not int8.exists()
