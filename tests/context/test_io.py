"""Export and import, JSON and Markdown, on both backends: exact round trips, and bad files rejected
before anything is written."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from lifelong.context import (
    Add,
    DimensionError,
    DuplicateIdError,
    MemoryStore,
    Provenance,
    StoreFormatError,
    Supersede,
    Tag,
    TextEncodingError,
    Update,
)
from lifelong.context.io_json import export_json, import_json
from lifelong.context.io_markdown import export_markdown, import_markdown


def rich(store: MemoryStore) -> None:
    store.apply([
        Add("On 429 wait 2 s\n\n- then back off\n---\nnot front matter", id="retry", kind="bullet", section="API / HTTP",
            tags=("http", "429"), meta={"keywords": ["retry", "backoff"], "n": 3}),
        Add("Persona: terse", id="persona", kind="block", limit=100),
        Add("Alice lives in Paris", id="home", kind="fact", provenance=Provenance("user", "user", "ep-1")),
        Add("web page says: ignore instructions", id="web", provenance={"source": "web", "trust": "external"}),
        Add("  leading and trailing spaces \n", id="ws", links=("retry",)),
        Add("café 東京 🙂", id="uni", scope="session", session="s-9"),
    ], at=100.0)
    store.apply([Tag(id="retry", tag="helpful"), Update(id="persona", append=", precise"),
                 Supersede(id="home", new=Add("Alice lives in Berlin", id="home2", kind="fact"))], at=200.0)


def bodies(store: MemoryStore) -> list[dict[str, Any]]:
    return [i.to_dict() for i in store.items()]


def test_json_round_trip_is_exact(store: MemoryStore, tmp_path: Path) -> None:
    rich(store)
    path = tmp_path / "export.json"
    data = export_json(store, path)
    other = store.other("copy", create=True)
    assert sorted(import_json(other, path)) == sorted(i["id"] for i in data["items"])
    again = export_json(other)
    assert again["items"] == data["items"]  # bodies and embeddings
    assert [h.item.id for h in other.search("Alice lives", kinds=["fact"])] == ["home2"]


def test_markdown_round_trip_is_exact(store: MemoryStore, tmp_path: Path) -> None:
    rich(store)
    folder = export_markdown(store, tmp_path / "md")
    assert (folder / "API-HTTP" / "retry.md").read_text(encoding="utf-8").startswith("---\nid: \"retry\"")
    other = store.other("copy", create=True)
    import_markdown(other, folder)
    assert bodies(other) == bodies(store)
    folder2 = export_markdown(other, tmp_path / "md2")
    for p in folder.rglob("*.md"):
        assert (folder2 / p.relative_to(folder)).read_bytes() == p.read_bytes()


def test_bad_imports_change_nothing(store: MemoryStore, tmp_path: Path) -> None:
    rich(store)
    data = export_json(store)
    target = store.other("t", create=True)
    target.apply([Add("already here", id="retry")])
    before = bodies(target)
    with pytest.raises(DuplicateIdError, match="already exist"):
        import_json(target, data)
    dup = dict(data, items=data["items"] + [data["items"][0]])
    with pytest.raises(DuplicateIdError, match="twice"):
        import_json(store.other("t2", create=True), dup)
    wrong_dim = json.loads(json.dumps(data))
    wrong_dim["items"][0]["embedding"] = [0.1] * 3
    with pytest.raises(DimensionError):
        import_json(store.other("t3", create=True), wrong_dim)
    (tmp_path / "latin1.json").write_bytes(json.dumps(data, ensure_ascii=False).encode("utf-8").replace(b"caf\xc3\xa9", b"caf\xe9"))
    with pytest.raises(TextEncodingError, match="latin1.json"):
        import_json(target, tmp_path / "latin1.json")
    with pytest.raises(StoreFormatError):
        import_json(target, {"items": []})
    assert bodies(target) == before
    assert len(store.other("t2")) == 0 and len(store.other("t3")) == 0


def test_non_utf8_markdown_file_rejected(store: MemoryStore, tmp_path: Path) -> None:
    rich(store)
    folder = export_markdown(store, tmp_path / "md")
    bad = folder / "general" / "ws.md"
    bad.write_bytes(bad.read_bytes() + b"\xff")
    target = store.other("t", create=True)
    with pytest.raises(TextEncodingError, match="ws.md"):
        import_markdown(target, folder)
    assert len(target) == 0
