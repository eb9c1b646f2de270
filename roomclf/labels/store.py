"""The label store: every label and attribute tag of every photo, with history.

A SQLite file (WAL mode, one transaction per write call), safe for several
processes and threads at once. A photo may hold one label per *source*:

- ``manual``: a person said so (the labelling app),
- ``imported``: from a CSV or a folder-per-class tree,
- ``propagated``: lent by nearest labelled neighbours,
- ``predicted``: a model's suggestion (prelabel).

Sources never overwrite each other, so a propagated label can never replace a
manual one; the *effective* label of a photo is the one of the highest
priority source present (``SOURCE_PRIORITY``, in ``roomclf.labels.sources``). Within a source the last write
wins, and every write is also appended to the history with who and when.
"""
from __future__ import annotations

import csv
import json
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from roomclf import storage
from roomclf.corpus import is_photo_name, path_problem
from roomclf.errors import RoomclfError
from roomclf.labels.sources import SOURCE_PRIORITY, SOURCES, LabelSource
from roomclf.taxonomy import CLASSES, UnknownName, attribute_key, canonical_class

SUSPECTS_KEY = "suspects"   # meta key of the suspicious labels propagation found

SCHEMA = """
CREATE TABLE IF NOT EXISTS labels (
    path TEXT NOT NULL, source TEXT NOT NULL, label TEXT NOT NULL,
    confidence REAL, who TEXT, at REAL NOT NULL, extra TEXT,
    PRIMARY KEY (path, source));
CREATE TABLE IF NOT EXISTS label_history (
    id INTEGER PRIMARY KEY AUTOINCREMENT, path TEXT NOT NULL, source TEXT NOT NULL,
    label TEXT, confidence REAL, who TEXT, at REAL NOT NULL, extra TEXT);
CREATE INDEX IF NOT EXISTS label_history_path ON label_history(path);
CREATE TABLE IF NOT EXISTS attributes (
    path TEXT NOT NULL, key TEXT NOT NULL, value INTEGER NOT NULL, source TEXT NOT NULL,
    who TEXT, at REAL NOT NULL, PRIMARY KEY (path, key, source));
CREATE TABLE IF NOT EXISTS attribute_history (
    id INTEGER PRIMARY KEY AUTOINCREMENT, path TEXT NOT NULL, key TEXT NOT NULL,
    value INTEGER, source TEXT NOT NULL, who TEXT, at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS attribute_unsure (
    path TEXT NOT NULL, key TEXT NOT NULL, who TEXT, at REAL NOT NULL, PRIMARY KEY (path, key));
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
"""
# An attribute answer "not sure" (the labelling app's attribute mode): kept apart from the tags (it is no
# label, and no consumer of tags sees it), only so the photo is not asked again; the history writes it as -1.
UNSURE = -1


class LabelError(RoomclfError, ValueError):
    """Bad label input (unknown class or source, missing file...)."""


@dataclass(frozen=True)
class Label:
    path: str
    label: str
    source: str
    confidence: float | None = None
    who: str | None = None
    at: float | None = None
    extra: dict | None = None


@dataclass
class ImportReport:
    added: int = 0
    skipped_empty: int = 0
    unknown_class: dict[str, int] = field(default_factory=dict)
    not_in_corpus: int = 0
    unknown_attribute: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        parts = [f"{self.added} added"]
        if self.skipped_empty:
            parts.append(f"{self.skipped_empty} without a label skipped")
        if self.unknown_class:
            parts.append(f"{sum(self.unknown_class.values())} with unknown classes skipped "
                         f"({', '.join(sorted(self.unknown_class))})")
        if self.unknown_attribute:
            parts.append(f"{sum(self.unknown_attribute.values())} unknown attributes ignored "
                         f"({', '.join(sorted(self.unknown_attribute))})")
        if self.not_in_corpus:
            parts.append(f"{self.not_in_corpus} not in the corpus skipped")
        return ", ".join(parts)


def _confidence(raw: str | None, csv_path: str | os.PathLike, line: int) -> float | None:
    """An import row's optional confidence column: empty -> None, else a number."""
    if raw is None or not raw.strip():
        return None
    try:
        return float(raw)
    except ValueError:
        raise LabelError(f"{csv_path}:{line}: confidence {raw!r} is not a number (leave it empty if unknown)") from None


def _canonical(path: str, where: str) -> str:
    """``path`` when it is a canonical photo path, else a one-line ``LabelError`` naming ``where`` it came from."""
    problem = path_problem(path)
    if problem:
        raise LabelError(f"{where}: photo path {path!r} has {problem}; give each photo as it lies under the "
                         "corpus root, e.g. batch_01/listing_0001/photo_01.jpg (nothing was imported)")
    return path


def _check_source(source: str) -> str:
    if source not in SOURCES:
        raise LabelError(f"unknown label source {source!r}; one of {', '.join(SOURCES)}")
    return source


def _who(who: str | None) -> str:
    return who or os.environ.get("ROOMCLF_USER") or os.environ.get("USER") or "unknown"


class LabelStore:
    def __init__(self, path: str | os.PathLike | None = None):
        if path is None:
            from roomclf.settings import label_db
            path = label_db()
        self.path = Path(path).resolve()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.executescript(SCHEMA)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=60, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA busy_timeout=60000")
            yield db
        finally:
            db.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: all or nothing."""
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    # ---- labels -------------------------------------------------------------------------
    def set_labels(self, rows: Iterable[tuple], source: str, who: str | None = None,
                   db: sqlite3.Connection | None = None) -> int:
        """Write (path, label[, confidence[, extra]]) rows under one source, in one transaction."""
        _check_source(source)
        who, now, clean = _who(who), time.time(), []
        for row in rows:
            path, label = row[0], canonical_class(row[1])
            conf = float(row[2]) if len(row) > 2 and row[2] is not None else None
            extra = json.dumps(row[3]) if len(row) > 3 and row[3] is not None else None
            clean.append((path, source, label, conf, who, now, extra))
        if db is None:
            with self.transaction() as tx:
                return self.set_labels_in(tx, clean)
        return self.set_labels_in(db, clean)

    @staticmethod
    def set_labels_in(db: sqlite3.Connection, clean: list[tuple]) -> int:
        db.executemany("INSERT INTO labels VALUES (?,?,?,?,?,?,?) ON CONFLICT(path, source) DO UPDATE SET "
                       "label=excluded.label, confidence=excluded.confidence, who=excluded.who, "
                       "at=excluded.at, extra=excluded.extra", clean)
        db.executemany("INSERT INTO label_history (path, source, label, confidence, who, at, extra) "
                       "VALUES (?,?,?,?,?,?,?)", clean)
        return len(clean)

    def set_label(self, path: str, label: str, source: str = LabelSource.MANUAL, confidence: float | None = None,
                  who: str | None = None, extra: dict | None = None) -> None:
        self.set_labels([(path, label, confidence, extra)], source, who)

    def delete_label(self, path: str, source: str = LabelSource.MANUAL, who: str | None = None,
                     db: sqlite3.Connection | None = None) -> bool:
        """Remove a photo's label of one source (an undo); the history keeps a NULL entry."""
        _check_source(source)

        def run(tx: sqlite3.Connection) -> bool:
            cur = tx.execute("DELETE FROM labels WHERE path=? AND source=?", (path, source))
            if cur.rowcount:
                tx.execute("INSERT INTO label_history (path, source, label, confidence, who, at, extra) "
                           "VALUES (?,?,NULL,NULL,?,?,NULL)", (path, source, _who(who), time.time()))
            return bool(cur.rowcount)
        if db is not None:
            return run(db)
        with self.transaction() as tx:
            return run(tx)

    def clear_source(self, source: str, paths: Iterable[str] | None = None,
                     db: sqlite3.Connection | None = None) -> int:
        """Drop every label of one source (optionally only for ``paths``), e.g. before re-propagating."""
        _check_source(source)

        def run(tx: sqlite3.Connection) -> int:
            if paths is None:
                return tx.execute("DELETE FROM labels WHERE source=?", (source,)).rowcount
            return sum(tx.execute("DELETE FROM labels WHERE source=? AND path=?", (source, p)).rowcount
                       for p in paths)
        if db is not None:
            return run(db)
        with self.transaction() as tx:
            return run(tx)

    def rows(self, sources: Iterable[str] = SOURCES, prefix: str | None = None) -> list[Label]:
        """Every stored label of the given sources (several per photo possible)."""
        sources = [_check_source(s) for s in sources]
        q = f"SELECT path, label, source, confidence, who, at, extra FROM labels WHERE source IN ({','.join('?' * len(sources))})"
        args: list = list(sources)
        if prefix:
            q += " AND path LIKE ? ESCAPE '\\'"
            args.append(prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%")
        with self._connect() as db:
            return [Label(p, l, s, c, w, a, json.loads(e) if e else None)
                    for p, l, s, c, w, a, e in db.execute(q + " ORDER BY path", args)]

    def labels(self, sources: Iterable[str] = SOURCES, prefix: str | None = None) -> dict[str, Label]:
        """The effective label of each photo: the highest-priority source among ``sources``."""
        best: dict[str, Label] = {}
        for row in self.rows(sources, prefix):
            cur = best.get(row.path)
            if cur is None or SOURCE_PRIORITY[row.source] < SOURCE_PRIORITY[cur.source]:
                best[row.path] = row
        return best

    def history(self, path: str) -> list[dict]:
        with self._connect() as db:
            cur = db.execute("SELECT source, label, confidence, who, at FROM label_history "
                             "WHERE path=? ORDER BY id", (path,))
            return [dict(zip(("source", "label", "confidence", "who", "at"), r)) for r in cur]

    def counts(self, sources: Iterable[str] = SOURCES, prefix: str | None = None) -> dict[str, dict[str, int]]:
        """source -> class -> number of photos."""
        out: dict[str, dict[str, int]] = {}
        for row in self.rows(sources, prefix):
            per = out.setdefault(row.source, {c: 0 for c in CLASSES})
            per[row.label] = per.get(row.label, 0) + 1
        return out

    # ---- attributes ---------------------------------------------------------------------
    def set_attributes(self, path: str, values: dict[str, int], source: str = LabelSource.MANUAL,
                       who: str | None = None, db: sqlite3.Connection | None = None) -> int:
        """Store present (1) / absent (0) for attribute keys like 'kitchen.kitchen_island'."""
        _check_source(source)
        rows = []
        for key, value in values.items():
            room, _, name = key.partition(".")
            rows.append((path, attribute_key(room, name), int(bool(int(value))), source, _who(who), time.time()))

        def run(tx: sqlite3.Connection) -> int:
            tx.executemany("INSERT INTO attributes VALUES (?,?,?,?,?,?) ON CONFLICT(path, key, source) "
                           "DO UPDATE SET value=excluded.value, who=excluded.who, at=excluded.at", rows)
            tx.executemany("INSERT INTO attribute_history (path, key, value, source, who, at) "
                           "VALUES (?,?,?,?,?,?)", rows)
            return len(rows)
        if db is not None:
            return run(db)
        with self.transaction() as tx:
            return run(tx)

    def delete_attributes(self, path: str, source: str = LabelSource.MANUAL, who: str | None = None,
                          db: sqlite3.Connection | None = None) -> int:
        """Remove a photo's attribute tags of one source (an undo); the history keeps NULL entries."""
        _check_source(source)

        def run(tx: sqlite3.Connection) -> int:
            keys = [k for (k,) in tx.execute("SELECT key FROM attributes WHERE path=? AND source=?", (path, source))]
            tx.execute("DELETE FROM attributes WHERE path=? AND source=?", (path, source))
            tx.executemany("INSERT INTO attribute_history (path, key, value, source, who, at) VALUES (?,?,NULL,?,?,?)",
                           [(path, k, source, _who(who), time.time()) for k in keys])
            return len(keys)
        if db is not None:
            return run(db)
        with self.transaction() as tx:
            return run(tx)

    def set_attribute_answer(self, path: str, key: str, answer: int | None, who: str | None = None) -> None:
        """A person's answer about one attribute of one photo, in one transaction: 1 present or 0 absent (a
        ``manual`` tag), ``UNSURE`` (no tag; the photo is marked so it is not asked again), or None (no
        answer: the photo's manual tag and mark for ``key`` are removed, e.g. an undo). The history keeps it."""
        room, _, name = key.partition(".")
        key = attribute_key(room, name)
        if answer not in (0, 1, UNSURE, None):
            raise LabelError(f"an attribute answer is 1, 0, {UNSURE} (not sure) or none, got {answer!r}")
        who, now = _who(who), time.time()
        with self.transaction() as tx:
            tx.execute("DELETE FROM attributes WHERE path=? AND key=? AND source=?", (path, key, LabelSource.MANUAL))
            tx.execute("DELETE FROM attribute_unsure WHERE path=? AND key=?", (path, key))
            if answer in (0, 1):
                tx.execute("INSERT INTO attributes VALUES (?,?,?,?,?,?)", (path, key, answer, LabelSource.MANUAL,
                                                                          who, now))
            elif answer == UNSURE:
                tx.execute("INSERT INTO attribute_unsure VALUES (?,?,?,?)", (path, key, who, now))
            tx.execute("INSERT INTO attribute_history (path, key, value, source, who, at) VALUES (?,?,?,?,?,?)",
                       (path, key, answer, LabelSource.MANUAL, who, now))

    def attribute_unsure(self, key: str) -> set[str]:
        """The photos someone answered "not sure" about for the attribute ``key``."""
        with self._connect() as db:
            return {p for (p,) in db.execute("SELECT path FROM attribute_unsure WHERE key=?", (key,))}

    def attribute_history(self, path: str) -> list[dict]:
        """Every attribute write of one photo, oldest first (value None: removed, ``UNSURE``: not sure)."""
        with self._connect() as db:
            cur = db.execute("SELECT key, value, source, who, at FROM attribute_history WHERE path=? ORDER BY id",
                             (path,))
            return [dict(zip(("key", "value", "source", "who", "at"), r)) for r in cur]

    def attributes(self, sources: Iterable[str] = SOURCES, prefix: str | None = None) -> dict[str, dict[str, int]]:
        """path -> {attribute key: 0/1}, the highest-priority source winning per key."""
        sources = [_check_source(s) for s in sources]
        q = (f"SELECT path, key, value, source FROM attributes WHERE source IN ({','.join('?' * len(sources))})")
        args: list = list(sources)
        if prefix:
            q += " AND path LIKE ?"
            args.append(prefix + "%")
        out: dict[str, dict[str, tuple[int, int]]] = {}
        with self._connect() as db:
            for path, key, value, source in db.execute(q, args):
                cur = out.setdefault(path, {}).get(key)
                if cur is None or SOURCE_PRIORITY[source] < cur[1]:
                    out[path][key] = (value, SOURCE_PRIORITY[source])
        return {p: {k: v for k, (v, _) in d.items()} for p, d in out.items()}

    # ---- meta (small key/value state, e.g. where a labeller was) -------------------------
    def get_meta(self, key: str, default: str | None = None) -> str | None:
        with self._connect() as db:
            row = db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
            return row[0] if row else default

    def suspects(self) -> list[dict]:
        """The suspicious labels `roomclf propagate` stored (meta ``suspects``) for the labelling app's Review tab."""
        try:
            found = json.loads(self.get_meta(SUSPECTS_KEY, "[]") or "[]")
        except json.JSONDecodeError:
            return []
        return [s for s in found if isinstance(s, dict)] if isinstance(found, list) else []

    def set_meta(self, key: str, value: str, db: sqlite3.Connection | None = None) -> None:
        sql = "INSERT INTO meta VALUES (?,?) ON CONFLICT(key) DO UPDATE SET value=excluded.value"
        if db is not None:
            db.execute(sql, (key, value))
            return
        with self.transaction() as tx:
            tx.execute(sql, (key, value))

    # ---- import / export ----------------------------------------------------------------
    def import_csv(self, csv_path: str | os.PathLike, source: str = LabelSource.IMPORTED, who: str | None = None,
                   corpus_root: str | os.PathLike | None = None, batches: Iterable[str] | None = None,
                   limit: int | None = None) -> ImportReport:
        """Import ``path,label,...`` rows (the form of shared/data/labels.csv), in one transaction.

        Rows without a label are skipped; unknown classes are counted and skipped; with
        ``corpus_root``, rows whose photo does not exist there are counted and skipped.
        A path not in its canonical form (``path_problem``) refuses the whole file (``LabelError``).
        ``batches`` keeps only rows of those batches; ``limit`` keeps the first N valid rows.
        """
        report, rows = ImportReport(), []
        keep = set(batches) if batches else None
        is_there = storage.file_checker(corpus_root) if corpus_root else None
        with open(csv_path, newline="") as f:
            reader = csv.DictReader(f)
            if not reader.fieldnames or "path" not in reader.fieldnames or "label" not in reader.fieldnames:
                raise LabelError(f"{csv_path}: expected a CSV with 'path' and 'label' columns")
            for rec in reader:
                path = (rec.get("path") or "").strip()
                if path:
                    _canonical(path, f"{csv_path}:{reader.line_num}")
                if keep is not None and path.split("/", 1)[0] not in keep:
                    continue
                raw = (rec.get("label") or "").strip()
                if not path or not raw:
                    report.skipped_empty += 1
                    continue
                try:
                    label = canonical_class(raw)
                except UnknownName:
                    report.unknown_class[raw] = report.unknown_class.get(raw, 0) + 1
                    continue
                if is_there is not None and not is_there(path):
                    report.not_in_corpus += 1
                    continue
                rows.append((path, label, _confidence(rec.get("confidence"), csv_path, reader.line_num)))
                if limit is not None and len(rows) >= limit:
                    break
        report.added = self.set_labels(rows, source, who)
        return report

    def import_attribute_rows(self, rows: Iterable[dict], source: str = LabelSource.IMPORTED, who: str | None = None,
                              corpus_root: str | os.PathLike | None = None) -> ImportReport:
        """Import ``path,attribute,value`` rows (as read from a shared/data/attributes.csv) in one transaction.

        The attribute is resolved within the photo's class (its effective label), so
        ``stairs`` means ``living_room.stairs`` on a living room and ``interior.staircase``
        on an interior photo. Photos without a label, unknown attributes for their class and
        photos missing from ``corpus_root`` are counted and skipped.
        """
        report, effective = ImportReport(), self.labels()
        is_there = storage.file_checker(corpus_root) if corpus_root else None
        per_photo: dict[str, dict[str, int]] = {}
        for rec in rows:
            path, name = (rec.get("path") or "").strip(), (rec.get("attribute") or "").strip()
            if not path or not name or rec.get("value") in (None, ""):
                report.skipped_empty += 1
                continue
            _canonical(path, f"attribute row {path},{name}")
            if is_there is not None and not is_there(path):
                report.not_in_corpus += 1
                continue
            room = effective.get(path)
            if room is None:
                report.skipped_empty += 1
                continue
            try:
                key = attribute_key(room.label, name)
            except UnknownName:
                tag = f"{room.label}.{name}"
                report.unknown_attribute[tag] = report.unknown_attribute.get(tag, 0) + 1
                continue
            per_photo.setdefault(path, {})[key] = int(float(rec["value"]))
        with self.transaction() as db:
            for path, values in per_photo.items():
                report.added += self.set_attributes(path, values, source, who, db=db)
        return report

    def import_folders(self, tree: str | os.PathLike, source: str = LabelSource.IMPORTED, who: str | None = None,
                       corpus_root: str | os.PathLike | None = None) -> ImportReport:
        """Import a folder-per-class tree: ``TREE/<class>/<photo's path in the corpus>``.

        ``TREE/kitchen/batch_01/listing_0001/photo_03.jpg`` labels the corpus photo
        ``batch_01/listing_0001/photo_03.jpg`` kitchen. With ``corpus_root``, files that are
        not a photo of the corpus at that path are counted and skipped.
        """
        tree = Path(tree).resolve()
        is_there = storage.file_checker(corpus_root) if corpus_root else None
        report, rows = ImportReport(), []
        for class_dir in sorted(d for d in tree.iterdir() if d.is_dir()):
            try:
                label = canonical_class(class_dir.name)
            except UnknownName:
                report.unknown_class[class_dir.name] = sum(1 for _ in class_dir.rglob("*") if _.is_file())
                continue
            for f in sorted(class_dir.rglob("*")):
                if not (f.is_file() and is_photo_name(f.name)):
                    continue
                rel = _canonical(f.relative_to(class_dir).as_posix(), str(f))
                if is_there is not None and not is_there(rel):
                    report.not_in_corpus += 1
                    continue
                rows.append((rel, label))
        report.added = self.set_labels(rows, source, who)
        return report

    def export_csv(self, out: str | os.PathLike, sources: Iterable[str] = SOURCES,
                   prefix: str | None = None, batches: Iterable[str] | None = None) -> int:
        """Write the effective label of every photo (and its attribute tags) to a CSV, atomically;
        only the photos under ``prefix`` and of ``batches`` when given."""
        sources = list(sources)
        labels, attrs = self.labels(sources, prefix), self.attributes(sources, prefix)
        if batches is not None:
            keep = set(batches)
            labels = {p: lab for p, lab in labels.items() if p.split("/", 1)[0] in keep}
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.name}.tmp{os.getpid()}")
        with open(tmp, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["path", "label", "source", "confidence", "who", "at", "attributes"])
            for path in sorted(labels):
                lab = labels[path]
                tags = ";".join(f"{k}={v}" for k, v in sorted(attrs.get(path, {}).items()))
                w.writerow([path, lab.label, lab.source, "" if lab.confidence is None else f"{lab.confidence:.4f}",
                            lab.who or "", f"{lab.at:.3f}" if lab.at else "", tags])
        os.replace(tmp, out)
        return len(labels)
