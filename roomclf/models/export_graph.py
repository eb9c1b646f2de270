"""The one way a torch network becomes an ONNX graph: fixed to its input size, its padding folded.

EfficientNet-Lite pads like TensorFlow ("same": the odd pixel at the bottom and right), which timm writes
as ``Conv2dSame``: a pad computed from the feature map's shape at every call. Exported as it is, that is
shape arithmetic and a ``Pad`` before every strided convolution, and onnxruntime's fast convolution layout
has to convert each of those feature maps out and back again. Every graph roomclf exports has one input
size (its metadata's ``input_size``), so here the pads are computed once for that size, written as
constants, and folded into the convolutions' own ``pads``: the same numbers, with no ``Pad`` node left.
What it buys: bench/bench_embed.py measures the graph exported both ways (docs/benchmarks.md, embeddings).

Only the batch dimension stays free; feeding another size is refused by onnxruntime, as before.
"""
from __future__ import annotations

import math
import os
import tempfile
from contextlib import contextmanager, nullcontext
from pathlib import Path

INPUT = "image"
OPSET = 17


def same_pads(size: tuple[int, int], kernel: tuple[int, int], stride: tuple[int, int],
              dilation: tuple[int, int]) -> tuple[int, int, int, int]:
    """TensorFlow's "same" padding of an ``size`` (height, width) map as (left, right, top, bottom), the
    order ``torch.nn.functional.pad`` takes: the output is ceil(size / stride), the odd pixel at the end."""
    (h, w), (kh, kw), (sh, sw), (dh, dw) = size, kernel, stride, dilation
    ph = max((math.ceil(h / sh) - 1) * sh + (kh - 1) * dh + 1 - h, 0)
    pw = max((math.ceil(w / sw) - 1) * sw + (kw - 1) * dw + 1 - w, 0)
    return pw // 2, pw - pw // 2, ph // 2, ph - ph // 2


@contextmanager
def fixed_same_padding(net, size: int):
    """Inside, every ``Conv2dSame`` of ``net`` (in eval mode) pads by the constant amounts its feature map
    has when ``net`` reads ``size`` x ``size`` photos, so that an export writes numbers, not shape
    arithmetic. The modules are as they were afterwards."""
    import torch
    import torch.nn.functional as F
    from timm.layers import Conv2dSame

    convs = [m for m in net.modules() if isinstance(m, Conv2dSame)]
    seen: dict = {}

    def record(conv, args):          # returns None: the input passes unchanged
        seen.setdefault(conv, tuple(args[0].shape[-2:]))

    hooks = [m.register_forward_pre_hook(record) for m in convs]
    try:
        if convs:
            with torch.no_grad():
                net(torch.zeros(1, 3, size, size))
    finally:
        for hook in hooks:
            hook.remove()

    def padded(conv, pads):
        return lambda x: F.conv2d(F.pad(x, pads), conv.weight, conv.bias, conv.stride, 0, conv.dilation,
                                  conv.groups)

    for conv in convs:
        conv.forward = padded(conv, same_pads(seen[conv], conv.kernel_size, conv.stride, conv.dilation))
    try:
        yield
    finally:
        for conv in convs:
            del conv.forward


def fold_pads(model):
    """``model`` (``onnx.ModelProto``) with every zero-valued constant ``Pad`` whose only readers are
    convolutions folded into those convolutions' ``pads``: the same numbers, one pass over memory fewer."""
    import numpy as np
    from onnx import helper, numpy_helper

    graph = model.graph
    constants = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    readers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    outputs = {o.name for o in graph.output}
    folded = []
    for pad in graph.node:
        if pad.op_type != "Pad" or pad.output[0] in outputs:
            continue
        mode = next((helper.get_attribute_value(a) for a in pad.attribute if a.name == "mode"), b"constant")
        amounts = constants.get(pad.input[1]) if len(pad.input) > 1 else None
        value = pad.input[2] if len(pad.input) > 2 else ""
        convs = readers.get(pad.output[0], [])
        if (mode != b"constant" or amounts is None or amounts.shape != (8,) or (value and (
                value not in constants or np.any(constants[value] != 0)))):
            continue
        n0, c0, top, left, n1, c1, bottom, right = (int(v) for v in amounts)
        if n0 or c0 or n1 or c1 or min(top, left, bottom, right) < 0 or not convs or any(
                c.op_type != "Conv" or c.input[0] != pad.output[0] or _attribute(c, "auto_pad", b"NOTSET") != b"NOTSET"
                for c in convs):
            continue
        for conv in convs:
            t, l, b, r = _attribute(conv, "pads", [0, 0, 0, 0])
            for a in [a for a in conv.attribute if a.name == "pads"]:
                conv.attribute.remove(a)
            conv.attribute.append(helper.make_attribute("pads", [t + top, l + left, b + bottom, r + right]))
            conv.input[0] = pad.input[0]
        folded.append(pad)
    for pad in folded:
        graph.node.remove(pad)
    used = {name for node in graph.node for name in node.input} | {i.name for i in graph.input}
    for tensor in [t for t in graph.initializer if t.name not in used]:
        graph.initializer.remove(tensor)
    return model


def _attribute(node, name: str, default):
    from onnx import helper

    return next((helper.get_attribute_value(a) for a in node.attribute if a.name == name), default)


def _constants_folded(src: Path, dst: Path) -> None:
    """``src`` with its constant subgraphs computed (onnxruntime's basic, provider-independent level)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    opts.optimized_model_filepath = str(dst)
    opts.log_severity_level = 3
    ort.InferenceSession(str(src), opts, providers=["CPUExecutionProvider"])


def export_graph(net, size: int, outputs: list[str], workdir: str | os.PathLike | None = None,
                 fixed_padding: bool = True, opset: int | None = None):
    """``net`` (eval mode, input ``image``: N x 3 x ``size`` x ``size``) as an ``onnx.ModelProto`` whose
    only free dimension is the batch. ``fixed_padding=False`` exports the padding as timm computes it
    (kept so bench/bench_embed.py can measure the difference)."""
    import onnx
    import torch

    net = net.eval()
    with tempfile.TemporaryDirectory(dir=workdir, prefix=".export-") as tmp:
        raw, clean = Path(tmp) / "torch.onnx", Path(tmp) / "folded.onnx"
        with torch.no_grad(), fixed_same_padding(net, size) if fixed_padding else nullcontext():
            torch.onnx.export(net, (torch.rand(2, 3, size, size),), str(raw), dynamo=False, input_names=[INPUT],
                              output_names=list(outputs), dynamic_axes={n: {0: "batch"} for n in (INPUT, *outputs)},
                              opset_version=opset or OPSET)
        if not fixed_padding:
            return onnx.load(str(raw))
        _constants_folded(raw, clean)
        return fold_pads(onnx.load(str(clean)))
