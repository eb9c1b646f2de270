"""MLproject entry points: each module is one call into roomclf (``mlflow run . -e NAME``).

MLproject (written by ``python -m mlproject.sync``) passes every parameter as ``--NAME VALUE``, NAME being the
command's option with ``_`` for ``-`` (``--share-min``: ``share_min``, ``--from``: ``from``; its other spellings
and its Python name work too: ``-P batch=...``); ``run`` turns them into that command's arguments: an empty
value leaves the option to roomclf's default, a bool turns a flag on or off, a comma-separated value fills a
list; a name given twice (a declared default, then ``-P``) takes the last value.

``mlflow run`` always creates a run of its own before the command starts (in the experiment named by
``--experiment-name``, else ``Default``) and logs the parameters there. When the user named an experiment the
step logs into that run (one run); in ``Default`` the step logs into its own experiment (roomclf-train, ...)
and the two runs point at each other (tags ``roomclf.step_run`` / ``roomclf.launched_by``). Then ``run`` gives
each of the two the parameters the other has, so both carry the same ones.
"""
import os
import sys

import click

STEP_RUN_TAG = "roomclf.step_run"       # set on the launcher run by roomclf.tracking.experiments
PARAMS_DIFFER_TAG = "roomclf.params_differ"
TRUE, FALSE = {"true", "1", "yes"}, {"false", "0", "no"}


def run(command) -> None:
    """Run a roomclf command with the entry point's ``--NAME VALUE`` pairs (sys.argv), through the ``roomclf``
    group, so bad input is one line, as on the command line."""
    from roomclf.cli import main

    try:
        args = command_args(command, sys.argv[1:])
    except click.UsageError as exc:
        click.echo(f"Error: {exc.message}", err=True)
        sys.exit(2)
    launcher = os.environ.get("MLFLOW_RUN_ID")
    try:
        main.main(args=[command.name, *args], prog_name="roomclf")
    finally:
        if launcher:
            mirror_params(launcher)


def _pairs(argv: list[str]) -> dict[str, str]:
    values, i = {}, 0
    while i < len(argv):
        token = argv[i]
        name, sep, value = token[2:].partition("=")
        if not token.startswith("--") or not name:
            raise click.UsageError(f"expected --NAME VALUE, got {token!r}")
        if not sep:
            if i + 1 >= len(argv):
                raise click.UsageError(f"--{name} has no value")
            value, i = argv[i + 1], i + 1
        values.pop(name.replace("-", "_"), None)          # keep the order of the last spelling
        values[name.replace("-", "_")] = value
        i += 1
    return values


def _bool(name: str, value: str) -> bool:
    if value.strip().lower() in TRUE | FALSE:
        return value.strip().lower() in TRUE
    raise click.UsageError(f"parameter {name} takes true or false, not {value!r}")


def param_name(p: click.Parameter) -> str:
    """A parameter's MLproject name: its first long option with ``_`` for ``-`` (an argument: its name)."""
    if isinstance(p, click.Argument):
        return p.name
    return next(o for o in p.opts if o.startswith("--"))[2:].replace("-", "_")


def parameter_names(command: click.Command) -> dict[str, click.Parameter]:
    """Every name ``run`` accepts for each of ``command``'s parameters -> the parameter."""
    names = {}
    for p in command.params:
        if p.expose_value:
            for name in (param_name(p), p.name, *(o[2:].replace("-", "_") for o in p.opts if o.startswith("--"))):
                names.setdefault(name, p)
    return names


def command_args(command: click.Command, argv: list[str]) -> list[str]:
    """``--NAME VALUE`` pairs (NAME: a parameter of ``command``) -> ``command``'s command line."""
    names = parameter_names(command)
    values = {}
    for name, value in _pairs(argv).items():
        if name not in names:
            takes = ", ".join(param_name(p) for p in command.params if p.expose_value) or "none"
            raise click.UsageError(f"roomclf {command.name} has no parameter {name!r} (it takes {takes})")
        values[names[name].name] = value                 # the last spelling given wins
    options, positional = [], []
    for p in command.params:                             # arguments in the command's order
        value = values.get(p.name, "")
        if value == "":
            continue                                     # roomclf's default
        if isinstance(p, click.Argument):
            positional += [v.strip() for v in value.split(",") if v.strip()] if p.nargs != 1 else [value]
            continue
        flag = next(o for o in p.opts if o.startswith("--"))
        if p.is_flag:
            on = _bool(param_name(p), value)
            options += [flag] if on else p.secondary_opts[:1]
        elif p.multiple:
            options += [f"{flag}={v.strip()}" for v in value.split(",") if v.strip()]
        else:
            options.append(f"{flag}={value}")
    return options + (["--", *positional] if positional else [])


def same_value(a: str, b: str) -> bool:
    """Two logged spellings of one value: 'true' and 'True' (MLflow logs a given value as typed and a YAML
    default through str()), '5' and '5.0'."""
    if a == b:
        return True
    if {a.lower(), b.lower()} <= TRUE | FALSE:
        return (a.lower() in TRUE) == (b.lower() in TRUE)
    try:
        return float(a) == float(b)
    except ValueError:
        return False


def mirror_params(launcher_id: str) -> None:
    """When the step logged its own run besides ``mlflow run``'s (the launcher in ``Default``): log on each run the
    parameters only the other has. A parameter both have with different values (MLflow keeps the first value
    of a parameter: the launcher has it as given, the step as resolved, e.g. image_size '' and 300) is listed
    in a ``roomclf.params_differ`` tag on both (spellings of one value, 'true' and 'True', are not). Never raises: the step's outcome is what counts."""
    try:
        from mlflow import MlflowClient
        from mlflow.entities import Param

        client = MlflowClient()
        launcher = client.get_run(launcher_id)
        step_id = launcher.data.tags.get(STEP_RUN_TAG)
        if not step_id or step_id == launcher_id:
            return
        given, logged = launcher.data.params, client.get_run(step_id).data.params
        for run_id, have, other in ((launcher_id, given, logged), (step_id, logged, given)):
            missing = [Param(k, v) for k, v in sorted(other.items()) if k not in have]
            for i in range(0, len(missing), 100):                  # MLflow's limit per batch
                client.log_batch(run_id, params=missing[i:i + 100])
        differ = "; ".join(f"{k}: {given[k]!r} as given, {logged[k]!r} in the step"
                           for k in sorted(given.keys() & logged.keys()) if not same_value(given[k], logged[k]))
        if differ:
            for run_id in (launcher_id, step_id):
                client.set_tag(run_id, PARAMS_DIFFER_TAG, differ[:5000])
    except Exception as exc:       # a store that went away: the runs stay as they are
        click.echo(f"warning: could not copy parameters between the mlflow run runs ({exc})", err=True)
