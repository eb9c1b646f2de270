"""`roomclf label`: the labelling web app for one batch."""
import click

from roomclf.commands.options import batches_option
from roomclf.commands.prelabel import prelabel_options, run_prelabel


@click.command()
@batches_option(default="batch_01", help="The batch to label (one).")
@prelabel_options
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind. The default serves only this machine; anything else exposes the app.")
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--prelabel/--no-prelabel", "do_prelabel", default=False, show_default=True,
              help="Run prelabel on the batch first (the MLproject entry point does).")
@click.option("--warm-thumbs/--no-warm-thumbs", default=True, show_default=True,
              help="Make the batch's grid thumbnails in the background at start (cached under $ROOMCLF_HOME/thumbs).")
@click.option("--who", default="web", show_default=True,
              help="Labeller name recorded when the page is opened without ?who=NAME.")
def label(batches, data, backbone, mode, model_uri, ground_truth, limit, host, port, do_prelabel, warm_thumbs,
          who):
    """Label the photos of a batch in the browser (http://HOST:PORT/?who=NAME).

    \b
    Shows each photo large with its suggestion pre-selected:
      1-7 choose the class, Enter accepts and moves on, Backspace undoes,
      arrows move, S skips; check-boxes tag the chosen class's attributes.
    The Confirm tab pages through thumbnails grouped by suggested class
    (Enter accepts a page, click the outliers first); Review lists labels
    that propagation found suspicious. Every action is saved at once as a
    `manual` label; a reload or a restart resumes where each labeller was.
    """
    import uvicorn

    from roomclf.corpus import parse_batches
    from roomclf.labelapp.app import create_app
    from roomclf.labelstore import LabelStore

    parse_batches(batches, data)  # a bad batch is reported before anything is created
    if do_prelabel:
        run_prelabel(data, batches, backbone, mode, model_uri, ground_truth, limit)
    app = create_app(data, batches, LabelStore(), limit=limit, default_who=who, warm_thumbs=warm_thumbs)
    if not app.state.session.suggestions():
        click.echo(f"no suggestions for {app.state.session.batch} yet: run `roomclf prelabel --batch "
                   f"{app.state.session.batch}` (or pass --prelabel) to pre-select a class for each photo", err=True)
    if host not in ("127.0.0.1", "localhost", "::1"):
        click.echo(f"warning: binding {host}: anyone who can reach it can read the photos and write labels", err=True)
    click.echo(f"labelling {app.state.session.batch} ({len(app.state.session.order)} photos) at http://{host}:{port}/")
    uvicorn.run(app, host=host, port=port, log_level="warning")
