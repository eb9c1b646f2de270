"""Bulk model work on every core: whole batches (decode, then the network) run side by side in threads.

Each batch is decoded and run through a single-threaded onnxruntime session in one thread, and as many
batches run at once as there are cores. Decoding (Pillow) and the session both release the GIL, so the
cores stay busy with no handoff between a decode pool and the model's own thread pool; the earlier shape
(decode threads feeding one session with an intra-op thread per core) left the cores partly idle
(bench/bench_crawl.py: infer-all, loop, vs its floor). An onnxruntime session may run from several
threads at once, so the batches share one session.
"""
from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")

AHEAD_PER_WORKER = 2     # batches in flight per worker: one running, one ready to start
# Photos per model call. With a batch per core running at once, this sets how many activations are alive
# together. The bulk paths that only run the model (embed, prelabel, the gate, distill's teacher pass) use 16:
# it ran as fast as 32 on clearly less peak memory. infer-all also builds its output rows a batch at a time;
# at 16 it ran a little slower than at 32, and over a crawl that speed is worth the memory, so it keeps 32.
# Both from bench/bench_batch.py (docs/benchmarks.md: photos per model call).
BATCH_PHOTOS = 16
INFER_BATCH_PHOTOS = 32


def workers_for(session_threads: int, cores: int) -> int:
    """How many batches to run at once so that batches x intra-op threads fill ``cores``."""
    return max(1, cores // max(1, session_threads))


def ordered_map(fn: Callable[[T], R], items: Iterable[T], workers: int) -> Iterator[R]:
    """``fn(item)`` for every item, ``workers`` at a time in threads, yielded in input order. At most
    ``AHEAD_PER_WORKER * workers`` items are in flight, so memory stays bounded whatever the input's length;
    an exception in ``fn`` is raised here, at its item's turn, and the items not yet started are dropped."""
    items = iter(items)
    if workers <= 1:
        yield from map(fn, items)
        return
    from concurrent.futures import ThreadPoolExecutor

    end = object()
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="roomclf-batch") as pool:
        pending = deque()
        for _ in range(AHEAD_PER_WORKER * workers):
            item = next(items, end)
            if item is end:
                break
            pending.append(pool.submit(fn, item))
        try:
            while pending:
                result = pending.popleft().result()
                item = next(items, end)
                if item is not end:
                    pending.append(pool.submit(fn, item))
                yield result
        finally:
            for future in pending:
                future.cancel()
