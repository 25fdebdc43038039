"""The ledger: the append-only history of versions, changes, verdicts, rollbacks and other events.

A *ref* (``"digits/global"``, ``"user:alice/memory"``...) names the live version of something. Refs only
move through the ledger, and every move is an event with its actor, reason and evidence, so the whole
history of what was live, and why, can be read back (``log``), inspected (``show``), compared
(``diff``), restored bit for bit (``checkout``) and undone (``rollback``).

>>> import tempfile, os, torch
>>> ledger = Ledger.open(os.path.join(tempfile.mkdtemp(), "ledger.db"))
>>> v1 = ledger.commit("demo/global", tensors={"w": torch.zeros(3)}, message="base")
>>> v2 = ledger.commit("demo/global", tensors={"w": torch.ones(3)}, message="tuned")
>>> ledger.head("demo/global").id == v2.id
True
>>> ledger.rollback("demo/global", reason="regression").id == v1.id
True
>>> [e.type for e in ledger.log("demo/global")]
['rollback', 'commit', 'commit']

Where it lives: a SQLite file by default (one file, WAL mode), or a PostgreSQL database for shared
deployments, chosen by the location's form: ``Ledger.open("postgresql://user@host/ledger")`` (or
``postgres://``) uses :class:`~lifelong.control.ledger.postgres.PostgresBackend`, with the same
tables, append-only triggers and format check, and writers serialised on an advisory lock so that
processes on different hosts committing at once lose nothing. Anything else is a SQLite path.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lifelong.control.ledger.backend import SQLBackend, SQLiteBackend, Tx
from lifelong.control.ledger.postgres import PostgresBackend, is_postgres_url, redact
from lifelong.core.change import Change
from lifelong.core.errors import BlobCorruptedError, InvalidChangeError, VersionNotFoundError
from lifelong.core.hashing import canonical_json, sha256_hex
from lifelong.core.tensors import (
    JSON_MEDIA_TYPE,
    TENSOR_MEDIA_TYPE,
    decode_tensor,
    encode_tensor,
    non_finite_names,
)
from lifelong.core.verdict import Verdict
from lifelong.core.version import BlobRef, Version

if TYPE_CHECKING:
    import torch

EVENT_TYPES = ("commit", "reject", "rollback", "trigger", "reset", "alarm", "note")


@dataclass(frozen=True)
class Event:
    """One entry of the history."""

    seq: int
    at: float
    type: str
    ref: str | None
    from_version: str | None
    to_version: str | None
    change_id: str | None
    verdict_id: str | None
    actor: str
    message: str
    data: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form."""
        return dict(self.__dict__)


@dataclass(frozen=True)
class ChangeRecord:
    """A stored change: who proposed what, from which base, producing which candidate version."""

    id: str
    kind: str
    scope: str
    learner: str
    ref: str
    base_version: str | None
    candidate_version: str
    provenance: dict[str, Any]
    cost: dict[str, Any]
    created_at: float


@dataclass(frozen=True)
class TensorDiff:
    """How one artifact differs between two versions."""

    name: str
    status: str  # "same", "changed", "added", "removed"
    media_type: str
    l2: float | None = None  # norm of b - a
    relative: float | None = None  # ||b - a|| / ||a||
    max_abs: float | None = None
    detail: str = ""


@dataclass(frozen=True)
class CommitResult:
    """What :meth:`Ledger.record_change` did: the candidate version, the verdict id, and whether the ref moved."""

    version: Version
    change_id: str
    verdict_id: str
    accepted: bool


class Ledger:
    """Append-only history over a :class:`SQLBackend` (SQLite by default, PostgreSQL for a URL)."""

    def __init__(self, backend: SQLBackend) -> None:
        self.backend = backend

    # ------------------------------------------------------------------ opening
    @classmethod
    def open(cls, location: str | os.PathLike[str], create: bool = True) -> Ledger:
        """Open (or create) the ledger at ``location``: a SQLite file path, or a ``postgresql://`` (or
        ``postgres://``) URL for a ledger that several processes and hosts share (see
        :mod:`lifelong.control.ledger.postgres`). ``create=False`` refuses to make a new ledger, so a
        typo in a path or URL is an error rather than an empty history.

        >>> Ledger.open("postgresql://lifelong@db.internal/ledger", create=False)  # doctest: +SKIP
        """
        loc = os.fspath(location)
        if is_postgres_url(loc):
            return cls(PostgresBackend(loc, create=create))
        return cls(SQLiteBackend(loc, create=create))

    @property
    def location(self) -> str:
        """Where the ledger lives."""
        return self.backend.location

    def close(self) -> None:
        """Close the underlying connection."""
        self.backend.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ blobs
    @staticmethod
    def _put_blob(tx: Tx, data: bytes, media_type: str) -> BlobRef:
        digest = sha256_hex(data)
        tx.execute(
            "INSERT INTO blobs (hash, media_type, size, data) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (digest, media_type, len(data), data),
        )
        return BlobRef(digest, media_type)

    def blob(self, digest: str) -> bytes:
        """The bytes of a blob, verified against its hash."""
        rows = self.backend.query("SELECT data FROM blobs WHERE hash = ?", (digest,))
        if not rows:
            raise BlobCorruptedError(
                f"blob {digest[:12]} is missing from {redact(self.location)}; the file was damaged outside lifelong. "
                "Restore it from a backup, or roll back to a version that does not use this blob"
            )
        data = bytes(rows[0][0])
        actual = sha256_hex(data)
        if actual != digest:
            raise BlobCorruptedError(
                f"blob {digest[:12]} in {redact(self.location)} is corrupted: its content now hashes to {actual[:12]}. "
                "Restore the ledger from a backup, or roll back to a version that does not use this blob"
            )
        return data

    # ------------------------------------------------------------------ versions
    def _manifest_for(
        self,
        tx: Tx,
        base: Mapping[str, BlobRef],
        tensors: Mapping[str, torch.Tensor | None],
        records: Mapping[str, Any],
    ) -> dict[str, BlobRef]:
        clash = set(tensors) & set(records)
        if clash:
            raise InvalidChangeError(f"names used both as tensor and record: {sorted(clash)}; rename one of them")
        bad = non_finite_names({k: v for k, v in tensors.items() if v is not None})
        if bad:
            raise InvalidChangeError(
                f"tensors {bad} contain NaN or Inf; the update must be dropped and its scope reset, not committed"
            )
        manifest = dict(base)
        for name, tensor in tensors.items():
            if tensor is None:
                manifest.pop(name, None)
            else:
                manifest[name] = self._put_blob(tx, encode_tensor(tensor), TENSOR_MEDIA_TYPE)
        for name, record in records.items():
            if record is None:
                manifest.pop(name, None)
            else:
                manifest[name] = self._put_blob(tx, canonical_json(record).encode("utf-8"), JSON_MEDIA_TYPE)
        return manifest

    @staticmethod
    def _insert_version(tx: Tx, manifest: Mapping[str, BlobRef], meta: Mapping[str, Any]) -> Version:
        version = Version.from_manifest(manifest, meta)
        now = time.time()
        tx.execute(
            "INSERT INTO versions (id, manifest, meta, created_at) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (
                version.id,
                canonical_json({k: v.to_dict() for k, v in manifest.items()}),
                canonical_json(dict(meta)),
                now,
            ),
        )
        return version

    def _head_in(self, tx: Tx, ref: str) -> str | None:
        rows = tx.fetchall("SELECT version_id FROM refs WHERE name = ?", (ref,))
        return rows[0][0] if rows else None

    def _version_row(self, tx: Tx | None, version_id: str) -> Version:
        sql = "SELECT id, manifest, meta, created_at FROM versions WHERE id = ?"
        rows = tx.fetchall(sql, (version_id,)) if tx is not None else self.backend.query(sql, (version_id,))
        if not rows:
            raise VersionNotFoundError(f"no version {version_id[:12]}; run `lifelong log` to list versions")
        vid, manifest, meta, created = rows[0]
        refs = {k: BlobRef(v["hash"], v["media_type"]) for k, v in json.loads(manifest).items()}
        return Version(vid, refs, json.loads(meta), created)

    def resolve(self, name: str) -> Version:
        """A version by full id, unique id prefix (at least 4 hex digits), or ref name (its head)."""
        ref_rows = self.backend.query("SELECT version_id FROM refs WHERE name = ?", (name,))
        if ref_rows:
            return self._version_row(None, ref_rows[0][0])
        if len(name) < 4 or any(c not in "0123456789abcdef" for c in name.lower()):
            raise VersionNotFoundError(
                f"{name!r} is neither a ref nor a version id; refs are {self.refs() or 'none yet'}. "
                "Run `lifelong log` to list versions"
            )
        rows = self.backend.query("SELECT id FROM versions WHERE id LIKE ?", (name.lower() + "%",))
        if not rows:
            raise VersionNotFoundError(f"no version starts with {name!r}; run `lifelong log` to list versions")
        if len(rows) > 1:
            raise VersionNotFoundError(
                f"{name!r} matches {len(rows)} versions ({', '.join(r[0][:12] for r in rows[:5])}); give more digits"
            )
        return self._version_row(None, rows[0][0])

    def head(self, ref: str) -> Version:
        """The live version of a ref."""
        rows = self.backend.query("SELECT version_id FROM refs WHERE name = ?", (ref,))
        if not rows:
            raise VersionNotFoundError(f"ref {ref!r} has no version yet; refs are {self.refs() or 'none yet'}")
        return self._version_row(None, rows[0][0])

    def refs(self) -> dict[str, str]:
        """Every ref and the id of its live version."""
        return dict(self.backend.query("SELECT name, version_id FROM refs ORDER BY name"))

    # ------------------------------------------------------------------ events
    @staticmethod
    def _event(
        tx: Tx,
        type: str,
        *,
        ref: str | None = None,
        from_version: str | None = None,
        to_version: str | None = None,
        change_id: str | None = None,
        verdict_id: str | None = None,
        actor: str = "lifelong",
        message: str = "",
        data: Mapping[str, Any] | None = None,
    ) -> int:
        if type not in EVENT_TYPES:
            raise ValueError(f"unknown event type {type!r}; use one of {EVENT_TYPES}")
        rows = tx.fetchall(
            "INSERT INTO events (at, type, ref, from_version, to_version, change_id, verdict_id, actor, message, data)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING seq",
            (
                time.time(),
                type,
                ref,
                from_version,
                to_version,
                change_id,
                verdict_id,
                actor,
                message,
                canonical_json(_jsonable(dict(data or {}))),
            ),
        )
        return int(rows[0][0])

    @staticmethod
    def _move_ref(tx: Tx, ref: str, version_id: str, seq: int) -> None:
        tx.execute(
            "INSERT INTO refs (name, version_id, event_seq) VALUES (?, ?, ?) "
            "ON CONFLICT(name) DO UPDATE SET version_id = excluded.version_id, event_seq = excluded.event_seq",
            (ref, version_id, seq),
        )

    def record_event(
        self,
        type: str,
        message: str,
        *,
        ref: str | None = None,
        actor: str = "lifelong",
        data: Mapping[str, Any] | None = None,
    ) -> int:
        """Record something that moves no ref: a trigger that fired, a scope reset, a monitor alarm."""
        with self.backend.transaction() as tx:
            return self._event(tx, type, ref=ref, actor=actor, message=message, data=data)

    # ------------------------------------------------------------------ writing
    def commit(
        self,
        ref: str,
        tensors: Mapping[str, torch.Tensor | None] | None = None,
        records: Mapping[str, Any] | None = None,
        *,
        message: str = "",
        actor: str = "lifelong",
        meta: Mapping[str, Any] | None = None,
        replace: bool = False,
    ) -> Version:
        """Commit a new version of ``ref`` directly (no gate): for registering a base model or an
        operator's decision. By default the artifacts are layered over the current head; with
        ``replace=True`` they form the whole version. Learners go through :meth:`record_change`."""
        with self.backend.transaction() as tx:
            head = self._head_in(tx, ref)
            base = {} if (head is None or replace) else dict(self._version_row(tx, head).manifest)
            manifest = self._manifest_for(tx, base, tensors or {}, records or {})
            version = self._insert_version(tx, manifest, meta or {})
            seq = self._event(
                tx, "commit", ref=ref, from_version=head, to_version=version.id, actor=actor, message=message
            )
            self._move_ref(tx, ref, version.id, seq)
        return version

    def record_change(self, ref: str, change: Change, verdict: Verdict, actor: str = "governor") -> CommitResult:
        """Store a change, its candidate version and its verdict; move ``ref`` only if accepted.

        The candidate version is stored either way, so a rejected change can still be inspected and
        diffed. If the ref moved since ``change.base_version`` (another process promoted something in
        between), the verdict no longer compares against the live champion and the change is rejected
        as stale.
        """
        with self.backend.transaction() as tx:
            head = self._head_in(tx, ref)
            base_id = change.base_version or head
            base = {} if base_id is None else dict(self._version_row(tx, base_id).manifest)
            manifest = self._manifest_for(tx, base, change.tensors, change.records)
            version = self._insert_version(tx, manifest, {"learner": change.learner, "change": change.id})
            accepted = verdict.accepted
            if accepted and change.base_version is not None and head != change.base_version:
                accepted = False
                verdict = Verdict(
                    accepted=False,
                    reasons=[
                        f"stale: {ref} moved to {str(head)[:12]} after the candidate was evaluated against "
                        f"{change.base_version[:12]}; evaluate again against the new champion"
                    ],
                    target=verdict.target,
                    canaries=verdict.canaries,
                    thresholds=verdict.thresholds,
                )
            now = time.time()
            tx.execute(
                "INSERT INTO changes (id, kind, scope, learner, ref, base_version, candidate_version, provenance,"
                " cost, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    change.id,
                    change.kind.value,
                    change.scope.value,
                    change.learner,
                    ref,
                    base_id,
                    version.id,
                    canonical_json(_jsonable(change.provenance)),
                    canonical_json(change.cost.to_dict()),
                    now,
                ),
            )
            verdict_id = sha256_hex(f"{change.id}:{now}".encode())[:32]
            tx.execute(
                "INSERT INTO verdicts (id, change_id, accepted, summary, evidence, created_at) VALUES (?, ?, ?, ?, ?, ?)",
                (
                    verdict_id,
                    change.id,
                    int(accepted),
                    verdict.summary(),
                    canonical_json(_jsonable(verdict.to_dict())),
                    now,
                ),
            )
            seq = self._event(
                tx,
                "commit" if accepted else "reject",
                ref=ref,
                from_version=head,
                to_version=version.id,
                change_id=change.id,
                verdict_id=verdict_id,
                actor=actor,
                message=verdict.summary(),
                data={"learner": change.learner, "scope": change.scope.value},
            )
            if accepted:
                self._move_ref(tx, ref, version.id, seq)
        return CommitResult(version, change.id, verdict_id, accepted)

    def rollback(
        self, ref: str, to: str | None = None, *, reason: str = "", actor: str = "lifelong"
    ) -> Version:
        """Point ``ref`` back at an earlier version: ``to`` (an id, prefix or ref), or by default the
        version it pointed at before its last move. Only versions the ref has actually been at are
        allowed, so a rollback cannot smuggle in an unreviewed version."""
        target_id = None if to is None else self.resolve(to).id
        with self.backend.transaction() as tx:
            head = self._head_in(tx, ref)
            if head is None:
                raise VersionNotFoundError(f"ref {ref!r} has no version to roll back; refs are {self.refs()}")
            moves = tx.fetchall(
                "SELECT from_version, to_version FROM events WHERE ref = ? AND type IN ('commit', 'rollback') "
                "ORDER BY seq DESC",
                (ref,),
            )
            been_at = {m[1] for m in moves} | {m[0] for m in moves if m[0]}
            if target_id is None:
                previous = [m[0] for m in moves if m[0] and m[0] != head]
                if not previous:
                    raise VersionNotFoundError(f"ref {ref!r} has only ever been at {head[:12]}; nothing to roll back to")
                target_id = previous[0]
            elif target_id not in been_at:
                raise VersionNotFoundError(
                    f"{ref!r} has never been at version {target_id[:12]}; roll back only to a version from "
                    f"`lifelong log --ref {ref}`"
                )
            seq = self._event(
                tx, "rollback", ref=ref, from_version=head, to_version=target_id, actor=actor, message=reason
            )
            self._move_ref(tx, ref, target_id, seq)
        return self._version_row(None, target_id)

    # ------------------------------------------------------------------ reading
    def checkout(self, version: str | Version, device: str = "cpu") -> dict[str, torch.Tensor]:
        """The tensors of a version, bit-identical to what was committed (each blob verified)."""
        v = version if isinstance(version, Version) else self.resolve(version)
        return {
            name: decode_tensor(self.blob(ref.hash), device)
            for name, ref in sorted(v.manifest.items())
            if ref.media_type == TENSOR_MEDIA_TYPE
        }

    def records(self, version: str | Version) -> dict[str, Any]:
        """The JSON records of a version (memory items, scaffolds, configuration)."""
        v = version if isinstance(version, Version) else self.resolve(version)
        return {
            name: json.loads(self.blob(ref.hash))
            for name, ref in sorted(v.manifest.items())
            if ref.media_type == JSON_MEDIA_TYPE
        }

    def log(self, ref: str | None = None, limit: int | None = None, types: Iterable[str] | None = None) -> list[Event]:
        """Events, newest first, optionally for one ref and of some types."""
        sql = "SELECT seq, at, type, ref, from_version, to_version, change_id, verdict_id, actor, message, data FROM events"
        where, params = [], []
        if ref is not None:
            where.append("ref = ?")
            params.append(ref)
        if types is not None:
            types = list(types)
            if not types:
                return []  # no type asked for; "IN ()" is not valid SQL on every database
            where.append(f"type IN ({', '.join('?' * len(types))})")
            params.extend(types)
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY seq DESC"
        if limit is not None:
            if int(limit) < 0:
                raise ValueError(f"limit must be 0 or more (None for all events), got {limit}")
            sql += f" LIMIT {int(limit)}"
        return [Event(*row[:10], data=json.loads(row[10])) for row in self.backend.query(sql, params)]

    def changes_producing(self, version_id: str) -> list[ChangeRecord]:
        """The changes whose candidate was this version."""
        rows = self.backend.query(
            "SELECT id, kind, scope, learner, ref, base_version, candidate_version, provenance, cost, created_at "
            "FROM changes WHERE candidate_version = ? ORDER BY created_at",
            (version_id,),
        )
        return [ChangeRecord(*r[:7], json.loads(r[7]), json.loads(r[8]), r[9]) for r in rows]

    def verdict(self, verdict_id: str) -> Verdict:
        """A stored verdict with its full evidence."""
        rows = self.backend.query("SELECT evidence FROM verdicts WHERE id = ?", (verdict_id,))
        if not rows:
            raise VersionNotFoundError(f"no verdict {verdict_id!r}")
        return Verdict.from_dict(json.loads(rows[0][0]))

    def verdicts_for_change(self, change_id: str) -> list[tuple[str, Verdict]]:
        """(verdict id, verdict) pairs recorded for a change."""
        rows = self.backend.query(
            "SELECT id, evidence FROM verdicts WHERE change_id = ? ORDER BY created_at", (change_id,)
        )
        return [(r[0], Verdict.from_dict(json.loads(r[1]))) for r in rows]

    def diff(self, a: str | Version, b: str | Version) -> list[TensorDiff]:
        """Artifact by artifact, how version ``b`` differs from ``a``: tensors by norms of the
        difference, records by which top-level keys changed."""
        va = a if isinstance(a, Version) else self.resolve(a)
        vb = b if isinstance(b, Version) else self.resolve(b)
        out: list[TensorDiff] = []
        for name in sorted(set(va.manifest) | set(vb.manifest)):
            ra, rb = va.manifest.get(name), vb.manifest.get(name)
            if ra is None:
                out.append(TensorDiff(name, "added", rb.media_type))  # type: ignore[union-attr]
            elif rb is None:
                out.append(TensorDiff(name, "removed", ra.media_type))
            elif ra.hash == rb.hash:
                out.append(TensorDiff(name, "same", ra.media_type, 0.0, 0.0, 0.0))
            elif ra.media_type == TENSOR_MEDIA_TYPE and rb.media_type == TENSOR_MEDIA_TYPE:
                out.append(self._tensor_diff(name, ra, rb))
            else:
                out.append(self._record_diff(name, ra, rb))
        return out

    def _tensor_diff(self, name: str, ra: BlobRef, rb: BlobRef) -> TensorDiff:
        ta, tb = decode_tensor(self.blob(ra.hash)), decode_tensor(self.blob(rb.hash))
        if ta.shape != tb.shape:
            return TensorDiff(name, "changed", ra.media_type, detail=f"shape {tuple(ta.shape)} -> {tuple(tb.shape)}")
        da, db = ta.double(), tb.double()
        delta = db - da
        l2 = float(delta.norm())
        base = float(da.norm())
        return TensorDiff(
            name,
            "changed",
            ra.media_type,
            l2=l2,
            relative=l2 / base if base > 0 else math.inf,
            max_abs=float(delta.abs().max()) if delta.numel() else 0.0,
        )

    def _record_diff(self, name: str, ra: BlobRef, rb: BlobRef) -> TensorDiff:
        if ra.media_type != JSON_MEDIA_TYPE or rb.media_type != JSON_MEDIA_TYPE:
            return TensorDiff(name, "changed", rb.media_type, detail=f"{ra.media_type} -> {rb.media_type}")
        xa, xb = json.loads(self.blob(ra.hash)), json.loads(self.blob(rb.hash))
        if isinstance(xa, dict) and isinstance(xb, dict):
            added = sorted(set(xb) - set(xa))
            removed = sorted(set(xa) - set(xb))
            changed = sorted(k for k in set(xa) & set(xb) if xa[k] != xb[k])
            detail = f"+{len(added)} -{len(removed)} ~{len(changed)} keys"
            if changed:
                detail += f" (changed: {', '.join(map(str, changed[:5]))}{'...' if len(changed) > 5 else ''})"
            return TensorDiff(name, "changed", JSON_MEDIA_TYPE, detail=detail)
        return TensorDiff(name, "changed", JSON_MEDIA_TYPE, detail="value replaced")

    # ------------------------------------------------------------------ integrity
    def verify(self) -> list[str]:
        """Check the whole ledger: every blob matches its hash, every version's blobs exist, every ref
        points at a stored version. Returns a list of problems (empty when healthy)."""
        problems: list[str] = []
        for digest, data in self.backend.query("SELECT hash, data FROM blobs"):
            if sha256_hex(bytes(data)) != digest:
                problems.append(f"blob {digest[:12]} does not match its hash")
        blobs = {r[0] for r in self.backend.query("SELECT hash FROM blobs")}
        versions = {}
        for vid, manifest in self.backend.query("SELECT id, manifest FROM versions"):
            m = json.loads(manifest)
            versions[vid] = m
            missing = [n for n, ref in m.items() if ref["hash"] not in blobs]
            if missing:
                problems.append(f"version {vid[:12]} misses blobs for {missing}")
            if Version.content_id({k: BlobRef(v["hash"], v["media_type"]) for k, v in m.items()}) != vid:
                problems.append(f"version {vid[:12]} does not match its content id")
        for name, vid in self.refs().items():
            if vid not in versions:
                problems.append(f"ref {name} points at missing version {vid[:12]}")
        return problems

    def stats(self) -> dict[str, int]:
        """Counts of what the ledger holds."""
        out = {}
        for table in ("versions", "changes", "verdicts", "events", "blobs", "refs"):
            out[table] = int(self.backend.query(f"SELECT COUNT(*) FROM {table}")[0][0])
        return out


def _jsonable(value: Any) -> Any:
    """Make numpy scalars, tuples and non-finite floats safe for canonical JSON."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 1) == 0:
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
