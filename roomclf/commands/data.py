"""Corpus and label-store commands: sample-data, embed, import-labels, export-labels, stats."""
import time

import click

from roomclf.commands.options import backbone_option, batch_size_option, batches_option, data_option
from roomclf.labels.sources import SOURCES, LabelSource
from roomclf.parallel import BATCH_PHOTOS
from roomclf.train.config import DEFAULT_SOURCES


@click.command("sample-data")
@click.option("--out", default=None, type=click.Path(file_okay=False),
              help="Where to lay out the sample crawl (default: $ROOMCLF_HOME/sample).")
@click.option("--source", default=None, envvar="ROOMCLF_SAMPLE_SOURCE",
              help="An existing corpus (a folder with listings/batch_* or batch_*, and labels.csv) used in place "
                   "instead of downloading ($ROOMCLF_SAMPLE_SOURCE).")
@click.option("--manifest", default=None, envvar="ROOMCLF_SAMPLE_MANIFEST", type=click.Path(dir_okay=False),
              help="The CSV of photos to get (default: the sample manifest shipped in the package).")
@click.option("--jobs", default=8, show_default=True, type=click.IntRange(1, 64), help="Concurrent downloads.")
@click.option("--timeout", default=60.0, show_default=True, type=click.FloatRange(min=0.1),
              help="Seconds a connection may stay silent before the try counts as failed.")
@click.option("--retries", default=4, show_default=True, type=click.IntRange(0, 20),
              help="Further tries after a transient failure (timeout, dropped connection, HTTP 5xx/429).")
def sample_data(out, source, manifest, jobs, timeout, retries):
    """Download the sample crawl: a few whole batches of real photos of all 7 classes, from public sources.

    \b
    Every file is checked against the SHA-256 and size in the manifest before it is
    moved into place; a rerun fetches only what is missing, so an interrupted download
    resumes. Photos that cannot be had are reported and left out of labels.csv.
    $ROOMCLF_SAMPLE_URL_PREFIX replaces the URLs' scheme and host (a mirror).
    """
    from roomclf import settings
    from roomclf.sample.download import get_sample_corpus

    get_sample_corpus(out or settings.home() / "sample", source, manifest, jobs=jobs, timeout=timeout,
                      retries=retries, echo=click.echo)


@click.command()
@data_option
@batches_option(default="batch_01")
@backbone_option
@batch_size_option(BATCH_PHOTOS)
@click.option("--precision", type=click.Choice(["fp32", "int8"]), default="fp32", show_default=True,
              help="The onnxruntime graph that embeds. int8 is calibrated on these photos and used only where its "
                   "vectors agree with fp32's; it is made for this host's CPU (full-range weights where it has "
                   "VNNI, which is what lets it agree), so make it on the kind of machine that embeds. Each "
                   "precision has its own cache (bench/bench_embed.py compares them).")
@click.option("--engine", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="local: one process on this machine (a batch per core at once). ray: onnxruntime actors "
                   "on a Ray cluster, each reading its own batches, for many batches on many machines (the corpus "
                   "must be storage every node sees).")
@click.option("--address", default=None,
              help="With --engine ray: the cluster to join (auto, or HOST:PORT of the head). "
                   "Default: $RAY_ADDRESS if set, else start a local Ray.")
def embed(data, batches, backbone, batch_size, precision, engine, address):
    """Compute (or reuse cached) embeddings of every photo of the batches.

    The backbone runs through onnxruntime (exported once per backbone, size and precision into the
    embedding folder); the vectors are cached per photo, so a rerun computes only new or changed photos,
    with either engine."""
    from roomclf.corpus import discover

    corpus = discover(data, batches)
    t0 = time.perf_counter()
    if engine == "ray":
        from roomclf.infer.embed import embed_on_ray

        result = embed_on_ray(corpus.root, corpus.paths, backbone, precision, address, batch_size)
    else:
        from roomclf.models.embeddings import embed as run

        result = run(corpus.root, corpus.paths, backbone, batch_size=batch_size, precision=precision)
    dt = time.perf_counter() - t0
    rate = f", {result.computed / dt:.1f} photos/s" if result.computed else ""
    click.echo(f"{len(result.paths)} embeddings ({result.computed} computed in {dt:.1f}s{rate}), "
               f"{len(result.errors)} unreadable photos, {len(corpus.skipped)} non-photo files skipped")
    for path, reason in sorted(result.errors.items()):
        click.echo(f"  unreadable: {path}: {reason}")


@click.command("import-labels")
@click.argument("source_file", type=click.Path(exists=True))
@click.option("--as", "source", default=LabelSource.IMPORTED.value, show_default=True,
              type=click.Choice([s.value for s in SOURCES]), help="Label source to record.")
@click.option("--attributes", is_flag=True, help="SOURCE_FILE is a path,attribute,value CSV.")
@batches_option(default=None, help="Keep only rows of these batches (CSV only), e.g. batch_01,batch_03 or "
                                   "batch_01-batch_05.  [default: all]")
@click.option("--limit", type=int, default=None, help="Keep only the first N rows (CSV only).")
@data_option
def import_labels(source_file, source, attributes, batches, limit, data):
    """Import labels from a CSV (path,label) or a folder-per-class tree.

    A tree holds TREE/<class>/<the photo's path in the corpus>, e.g.
    TREE/kitchen/batch_01/listing_0001/photo_03.jpg; files that are not a photo of the corpus at
    that path are counted and skipped.
    """
    from pathlib import Path

    from roomclf.corpus import parse_batches
    from roomclf.labels.store import LabelStore

    if batches and (attributes or Path(source_file).is_dir()):
        raise click.UsageError("--batches applies to a path,label CSV only")
    store, src = LabelStore(), Path(source_file)
    if src.is_dir():
        report = store.import_folders(src, source, corpus_root=data)
    elif attributes:
        from roomclf.train.attributes import (
            import_attributes,  # object-annotation zeros by the evidence policy
        )

        report = import_attributes(store, src, data, source)
    else:
        keep = parse_batches(batches, data) if batches else None
        report = store.import_csv(src, source, corpus_root=data, batches=keep, limit=limit)
    click.echo(f"{src.name}: {report.summary()} (source: {source}, store: {store.path})")


@click.command("export-labels")
@click.argument("out", type=click.Path(dir_okay=False))
@click.option("--sources", default=",".join(DEFAULT_SOURCES), show_default=True)
@batches_option(default=None, help="Only photos of these batches, e.g. batch_01 or batch_01-batch_05 (checked "
                                   "against the corpus at --data).  [default: all]")
@data_option
def export_labels(out, sources, batches, data):
    """Write the effective label of every photo to a CSV."""
    from roomclf.corpus import parse_batches
    from roomclf.labels.store import LabelStore

    keep = parse_batches(batches, data) if batches else None
    n = LabelStore().export_csv(out, [s.strip() for s in sources.split(",")], batches=keep)
    click.echo(f"wrote {n} labels to {out}")


@click.command()
def stats():
    """Label counts per source and class."""
    from roomclf.labels.store import LabelStore
    from roomclf.taxonomy import CLASSES

    store = LabelStore()
    counts = store.counts()
    click.echo(f"label store: {store.path}")
    click.echo(f"{'source':<12}" + "".join(f"{c[:11]:>12}" for c in CLASSES) + f"{'total':>8}")
    for source, per in counts.items():
        click.echo(f"{source:<12}" + "".join(f"{per.get(c, 0):>12}" for c in CLASSES) + f"{sum(per.values()):>8}")
