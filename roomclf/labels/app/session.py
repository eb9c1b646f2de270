"""What the labelling app does, without the web: one batch, its queue, and every write.

Every write checks all its input first (photo in the batch and inside the corpus
root, known class, attributes of that class) and then writes in one label-store
transaction, so a bad request writes nothing. Labels are ``manual``; per photo
the last write wins and the store's history keeps who and when. Where each
labeller was is kept in the store's meta (``labelapp:position:<batch>:<who>``),
so a reload or a server restart resumes there.
"""
from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path

from roomclf import storage
from roomclf.corpus import discover, parse_batches, path_problem, safe_join
from roomclf.errors import RoomclfError
from roomclf.labels.queue import confirm_pages
from roomclf.labels.sources import LabelSource
from roomclf.labels.store import LabelStore
from roomclf.taxonomy import (
    CLASSES,
    UnknownName,
    attribute_key,
    canonical_class,
    class_attributes,
)

SUGGESTION_SOURCES = (LabelSource.IMPORTED, LabelSource.PROPAGATED, LabelSource.PREDICTED)


class AppError(RoomclfError):
    status = 400


class NotFound(AppError):
    status = 404


def clean_who(who: str | None, default: str = "web") -> str:
    """A labeller name safe to store: letters, digits, ``._@-``, at most 64 characters."""
    who = re.sub(r"[^\w.@-]+", "_", (who or "").strip())[:64]
    return who or default


def _is_attribute_key(key) -> bool:
    room, _, name = str(key).partition(".")
    try:
        return attribute_key(room, name) == key
    except UnknownName:
        return False


class LabelSession:
    def __init__(self, root: str | os.PathLike, batch: str, store: LabelStore, limit: int | None = None):
        names = parse_batches(batch, root)
        if len(names) != 1:
            raise AppError(f"the labelling app serves one batch at a time, got {', '.join(names)}")
        self.batch = names[0]
        corpus = discover(root, self.batch)
        self.root = corpus.root
        self.store = store
        paths = corpus.paths[:limit] if limit else corpus.paths
        self.allowed = set(paths)
        self.order = self._order(paths)

    # ---- reading -----------------------------------------------------------------------
    def _order(self, paths: list[str]) -> list[str]:
        """Prelabel's value order when stored, then the photos it does not know (least sure first)."""
        stored = json.loads(self.store.get_meta(f"queue:{self.batch}", "[]"))
        first = [p for p in stored if p in self.allowed]
        seen = set(first)
        sugg = self.suggestions()
        rest = sorted((p for p in paths if p not in seen),
                      key=lambda p: (sugg[p].confidence if p in sugg and sugg[p].confidence is not None else 0.0, p))
        return first + rest

    def suggestions(self) -> dict:
        return {p: lab for p, lab in self.store.labels(SUGGESTION_SOURCES, prefix=self.batch + "/").items()
                if p in self.allowed}

    def manual(self) -> dict:
        return {p: lab for p, lab in self.store.labels((LabelSource.MANUAL,), prefix=self.batch + "/").items()
                if p in self.allowed}

    def manual_attributes(self) -> dict[str, dict[str, int]]:
        return {p: a for p, a in self.store.attributes((LabelSource.MANUAL,), prefix=self.batch + "/").items()
                if p in self.allowed}

    def queue(self) -> list[dict]:
        sugg, manual, attrs = self.suggestions(), self.manual(), self.manual_attributes()
        items = []
        for p in self.order:
            s, m = sugg.get(p), manual.get(p)
            items.append({
                "path": p,
                "suggestion": s.label if s else None,
                "confidence": None if s is None or s.confidence is None else round(s.confidence, 4),
                "top3": (s.extra or {}).get("top3") if s else None,
                "label": m.label if m else None,
                "who": m.who if m else None,
                "attributes": attrs.get(p, {}),
            })
        return items

    def progress(self) -> dict:
        per = {c: 0 for c in CLASSES}
        manual = self.manual()
        for lab in manual.values():
            per[lab.label] += 1
        return {"labelled": len(manual), "total": len(self.order), "per_class": per}

    def state(self, who: str) -> dict:
        return {"batch": self.batch, "classes": list(CLASSES),
                "attributes": {c: list(class_attributes(c)) for c in CLASSES},
                "position": self.store.get_meta(self._position_key(who)), "who": who,
                "suspects": len(self.suspects()), **self.progress()}

    def pages(self, page_size: int = 24) -> list[dict]:
        """Confirm pages over the photos nobody has labelled yet, grouped by suggested class."""
        manual, sugg = self.manual(), self.suggestions()
        open_ = {p: (lab.label, lab.confidence or 0.0) for p, lab in sugg.items() if p not in manual}
        return [{"label": pg.label, "paths": list(pg.paths), "confidences": [round(c, 4) for c in pg.confidences]}
                for pg in confirm_pages(open_, page_size, list(CLASSES))]

    def suspects(self) -> list[dict]:
        """Suspicious labels found by propagation (meta key ``suspects``) for this batch's photos."""
        manual = self.manual()
        out = []
        for s in self.store.suspects():
            if s.get("path") in self.allowed:
                m = manual.get(s["path"])
                out.append({**s, "manual": m.label if m else None})
        return out

    # ---- checking ----------------------------------------------------------------------
    def photo_file(self, rel: str) -> Path | str:
        """The file of a photo of this batch (an ``s3://`` URI when the corpus is in object storage); 400 for a
        path escaping the root, 404 if not in the batch (or removed from the disk since the app started)."""
        rel = rel or ""
        if not isinstance(rel, str):
            raise AppError(f"a photo path must be a string, got {type(rel).__name__}")
        problem = path_problem(rel)
        if problem:
            raise AppError(f"bad photo path {rel!r}: {problem}")
        if rel not in self.allowed:
            raise NotFound(f"photo {rel!r} is not in {self.batch}")
        path = safe_join(self.root, rel)
        if path is None:
            raise NotFound(f"photo {rel!r} lies outside the corpus root")
        if not storage.is_file(path):
            raise NotFound(f"photo {rel!r} is no longer on the disk")
        return path

    def _check_label(self, rel: str, label: str) -> str:
        self.photo_file(rel)
        try:
            name = canonical_class(label)
        except UnknownName as exc:
            raise AppError(str(exc)) from None
        return name

    @staticmethod
    def _check_attributes(room: str, values: dict | None) -> dict[str, int]:
        keys = {}
        for name, value in (values or {}).items():
            try:
                key = attribute_key(room, name)
            except UnknownName as exc:
                raise AppError(str(exc)) from None
            if value not in (0, 1, True, False):
                raise AppError(f"attribute {name!r} must be 0 or 1, got {value!r}")
            keys[key] = int(value)
        return keys

    # ---- writing -----------------------------------------------------------------------
    def label(self, rel: str, label: str, who: str, attributes: dict | None = None) -> dict:
        room = self._check_label(rel, label)
        keys = self._check_attributes(room, attributes)
        with self.store.transaction() as db:
            self.store.set_labels([(rel, room)], LabelSource.MANUAL, who, db=db)
            if keys:
                self.store.set_attributes(rel, keys, LabelSource.MANUAL, who, db=db)
        return {"path": rel, "label": room, **self.progress()}

    def confirm(self, items: list[dict], who: str) -> dict:
        """Label several photos at once (a confirm page): all or nothing."""
        if not items:
            raise AppError("nothing to confirm")
        rows = []
        for item in items:
            if not isinstance(item, dict) or "path" not in item or "label" not in item:
                raise AppError("each item needs a 'path' and a 'label'")
            rows.append((item["path"], self._check_label(item["path"], item["label"])))
        self.store.set_labels(rows, LabelSource.MANUAL, who)
        return {"confirmed": len(rows), **self.progress()}

    def unlabel(self, paths: list[str], who: str) -> dict:
        """Undo: remove the manual label and attribute tags of each photo (the history keeps the removal)."""
        for rel in paths:
            self.photo_file(rel)
        removed = 0
        for rel in paths:
            removed += self.store.delete_label(rel, LabelSource.MANUAL, who)
            self.store.delete_attributes(rel, LabelSource.MANUAL, who)
        return {"removed": removed, **self.progress()}

    def restore(self, items: list[dict], who: str) -> dict:
        """Undo: put each photo back as it was, all or nothing. An item is ``{path, label, attributes}``:
        ``label`` None removes the manual label and tags; ``attributes`` (full keys, e.g.
        ``kitchen.kitchen_island``) replaces the manual tags, and leaves them alone when absent."""
        if not items:
            raise AppError("nothing to restore")
        rows = []
        for item in items:
            if not isinstance(item, dict) or "path" not in item:
                raise AppError("each item needs a 'path'")
            rel, label, attrs = item["path"], item.get("label"), item.get("attributes")
            self.photo_file(rel)
            room = self._check_label(rel, label) if label is not None else None
            if attrs is not None:
                if not isinstance(attrs, dict):
                    raise AppError("'attributes' must be an object of attribute keys")
                bad = sorted(k for k, v in attrs.items() if not _is_attribute_key(k) or v not in (0, 1, True, False))
                if bad:
                    raise AppError(f"unknown attribute keys or values: {', '.join(map(str, bad))}")
                attrs = {k: int(v) for k, v in attrs.items()}
            rows.append((rel, room, attrs))
        with self.store.transaction() as db:
            for rel, room, attrs in rows:
                if room is None:
                    self.store.delete_label(rel, LabelSource.MANUAL, who, db=db)
                    self.store.delete_attributes(rel, LabelSource.MANUAL, who, db=db)
                    continue
                self.store.set_labels([(rel, room)], LabelSource.MANUAL, who, db=db)
                if attrs is not None:
                    self.store.delete_attributes(rel, LabelSource.MANUAL, who, db=db)
                    if attrs:
                        self.store.set_attributes(rel, attrs, LabelSource.MANUAL, who, db=db)
        return {"restored": len(rows), **self.progress()}

    def set_attributes(self, rel: str, room: str, values: dict, who: str) -> dict:
        room = self._check_label(rel, room)
        keys = self._check_attributes(room, values)
        if not keys:
            raise AppError("no attributes given")
        self.store.set_attributes(rel, keys, LabelSource.MANUAL, who)
        return {"path": rel, "attributes": self.manual_attributes().get(rel, {})}

    def _position_key(self, who: str) -> str:
        return f"labelapp:position:{self.batch}:{who}"

    def set_position(self, rel: str, who: str) -> dict:
        self.photo_file(rel)
        self.store.set_meta(self._position_key(who), rel)
        return {"position": rel}

    def export(self, sources: tuple[str, ...] = (LabelSource.MANUAL,)) -> Path:
        """This batch's labels as a CSV file (a temporary file the caller removes)."""
        fd, name = tempfile.mkstemp(prefix=f"{self.batch}-labels-", suffix=".csv")
        os.close(fd)
        try:
            self.store.export_csv(name, sources, prefix=self.batch + "/")
        except Exception:
            os.unlink(name)
            raise
        return Path(name)
