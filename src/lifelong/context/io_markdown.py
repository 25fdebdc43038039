"""Export a tenant's memory as a folder of Markdown files, one per item, and import it back exactly.

Each file is ``<section>/<id>.md``: a front matter block of ``key: <JSON value>`` lines (valid YAML,
parsed here as JSON so nothing is reinterpreted), then the content, byte for byte (no newline added).
People can read and edit the folder, and keep it in git; embeddings are recomputed on import.

>>> import tempfile
>>> from lifelong.context import open_store, Add, HashingEmbedder
>>> a = open_store(":memory:", tenant="a", create=True, embedder=HashingEmbedder(16))
>>> _ = a.apply([Add("Line one\\n---\\nline three\\n", id="multi", section="Odd / section")])
>>> folder = export_markdown(a, tempfile.mkdtemp())
>>> b = a.other("b", create=True)
>>> import_markdown(b, folder), b.get("multi") == a.get("multi")
(['multi'], True)
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from lifelong.context.errors import InvalidOpError, StoreFormatError
from lifelong.context.io_json import import_items
from lifelong.context.items import Item, check_text
from lifelong.context.store import MemoryStore

FORMAT = "lifelong-memory-markdown"
FORMAT_VERSION = 1
INDEX = "memory.json"


def _slug(section: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", section).strip("-.")[:64] or "section"


def render(item: Item) -> str:
    """One item as a Markdown file's text."""
    body = item.to_dict()
    content = body.pop("content")
    head = [f"{k}: {json.dumps(v, ensure_ascii=False, sort_keys=True)}" for k, v in body.items()]
    return "---\n" + "\n".join(head) + "\n---\n" + content


def parse(text: str, name: str = "<text>") -> Item:
    """Inverse of :func:`render`."""
    if not text.startswith("---\n"):
        raise StoreFormatError(f"{name}: a memory file starts with a '---' line of front matter")
    end = text.find("\n---\n", 3)
    if end < 0:
        raise StoreFormatError(f"{name}: the front matter has no closing '---' line")
    fields: dict[str, Any] = {}
    for n, line in enumerate(text[4:end].split("\n"), start=2):
        key, sep, value = line.partition(": ")
        if not sep:
            raise StoreFormatError(f"{name}, line {n}: expected 'key: <JSON value>', got {line[:60]!r}")
        try:
            fields[key] = json.loads(value)
        except ValueError:
            raise StoreFormatError(f"{name}, line {n}: the value of {key!r} is not JSON") from None
    fields["content"] = text[end + 5 :]
    try:
        return Item.from_dict(fields)
    except (InvalidOpError, TypeError) as err:
        raise InvalidOpError(f"{name}: {err}") from None


def export_markdown(store: MemoryStore, folder: str | os.PathLike[str]) -> Path:
    """Write every live item (any status) under ``folder``; returns the folder."""
    root = Path(folder)
    root.mkdir(parents=True, exist_ok=True)
    count = 0
    for item in store.items():
        path = root / _slug(item.section) / f"{item.id}.md"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", encoding="utf-8", newline="") as fh:  # newline="": content is written byte-exact
            fh.write(render(item))
        count += 1
    index = {"format": FORMAT, "version": FORMAT_VERSION, "tenant": store.tenant,
             "embedder": store.backend.embedder_name, "dim": store.backend.dim, "items": count}
    (root / INDEX).write_text(json.dumps(index, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return root


def import_markdown(store: MemoryStore, folder: str | os.PathLike[str], *, replace: bool = False) -> list[str]:
    """Import a folder written by :func:`export_markdown` (or edited by hand). All files are read and
    validated before anything is written."""
    root = Path(folder)
    index_path = root / INDEX
    if not index_path.exists():
        raise StoreFormatError(f"{root} has no {INDEX}; it is not a memory export folder")
    index = json.loads(check_text(index_path.read_bytes(), f"file {index_path}"))
    if index.get("format") != FORMAT:
        raise StoreFormatError(f"{index_path} is not a lifelong Markdown memory index")
    items = []
    for path in sorted(root.rglob("*.md")):
        text = check_text(path.read_bytes(), f"file {path}")
        item = parse(text, str(path))
        if path.stem != item.id:
            raise StoreFormatError(f"{path}: the file name must be the item id {item.id!r}.md")
        items.append(item)
    return import_items(store, items, {}, source=str(root), replace=replace)
