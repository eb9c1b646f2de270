"""Model time per photo of an ONNX room model, on a fixed probe.

The probe is the same everywhere: ``PROBE_PHOTOS`` seeded random images at the model's own input size
(a network's time does not depend on what the pixels show), one onnxruntime session with one thread,
batches of the whole probe, median of ``rounds`` after a warm-up. So two models timed one after the
other on one machine compare fairly, and a figure is recorded with the machine it was measured on.
"""
from __future__ import annotations

import os
import platform
import statistics
import time

import numpy as np

PROBE_PHOTOS = 16
PROBE_SEED = 0


def probe(size: int, n: int = PROBE_PHOTOS) -> np.ndarray:
    """The fixed probe: ``n`` float32 images of ``size`` x ``size`` in [0, 1]."""
    return np.random.default_rng(PROBE_SEED).random((n, 3, size, size), dtype=np.float32)


def machine() -> str:
    """The machine a time was measured on, in words."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} CPUs"


def ms_per_photo(model, rounds: int = 5) -> float:
    """Median milliseconds per photo of ``model`` (an ``OnnxModel``, or anything ``OnnxModel`` opens)."""
    return side_by_side([model], rounds)[0]


def side_by_side(models: list, rounds: int = 5) -> list[float]:
    """Median milliseconds per photo of each model, timed in interleaved rounds (the machine's noise then
    falls on all alike): the fair way to say which of two models is faster."""
    from roomclf.models.onnx_file import OnnxModel

    sessions = [m if isinstance(m, OnnxModel) else OnnxModel(m, threads=1) for m in models]
    probes = {s.input_size: probe(s.input_size) for s in sessions}
    for s in sessions:
        s.run(probes[s.input_size])
    times: list[list[float]] = [[] for _ in sessions]
    for _ in range(rounds):
        for s, out in zip(sessions, times):
            x = probes[s.input_size]
            t = time.perf_counter()
            s.run(x)
            out.append((time.perf_counter() - t) / len(x) * 1000)
    return [statistics.median(t) for t in times]
