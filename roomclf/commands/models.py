"""`roomclf models`, `roomclf promote`, `roomclf ui`: the registry and the tracking UI."""
import click


@click.command()
@click.option("--name", "names", multiple=True, help="Registered model names  [default: roomclf, roomclf-onnx].")
@click.option("--attributes", "all_attributes", is_flag=True,
              help="List the trained and untrained attribute tags of every version (default: the champions').")
def models(names, all_attributes):
    """List registered versions with their metrics, model time per photo and aliases, and which attribute tags
    they emit, each with its precision/recall/F1 on the held-out validation photos and the labels it learnt
    from (as the version recorded them at training). ms/photo is the model time on the fixed probe at
    registration (one thread; the machine is in the version's tag model_ms_timed_on), so accuracy and cost
    read side by side."""
    from roomclf.models.attribute_scores import from_version_tags, score_lines
    from roomclf.models.catalogue import list_versions
    from roomclf.models.registry import ONNX_NAME, TORCH_NAME
    from roomclf.taxonomy import ATTRIBUTE_KEYS

    rows = list_versions(names or (TORCH_NAME, ONNX_NAME))
    if not rows:
        click.echo("no registered models yet (run `roomclf train`)")
        return
    click.echo(f"{'name':<20}{'version':>8}  {'aliases':<22}{'val_acc':>8}{'val_f1':>8}{'ms/photo':>9}  {'backbone':<20}"
               f"{'size':>5}  {'tags':>6}  train -> valid")
    for r in rows:
        t = r.tags
        n_tags = "?" if r.trained is None else f"{len(r.trained)}/{len(ATTRIBUTE_KEYS)}"
        click.echo(f"{r.name:<20}{r.version:>8}  {','.join(r.aliases) or '-':<22}"
                   f"{t.get('val_accuracy', '-'):>8}{t.get('val_macro_f1', '-'):>8}{t.get('model_ms_per_photo', '-'):>9}"
                   f"  {t.get('backbone', '-'):<20}"
                   f"{t.get('image_size', '-'):>5}  {n_tags:>6}  {t.get('train_batches', '-')} -> {t.get('valid_batches', '-')}")
    shown = set()
    for r in rows:
        if r.run_id in shown or not (all_attributes or "champion" in r.aliases):
            continue
        shown.add(r.run_id)
        forms = ", ".join(f"{x.name} v{x.version}" for x in rows if x.run_id == r.run_id)
        click.echo(f"\nattribute tags of {forms}:")
        if r.trained is None:
            click.echo("  not recorded by this run (trained before tags were listed per run)")
            continue
        click.echo(f"  trained ({len(r.trained)}): {', '.join(r.trained) or 'none (no attribute labels)'}")
        click.echo(f"  untrained, never emitted ({len(r.untrained)}): {', '.join(r.untrained) or 'none'}")
        if r.trained:
            scores = next((s for x in rows if x.run_id == r.run_id
                           if (s := from_version_tags(x.tags)) is not None), None)
            for line in score_lines(scores, f"validation {r.tags.get('valid_batches', 'photos')}"):
                click.echo(line)


@click.command()
@click.argument("name")
@click.argument("version")
@click.option("--alias", default="champion", show_default=True)
def promote(name, version, alias):
    """Move an alias (default champion) to version VERSION of registered model NAME, and to
    every other form the same training run registered (roomclf and roomclf-onnx move together)."""
    from roomclf.train.gate import promote as run

    moved = run(name, version, alias)
    click.echo(f"@{alias} now on " + ", ".join(f"{n} v{v}" for n, v in sorted(moved.items()))
               + " (one training run)")


@click.command()
@click.argument("models", nargs=-1, required=True)
@click.option("--out", type=click.Path(dir_okay=False), default="ensemble.onnx", show_default=True,
              help="Where to write the combined ONNX file.")
@click.option("--register", is_flag=True, help="Also register it as new roomclf-onnx and roomclf versions (the "
                                                "champion stays until `roomclf promote`).")
def combine(models, out, register):
    """Combine two or more room models (models:/ URIs or .onnx files) into one ONNX model whose
    class probabilities are their mean: infer-all, serve and prelabel run it like any other.

    On the tuning split, efficientnet_lite2 at 260 px + efficientnet_lite0 beat that lite2 alone, at the
    cost of running both; efficientnet_lite2 at 300 px, `roomclf train`'s default, ties that pair alone
    (docs/benchmarks.md, train: runs `ens-lite2-lite0-rerun`, `lite2`, `lite2-300`).
    """
    from roomclf.models.ensemble import combine_models

    path, versions = combine_models(list(models), out, register)
    click.echo(f"wrote {path}" + ("; registered as " + ", ".join(f"{n} v{v}" for n, v in versions.items())
                                  if versions else ""))


@click.command()
@click.option("--port", default=5000, show_default=True, type=click.IntRange(0, 65535))
@click.option("--host", default="127.0.0.1", show_default=True)
def ui(port, host):
    """The MLflow UI on roomclf's tracking store.

    With a local store it starts one (Ctrl-C or SIGTERM stops it and everything it
    started); with a tracking server ($MLFLOW_TRACKING_URI=http://...) it says where
    that server's own UI is.
    """
    from roomclf.settings import is_remote_tracking, setup_mlflow
    from roomclf.tracking.experiments import ui_link
    from roomclf.tracking.ui import experiment_links, run_local_ui

    uri = setup_mlflow()
    if is_remote_tracking(uri):
        click.echo(f"roomclf's runs and models are on the tracking server {uri}; nothing to start here. "
                   "Its own UI, in the model-training view:")
        for name, link in experiment_links(uri):
            click.echo(f"  {name:<20} {link}")
        click.echo(f"  {'registered models':<20} {ui_link(uri, 'models')}")
        return
    base = f"http://{host}:{port}"
    click.echo(f"MLflow UI for {uri}: {ui_link(base)}  (models: {ui_link(base, 'models')}; starting takes "
               "~10-30 s; Ctrl-C stops it)")
    raise SystemExit(run_local_ui(uri, host, port))
