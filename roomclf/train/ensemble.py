"""Training an ensemble in one go: each backbone trained by ``run_training`` (its own MLflow run,
registered and gated like any other), then the members combined into one ONNX model
(``roomclf.models.ensemble``), registered in both forms and gated against the champion on the
validation photos the members were validated on.

On the tuning split (docs/benchmarks.md, train section), efficientnet_lite2 at 260 px + efficientnet_lite0
beat either network alone (bench/bench_train.py run `ens-lite2-lite0-rerun` against `lite2` and
`lite0-rerun`; so did efficientnet_lite0 + efficientnet_lite1, `ens-default-lite1`), at the inference cost of
both networks (bench/bench_ensemble.py, docs/benchmarks.md, ensemble). efficientnet_lite2 at 300 px (the
default) ties that pair alone, and its pair with lite0 scores no higher (`lite2-300`,
`ens-lite2-300-lite0-rerun`), so a pair is an option, not the default.
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

from roomclf.train.config import TrainConfig, TrainingError, check_config
from roomclf.train.run import TrainResult, run_training, selected_data


@dataclass
class EnsembleResult:
    members: list[TrainResult]
    versions: dict[str, str]              # the ensemble's registered name -> version
    alias: str                            # champion or challenger
    accuracy: float                       # on the gate's photos
    champion_version: str | None


def check_backbones(backbones: list[str]) -> None:
    """Two or more known, distinct backbones (``TrainingError`` in one line otherwise)."""
    from roomclf.models.backbones import get_spec

    if len(backbones) < 2 or len(set(backbones)) != len(backbones):
        raise TrainingError(f"an ensemble needs two or more different backbones (got {','.join(backbones)})")
    for name in backbones:
        get_spec(name)


def run_ensemble_training(cfg: TrainConfig, backbones: list[str], store=None, echo=print) -> EnsembleResult:
    """Train one model per backbone (same data and recipe, each at ``cfg.image_size`` or its own size),
    combine them, register the combination and gate it. A member that fails stops the whole run
    before anything is combined; members already registered stay registered."""
    from roomclf.labels.store import LabelStore
    from roomclf.models.ensemble import combine_models
    from roomclf.models.registry import ONNX_NAME
    from roomclf.train.gate import gate

    check_config(cfg)
    check_backbones(backbones)
    store = store or LabelStore()
    selected_data(replace(cfg), store)          # bad data stops here, before the first member trains
    members = []
    for i, backbone in enumerate(backbones, 1):
        echo(f"ensemble member {i}/{len(backbones)}: {backbone}")
        name = f"{cfg.run_name or 'ensemble'}-{backbone}"
        members.append(run_training(replace(cfg, backbone=backbone, run_name=name), store, echo))
    refs = [f"models:/{ONNX_NAME}/{m.versions[ONNX_NAME]}" for m in members]
    echo("combining " + " + ".join(refs) + ", registering the combination and gating it against the champion")
    with tempfile.TemporaryDirectory() as tmp:
        path, versions = combine_models(refs, Path(tmp) / "ensemble.onnx", register=True)
        gated = gate(path, versions, cfg.data, members[0].valid, tolerance=cfg.gate_tolerance)
    return EnsembleResult(members, versions, gated.alias, gated.new.accuracy, gated.champion_version)
