"""The model in service, and swapping it when the registry alias moves.

``ModelHolder.current`` is one immutable ``LoadedModel``. A request reads it
once and uses that object to the end, so a swap (``reload``, or the poller)
never disturbs requests in flight: they finish on the old session, which is
freed when the last of them lets go. A failed reload keeps the old model.

The model reference can be ``models:/NAME@ALIAS`` (follows the alias),
``models:/NAME/VERSION`` (fixed), or a ``.onnx`` file or folder (reloaded
when the file changes).
"""
from __future__ import annotations

import logging
import os
import re
import tempfile
import threading
import time
from dataclasses import dataclass

from roomclf.models.attribute_scores import SCORES_KEY, emitted
from roomclf.models.onnx_file import OnnxModel
from roomclf.models.registry import ModelRef, local_onnx, resolve

log = logging.getLogger("roomclf.serving")

# An absolute path of this machine in a message (not the ``//`` of a URI): answers show its file name only.
_ABSOLUTE_PATH = re.compile(r"(?<![\w:/.~-])/(?:[^\s'\"/:]+/)*([^\s'\"/:]+)")


def public_text(text: str) -> str:
    """``text`` with every absolute path replaced by its file name, for an HTTP answer."""
    return _ABSOLUTE_PATH.sub(r"\1", text)


def public_ref(uri: str) -> str:
    """A model reference as answers show it: a ``models:/`` URI as it is, a file by its name only."""
    return uri if uri.startswith("models:/") else os.path.basename(os.path.normpath(uri))


@dataclass(frozen=True)
class LoadedModel:
    model: OnnxModel
    uri: str
    ref: ModelRef
    metrics: dict
    loaded_at: float

    def summary(self) -> dict:
        return {"name": self.ref.name, "version": self.ref.version, "uri": public_ref(self.uri)}

    def describe(self) -> dict:
        """What GET /model shows: version, classes, trained attributes with thresholds and the held-out
        figures the model carries for each (``roomclf.models.attribute_scores``; ``scores`` is null for a
        model that carries none), metrics."""
        m = self.model
        trained = {k: t for k, t in m.thresholds.items() if t is not None}
        carried = m.meta.get(SCORES_KEY)
        return {**self.summary(), "source": public_ref(self.ref.location), "loaded_at": self.loaded_at,
                "backbone": m.meta.get("backbone"), "input_size": m.input_size, "classes": list(m.classes),
                "attributes": {"trained": trained, "untrained": [k for k in m.attribute_keys if k not in trained],
                               "scores": None if carried is None else emitted(carried),
                               "why_untrained": {k: e["why"] for k, e in (carried or {}).items() if "why" in e}},
                "metrics": self.metrics, "tags": dict(self.ref.tags)}


def run_metrics(ref: ModelRef) -> dict:
    """The metrics of the run that logged the version, plus the version's numeric tags."""
    metrics: dict[str, float] = {}
    if ref.run_id:
        try:
            from mlflow import MlflowClient

            metrics.update(MlflowClient().get_run(ref.run_id).data.metrics)
        except Exception as exc:  # a deleted run must not stop serving
            log.warning("no metrics for run %s: %s", ref.run_id, exc)
    for k, v in ref.tags.items():
        try:
            metrics.setdefault(k, float(v))
        except (TypeError, ValueError):
            pass
    return metrics


def load(uri: str, threads: int, ref: ModelRef | None = None) -> LoadedModel:
    """Fetch and open the model ``uri`` points at (or ``ref``, already resolved)."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")   # no bar per reload in the log
    ref = ref or resolve(uri)
    if ref.in_registry:
        with tempfile.TemporaryDirectory(prefix="roomclf-serve-") as tmp:
            model = OnnxModel(local_onnx(ref, dst=tmp), threads=threads)  # read into memory
    else:
        model = OnnxModel(local_onnx(ref), threads=threads)
    return LoadedModel(model, uri, ref, run_metrics(ref), time.time())


def default_threads() -> int:
    """One onnxruntime thread per inference, several inferences at once (see ``create_app``'s
    ``slots``): with several clients at once it serves more requests per second than 2 threads x 1 slot,
    which wins only for a single client (bench/bench_serving.py, docs/benchmarks.md, serving)."""
    return 1


class ModelHolder:
    """Holds the model in service; ``reload`` swaps it atomically when its reference moved."""

    def __init__(self, uri: str, threads: int | None = None):
        self.uri = uri
        self.threads = threads or default_threads()
        self._lock = threading.Lock()          # one reload at a time; requests never take it
        self._current = load(uri, self.threads)
        self.last_error: str | None = None
        self.reloads = 0
        self._stop = threading.Event()
        self._poller: threading.Thread | None = None

    @property
    def current(self) -> LoadedModel:
        return self._current

    def reload(self, force: bool = False) -> dict:
        """Load the model the reference points at now, if it changed (or ``force``).

        Raises what resolving/loading raises (e.g. ``ModelNotFound``); the old model stays.
        """
        with self._lock:
            old = self._current
            try:
                ref = resolve(self.uri)
                if ref.identity == old.ref.identity and not force:
                    self.last_error = None
                    return {"changed": False, "version": old.ref.version, "name": old.ref.name}
                new = load(self.uri, self.threads, ref)
            except Exception as exc:
                first = public_text(str(exc).splitlines()[0])[:300] if str(exc) else ""
                self.last_error = f"{type(exc).__name__}: {first}"
                raise
            self._current = new     # one reference assignment: atomic for readers
            self.last_error = None
            self.reloads += 1
        log.info("model %s: version %s -> %s", self.uri, old.ref.version, new.ref.version)
        return {"changed": True, "version": new.ref.version, "name": new.ref.name, "previous": old.ref.version}

    def start_polling(self, seconds: float) -> None:
        """Check the reference every ``seconds`` in a background thread (0 or less: never)."""
        if seconds <= 0 or self._poller is not None:
            return
        self._stop.clear()
        self._poller = threading.Thread(target=self._poll, args=(seconds,), name="roomclf-model-poll", daemon=True)
        self._poller.start()

    def stop_polling(self) -> None:
        self._stop.set()
        if self._poller is not None:
            self._poller.join(timeout=10)
            self._poller = None

    def _poll(self, seconds: float) -> None:
        while not self._stop.wait(seconds):
            try:
                self.reload()
            except Exception as exc:  # keep serving the old model, try again next time
                log.warning("model poll failed, still serving version %s: %s", self._current.ref.version, exc)
