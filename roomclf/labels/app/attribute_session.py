"""The labelling app's attribute mode, without the web: for one class and one attribute, the next grid of
photos to answer (chosen by the attribute's head, retrained on every answer given so far), the answers
themselves, and the head's cross-validated estimate.

A photo belongs to a class by its effective room label in the store (a person's label first, else an
imported, propagated or predicted one). The grid is drawn from this batch's photos of the class that have
no answer for the attribute yet (from any source) and no "not sure"; the head learns from every photo of
the class, in any batch, whose answer the store holds. Features are the cached embeddings
(``roomclf.models.embeddings.embed``), computed on first use.
"""
from __future__ import annotations

import time

import numpy as np

from roomclf.labels.app.session import AppError, LabelSession
from roomclf.labels.attribute_head import fit_head
from roomclf.labels.attribute_picks import GRID_SIZE, pick_grid
from roomclf.labels.sources import SOURCES
from roomclf.labels.store import UNSURE
from roomclf.taxonomy import (
    TaxonomyFileError,
    UnknownName,
    add_attribute,
    attribute_key,
    canonical_class,
    class_attributes,
)

ANSWERS = {"yes": 1, "no": 0, "unsure": UNSURE}


class AttributeSession:
    def __init__(self, session: LabelSession):
        self.session = session
        self.store = session.store

    # ---- checking ----------------------------------------------------------------------
    @staticmethod
    def key(room: str, attribute: str) -> str:
        try:
            return attribute_key(room, attribute)
        except (UnknownName, TaxonomyFileError) as exc:
            raise AppError(str(exc)) from None

    # ---- reading -----------------------------------------------------------------------
    def answers(self, key: str, rooms: dict | None = None) -> dict[str, int]:
        """path -> 0/1 for every photo of the key's class whose tag the store holds (any batch, any source);
        ``rooms``: the store's effective room labels, when the caller has them already."""
        room = key.partition(".")[0]
        rooms = self.store.labels(SOURCES) if rooms is None else rooms
        return {p: tags[key] for p, tags in self.store.attributes(SOURCES).items()
                if key in tags and p in rooms and rooms[p].label == room}

    def grid(self, room: str, attribute: str, size: int = GRID_SIZE) -> dict:
        """The next grid for ``room``'s ``attribute``, the head (retrained now on every answer) and its estimate."""
        from roomclf.models.embeddings import embed

        key = self.key(room, attribute)
        t0 = time.perf_counter()
        rooms = self.store.labels(SOURCES)
        answers, unsure = self.answers(key, rooms), self.store.attribute_unsure(key)
        open_ = [p for p in self.session.order if p in rooms and rooms[p].label == key.partition(".")[0]
                 and p not in answers and p not in unsure]
        emb = embed(self.session.root, sorted(set(answers) | set(open_)), normalize=False, progress=False)
        index = emb.index()
        known = [p for p in sorted(answers) if p in index]
        head, estimate = fit_head(emb.vectors[[index[p] for p in known]], np.array([answers[p] for p in known]))
        open_ = [p for p in open_ if p in index]
        X = emb.vectors[[index[p] for p in open_]]
        scores = head.scores(X) if head is not None and open_ else None
        picks = pick_grid(X, scores, head.threshold if head else 0.5, size=size) if open_ else []
        return {"key": key, "room": key.partition(".")[0], "attribute": key.partition(".")[2],
                "photos": [{"path": open_[i], "score": None if scores is None else round(float(scores[i]), 4)}
                           for i in picks],
                "open": len(open_), "unsure": len(unsure), "picked_by": "head" if head else "spread",
                "threshold": None if head is None else round(head.threshold, 4),
                "head": estimate.as_dict(), "seconds": round(time.perf_counter() - t0, 2)}

    # ---- writing -----------------------------------------------------------------------
    def answer(self, path: str, room: str, attribute: str, answer: str | None, who: str) -> dict:
        """Store one answer about one photo at once ("yes", "no", "unsure"; None takes the answer back)."""
        self.session.photo_file(path)
        key = self.key(room, attribute)
        if answer is not None and answer not in ANSWERS:
            raise AppError(f"an answer is one of {', '.join(ANSWERS)} (or null to take it back), got {answer!r}")
        self.store.set_attribute_answer(path, key, None if answer is None else ANSWERS[answer], who)
        return {"path": path, "key": key, "answer": answer}

    def add(self, room: str, name: str) -> dict:
        """Add an attribute to a class (the taxonomy keeps it); a name it knows already is simply chosen."""
        try:
            room = canonical_class(room)
            key = add_attribute(room, name)
        except (UnknownName, TaxonomyFileError) as exc:
            raise AppError(str(exc)) from None
        return {"key": key, "room": room, "attribute": key.partition(".")[2], "attributes": list(class_attributes(room))}
