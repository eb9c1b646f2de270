"""The propagation defaults, in one place: ``run_propagation``, the ``roomclf propagate`` options, the
MLproject ``propagate`` entry point (written by ``python -m mlproject.sync``, checked by a test) and the
demo all read ``PROPAGATION``.
"""
from __future__ import annotations

from dataclasses import dataclass

from roomclf.labels.sources import LabelSource
from roomclf.models.near_duplicates import DUPLICATE_SIMILARITY
from roomclf.settings import EMBEDDING_BACKBONE


@dataclass(frozen=True)
class PropagationDefaults:
    batches: str = "batch_01"                 # the CLI's --batches
    backbone: str = EMBEDDING_BACKBONE        # the embedding network (settings)
    k: int = 10                               # neighbours that vote
    method: str = "pull"                      # pull: each unlabelled photo takes its k nearest labels' vote
    share_min: float | None = None            # None: picked by cross-validation (most coverage at
    sim_min: float | None = None              # target_precision)
    target_precision: float = 0.9
    folds: int = 5                            # cross-validation folds
    n_trees: int = 50                         # annoy trees
    search_k: int = -1                        # annoy search_k; -1: n_trees * k
    duplicate_threshold: float = DUPLICATE_SIMILARITY
    suspect_share: float = 0.7                # a label is suspect when its neighbours vote this much elsewhere
    seed_sources: tuple[str, ...] = (LabelSource.MANUAL,)   # the label sources lent to other photos (--from)


PROPAGATION = PropagationDefaults()
