"""The room classes and their attributes, read from ``taxonomy.yaml``.

Everything in roomclf that needs a class name, the class order or an
attribute imports it from here.

An attribute belongs to a class: ``fireplace`` in a bedroom and ``fireplace``
in a living room are different tags. Each (class, attribute) pair has a key
``"class.attribute"``; ``ATTRIBUTE_KEYS`` lists them all in a fixed order,
which is the order of the attribute outputs of every model.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

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
    if found is None:
        raise UnknownName(
            f"unknown attribute {name!r} for {room}; known: {', '.join(ATTRIBUTES[room]) or 'none'}")
    return found


def attribute_key(room: str, name: str) -> str:
    """'interior', 'washer_dryer' -> 'interior.laundry'."""
    room = canonical_class(room)
    return f"{room}.{canonical_attribute(room, name)}"
