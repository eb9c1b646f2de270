"""Static int8 quantisation of an exported room model (onnxruntime QDQ, per channel, reduced range).

Calibrated on real training photos through the shared photo loader; the
roomclf metadata is carried over so ``OnnxModel`` reads the int8 file like the
fp32 one. ``agreement`` measures what quantisation costs on labelled photos.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from roomclf import storage
from roomclf.photos import model_inputs

# Chosen by measurement on the fast.ai-trained efficientnet_lite0 of bench/bench_train.py (validation photos
# of batch_11-13): plain U8S8 per channel lost the most accuracy and agreement with fp32; reduce_range
# (7-bit weights: on AVX2 CPUs without VNNI, onnxruntime's U8S8 kernels can saturate) won part of it back,
# and keeping the first and last convolutions in fp32 more, at the same speed. Percentile or larger
# calibration, U8U8 weights and fp32 depthwise convolutions were no better.
# Then, with the pad amounts kept in fp32 (_pad_arithmetic), on all TUNE photos (bench runs `lite2` and
# `lite0-rerun`): keeping the first six and last two convolutions in fp32 agreed with fp32 on more photos
# than three and one; more calibration photos, entropy or percentile calibration and an fp32 head were no
# better. What int8 then costs in accuracy: docs/benchmarks.md, infer-accuracy (bench/bench_infer.py); the
# price of the fp32 convolutions is that int8 saves less model time, still a clear saving (runs `lite2:int8`
# and `lite2-300:int8` against fp32, bench/bench_ensemble.py, docs/benchmarks.md, ensemble).
REDUCE_RANGE = True
FP32_FIRST_CONVS, FP32_LAST_CONVS = 6, 2
_VNNI_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")


def cpu_has_vnni() -> bool:
    """Whether this CPU multiplies int8 with VNNI (AVX512-VNNI, AVX-VNNI or AMX), whose int32 accumulation
    has none of the int16 saturation that ``reduce_range`` guards against: full-range weights are safe on it.
    False where it cannot tell (no /proc/cpuinfo)."""
    try:
        with open("/proc/cpuinfo") as info:
            flags = next((line for line in info if line.startswith("flags")), "").split()
    except OSError:
        return False
    return any(flag in flags for flag in _VNNI_FLAGS)


def _convs_kept_fp32(graph, first: int = FP32_FIRST_CONVS, last: int = FP32_LAST_CONVS) -> list[str]:
    """The ``first`` and ``last`` convolutions of each network in the graph: one network, or each member of an
    ensemble (``roomclf.models.ensemble`` prefixes member ``i``'s nodes with ``m<i>/``)."""
    from roomclf.models.ensemble import member_of

    networks: dict[str, list[str]] = {}
    for node in graph.node:
        if node.op_type == "Conv":
            networks.setdefault(member_of(node.name), []).append(node.name)
    return [name for convs in networks.values()
            for name in convs[:first] + convs[len(convs) - last:]]


def _pad_arithmetic(graph) -> list[str]:
    """The nodes that compute a Pad's amounts from tensor shapes, in a graph exported before
    ``roomclf.models.export_graph`` fixed the padding (a model registered earlier; none are left in one exported
    now). There, EfficientNet-Lite's TF-style "same" padding is float arithmetic on ``Shape`` outputs ending in a
    ``Concat``; quantised, a pad of 1 pixel reads 0.996 and the cast to int64 makes it 0, so the feature map
    shifts by a pixel from that layer on. Measured on efficientnet_lite0 (bench run `lite0-rerun`, all TUNE
    photos): int8 agreed with fp32 on clearly more photos with these nodes kept in fp32 than quantised (the
    int8 cost of `ens-lite2-lite0-rerun` before and after this fix: docs/benchmarks.md, infer-accuracy)."""
    made_by = {out: node for node in graph.node for out in node.output}
    kept: set[str] = set()
    todo = [t for node in graph.node if node.op_type == "Pad" for t in node.input[1:] if t]
    while todo:
        node = made_by.get(todo.pop())
        if node is None or node.name in kept or node.op_type == "Shape":
            continue
        kept.add(node.name)
        todo.extend(node.input)
    return sorted(kept)


def _nodes_kept_fp32(model_path: str | os.PathLike, fp32_convs: tuple[int, int]) -> list[str]:
    """The names of the nodes of ``model_path`` that the int8 copy leaves in fp32."""
    import onnx

    graph = onnx.load(str(model_path)).graph
    return _convs_kept_fp32(graph, *fp32_convs) + _pad_arithmetic(graph)


def calibration_sample(paths: list[str], n: int) -> list[str]:
    """The ``n`` photos that calibrate an int8 twin: evenly spaced through ``paths`` (its training photos),
    so every batch and class of the training set is represented."""
    return list(paths)[:: max(1, len(paths) // n)][:n] if n > 0 else []


def quantize_static_int8(src: str | os.PathLike, dst: str | os.PathLike, root: str | os.PathLike,
                         calib_paths: list[str], reduce_range: bool = REDUCE_RANGE,
                         fp32_convs: tuple[int, int] = (FP32_FIRST_CONVS, FP32_LAST_CONVS)) -> Path:
    """Write a static-int8 QDQ copy of ``src`` at ``dst`` (atomically), calibrated on ``calib_paths``
    (relative to ``root``) at the input size in ``src``'s own metadata; returns ``dst``. ``reduce_range``
    and ``fp32_convs`` (how many first and last convolutions stay fp32) are the choices above; other
    values are for benches that measure them (bench/bench_embed.py's int8 probe)."""
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from roomclf.models.onnx_file import read_meta, save_onnx

    meta = read_meta(onnx.load(str(src)))
    if meta is None:
        raise ValueError(f"{src} has no roomclf metadata")
    size = int(meta["input_size"])
    arrays = [x[None] for x in model_inputs([storage.join(root, p) for p in calib_paths], size)[0]]

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter(arrays)

        def get_next(self):
            x = next(self.it, None)
            return None if x is None else {"image": x}

    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(src), str(pre))
        out = Path(tmp) / "int8.onnx"
        quantize_static(str(pre), str(out), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        reduce_range=reduce_range, nodes_to_exclude=_nodes_kept_fp32(pre, fp32_convs),
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
        return save_onnx(onnx.load(str(out)), dst, meta)


def agreement(fp32: str | os.PathLike, int8: str | os.PathLike, root: str | os.PathLike,
              items: list[tuple[str, str]]) -> dict:
    """{'accuracy', 'fp32_accuracy', 'top1_agreement'} of the int8 model on (path, class) items."""
    from roomclf.models.onnx_file import OnnxModel

    paths = [storage.join(root, p) for p, _ in items]
    a, b = OnnxModel(fp32).predict_sources(paths), OnnxModel(int8).predict_sources(paths)
    truth = np.array([c for _, c in items])
    la, lb = np.array([p.label for p in a]), np.array([p.label for p in b])
    return {"accuracy": float(np.mean(lb == truth)), "fp32_accuracy": float(np.mean(la == truth)),
            "top1_agreement": float(np.mean(la == lb))}
