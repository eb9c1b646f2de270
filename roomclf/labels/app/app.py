"""The labelling app's HTTP layer: each route parses its input and calls LabelSession.

The labeller's name comes from ``?who=`` (remembered in a cookie) or defaults to
"web". Bad input answers 4xx with ``{"error": message}`` and writes nothing.
"""
from __future__ import annotations

import mimetypes
import os
import threading
from collections.abc import Iterable
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field
from starlette.background import BackgroundTask

from roomclf import storage
from roomclf.hosts import HostAllowList, allowed_hosts
from roomclf.labels.app.attribute_session import AttributeSession
from roomclf.labels.app.session import AppError, LabelSession, clean_who
from roomclf.labels.app.thumbs import SIZES, ThumbCache
from roomclf.labels.sources import SOURCES, LabelSource
from roomclf.labels.store import LabelError, LabelStore
from roomclf.photos import PhotoError

STATIC = Path(__file__).resolve().parent / "static"
WHO_COOKIE = "roomclf_who"


class LabelIn(BaseModel):
    path: str
    label: str
    attributes: dict[str, int] = Field(default_factory=dict)


class AttributesIn(BaseModel):
    path: str
    label: str
    attributes: dict[str, int]


class ConfirmIn(BaseModel):
    items: list[dict]


class PathsIn(BaseModel):
    paths: list[str]


class PositionIn(BaseModel):
    path: str


class AnswerIn(BaseModel):
    path: str
    room: str
    attribute: str
    answer: str | None      # yes, no, unsure; null takes the answer back (undo)


class NewAttributeIn(BaseModel):
    room: str
    name: str


def create_app(root: str | os.PathLike, batch: str, store: LabelStore | None = None, limit: int | None = None,
               thumbs: str | os.PathLike | None = None, default_who: str = "web",
               warm_thumbs: bool = False, host: str | None = None, allow_hosts: Iterable[str] = ()) -> FastAPI:
    """The app for one batch of the corpus at ``root`` (the first ``limit`` photos if given).

    It answers only requests for localhost, ``host`` (the address it is bound to) and ``allow_hosts``
    (``roomclf.hosts``: other Host headers get 400, a guard against DNS rebinding).

    ``warm_thumbs``: make every missing grid thumbnail in a background thread at start
    (confirm pages' photos first), so grid pages load from the cache from the first view.
    """
    session = LabelSession(root, batch, store or LabelStore(), limit)
    cache = ThumbCache(thumbs)
    if warm_thumbs:
        first = [p for page in session.pages() for p in page["paths"]]
        files = [storage.join(session.root, p) for p in dict.fromkeys(first + session.order)]
        threading.Thread(target=cache.warm, args=(files,), name="warm-thumbs", daemon=True).start()
    app = FastAPI(title=f"roomclf label {session.batch}", docs_url=None, redoc_url=None)
    app.state.session = session
    tags = AttributeSession(session)

    def who(request: Request) -> str:
        return clean_who(request.query_params.get("who") or request.cookies.get(WHO_COOKIE), default_who)

    @app.exception_handler(AppError)
    async def app_error(request: Request, exc: AppError):
        return JSONResponse({"error": str(exc)}, status_code=exc.status)

    @app.exception_handler(LabelError)
    async def label_error(request: Request, exc: LabelError):
        return JSONResponse({"error": str(exc)}, status_code=400)

    @app.exception_handler(PhotoError)
    async def photo_error(request: Request, exc: PhotoError):
        return JSONResponse({"error": f"cannot show this photo: {exc.reason}"}, status_code=422)

    @app.get("/")
    def index(request: Request):
        response = FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})
        if request.query_params.get("who"):
            response.set_cookie(WHO_COOKIE, who(request), samesite="strict")
        return response

    @app.get("/api/state")
    def state(request: Request):
        return session.state(who(request))

    @app.get("/api/queue")
    def queue():
        return session.queue()

    @app.get("/api/pages")
    def pages(size: int = 24):
        return session.pages(max(1, min(size, 200)))

    @app.get("/api/review")
    def review():
        return session.suspects()

    @app.get("/api/thumb")
    def thumb(path: str = "", size: str = "small"):
        if size not in SIZES:
            raise AppError(f"size must be one of {', '.join(SIZES)}")
        out = cache.get(session.photo_file(path), SIZES[size])
        return FileResponse(out, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=86400"})

    @app.get("/api/photo")
    def photo(path: str = ""):
        file = session.photo_file(path)
        if storage.is_uri(file):          # read through the storage layer: the corpus is in object storage
            return Response(storage.read_bytes(file), media_type=mimetypes.guess_type(file)[0] or "image/jpeg")
        return FileResponse(file)

    @app.post("/api/label")
    def label(body: LabelIn, request: Request):
        return session.label(body.path, body.label, who(request), body.attributes)

    @app.post("/api/attributes")
    def attributes(body: AttributesIn, request: Request):
        return session.set_attributes(body.path, body.label, body.attributes, who(request))

    @app.post("/api/confirm")
    def confirm(body: ConfirmIn, request: Request):
        return session.confirm(body.items, who(request))

    @app.post("/api/restore")
    def restore(body: ConfirmIn, request: Request):
        return session.restore(body.items, who(request))

    @app.post("/api/unlabel")
    def unlabel(body: PathsIn, request: Request):
        return session.unlabel(body.paths, who(request))

    @app.post("/api/position")
    def position(body: PositionIn, request: Request):
        return session.set_position(body.path, who(request))

    @app.get("/api/tags/grid")
    def tag_grid(room: str = "", attribute: str = ""):
        return tags.grid(room, attribute)

    @app.post("/api/tags/answer")
    def tag_answer(body: AnswerIn, request: Request):
        return tags.answer(body.path, body.room, body.attribute, body.answer, who(request))

    @app.post("/api/tags/attribute")
    def tag_attribute(body: NewAttributeIn):
        return tags.add(body.room, body.name)

    @app.get("/api/export.csv")
    def export(sources: str = LabelSource.MANUAL.value):
        chosen = tuple(s.strip() for s in sources.split(",") if s.strip())
        bad = [s for s in chosen if s not in SOURCES]
        if bad or not chosen:
            raise AppError(f"unknown label source(s) {', '.join(bad) or '(none)'}; one of {', '.join(SOURCES)}")
        out = session.export(chosen)
        return FileResponse(out, media_type="text/csv", filename=f"{session.batch}-labels.csv",
                            background=BackgroundTask(os.unlink, out))

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.add_middleware(HostAllowList, hosts=allowed_hosts(host, allow_hosts), key="error")
    return app
