"""`roomclf propagate`: lend manual labels to similar unlabelled photos."""
import click

from roomclf.commands.options import backbone_option, batches_option, data_option
from roomclf.propagate.defaults import PROPAGATION as D
from roomclf.propagate.votes import METHODS


@click.command()
@data_option
@batches_option(default=D.batches)
@backbone_option
@click.option("--k", "k", default=D.k, show_default=True, type=click.IntRange(min=1),
              help="Neighbours that vote (pull: labelled neighbours of each photo; push: photos each label reaches).")
@click.option("--method", default=D.method, show_default=True, type=click.Choice(METHODS),
              help="pull: each unlabelled photo takes its k nearest labels' vote (measured better); "
                   "push: each labelled photo lends its label to its k nearest unlabelled photos.")
@click.option("--share-min", type=click.FloatRange(0, 1), default=D.share_min,
              help="Accept a vote whose winning share is at least this. Default: picked by cross-validation.")
@click.option("--sim-min", type=click.FloatRange(-1, 1), default=D.sim_min,
              help="...and whose nearest voter has at least this cosine similarity. Default: picked by cross-validation.")
@click.option("--target-precision", default=D.target_precision, show_default=True, type=click.FloatRange(0, 1),
              help="Thresholds picked automatically give the most coverage at this cross-validated precision.")
@click.option("--folds", default=D.folds, show_default=True, type=click.IntRange(min=2), help="Cross-validation folds.")
@click.option("--n-trees", default=D.n_trees, show_default=True, type=click.IntRange(min=1), help="Annoy trees.")
@click.option("--search-k", default=D.search_k, show_default=True, type=int,
              help="Annoy search_k (nodes inspected per query; -1: n_trees * k).")
@click.option("--duplicate-threshold", default=D.duplicate_threshold, show_default=True, type=click.FloatRange(0, 1),
              help="Cosine similarity above which two photos are reported as near-duplicates.")
@click.option("--suspect-share", default=D.suspect_share, show_default=True, type=click.FloatRange(0, 1),
              help="A label is suspect when its labelled neighbours vote at least this share for another class.")
@click.option("--from", "sources", default=",".join(D.seed_sources), show_default=True,
              help="Label sources to propagate from (comma-separated, e.g. manual,imported).")
@click.option("--dry-run", is_flag=True, help="Measure and log to MLflow, but leave the label store unchanged.")
def propagate(data, batches, backbone, k, method, share_min, sim_min, target_precision, folds, n_trees, search_k,
              duplicate_threshold, suspect_share, sources, dry_run):
    """Propagate labels to similar unlabelled photos of the batches (annoy kNN).

    \b
    Every run first measures itself: k-fold cross-validation on the labelled
    photos gives precision and coverage at each pair of thresholds (vote share,
    nearest similarity), logged to MLflow (experiment roomclf-propagate) with a
    precision-coverage plot. Accepted labels are stored as `propagated` (never
    over a manual label), in one transaction; suspect labels (neighbours
    disagree) go to a CSV, an image grid and the labelling app's review queue;
    near-duplicate pairs to a CSV.
    """
    from roomclf.propagate.run import run_propagation

    seed_sources = tuple(s.strip() for s in sources.split(",") if s.strip())
    r = run_propagation(data, batches, backbone, k=k, method=method, share_min=share_min, sim_min=sim_min,
                        target_precision=target_precision, folds=folds, n_trees=n_trees, search_k=search_k,
                        duplicate_threshold=duplicate_threshold, suspect_share=suspect_share,
                        seed_sources=seed_sources, dry_run=dry_run, echo=click.echo)
    how = "picked by cross-validation" if r.auto_thresholds else "given"
    click.echo(f"thresholds ({how}): vote share >= {r.share_min:g}, nearest similarity >= {r.sim_min:g}; "
               f"cross-validated precision {r.cv_precision:.1%} at coverage {r.cv_coverage:.1%}")
    if r.auto_thresholds and not r.target_reached:
        click.echo(f"  target precision {target_precision:.0%} not reached: the most precise thresholds were used")
    verb = "would propagate" if dry_run else "propagated"
    click.echo(f"{verb} {r.accepted} of {r.candidates} unlabelled photos ({r.method}, k={r.k}) from "
               f"{r.labelled} labels: " + ", ".join(f"{c} {n}" for c, n in r.per_class.items() if n))
    click.echo(f"suspect labels: {len(r.suspects)}; near-duplicate pairs: {len(r.duplicates)}; "
               f"unreadable photos: {len(r.unreadable)}")
    if r.ignored_outside:
        click.echo(f"  {r.ignored_outside} labels of photos outside these batches were not used")
    if r.run_id:
        click.echo(f"MLflow run {r.run_id} (experiment {r.experiment})")
