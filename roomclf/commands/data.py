"""Corpus and label-store commands: embed, import-labels, export-labels, stats."""
import time

import click

from roomclf.commands.options import backbone_option, batches_option, data_option


@click.command()
@data_option
@batches_option(default="batch_01")
@backbone_option
@click.option("--batch-size", default=32, show_default=True)
def embed(data, batches, backbone, batch_size):
    """Compute (or reuse cached) embeddings of every photo of the batches."""
    from roomclf.corpus import discover
    from roomclf.embeddings import embed as run

    corpus = discover(data, batches)
    t0 = time.perf_counter()
    result = run(corpus.root, corpus.paths, backbone, batch_size=batch_size)
    dt = time.perf_counter() - t0
    rate = f", {result.computed / dt:.1f} photos/s" if result.computed else ""
    click.echo(f"{len(result.paths)} embeddings ({result.computed} computed in {dt:.1f}s{rate}), "
               f"{len(result.errors)} unreadable photos, {len(corpus.skipped)} non-photo files skipped")
    for path, reason in sorted(result.errors.items()):
        click.echo(f"  unreadable: {path}: {reason}")


@click.command("import-labels")
@click.argument("source_file", type=click.Path(exists=True))
@click.option("--as", "source", default="imported", show_default=True,
              type=click.Choice(["manual", "imported", "propagated", "predicted"]), help="Label source to record.")
@click.option("--attributes", is_flag=True, help="SOURCE_FILE is a path,attribute,value CSV.")
@click.option("--batches", default=None, help="Keep only rows of these batches (CSV only).")
@click.option("--limit", type=int, default=None, help="Keep only the first N rows (CSV only).")
@data_option
def import_labels(source_file, source, attributes, batches, limit, data):
    """Import labels from a CSV (path,label) or a folder-per-class tree."""
    from pathlib import Path

    from roomclf.labelstore import LabelStore

    store, src = LabelStore(), Path(source_file)
    if src.is_dir():
        report = store.import_folders(src, source, corpus_root=data)
    elif attributes:
        report = store.import_attributes_csv(src, source, corpus_root=data)
    else:
        keep = [b.strip() for b in batches.split(",")] if batches else None
        report = store.import_csv(src, source, corpus_root=data, batches=keep, limit=limit)
    click.echo(f"{src.name}: {report.summary()} (source: {source}, store: {store.path})")


@click.command("export-labels")
@click.argument("out", type=click.Path(dir_okay=False))
@click.option("--sources", default="manual,imported,propagated", show_default=True)
@click.option("--batch", default=None, help="Only photos of this batch.")
def export_labels(out, sources, batch):
    """Write the effective label of every photo to a CSV."""
    from roomclf.labelstore import LabelStore

    n = LabelStore().export_csv(out, [s.strip() for s in sources.split(",")], prefix=f"{batch}/" if batch else None)
    click.echo(f"wrote {n} labels to {out}")


@click.command()
def stats():
    """Label counts per source and class."""
    from roomclf.labelstore import LabelStore
    from roomclf.taxonomy import CLASSES

    store = LabelStore()
    counts = store.counts()
    click.echo(f"label store: {store.path}")
    click.echo(f"{'source':<12}" + "".join(f"{c[:11]:>12}" for c in CLASSES) + f"{'total':>8}")
    for source, per in counts.items():
        click.echo(f"{source:<12}" + "".join(f"{per.get(c, 0):>12}" for c in CLASSES) + f"{sum(per.values()):>8}")
