"""What the registry holds, as rows: every version of roomclf's models with its aliases, tags and the
attribute tags its training run can emit (what ``roomclf models`` prints)."""
from __future__ import annotations

from dataclasses import dataclass, field

from roomclf.models.registry import ONNX_NAME, TORCH_NAME, is_unreachable, unreachable
from roomclf.settings import setup_mlflow
from roomclf.taxonomy import ATTRIBUTE_KEYS


@dataclass
class VersionRow:
    name: str
    version: str
    aliases: list[str]
    tags: dict[str, str]
    run_id: str
    created: int
    trained: list[str] | None = None          # attribute keys the version emits; None: its run did not record them
    untrained: list[str] = field(default_factory=list)


def _split(value: str) -> list[str]:
    return [] if value in ("", "none") else value.split(",")


def attribute_lists(run) -> tuple[list[str] | None, list[str]]:
    """(trained, untrained) attribute keys recorded by a training run (an ``mlflow.entities.Run`` or None).
    A run without attribute labels trained no heads; one from before the lists were recorded gives None."""
    if run is None:
        return None, []
    if "attributes.trained" in run.data.tags:
        return _split(run.data.tags["attributes.trained"]), _split(run.data.tags.get("attributes.untrained", ""))
    if "attr_trained" not in run.data.metrics:
        return [], list(ATTRIBUTE_KEYS)
    return None, []


def list_versions(names=(TORCH_NAME, ONNX_NAME)) -> list[VersionRow]:
    """Every version of the given registered models, by name then newest first."""
    setup_mlflow()
    from mlflow import MlflowClient

    client = MlflowClient()
    rows, runs = [], {}
    for name in names:
        try:
            found = client.search_model_versions(f"name='{name}'")
            by_version: dict[str, list[str]] = {}
            for alias, version in (client.get_registered_model(name).aliases or {}).items():
                by_version.setdefault(str(version), []).append(alias)   # search results carry no aliases
        except Exception as exc:
            if is_unreachable(exc):       # a dead server is not an empty registry
                raise unreachable(exc, "listing registered models") from None
            found, by_version = [], {}    # no such registered model yet
        for mv in found:
            if mv.run_id not in runs:
                try:
                    runs[mv.run_id] = client.get_run(mv.run_id) if mv.run_id else None
                except Exception:
                    runs[mv.run_id] = None
            trained, untrained = attribute_lists(runs[mv.run_id])
            rows.append(VersionRow(mv.name, str(mv.version), sorted(by_version.get(str(mv.version), [])),
                                   dict(mv.tags or {}), mv.run_id, mv.creation_timestamp, trained, untrained))
    return sorted(rows, key=lambda r: (r.name, -int(r.version)))
