"""`roomclf predict`: a registered model on a few photos, in this process."""
import click

from roomclf.models.registry import DEFAULT_ONNX_URI


class BadModel(click.ClickException):
    """A model reference that cannot be used: one line, exit 2 (as click's usage errors)."""
    exit_code = 2


@click.command("predict")
@click.argument("photos", nargs=-1, required=True, type=click.Path(dir_okay=True))
@click.option("--model", default=DEFAULT_ONNX_URI, show_default=True,
              help="models:/NAME@ALIAS, models:/NAME/VERSION, or a .onnx file or folder.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per photo and line, nothing else on stdout.")
@click.pass_context
def predict(ctx, photos, model, as_json):
    """Classify a few photos with a registered model: class, confidence, top 3, tags.

    The quickest way to try a model (the champion by default, as infer-all and
    serve use). A file that cannot be read (missing, empty, not an image) is
    a row with its error. Exit code 0 when every photo was read, 1 when some
    could not be, 2 for a model that cannot be used.

    \b
    Examples:
      roomclf predict photo.jpg other.jpg
      roomclf predict --model models:/roomclf-onnx/3 --json listing/*.jpg
    """
    import json

    from roomclf.errors import RoomclfError
    from roomclf.infer.predict import load_model, predict_photos

    try:
        loaded = load_model(model)
    except RoomclfError as exc:
        raise BadModel(str(exc)) from None
    click.echo(f"model {loaded.file.name} {loaded.file.version} ({loaded.file.uri})", err=True)
    results = predict_photos(loaded, list(photos))
    if as_json:
        for r in results:
            click.echo(json.dumps(r.as_dict(loaded.file)))
    else:
        click.echo(format_table(results))
    bad = sum(not r.ok for r in results)
    if bad:
        click.echo(f"{bad} of {len(results)} photos could not be read", err=True)
        ctx.exit(1)


def _short(text: str, width: int) -> str:
    return text if len(text) <= width else "..." + text[-(width - 3):]


def format_table(results) -> str:
    """photo, class, confidence, top 3, tags: one line per photo; an unreadable one shows its error."""
    names = [_short(r.photo, 48) for r in results]
    w = max([5] + [len(n) for n in names])
    cw = max([5] + [len(r.label or "") for r in results])
    lines = [f"{'photo':<{w}}  {'class':<{cw}}  {'conf':>5}  top 3 / tags"]
    for name, r in zip(names, results):
        if not r.ok:
            lines.append(f"{name:<{w}}  {'-':<{cw}}  {'-':>5}  error: {r.error}")
            continue
        top = ", ".join(f"{c} {p:.2f}" for c, p in r.top)
        tags = " | tags: " + ", ".join(f"{t} {p:.2f}" for t, p in sorted(r.tags.items())) if r.tags else ""
        lines.append(f"{name:<{w}}  {r.label:<{cw}}  {r.confidence:>5.2f}  {top}{tags}")
    return "\n".join(lines)
