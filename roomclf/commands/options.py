"""Options shared by several commands."""
import click

from roomclf import settings


def data_option(f):
    return click.option("--data", "data", type=click.Path(file_okay=False), envvar="ROOMCLF_DATA",
                        default=lambda: str(settings.data_root()),
                        show_default="$ROOMCLF_DATA, else ../shared/data/listings, else the downloaded sample",
                        help="Corpus root holding batch_*/<listing>/<photo>: a folder, or s3://BUCKET/PREFIX "
                             "(endpoint and credentials from the standard AWS_* variables).")(f)


def batches_option(default: str | None = None, help: str = "Batches, e.g. batch_01,batch_02 or batch_01-batch_05 or all."):
    return click.option("--batches", "--batch", "batches", default=default, show_default=True, help=help)


def backbone_option(f):
    from roomclf.settings import EMBEDDING_BACKBONE

    return click.option("--backbone", default=EMBEDDING_BACKBONE, show_default=True,
                        help="Backbone name from the registry (efficientnet_lite0/1/2, resnet50, densenet121).")(f)


def batch_size_option(default: int):
    return click.option("--batch-size", default=default, show_default=True, type=click.IntRange(min=1),
                        help="Photos per model call. A batch per core runs at once, so this sets peak memory "
                             "more than speed (bench/bench_batch.py).")


def allow_host_option(f):
    from roomclf.hosts import ENV_VAR

    return click.option("--allow-host", "allow_hosts", multiple=True, metavar="NAME",
                        help=f"Another Host name to answer besides localhost and --host (repeatable, or "
                             f"comma-separated; also ${ENV_VAR}), e.g. the name a reverse proxy forwards. "
                             "Other Host headers get 400 (a guard against DNS rebinding); '*' answers any.")(f)
