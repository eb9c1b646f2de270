"""Several exported room models combined into one ONNX file: the mean of their class probabilities.

Two networks trained on the same labels make different mistakes: on the tuning split
(bench/bench_train.py, TUNE = batch_11-13) the average of efficientnet_lite2 at 260 px and efficientnet_lite0
at 224 px beats either alone (run `ens-lite2-lite0-rerun` against `lite2` and `lite0-rerun`; likewise
`ens-default-lite1`), but efficientnet_lite2 at 300 px, the default, ties that pair alone and its own pair
with lite0 does not beat it (runs `lite2-300`, `ens-lite2-300-lite0-rerun`; docs/benchmarks.md, train).
``combine_onnx``
writes that average as an ordinary roomclf model, so infer-all, serving, prelabel, the gate and the int8 quantiser
take it unchanged:

- input ``image`` at the largest member's size; a smaller member sees it resized to its own size
  inside the graph (bilinear);
- ``probs`` = the members' mean; ``attributes`` and ``embedding`` (and so the attribute thresholds
  and the embedding size) are the first member's;
- metadata: what the members share (classes, attribute keys; the attribute thresholds are the first
  member's), the input size above, the union of their ``train_batches``, and ``members``: each member's
  backbone, input size, note, validation figures and run. No ``val_accuracy`` of its own (the gate
  measures the mean) and no ``sure_confidence`` (measured on one member's probabilities, not the
  mean's: prelabel suggestions of an ensemble are not trained on).
"""
from __future__ import annotations

import os
import re
from pathlib import Path

from roomclf.errors import RoomclfError
from roomclf.models.onnx_file import OUTPUTS, read_meta, save_onnx

_MEMBER = re.compile(r"m\d+/")
# what describes one member, not the mean: kept per member under "members"
_MEMBER_KEYS = ("backbone", "input_size", "note", "flip_tta", "train_batches", "valid_batches", "val_accuracy",
                "val_macro_f1", "mlflow_run_id")


class EnsembleError(RoomclfError, ValueError):
    """Members that cannot be combined (fewer than two, different classes, not roomclf models)."""


def member_prefix(i: int) -> str:
    """The prefix of every name (node, tensor) of member ``i`` in a combined graph."""
    return f"m{i}/"


def member_of(name: str) -> str:
    """The member prefix a node or tensor name carries ('' outside an ensemble)."""
    found = _MEMBER.match(name)
    return found.group(0) if found else ""


def _meta(model) -> dict:
    meta = read_meta(model)
    if meta is None:
        raise EnsembleError("not a roomclf model (no roomclf metadata)")
    return meta


def _resized_input(helper, numpy_helper, size: int, prefix: str) -> tuple[list, list]:
    """Nodes (and constants) that resize ``image`` (N x 3 x S x S) to N x 3 x size x size as ``<prefix>image``."""
    import numpy as np

    hw = numpy_helper.from_array(np.array([size, size], dtype=np.int64), f"{prefix}hw")
    start = numpy_helper.from_array(np.array([0], dtype=np.int64), f"{prefix}nc_start")
    end = numpy_helper.from_array(np.array([2], dtype=np.int64), f"{prefix}nc_end")
    nodes = [
        helper.make_node("Shape", ["image"], [f"{prefix}shape"]),
        helper.make_node("Slice", [f"{prefix}shape", start.name, end.name], [f"{prefix}nc"]),
        helper.make_node("Concat", [f"{prefix}nc", hw.name], [f"{prefix}sizes"], axis=0),
        helper.make_node("Resize", ["image", "", "", f"{prefix}sizes"], [f"{prefix}image"], mode="linear",
                         coordinate_transformation_mode="half_pixel"),
    ]
    return nodes, [hw, start, end]


def combine_onnx(members: list[str | os.PathLike], out: str | os.PathLike, note: str = "") -> Path:
    """Write one ONNX model at ``out`` (atomically) whose class probabilities are the mean of ``members``'."""
    import onnx
    from onnx import compose, helper, numpy_helper

    if len(members) < 2:
        raise EnsembleError("an ensemble needs at least two models")
    models = [onnx.load(str(m)) for m in members]
    metas = [_meta(m) for m in models]
    if any(m["classes"] != metas[0]["classes"] for m in metas):
        raise EnsembleError("the models predict different classes: " + " / ".join(",".join(m["classes"]) for m in metas))
    opsets = {next(o.version for o in m.opset_import if o.domain in ("", "ai.onnx")) for m in models}
    if len(opsets) > 1:
        raise EnsembleError(f"the models use different ONNX opsets ({sorted(opsets)}): export them alike")
    size = max(int(m["input_size"]) for m in metas)

    nodes, inits = [], []
    for i, (model, meta) in enumerate(zip(models, metas)):
        prefix = member_prefix(i)
        graph = compose.add_prefix(model, prefix).graph
        if int(meta["input_size"]) == size:
            nodes.append(helper.make_node("Identity", ["image"], [f"{prefix}image"]))
        else:
            resize, consts = _resized_input(helper, numpy_helper, int(meta["input_size"]), prefix)
            nodes += resize
            inits += consts
        nodes += list(graph.node)
        inits += list(graph.initializer)
    nodes.append(helper.make_node("Mean", [member_prefix(i) + "probs" for i in range(len(models))], ["probs"]))
    nodes += [helper.make_node("Identity", [member_prefix(0) + name], [name]) for name in OUTPUTS if name != "probs"]

    first = models[0].graph
    image = helper.make_tensor_value_info("image", onnx.TensorProto.FLOAT, ["batch", 3, size, size])
    outputs = [next(o for o in first.output if o.name == name) for name in OUTPUTS]
    graph = helper.make_graph(nodes, "roomclf_ensemble", [image], outputs, initializer=inits)
    combined = helper.make_model(graph, opset_imports=list(models[0].opset_import),
                                 producer_name="roomclf.models.ensemble")
    combined.ir_version = models[0].ir_version
    shared = {k: v for k, v in metas[0].items() if k not in _MEMBER_KEYS and k != "sure_confidence"}
    meta = {**shared, "input_size": size, "backbone": "+".join(m["backbone"] for m in metas),
            "train_batches": sorted({b for m in metas for b in m.get("train_batches", [])}),
            "members": [{"note": "", **{k: m[k] for k in _MEMBER_KEYS if k in m}} for m in metas],
            "note": note or "mean of " + ", ".join(str(m) for m in members)}
    onnx.checker.check_model(combined)
    return save_onnx(combined, out, meta)


def members_training(refs: list[str]) -> tuple[dict[str, str], list[str]] | None:
    """({photo: the first member that trained on it}, batches) over every member, when every member is a
    registered version; None when one is a file (what it trained on is unknown)."""
    from roomclf.models.registry import resolve, training_photos

    photos: dict[str, str] = {}
    batches: set[str] = set()
    for ref in refs:
        found = resolve(ref)
        if found.version is None:
            return None
        some, their_batches = training_photos(found.version, found.name)
        for p in some:
            photos.setdefault(p, ref)
        batches.update(their_batches)
    return photos, sorted(batches)


def combine_models(refs: list[str], out: str | os.PathLike, register: bool = False) -> tuple[Path, dict[str, str]]:
    """Combine the models at ``refs`` (``models:/`` URIs or .onnx paths) into ``out``; with ``register``
    also register it, in one MLflow run, as a new ``roomclf-onnx`` version and a new ``roomclf`` (pyfunc)
    version, as training does, so ``roomclf promote`` moves both together (no alias moves here).
    Returns the file and {registered name: version} (empty without ``register``)."""
    import tempfile

    import onnx

    from roomclf.models.pyfunc import log_roomclf_pyfunc
    from roomclf.models.registry import (
        ONNX_NAME,
        TORCH_NAME,
        TRAIN_LIST,
        local_onnx,
        register_onnx_file,
    )
    from roomclf.settings import setup_mlflow
    from roomclf.tracking.experiments import use_experiment

    with tempfile.TemporaryDirectory() as tmp:
        members = [local_onnx(ref, Path(tmp) / f"m{i}") for i, ref in enumerate(refs)]
        path = combine_onnx(members, out, note="mean of " + " + ".join(refs))
    if not register:
        return path, {}
    meta = read_meta(onnx.load(str(path)))
    description = (f"Mean of the class probabilities of {' + '.join(refs)} "
                   f"({', '.join(m['backbone'] + ' ' + str(m['input_size']) + ' px' for m in meta['members'])}); "
                   f"attribute tags and embedding from {refs[0]}.")
    tags = {"backbone": meta["backbone"], "image_size": meta["input_size"], "ensemble_of": " + ".join(refs)}
    setup_mlflow()
    import mlflow

    trained = members_training(refs)
    if trained is not None:
        tags["train_batches"] = ",".join(trained[1])
    use_experiment("roomclf")
    thresholds = meta.get("attribute_thresholds") or {}
    heads = [k for k in meta.get("attribute_keys", []) if thresholds.get(k) is not None]
    with mlflow.start_run(run_name="combine"):
        mlflow.log_params({"members": " + ".join(refs)})
        mlflow.set_tags({"attributes.trained": ",".join(heads) or "none",      # what `roomclf models` lists
                         "attributes.untrained": ",".join(k for k in meta.get("attribute_keys", [])
                                                          if k not in heads) or "none"})
        if trained is not None:     # what the gate leaves out when it judges this model later
            mlflow.log_text("path,member\n" + "".join(f"{p},{m}\n" for p, m in sorted(trained[0].items())),
                            TRAIN_LIST)
        versions = {ONNX_NAME: register_onnx_file(path, ONNX_NAME, tags, description=description)}
        info = log_roomclf_pyfunc(path, registered_model_name=TORCH_NAME, tags=tags, description=description)
        versions[TORCH_NAME] = str(info.registered_model_version)
    return path, versions
