"""`roomclf demo`: the whole workflow end to end on the sample corpus."""
import click


@click.command()
@click.option("--manual-labels", default=300, show_default=True,
              help="How many ground-truth room labels of the first batch stand in for a person's labels. "
                   "The photos of the training batches that carry attribute labels are labelled too "
                   "(ticking a photo's attribute boxes also labels its room): about 280 more on ../shared/data.")
@click.option("--fresh", is_flag=True, help="Redo every step instead of reusing finished ones.")
def demo(manual_labels, fresh):
    """Run the whole pipeline on the sample corpus: prelabel, label, propagate, train, register, infer-all.

    The corpus is $ROOMCLF_SAMPLE_SOURCE when set, used in place: a folder or an s3://bucket/prefix holding
    listings/batch_* (or batch_*) with labels.csv beside them; else the sample, downloaded into $ROOMCLF_HOME/sample."""
    from roomclf.demo import run_demo

    run_demo(manual_labels=manual_labels, fresh=fresh, echo=click.echo)
