"""Export a tenant's memory to JSON and import it back, exactly.

Every item is written with its full body (version, counters, validity, provenance) and, by default,
its embedding; importing the file into an empty tenant and exporting again gives the same items.
Imports are validated as a whole before anything is written.

>>> from lifelong.context import open_store, Add, Tag, HashingEmbedder
>>> a = open_store(":memory:", tenant="a", create=True, embedder=HashingEmbedder(16))
>>> _ = a.apply([Add("Prefer metric units", id="units"), Tag(id="units", tag="helpful")])
>>> data = export_json(a)
>>> b = a.other("b", create=True)
>>> import_json(b, data)
['units']
>>> export_json(b)["items"] == data["items"]
True
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from lifelong.context.embed import check_vector
from lifelong.context.errors import DimensionError, DuplicateIdError, InvalidOpError, StoreFormatError
from lifelong.context.items import Item, check_text, validate_item
from lifelong.context.store import MemoryStore

FORMAT = "lifelong-memory-export"
FORMAT_VERSION = 1


def export_json(store: MemoryStore, path: str | os.PathLike[str] | None = None, *,
                embeddings: bool = True) -> dict[str, Any]:
    """The tenant's live items (any status) as a JSON-ready dict, also written to ``path`` if given."""
    items = []
    for item in store.items(with_embeddings=embeddings):
        d = item.to_dict()
        if embeddings and item.embedding is not None:
            d["embedding"] = [float(x) for x in item.embedding]  # float32 -> float64 repr parses back exactly
        items.append(d)
    data = {"format": FORMAT, "version": FORMAT_VERSION, "tenant": store.tenant,
            "embedder": store.backend.embedder_name, "dim": store.backend.dim, "items": items}
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(data, ensure_ascii=False, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return data


def read_export(source: str | os.PathLike[str] | Mapping[str, Any]) -> dict[str, Any]:
    """Load and check an export (a path or an already-parsed dict)."""
    if isinstance(source, Mapping):
        data = dict(source)
        name = "<data>"
    else:
        name = os.fspath(source)
        raw = Path(name).read_bytes()
        text = check_text(raw, f"file {name}")
        try:
            data = json.loads(text)
        except ValueError as err:
            raise StoreFormatError(f"{name} is not JSON: {err}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise StoreFormatError(f"{name} is not a lifelong memory export (no \"format\": \"{FORMAT}\")")
    if data.get("version") != FORMAT_VERSION:
        raise StoreFormatError(f"{name} is export version {data.get('version')}, this code reads {FORMAT_VERSION}")
    if not isinstance(data.get("items"), list):
        raise StoreFormatError(f"{name} has no 'items' list")
    return data


def import_items(store: MemoryStore, items: list[Item], vectors: Mapping[str, np.ndarray], *, source: str,
                 replace: bool = False) -> list[str]:
    """Validate a whole set of items, then write them in one transaction (shared by JSON and Markdown)."""
    seen: set[str] = set()
    for item in items:
        if item.id in seen:
            raise DuplicateIdError(f"{source}: id {item.id!r} appears twice; ids must be unique within a tenant")
        seen.add(item.id)
        validate_item(item)
    existing = {i for i, (it, _) in store.backend.lookup(store.tenant, seen).items() if it is not None}
    if existing and not replace:
        raise DuplicateIdError(
            f"{source}: {len(existing)} ids already exist in tenant {store.tenant!r} (e.g. {sorted(existing)[:3]}); "
            "import into a new tenant, or pass replace=True to overwrite them"
        )
    for item in items:
        for link in item.links:
            if link not in seen and link not in existing and store.backend.lookup(store.tenant, [link])[link][0] is None:
                raise InvalidOpError(f"{source}: item {item.id!r} links to {link!r}, which is neither imported nor stored")
    if items:
        store.restore({i.id: i for i in items}, op={"op": "IMPORT", "source": source, "count": len(items)},
                      vectors=vectors)
    return [i.id for i in items]


def import_json(store: MemoryStore, source: str | os.PathLike[str] | Mapping[str, Any], *,
                replace: bool = False) -> list[str]:
    """Import an export into ``store``'s tenant; returns the imported ids. Nothing is written unless every
    item is valid, no id is duplicated, and (without ``replace``) none exists already."""
    data = read_export(source)
    name = "<data>" if isinstance(source, Mapping) else os.fspath(source)
    items, vectors = [], {}
    for n, raw in enumerate(data["items"]):
        if not isinstance(raw, dict):
            raise StoreFormatError(f"{name}: item {n} is not an object")
        raw = dict(raw)
        emb = raw.pop("embedding", None)
        try:
            item = Item.from_dict(raw)
        except (InvalidOpError, TypeError) as err:
            raise InvalidOpError(f"{name}: item {n}: {err}") from None
        # Vectors of another model would poison dense search: they are dropped and recomputed.
        if emb is not None and data.get("embedder") == store.backend.embedder_name:
            try:
                vectors[item.id] = check_vector(emb, store.backend.dim, f"embedding of item {item.id!r}")
            except DimensionError as err:
                raise DimensionError(f"{name}: {err}") from None
        items.append(item)
    return import_items(store, items, vectors, source=name, replace=replace)
