"""The room classes and their attributes, read from ``taxonomy.yaml``.

Everything in roomclf that needs a class name, the class order or an
attribute imports it from here.

An attribute belongs to a class: ``fireplace`` in a bedroom and ``fireplace``
in a living room are different tags. Each (class, attribute) pair has a key
``"class.attribute"``; ``ATTRIBUTE_KEYS`` lists them all in a fixed order,
which is the order of the attribute outputs of every model.

People may add an attribute to a class in the labelling app (its attribute mode): the additions are kept
in ``$ROOMCLF_HOME/taxonomy-added.yaml`` and answered here too (``class_attributes``, ``add_attribute``,
and every name lookup), so the store can keep their tags and the app can train a head for them. They are
no model output (``ATTRIBUTES`` and ``ATTRIBUTE_KEYS`` stay what ``taxonomy.yaml`` lists) until someone
moves them into ``taxonomy.yaml``.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import yaml

from roomclf.errors import RoomclfError


@dataclass(frozen=True)
class Taxonomy:
    classes: tuple[str, ...]
    attributes: dict[str, tuple[str, ...]]       # class -> its attributes, in order
    class_aliases: dict[str, str]                # any spelling -> class
    attribute_aliases: dict[str, dict[str, str]]  # class -> any spelling -> attribute

    @property
    def attribute_keys(self) -> tuple[str, ...]:
        return tuple(f"{c}.{a}" for c in self.classes for a in self.attributes[c])


def _norm(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", str(name).strip().lower()).strip("_")


def load_taxonomy(text: str | None = None) -> Taxonomy:
    if text is None:
        text = resources.files("roomclf").joinpath("taxonomy.yaml").read_text()
    doc = yaml.safe_load(text)
    classes, attributes, class_aliases, attribute_aliases = [], {}, {}, {}
    for entry in doc["classes"]:
        name = entry["name"]
        classes.append(name)
        class_aliases[_norm(name)] = name
        for alias in entry.get("aliases", []):
            class_aliases[_norm(alias)] = name
        attrs = entry.get("attributes") or {}
        attributes[name] = tuple(attrs)
        spellings: dict[str, str] = {}
        # canonical names first, so an alias never shadows a real attribute
        for attr in attrs:
            spellings[_norm(attr)] = attr
        for attr, spec in attrs.items():
            for alias in (spec or {}).get("aliases", []):
                spellings.setdefault(_norm(alias), attr)
        attribute_aliases[name] = spellings
    return Taxonomy(tuple(classes), attributes, class_aliases, attribute_aliases)


TAXONOMY = load_taxonomy()
CLASSES: tuple[str, ...] = TAXONOMY.classes
ATTRIBUTES: dict[str, tuple[str, ...]] = TAXONOMY.attributes
ATTRIBUTE_KEYS: tuple[str, ...] = TAXONOMY.attribute_keys


class UnknownName(RoomclfError, ValueError):
    """A class or attribute name that the taxonomy does not know."""


def canonical_class(name: str) -> str:
    """Map any known spelling ('Livingroom', 'Dinning') to the class name, or raise UnknownName."""
    found = TAXONOMY.class_aliases.get(_norm(name))
    if found is None:
        raise UnknownName(f"unknown class {name!r}; known: {', '.join(CLASSES)}")
    return found


def canonical_attribute(room: str, name: str) -> str:
    """Map an attribute spelling to its canonical name within ``room``, or raise UnknownName."""
    room = canonical_class(room)
    found = TAXONOMY.attribute_aliases[room].get(_norm(name))
    if found is None and _norm(name) in added_attributes().get(room, ()):
        found = _norm(name)
    if found is None:
        raise UnknownName(
            f"unknown attribute {name!r} for {room}; known: {', '.join(class_attributes(room)) or 'none'}")
    return found


def attribute_key(room: str, name: str) -> str:
    """'interior', 'washer_dryer' -> 'interior.laundry'."""
    room = canonical_class(room)
    return f"{room}.{canonical_attribute(room, name)}"


# ---- attributes people added (the labelling app's attribute mode) ----------------------------
ADDED_FILE = "taxonomy-added.yaml"
ATTRIBUTE_NAME = re.compile(r"[a-z][a-z0-9_]{0,39}")
_added_cache: dict[Path, tuple[int, dict[str, tuple[str, ...]]]] = {}


class TaxonomyFileError(RoomclfError):
    """The file of added attributes cannot be read."""


def _read_added(path: Path) -> dict:
    try:
        doc = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise TaxonomyFileError(f"cannot read the added attributes ($ROOMCLF_HOME/{path.name}): "
                                f"{str(exc).splitlines()[0]}") from None
    if not isinstance(doc, dict):
        raise TaxonomyFileError(f"$ROOMCLF_HOME/{path.name} should map each class to a list of attribute names")
    return doc


def added_attributes_file() -> Path:
    """Where the attributes people added are kept: ``$ROOMCLF_HOME/taxonomy-added.yaml``."""
    from roomclf.settings import home

    return home() / ADDED_FILE


def added_attributes() -> dict[str, tuple[str, ...]]:
    """class -> the attributes people added to it, in the order they were added (none: no entry).
    Entries that name no class, or an attribute ``taxonomy.yaml`` already has, are ignored."""
    path = added_attributes_file()
    try:
        stamp = path.stat().st_mtime_ns
    except FileNotFoundError:
        return {}
    cached = _added_cache.get(path)
    if cached and cached[0] == stamp:
        return cached[1]
    doc = _read_added(path)
    added: dict[str, tuple[str, ...]] = {}
    for room, names in doc.items():
        room = TAXONOMY.class_aliases.get(_norm(room))
        if room is None or not isinstance(names, list):
            continue
        own = TAXONOMY.attribute_aliases[room]
        keep = [n for n in dict.fromkeys(_norm(n) for n in names) if ATTRIBUTE_NAME.fullmatch(n) and n not in own]
        if keep:
            added[room] = tuple(keep)
    _added_cache[path] = (stamp, added)
    return added


def class_attributes(room: str) -> tuple[str, ...]:
    """The attributes of ``room``: those of ``taxonomy.yaml``, then those people added."""
    room = canonical_class(room)
    return ATTRIBUTES[room] + added_attributes().get(room, ())


def add_attribute(room: str, name: str) -> str:
    """Add the attribute ``name`` to ``room`` (kept in ``added_attributes_file``) and return its key; a name
    the class already knows (any spelling) returns the existing key and writes nothing."""
    room = canonical_class(room)
    try:
        return attribute_key(room, name)
    except UnknownName:
        pass
    clean = _norm(name)
    if not ATTRIBUTE_NAME.fullmatch(clean):
        raise UnknownName(f"an attribute name is a letter then letters, digits or '_' (at most 40), got {name!r}")
    import fcntl

    path = added_attributes_file()
    with open(path.with_name(path.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)          # two people adding at once: both additions are kept
        doc = _read_added(path) if path.is_file() else {}
        if not isinstance(doc.get(room), list):
            doc[room] = []
        if clean not in doc[room]:
            doc[room].append(clean)
        tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
        tmp.write_text("# Attributes added in the labelling app (attribute mode). They become model outputs only\n"
                       "# when moved into roomclf/taxonomy.yaml.\n" + yaml.safe_dump(doc, sort_keys=True))
        os.replace(tmp, path)
    return f"{room}.{clean}"
