"""`roomclf label`: the labelling web app for one batch."""
import click

from roomclf.commands.options import allow_host_option, batches_option
from roomclf.commands.prelabel import prelabel_options, run_prelabel
from roomclf.models.registry import DEFAULT_ONNX_URI
from roomclf.settings import EMBEDDING_BACKBONE


@click.command()
@batches_option(default="batch_01", help="The batch to label (one).")
@prelabel_options
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind. The default serves only this machine; anything else exposes the app.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535), help="Port to listen on.")
@click.option("--prelabel/--no-prelabel", "do_prelabel", default=None,
              help="Prelabel the batch first: always (--prelabel, as the MLproject entry point does), never "
                   "(--no-prelabel), or by default only when the batch has no predictions yet.")
@click.option("--warm-thumbs/--no-warm-thumbs", default=True, show_default=True,
              help="Make the batch's grid thumbnails in the background at start (cached under $ROOMCLF_HOME/thumbs).")
@click.option("--who", default="web", show_default=True,
              help="Labeller name recorded when the page is opened without ?who=NAME.")
@allow_host_option
def label(batches, data, backbone, mode, model_uri, ground_truth, limit, host, port, do_prelabel, warm_thumbs,
          who, allow_hosts):
    """Label the photos of a batch in the browser (http://HOST:PORT/?who=NAME).

    \b
    Shows each photo large with its suggestion pre-selected:
      1-7 choose the class, Enter accepts and moves on, Backspace undoes,
      arrows move, S skips; check-boxes tag the chosen class's attributes.
    The Confirm tab pages through thumbnails grouped by suggested class
    (Enter accepts a page, click the outliers first); Review lists labels
    that propagation found suspicious. Every action is saved at once as a
    `manual` label; a reload or a restart resumes where each labeller was.
    The Attributes tab asks one attribute of one class over a grid of 24
    photos its head is least sure of (Y yes, N no, U not sure); the head
    retrains after each grid and shows its cross-validated precision/recall/F1.
    """
    import uvicorn

    app = prepare(batches, data, backbone, mode, model_uri, ground_truth, limit, do_prelabel, who, warm_thumbs,
                  host=host, allow_hosts=allow_hosts)
    if host not in ("127.0.0.1", "localhost", "::1"):
        click.echo(f"warning: binding {host}: anyone who can reach it can read the photos and write labels", err=True)
    click.echo(f"labelling {app.state.session.batch} ({len(app.state.session.order)} photos) at http://{host}:{port}/")
    uvicorn.run(app, host=host, port=port, log_level="warning")


def prepare(batches, data, backbone=EMBEDDING_BACKBONE, mode="auto", model_uri=DEFAULT_ONNX_URI, ground_truth=None,
            limit=None, do_prelabel=None, who="web", warm_thumbs=False, echo=click.echo, host=None, allow_hosts=()):
    """Everything `roomclf label` does before serving: check the batch, prelabel it when asked or when
    it has no predictions yet (the champion model, else zero-shot), and build the app."""
    from roomclf.corpus import parse_batches
    from roomclf.labels.app.app import create_app
    from roomclf.labels.app.session import AppError
    from roomclf.labels.prelabel import ensure_prelabelled, has_predictions
    from roomclf.labels.store import LabelStore

    names = parse_batches(batches, data)  # a bad batch is reported before anything is created
    if len(names) != 1:
        raise AppError(f"the labelling app serves one batch at a time, got {', '.join(names)}")
    batch, store = names[0], LabelStore()
    if do_prelabel:
        run_prelabel(data, batch, backbone, mode, model_uri, ground_truth, limit)
    elif do_prelabel is None and not has_predictions(store, batch):
        how = {"auto": "the champion model if one is registered, else zero-shot",
               "champion": "the champion model", "zeroshot": "zero-shot"}.get(mode, mode)
        echo(f"{batch} has no predictions yet: prelabelling it first ({how})")
        report = ensure_prelabelled(store, data, batch, mode, model_uri, backbone, ground_truth, limit)
        if report is not None:
            echo(report.summary())
    app = create_app(data, batch, store, limit=limit, default_who=who, warm_thumbs=warm_thumbs, host=host,
                     allow_hosts=allow_hosts)
    if not app.state.session.suggestions():
        click.echo(f"no suggestions for {batch}: run `roomclf prelabel --batch {batch}` (or pass --prelabel) "
                   "to pre-select a class for each photo", err=True)
    return app
