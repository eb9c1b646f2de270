"""The sample corpus and the end-to-end demo."""
import click


@click.command("sample-data")
@click.option("--out", default=None, help="Where to lay out the corpus (default: $ROOMCLF_HOME/sample).")
@click.option("--source", default=None, envvar="ROOMCLF_SAMPLE_SOURCE",
              help="A local archive, photo folder or existing corpus instead of downloading ($ROOMCLF_SAMPLE_SOURCE).")
@click.option("--sha256", default=None, help="Expected SHA-256 of the archive.")
def sample_data(out, source, sha256):
    """Get a sample corpus of real listing photos (the public Houses Dataset)."""
    from roomclf import settings
    from roomclf.sample_data import get_sample_corpus

    corpus = get_sample_corpus(out or settings.home() / "sample", source, sha256)
    where = "used in place" if corpus.in_place else "laid out"
    click.echo(f"{corpus.photos} photos {where} at {corpus.root}; labels: {corpus.labels_csv}")


@click.command()
@click.option("--manual-labels", default=300, show_default=True,
              help="How many ground-truth labels of batch_01 stand in for a person's labels.")
@click.option("--fresh", is_flag=True, help="Redo every step instead of reusing finished ones.")
def demo(manual_labels, fresh):
    """Run the whole pipeline on the sample corpus: prelabel, label, propagate, train, register, infer-all."""
    from roomclf.pipeline import run_demo

    run_demo(manual_labels=manual_labels, fresh=fresh, echo=click.echo)
