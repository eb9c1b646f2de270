"""The HTTP app: classify photos with the model in service.

    POST /predict          one photo (multipart field ``file``, or the raw body with an image/* type)
    POST /predict/batch    up to ``max_batch`` photos (multipart, any file fields, e.g. ``files``)
    GET  /model            name, version, classes, trained attributes + thresholds and held-out figures, metrics
    GET  /health           liveness and the version in service
    POST /reload           load the version the alias points at now (also done by polling)
    GET  /                 a page to drop a photo on

Handlers only parse the request and call ``classify`` (in a worker thread:
onnxruntime sessions are thread-safe for ``run``). Preprocessing is the shared
photo loader via ``OnnxModel.predict_sources``, so a served prediction equals
infer-all's for the same file. Bad input gets a status and a one-line
``detail``; nothing leaks a traceback (nor a path of this machine).

A request is admitted (``serving.admission``) before its upload is read; a
request for a Host the server does not answer gets 400 (``roomclf.hosts``).
"""
from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Iterable
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException

from roomclf.hosts import HostAllowList, allowed_hosts
from roomclf.models.registry import DEFAULT_ONNX_URI
from roomclf.settings import cpus
from serving.admission import Admission
from serving.holder import LoadedModel, ModelHolder, public_text
from serving.uploads import (
    MB,
    MULTIPART_OVERHEAD,
    BodyLimit,
    UploadError,
    check_size,
    status_for,
)

log = logging.getLogger("roomclf.serving")
STATIC = Path(__file__).resolve().parent / "static"


def classify(loaded: LoadedModel, uploads: list[tuple[str, bytes]], max_bytes: int) -> list[dict]:
    """[(filename, bytes)] -> one result per photo, in order: ``status`` 200 with the
    prediction, or the refusal's status with ``error``."""
    results: list[dict] = [{} for _ in uploads]
    todo = []
    for i, (name, data) in enumerate(uploads):
        try:
            check_size(data, max_bytes, name)
            todo.append(i)
        except UploadError as exc:
            results[i] = {"filename": name, "status": exc.status, "error": exc.message}
    # one batch at a time: the server's slots are its concurrency (docs/deploy.md: Concurrency)
    predictions = loaded.model.predict_sources([uploads[i][1] for i in todo], workers=1) if todo else []
    for i, p in zip(todo, predictions):
        name = uploads[i][0]
        if p.error:
            results[i] = {"filename": name, "status": status_for(p.error_kind), "error": f"{name}: {p.error}"}
        else:
            results[i] = {"filename": name, "status": 200, "label": p.label, "confidence": p.confidence,
                          "probabilities": p.probabilities, "tags": p.tags}
    return results


async def read_uploads(request: Request, max_files: int, max_bytes: int) -> list[tuple[str, bytes]]:
    """The photos of a request: the file fields of a multipart form, or a raw image body."""
    ctype = request.headers.get("content-type", "").lower()
    if ctype.startswith("multipart/form-data"):
        try:
            async with request.form(max_files=max_files + 1, max_fields=max_files + 16) as form:
                files = [v for _, v in form.multi_items() if isinstance(v, UploadFile)]
                return [(f.filename or "photo", await f.read(max_bytes + 1)) for f in files]
        except HTTPException as exc:   # starlette's multipart limits
            if "Too many files" in str(exc.detail):
                raise UploadError(413, f"too many photos (at most {max_files} per request)") from None
            raise UploadError(400, f"bad multipart request: {exc.detail}") from None
    if ctype.startswith(("image/", "application/octet-stream")):
        return [(request.headers.get("x-filename", "photo"), await request.body())]
    raise UploadError(415, "send photos as multipart/form-data (field 'file'), or one photo as the body "
                           "with an image/* or application/octet-stream Content-Type")


def create_app(model_uri: str = DEFAULT_ONNX_URI, max_batch: int = 32, max_bytes: int = 20 * MB,
               poll_seconds: float = 0.0, threads: int | None = None, slots: int | None = None,
               host: str | None = None, allow_hosts: Iterable[str] = (), max_requests: int | None = None,
               max_inflight_bytes: int | None = None, queue_seconds: float = 60.0) -> FastAPI:
    """The app serving ``model_uri`` (loaded now: a missing model raises ``ModelNotFound`` here).

    ``max_batch``: photos per /predict/batch; ``max_bytes``: per photo; ``poll_seconds``:
    how often to check whether the alias moved (0 = only on POST /reload);
    ``threads``: onnxruntime intra-op threads per inference; ``slots``: inferences
    at once (default: CPUs / threads), the others wait their turn instead of
    fighting over the cores. Requests for a Host other than localhost, ``host`` (the
    address it is bound to) and ``allow_hosts`` get 400 (``roomclf.hosts``).

    Admission (``serving.admission``), before an upload is read: at most ``max_requests``
    requests at once (default: 4 per slot) holding at most ``max_inflight_bytes`` of
    uploads (default: one full /predict/batch); the others wait up to ``queue_seconds``,
    then get 503.
    """
    holder = ModelHolder(model_uri, threads)
    slots = slots or max(1, cpus() // holder.threads)
    gate = threading.BoundedSemaphore(slots)

    def body_limit(path: str) -> int | None:
        if path == "/predict/batch":
            return max_batch * max_bytes + MULTIPART_OVERHEAD
        return max_bytes + MULTIPART_OVERHEAD if path == "/predict" else None

    admission = Admission(max_requests or 4 * slots, max_inflight_bytes or body_limit("/predict/batch"), queue_seconds)

    def reserved(request: Request) -> int:
        """The upload bytes a request is admitted for: its declared length (the middleware refused more
        than its path's limit), or that limit when it declares none."""
        limit = body_limit(request.url.path)
        declared = request.headers.get("content-length", "")
        return min(int(declared), limit) if declared.isdigit() else limit

    def infer(loaded: LoadedModel, uploads: list[tuple[str, bytes]]) -> list[dict]:
        with gate:
            return classify(loaded, uploads, max_bytes)

    @asynccontextmanager
    async def lifespan(app):
        holder.start_polling(poll_seconds)
        yield
        holder.stop_polling()

    app = FastAPI(title="roomclf", summary="Room class and attribute tags of listing photos", lifespan=lifespan)
    app.state.holder = holder
    app.state.started = time.time()
    app.state.admission = admission

    app.add_middleware(BodyLimit, limit_for=body_limit)
    app.add_middleware(HostAllowList, hosts=allowed_hosts(host, allow_hosts))    # outermost: checked first

    @app.exception_handler(UploadError)
    async def upload_error(request, exc: UploadError):
        return JSONResponse({"detail": exc.message}, status_code=exc.status)

    @app.exception_handler(Exception)
    async def internal_error(request, exc: Exception):
        log.error("%s %s failed: %r", request.method, request.url.path, exc)
        return JSONResponse({"detail": "internal server error"}, status_code=500)

    @app.post("/predict")
    async def predict(request: Request):
        async with admission.admit(reserved(request)):     # before a byte of the upload is read
            uploads = await read_uploads(request, 1, max_bytes)
            if not uploads:
                raise UploadError(400, "no photo in the request (send it as multipart field 'file')")
            if len(uploads) > 1:
                raise UploadError(413, f"{len(uploads)} photos: /predict takes one, /predict/batch up to {max_batch}")
            loaded = holder.current        # this request uses this model to the end, even if a reload swaps it
            [result] = await run_in_threadpool(infer, loaded, uploads)
        if result["status"] != 200:
            raise UploadError(result["status"], result["error"])
        return {**result, "model": loaded.summary()}

    @app.post("/predict/batch")
    async def predict_batch(request: Request):
        async with admission.admit(reserved(request)):
            uploads = await read_uploads(request, max_batch, max_bytes)
            if not uploads:
                raise UploadError(400, "no photos in the request (send them as multipart fields 'files')")
            if len(uploads) > max_batch:
                raise UploadError(413, f"too many photos ({len(uploads)}; at most {max_batch} per request)")
            loaded = holder.current
            results = await run_in_threadpool(infer, loaded, uploads)
        return {"model": loaded.summary(), "count": len(results),
                "ok": sum(r["status"] == 200 for r in results), "results": results}

    # /model and /health run on the event loop: they answer even while every worker thread is busy
    @app.get("/model")
    async def model_info():
        return holder.current.describe()

    @app.get("/health")
    async def health():
        cur = holder.current
        return {"status": "ok", "model": cur.summary(), "loaded_at": cur.loaded_at, "reloads": holder.reloads,
                "uptime_s": round(time.time() - app.state.started, 1), "last_reload_error": holder.last_error,
                "poll_seconds": poll_seconds, "threads": holder.threads, "slots": slots,
                "max_batch": max_batch, "max_mb": max_bytes / MB, "admission": admission.stats()}

    @app.post("/reload")
    async def reload(force: bool = False):
        try:   # in a thread of its own: not queued behind requests waiting for an inference slot
            return await asyncio.to_thread(holder.reload, force)
        except Exception as exc:
            why = public_text(str(exc).splitlines()[0])[:300] if str(exc) else type(exc).__name__
            raise UploadError(503, f"reload failed, still serving version {holder.current.ref.version}: {why}") from None

    page = (STATIC / "index.html").read_text(encoding="utf-8")

    @app.get("/", response_class=HTMLResponse)
    async def index():
        return HTMLResponse(page)

    return app
