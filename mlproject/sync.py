"""Writes MLproject and python_env.yaml from the package: ``python -m mlproject.sync`` (``--check``: exit 1 when
either file is stale; tests/test_mlproject.py runs the same check).

Every module of mlproject/ (but this one) is an entry point: ``mlproject/import_labels.py`` -> ``import-labels``.
Its parameters are the options and arguments of the roomclf command it runs, with their types and the
defaults that command reads (``TrainConfig`` and ``Recipe`` for train, ``roomclf.propagate.defaults`` for
propagate, ...), so the one place a default lives is the package. An option whose default is decided at run
time gets an empty default and a comment saying how it is decided (``EMPTY``); one without a default is
required. python_env.yaml lists pyproject.toml's requirements.
"""
from __future__ import annotations

import importlib
import json
import pkgutil
import re
import sys
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path

import click

PROJECT = Path(__file__).resolve().parent.parent
MLPROJECT = PROJECT / "MLproject"
PYTHON_ENV = PROJECT / "python_env.yaml"

# Entry points whose parameter defaults differ from the command's, and why (said in the parameter's comment).
OVERRIDES = {
    ("label", "prelabel"): (True, "mlflow run prelabels the batch before serving it"),
    ("infer", "no_progress"): (True, "no progress bar in the run's log"),
}

# What an empty default means, for the options whose default is decided at run time (key: the option's name,
# or (entry point, name) where one name means different things).
EMPTY = {
    "data": "$ROOMCLF_DATA, else ../shared/data/listings, else the downloaded sample",
    "limit": "every photo",
    "ground_truth": "no accuracy report",
    "prelabel": "prelabel only when the batch has no predictions yet",
    "allow_host": "localhost and --host only",
    "share_min": "picked by cross-validation (the most coverage at target_precision)",
    "sim_min": "picked by cross-validation (the most coverage at target_precision)",
    "run_name": "MLflow names the run",
    "address": "a local Ray",
    "actors": "the cluster's CPUs",
    "actor_resource": "any node",
    "cpus": "all of this machine's",
    "threads": "serving's own choice from the CPUs",
    "slots": "serving's own choice",
    "max_requests": "no limit",
    "max_inflight_mb": "serving's own limit",
    "name": "roomclf and roomclf-onnx",
    ("sample-data", "out"): "$ROOMCLF_HOME/sample",
    "source": "$ROOMCLF_SAMPLE_SOURCE, else download",
    "manifest": "the sample manifest shipped in the package",
    "batches": "every batch (no filter)",
    # no static default: each backbone has its own input size
    "image_size": lambda: "the input size of the backbone, from the registry (" + ", ".join(
        f"{name} {spec.train_size}" for name, spec in _backbones().items() if name.startswith("efficientnet")) + ")",
}


def _backbones():
    from roomclf.models.backbones import BACKBONES

    return BACKBONES


@dataclass
class Param:
    name: str
    type: str                   # int, float, bool, string, path
    default: object             # None: required
    comment: str = ""


def entry_modules() -> dict[str, str]:
    """MLproject entry point name -> module of mlproject/."""
    import mlproject

    from roomclf.cli import COMMANDS

    order = list(COMMANDS)                                   # the workflow's order, as `roomclf --help`
    modules = [f"mlproject.{m.name}" for m in pkgutil.iter_modules(mlproject.__path__) if m.name != "sync"]
    modules.sort(key=lambda m: (order.index(command_of(m).name) if command_of(m).name in order else len(order), m))
    return {m.rpartition(".")[2].replace("_", "-"): m for m in modules}


def command_of(module: str) -> click.Command:
    """The roomclf command an entry point module runs (the one click command it imports)."""
    found = [v for v in vars(importlib.import_module(module)).values() if isinstance(v, click.Command)]
    if len(found) != 1:
        raise SystemExit(f"{module}: expected one roomclf command, found {len(found)}")
    return found[0]


def _unset(value) -> bool:
    return value is None or callable(value) or type(value).__name__ == "Sentinel"


def _kind(p: click.Parameter) -> str:
    t = p.type
    if isinstance(p, click.Option) and p.is_flag or isinstance(t, click.types.BoolParamType):
        return "bool"
    if p.nargs != 1 or getattr(p, "multiple", False):
        return "string"                          # a comma-separated list
    if isinstance(t, click.types.IntParamType) or t.name == "integer":
        return "int"
    if isinstance(t, click.types.FloatParamType):
        return "float"
    if isinstance(t, click.Path) and t.exists and p.required:
        return "path"                            # MLflow makes it absolute and checks it exists
    return "string"


def _empty_means(entry: str, p: click.Parameter) -> str:
    from mlproject import param_name

    name = param_name(p)
    means = EMPTY.get((entry, name), EMPTY.get(name))
    if means is not None:
        return means() if callable(means) else means
    raise SystemExit(f"entry point {entry}: say what an empty {name} means in mlproject/sync.py EMPTY")


def parameters(entry: str, command: click.Command) -> list[Param]:
    from mlproject import param_name

    out = []
    for p in command.params:
        if not p.expose_value:
            continue
        name = param_name(p)
        kind, default = _kind(p), p.default
        notes = []
        if isinstance(p.type, click.Choice):
            notes.append("one of " + ", ".join(map(str, p.type.choices)))
        if p.nargs != 1 or getattr(p, "multiple", False):
            notes.append("comma-separated")
        if (entry, name) in OVERRIDES:
            default, why = OVERRIDES[entry, name]
            notes.append(f"roomclf {command.name}'s default is {_show(p.default)}: {why}")
        elif p.required:
            default = None
            notes.append("required")
        elif kind == "bool" and _unset(default) and not (isinstance(p, click.Option) and p.secondary_opts):
            default = False                      # a plain flag
        elif _unset(default) or (getattr(p, "multiple", False) and not default):
            default = ""
            notes.append("empty: " + _empty_means(entry, p))
        elif isinstance(default, (tuple, list)):
            default = ",".join(map(str, default))
        out.append(Param(name, kind, default, "; ".join(notes)))
    return out


def _show(value) -> str:
    return "unset" if _unset(value) else json.dumps(value)


def _yaml_scalar(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        text = repr(value)
        if "e" in text and "." not in text.split("e")[0]:     # YAML 1.1 reads 1e-05 as a string
            text = text.replace("e", ".0e", 1)
        return text
    return json.dumps(str(value))


def recipe_comment() -> list[str]:
    """The train entry point's note on --recipe: every Recipe knob with its default, wrapped."""
    from roomclf.train.config import DEFAULT_RECIPE

    knobs = [f"{f.name}={_yaml_scalar(getattr(DEFAULT_RECIPE, f.name)).strip(chr(34))}"
             for f in fields(DEFAULT_RECIPE)]
    lines, line = [], "#   recipe: KNOB=VALUE,... changes these (roomclf/train/config.py Recipe):"
    for knob in knobs:
        if len(line) + len(knob) + 2 > 110:
            lines.append(line)
            line = "#    "
        line += f" {knob},"
    return lines + [line.rstrip(",")]


HEADER = """\
# GENERATED by `python -m mlproject.sync` from the package: each entry point runs one roomclf command
# (mlproject/NAME.py) and its parameters are that command's options, with the defaults it reads (TrainConfig
# and Recipe for train, roomclf/propagate/defaults.py for propagate). Change the package, then rerun
# `python -m mlproject.sync`; tests/test_mlproject.py fails while this file is stale.
#
#   mlflow run . -e ENTRY --env-manager local -P name=value ...
#
# Types: int, float, bool and string are checked by roomclf's options (MLflow itself checks only path, which
# it makes absolute and requires to exist). An empty default means roomclf decides at run time (the comment
# says how); a parameter without a default is required. Relative paths in string parameters are read from
# the project folder (where mlflow run runs the command).
name: roomclf
python_env: python_env.yaml       # conda.yaml: the same environment for `conda env create`
"""


def render_mlproject() -> str:
    out = [HEADER, "entry_points:"]
    for entry, module in entry_modules().items():
        command = command_of(module)
        doc = (importlib.import_module(module).__doc__ or "").strip().splitlines()[0]
        out.append(f"  # {re.sub(r'^`[^`]*`: ', '', doc).rstrip('.')}")
        if entry == "train":
            out += ["  " + line for line in recipe_comment()]
        out.append(f"  {entry}:")
        params = parameters(entry, command)
        if params:
            out.append("    parameters:")
        width = max((len(p.name) for p in params), default=0)
        for p in params:
            body = f"type: {p.type}" + ("" if p.default is None else f", default: {_yaml_scalar(p.default)}")
            line = f"      {p.name + ':':<{width + 1}} {{{body}}}"
            out.append(line + (f"   # {p.comment}" if p.comment else ""))
        args = "".join(f" --{p.name} {{{p.name}}}" for p in params)
        out.append(f'    command: "python -m {module}{args}"')
        out.append("")
    return "\n".join(out)


def render_python_env() -> str:
    meta = tomllib.loads((PROJECT / "pyproject.toml").read_text())["project"]
    python = re.search(r">=\s*(\d+\.\d+)", meta["requires-python"]).group(1)
    lines = ["# GENERATED by `python -m mlproject.sync` from pyproject.toml: the environment of `mlflow run .`",
             "# (MLproject's python_env) when MLflow builds one (--env-manager virtualenv or uv).",
             f'python: "{python}"', "build_dependencies:", "  - pip", "  - setuptools", "  - wheel",
             "dependencies:"]
    lines += [f"  - {json.dumps(d)}" for d in meta["dependencies"]]
    return "\n".join(lines + ['  - "-e ."      # roomclf itself', ""])


def main(argv: list[str]) -> int:
    stale = [path for path, text in ((MLPROJECT, render_mlproject()), (PYTHON_ENV, render_python_env()))
             if not path.is_file() or path.read_text() != text]
    if "--check" in argv:
        for path in stale:
            print(f"{path.name} is stale: run `python -m mlproject.sync`", file=sys.stderr)
        return 1 if stale else 0
    for path, text in ((MLPROJECT, render_mlproject()), (PYTHON_ENV, render_python_env())):
        path.write_text(text)
    print("wrote " + ", ".join(p.name for p in (MLPROJECT, PYTHON_ENV)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
