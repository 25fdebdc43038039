"""Memory states in the ledger: commit, diff, checkout and roll back a tenant's memory like weights.

A ledger version of a memory is a *content-addressed manifest*, not a copy of the items: the record
``items/XX`` maps the ids in shard XX (the first byte of SHA-256 of the id, 256 shards) to the hash of
the item version that is live. Item bodies live once, in the store's append-only version history,
addressed by the same hash. A commit rewrites only the shards its operations touched, so a one-item
change to a million-item store writes about 1/256 of the manifest (~350 kB) instead of every item; an
unchanged shard is the same blob and is stored once. The ``ops`` record holds the batch that produced
the version (operations, justifications, evidence, and the bodies they wrote), so the ledger alone
explains every version and can rebuild one that a store never applied. Each commit is a
:class:`~lifelong.core.Change` of kind ``context`` recorded with its verdict; gated promotions go through
the :class:`~lifelong.control.governor.Governor` like any other change.

>>> import os, tempfile
>>> from lifelong.control.ledger import Ledger
>>> from lifelong.context import open_store, Add, Update, HashingEmbedder
>>> tmp = tempfile.mkdtemp()
>>> store = open_store(os.path.join(tmp, "m.db"), tenant="alice", create=True, embedder=HashingEmbedder(32))
>>> mem = MemoryLedger(store, Ledger.open(os.path.join(tmp, "ledger.db")))
>>> v1 = mem.commit([Add("Invoices are due in 30 days", id="due")], learner="curator").version
>>> v2 = mem.commit([Update(id="due", content="Invoices are due in 45 days")], learner="curator").version
>>> print(mem.diff(v1.id, v2.id))
~ due v1 -> v2: content
>>> _ = mem.rollback(reason="the contract says 30")
>>> store.get("due").content, store.get("due").version
('Invoices are due in 30 days', 1)
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from lifelong.context.backends.base import N_SHARDS, shard_of
from lifelong.context.errors import StoreFormatError
from lifelong.context.items import Item
from lifelong.context.ops import Op
from lifelong.context.plan import Plan
from lifelong.context.store import MemoryStore
from lifelong.control.ledger import CommitResult, Ledger
from lifelong.core.change import Change, Cost
from lifelong.core.scopes import Scope
from lifelong.core.verdict import Verdict
from lifelong.core.version import Version

FORMAT = "lifelong-memory/1"
SHARD_PREFIX = "items/"
# Fields that change with every version; a diff reports what else changed.
_BOOKKEEPING = ("version", "updated_at")


def shard_record(shard: int) -> str:
    """The record name of a shard: ``items/00`` ... ``items/ff``."""
    return f"{SHARD_PREFIX}{shard:02x}"


@dataclass(frozen=True)
class ItemChange:
    """An item present on both sides whose version differs, and which fields changed.

    >>> a = Item(id="x", content="old"); b = a.evolve(content="new", version=2)
    >>> ItemChange(a, b, ("content",)).fields
    ('content',)
    """

    before: Item
    after: Item
    fields: tuple[str, ...]


@dataclass(frozen=True)
class MemoryDiff:
    """Items added, removed and changed from one memory state to another.

    >>> print(MemoryDiff(added=(Item(id="x", content="new fact", section="facts"),)))
    + x [facts] new fact
    """

    added: tuple[Item, ...] = ()
    removed: tuple[Item, ...] = ()
    changed: tuple[ItemChange, ...] = ()
    missing: tuple[str, ...] = field(default=())  # ids whose bodies neither the store nor the ledger holds

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.changed or self.missing)

    def __str__(self) -> str:
        lines = [f"+ {i.id} [{i.section}] {_short(i.content)}" for i in self.added]
        lines += [f"- {i.id} [{i.section}] {_short(i.content)}" for i in self.removed]
        lines += [f"~ {c.after.id} v{c.before.version} -> v{c.after.version}: {', '.join(c.fields) or 'bookkeeping'}"
                  for c in self.changed]
        lines += [f"? {i} (body not found)" for i in self.missing]
        return "\n".join(lines) if lines else "(no changes)"

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON summary."""
        return {"added": [i.id for i in self.added], "removed": [i.id for i in self.removed],
                "changed": {c.after.id: list(c.fields) for c in self.changed}, "missing": list(self.missing)}


def _short(text: str, n: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 3] + "..."


class MemoryLedger:
    """One tenant's memory bound to a ledger ref (default ``memory/<tenant>``).

    >>> import os, tempfile
    >>> from lifelong.context import open_store, HashingEmbedder
    >>> s = open_store(":memory:", tenant="bob", create=True, embedder=HashingEmbedder(16))
    >>> MemoryLedger(s, Ledger.open(os.path.join(tempfile.mkdtemp(), "l.db"))).ref
    'memory/bob'
    """

    def __init__(self, store: MemoryStore, ledger: Ledger, ref: str | None = None) -> None:
        self.store = store
        self.ledger = ledger
        self.ref = ref or f"memory/{store.tenant}"

    # ------------------------------------------------------------------ manifests
    def _head(self) -> str | None:
        return self.ledger.refs().get(self.ref)

    def _synced_seq(self) -> int | None:
        """The op seq up to which the store is known to equal the ref's head (None: unknown)."""
        synced = self.store.backend.get_head(self.store.tenant, self.ref)
        head = self._head()
        return synced[1] if synced is not None and head is not None and synced[0] == head else None

    def _live_records(self, extra_shards: set[int]) -> tuple[dict[str, Any], int]:
        """Shard records for the live store: only the shards written since the last sync (plus
        ``extra_shards``) when the store is in sync with the head, else all of them."""
        backend, tenant = self.store.backend, self.store.tenant
        seq = backend.seq(tenant)  # read before the manifest: a write in between is re-read next time
        synced = self._synced_seq()
        shards = set(range(N_SHARDS)) if synced is None else backend.shards_since(tenant, synced) | extra_shards
        maps = backend.manifest(tenant, shards)
        return {shard_record(s): maps.get(s) or None for s in sorted(shards)}, seq

    def manifest(self, version: str | Version) -> dict[str, str]:
        """id -> item-version hash of a committed memory state."""
        v = version if isinstance(version, Version) else self.ledger.resolve(version)
        out: dict[str, str] = {}
        for name, ref in v.manifest.items():
            if name.startswith(SHARD_PREFIX):
                out.update(json.loads(self.ledger.blob(ref.hash)))
        return out

    def live_manifest(self) -> dict[str, str]:
        """id -> item-version hash of the store as it is now."""
        out: dict[str, str] = {}
        for m in self.store.backend.manifest(self.store.tenant).values():
            out.update(m)
        return out

    def _ops_bodies(self, v: Version) -> dict[str, dict[str, Any]]:
        ref = v.manifest.get("ops")
        if ref is None:
            return {}
        bodies = json.loads(self.ledger.blob(ref.hash)).get("bodies") or {}
        return {Item.from_dict(b).hash: b for b in bodies.values() if b is not None}

    def _bodies(self, hashes: set[str], versions: Sequence[Version]) -> dict[str, dict[str, Any]]:
        found = self.store.backend.bodies(self.store.tenant, hashes)
        for v in versions:
            if len(found) == len(hashes):
                break
            found.update({h: b for h, b in self._ops_bodies(v).items() if h in hashes})
        return found

    # ------------------------------------------------------------------ changes
    def _meta_record(self) -> dict[str, Any]:
        b = self.store.backend
        return {"format": FORMAT, "tenant": self.store.tenant, "embedder": b.embedder_name, "dim": b.dim}

    def change(self, plan: Plan, *, learner: str, scope: Scope | str = Scope.SESSION,
               provenance: Mapping[str, Any] | None = None, cost: Cost | None = None) -> Change:
        """The ledger change for a plan, before it is applied: its records are the candidate state's
        touched shards and the plan's operations. Gate it, then :meth:`promote` or :meth:`apply`."""
        touched_shards = {shard_of(i) for i in plan.touched}
        records, _ = self._live_records(touched_shards)
        for id, t in plan.touched.items():
            name = shard_record(shard_of(id))
            shard = dict(records.get(name) or {})
            if t.after is None:
                shard.pop(id, None)
            else:
                shard[id] = t.after.hash
            records[name] = shard or None
        records["ops"] = {**plan.to_record(), "uncommitted_before": self._uncommitted()}
        records["memory"] = self._meta_record()
        prov = {"plan": plan.id, "ops": len(plan.ops), "tenant": self.store.tenant,
                "evidence": sorted({e for o in plan.ops for e in getattr(o, "evidence", ())}),
                **dict(provenance or {})}
        return Change("context", scope, learner, records=records, provenance=prov, cost=cost or Cost(),
                      base_version=self._head())

    def _uncommitted(self) -> dict[str, int] | None:
        synced = self._synced_seq()
        seq = self.store.seq
        if synced is not None and synced >= seq:
            return None
        log = self.store.ops(since=synced or 0)
        return {"from_seq": (synced or 0) + 1, "to_seq": seq, "ops": len(log)}

    def commit(self, ops: Sequence[Op] | Plan | None = None, *, learner: str = "memory",
               scope: Scope | str = Scope.SESSION, message: str = "", actor: str = "lifelong",
               provenance: Mapping[str, Any] | None = None) -> CommitResult:
        """Apply ``ops`` (if any) and commit the resulting state without a gate: for session scopes and
        operators' decisions. With no ops, commits the store as it is (a snapshot)."""
        plan = None
        if ops is not None:
            plan = ops if isinstance(ops, Plan) else self.store.plan(ops)
            self.store.apply(plan)
        records, seq = self._live_records(set())
        records["ops"] = {**(plan.to_record() if plan else {"snapshot": True}), "uncommitted": self._uncommitted()}
        records["memory"] = self._meta_record()
        change = Change("context", scope, learner, records=records, base_version=self._head(),
                        provenance={"tenant": self.store.tenant, "plan": plan.id if plan else None,
                                    "message": message, **dict(provenance or {})})
        verdict = Verdict(accepted=True, reasons=[f"direct commit by {actor} ({Scope.parse(scope).value} scope, no gate)"
                                                  + (f": {message}" if message else "")])
        result = self.ledger.record_change(self.ref, change, verdict, actor=actor)
        if result.accepted:
            self.store.backend.set_head(self.store.tenant, self.ref, result.version.id, seq)
        return result

    def promote(self, governor: Any, plan: Plan, *, learner: str, champion: Any, candidate: Any, target: Any,
                canaries: Sequence[Any] = (), to_scope: Scope | str = Scope.USER,
                provenance: Mapping[str, Any] | None = None) -> CommitResult:
        """Gate a plan through the governor (its ref must be this one); apply it only if accepted."""
        if governor.ref != self.ref:
            raise StoreFormatError(f"the governor guards {governor.ref!r}, this memory is {self.ref!r}")
        change = self.change(plan, learner=learner, scope=to_scope, provenance=provenance)
        result = governor.promote(change, champion=champion, candidate=candidate, target=target, canaries=canaries,
                                  to_scope=to_scope)
        if result.accepted:
            applied = self.store.apply(plan)
            self.store.backend.set_head(self.store.tenant, self.ref, result.version.id, applied.seq)
        return result

    # ------------------------------------------------------------------ reading and restoring
    def diff(self, a: str | Version, b: str | Version | None = None) -> MemoryDiff:
        """What changed from version ``a`` to version ``b`` (default: the live store)."""
        va = a if isinstance(a, Version) else self.ledger.resolve(a)
        ma = self.manifest(va)
        if b is None:
            vb, mb = None, self.live_manifest()
        else:
            vb = b if isinstance(b, Version) else self.ledger.resolve(b)
            mb = self.manifest(vb)
        return self._diff(ma, mb, [v for v in (vb, va) if v is not None])

    def _diff(self, ma: Mapping[str, str], mb: Mapping[str, str], versions: Sequence[Version]) -> MemoryDiff:
        ids = sorted(i for i in set(ma) | set(mb) if ma.get(i) != mb.get(i))
        bodies = self._bodies({h for i in ids for h in (ma.get(i), mb.get(i)) if h}, versions)
        added, removed, changed, missing = [], [], [], []
        for i in ids:
            ha, hb = ma.get(i), mb.get(i)
            if (ha and ha not in bodies) or (hb and hb not in bodies):
                missing.append(i)
                continue
            if ha is None:
                added.append(Item.from_dict(bodies[hb]))  # type: ignore[index]
            elif hb is None:
                removed.append(Item.from_dict(bodies[ha]))
            else:
                before, after = Item.from_dict(bodies[ha]), Item.from_dict(bodies[hb])
                da, db = before.to_dict(), after.to_dict()
                changed.append(ItemChange(before, after, tuple(k for k in da if da[k] != db[k] and k not in _BOOKKEEPING)))
        return MemoryDiff(tuple(added), tuple(removed), tuple(changed), tuple(missing))

    def checkout(self, version: str | Version | None = None) -> MemoryDiff:
        """Make the store equal to a committed state (default: the ref's head), exactly: every item gets
        the body it had then. Returns what changed in the store. Recorded in the store's op log."""
        v = self.ledger.head(self.ref) if version is None else (
            version if isinstance(version, Version) else self.ledger.resolve(version))
        target = self.manifest(v)
        diff = self._diff(self.live_manifest(), target, [v])
        if diff.missing:
            raise StoreFormatError(
                f"cannot restore version {v.short_id}: no body for items {list(diff.missing)[:5]} in the store's history "
                "or the version's ops record (was the store's database replaced?)"
            )
        state: dict[str, Item | None] = {i.id: None for i in diff.removed}
        state.update({i.id: i for i in diff.added})
        state.update({c.after.id: c.after for c in diff.changed})
        if state:
            seq = self.store.restore(state, op={"op": "RESTORE", "version": v.id, "ref": self.ref,
                                                "summary": diff.to_dict()})
        else:
            seq = self.store.seq
        self.store.backend.set_head(self.store.tenant, self.ref, v.id, seq)
        return diff

    def rollback(self, to: str | None = None, *, reason: str = "", actor: str = "lifelong") -> Version:
        """Move the ref back (to ``to``, or to where it was before its last move) and restore the store
        to that state. Only versions the ref has been at are allowed (the ledger's rule)."""
        version = self.ledger.rollback(self.ref, to, reason=reason, actor=actor)
        self.checkout(version)
        return version

    def in_sync(self) -> bool:
        """Whether the live store equals the ref's head."""
        head = self._head()
        return head is not None and self.manifest(head) == self.live_manifest()
