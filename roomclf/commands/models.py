"""`roomclf models`, `roomclf promote`, `roomclf ui`: the registry and the tracking UI."""
import click


@click.command()
@click.option("--name", "names", multiple=True, help="Registered model names  [default: roomclf, roomclf-onnx].")
def models(names):
    """List registered versions with their metrics and aliases."""
    from roomclf.gating import list_versions
    from roomclf.registry import ONNX_NAME, TORCH_NAME

    rows = list_versions(names or (TORCH_NAME, ONNX_NAME))
    if not rows:
        click.echo("no registered models yet (run `roomclf train`)")
        return
    click.echo(f"{'name':<20}{'version':>8}  {'aliases':<22}{'val_acc':>8}{'val_f1':>8}  {'backbone':<20}"
               f"{'size':>5}  train -> valid")
    for r in rows:
        t = r["tags"]
        click.echo(f"{r['name']:<20}{r['version']:>8}  {','.join(r['aliases']) or '-':<22}"
                   f"{t.get('val_accuracy', '-'):>8}{t.get('val_macro_f1', '-'):>8}  {t.get('backbone', '-'):<20}"
                   f"{t.get('image_size', '-'):>5}  {t.get('train_batches', '-')} -> {t.get('valid_batches', '-')}")


@click.command()
@click.argument("name")
@click.argument("version")
@click.option("--alias", default="champion", show_default=True)
def promote(name, version, alias):
    """Move an alias (default champion) to version VERSION of registered model NAME."""
    from roomclf.gating import promote as run

    info = run(name, version, alias)
    click.echo(f"{info['name']} v{info['version']} is now @{info['alias']}")


@click.command()
@click.option("--port", default=5000, show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True)
def ui(port, host):
    """Start the MLflow UI on roomclf's tracking store (Ctrl-C stops it)."""
    import subprocess
    import sys

    from roomclf.settings import artifact_root, setup_mlflow

    uri = setup_mlflow()
    click.echo(f"MLflow UI for {uri}: http://{host}:{port}  (starting takes ~30 s)")
    cmd = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri,
           "--default-artifact-root", artifact_root(), "--host", host, "--port", str(port)]
    try:
        raise SystemExit(subprocess.call(cmd))
    except KeyboardInterrupt:
        pass
