"""A tenant's window on the shared ledger: only its own refs, versions and events.

Every ref a tenant owns is stored as ``tenant/<name>/<short ref>`` (``tenant/acme/memory``); the
service shows and accepts the short form (``memory``). A version is visible to a tenant only if one of
its refs has been at it (or was offered it and rejected it), so an id or prefix of another tenant's
version resolves to "not found", exactly as a version that does not exist. The ledger's own rule then
applies on top: a ref rolls back only to a version it has been at.

>>> import os, tempfile
>>> from lifelong.control.ledger import Ledger
>>> ledger = Ledger.open(os.path.join(tempfile.mkdtemp(), "ledger.db"))
>>> a, b = TenantLedger(ledger, "a"), TenantLedger(ledger, "b")
>>> v = ledger.commit(a.full_ref("config"), records={"x": 1}, message="first")
>>> a.resolve(v.id[:8]).id == v.id
True
>>> b.resolve(v.id[:8])  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
lifelong.core.errors.VersionNotFoundError: no version of this tenant starts with '...'; list versions with GET /v1/ledger/log
>>> [e["ref"] for e in a.log()], b.log()
(['config'], [])
"""

from __future__ import annotations

import json
import math
from typing import Any

from lifelong.control.ledger import Event, Ledger
from lifelong.core.errors import VersionNotFoundError
from lifelong.core.version import Version

_HEX = set("0123456789abcdef")


class TenantLedger:
    """Read, compare and roll back the refs of one tenant."""

    def __init__(self, ledger: Ledger, tenant: str) -> None:
        self.ledger = ledger
        self.tenant = tenant
        self.prefix = f"tenant/{tenant}/"

    def full_ref(self, short: str) -> str:
        """``memory`` -> ``tenant/<tenant>/memory``."""
        return self.prefix + short

    def short_ref(self, full: str | None) -> str | None:
        """Inverse of :meth:`full_ref`."""
        return full[len(self.prefix):] if full is not None and full.startswith(self.prefix) else full

    def _where(self) -> tuple[str, list[Any]]:
        return "substr(ref, 1, ?) = ?", [len(self.prefix), self.prefix]

    def refs(self) -> dict[str, str]:
        """The tenant's refs (short names) and their live version ids."""
        return {self.short_ref(k): v for k, v in self.ledger.refs().items() if k.startswith(self.prefix)}  # type: ignore[misc]

    def owns_ref(self, short: str) -> bool:
        """Whether the tenant has this ref."""
        return self.full_ref(short) in self.ledger.refs()

    def event_dict(self, e: Event) -> dict[str, Any]:
        """An event as the API shows it (short ref names)."""
        d = e.to_dict()
        d["ref"] = self.short_ref(e.ref)
        return d

    def log(self, ref: str | None = None, limit: int = 50, types: list[str] | None = None) -> list[dict[str, Any]]:
        """The tenant's events, newest first."""
        if ref is not None:
            return [self.event_dict(e) for e in self.ledger.log(self.full_ref(ref), limit=limit, types=types)]
        where, params = self._where()
        sql = ("SELECT seq, at, type, ref, from_version, to_version, change_id, verdict_id, actor, message, data "
               f"FROM events WHERE {where}")
        if types:
            sql += f" AND type IN ({', '.join('?' * len(types))})"
            params.extend(types)
        sql += " ORDER BY seq DESC LIMIT ?"
        params.append(int(limit))
        rows = self.ledger.backend.query(sql, params)
        return [self.event_dict(Event(*r[:10], data=json.loads(r[10]))) for r in rows]

    def version_ids(self, prefix: str = "") -> list[str]:
        """Ids of versions the tenant's refs have been at or were offered, optionally by id prefix."""
        where, params = self._where()
        sql = (f"SELECT DISTINCT v FROM (SELECT to_version AS v FROM events WHERE {where} "
               f"UNION SELECT from_version AS v FROM events WHERE {where}) AS moves WHERE v IS NOT NULL")
        params = params + params
        if prefix:
            sql += " AND substr(v, 1, ?) = ?"
            params += [len(prefix), prefix]
        return [r[0] for r in self.ledger.backend.query(sql, params)]

    def resolve(self, name: str) -> Version:
        """A version of this tenant by ref (short name), full id or unique prefix (4+ hex digits)."""
        refs = self.refs()
        if name in refs:
            return self.ledger.resolve(refs[name])
        lowered = name.lower()
        if len(lowered) < 4 or not set(lowered) <= _HEX:
            raise VersionNotFoundError(
                f"{name!r} is neither a ref of this tenant nor a version id; refs are {sorted(refs) or 'none yet'}"
            )
        found = self.version_ids(lowered)
        if not found:
            raise VersionNotFoundError(
                f"no version of this tenant starts with {name!r}; list versions with GET /v1/ledger/log"
            )
        if len(found) > 1:
            raise VersionNotFoundError(f"{name!r} matches {len(found)} versions of this tenant; give more digits")
        return self.ledger.resolve(found[0])

    def show(self, name: str) -> dict[str, Any]:
        """A version: its artifacts, the tenant refs live at it, and the changes and verdicts that made it."""
        v = self.resolve(name)
        changes = []
        for ch in self.ledger.changes_producing(v.id):
            if not ch.ref.startswith(self.prefix):
                continue
            verdicts = [{"id": vid, "accepted": vd.accepted, "summary": vd.summary(), "evidence": vd.to_dict()}
                        for vid, vd in self.ledger.verdicts_for_change(ch.id)]
            changes.append({"id": ch.id, "kind": ch.kind, "scope": ch.scope, "learner": ch.learner,
                            "ref": self.short_ref(ch.ref), "base_version": ch.base_version,
                            "provenance": ch.provenance, "cost": ch.cost, "created_at": ch.created_at,
                            "verdicts": verdicts})
        return {
            "id": v.id,
            "created_at": v.created_at,
            "meta": dict(v.meta),
            "live_as": sorted(k for k, vid in self.refs().items() if vid == v.id),
            "artifacts": [{"name": n, "media_type": r.media_type, "hash": r.hash} for n, r in sorted(v.manifest.items())],
            "changes": changes,
        }

    def verdicts(self, ref: str | None = None, limit: int = 50, offset: int = 0) -> list[dict[str, Any]]:
        """The gate verdicts on changes to the tenant's refs (or to one ref, by short name), newest first:
        id, ref, change id, accepted, summary, when, and the change's learner, base and candidate versions.
        Page with ``limit`` and ``offset``; :meth:`verdict` gives one with its evidence.

        >>> import os, tempfile
        >>> from lifelong.control.ledger import Ledger
        >>> from lifelong.core import Change, Verdict
        >>> ledger = Ledger.open(os.path.join(tempfile.mkdtemp(), "ledger.db"))
        >>> a, b = TenantLedger(ledger, "a"), TenantLedger(ledger, "b")
        >>> change = Change("context", "user", "demo", records={"x": 1})
        >>> _ = ledger.record_change(a.full_ref("config"), change, Verdict(accepted=False, reasons=["worse"]))
        >>> [(v["ref"], v["accepted"], v["change_id"] == change.id) for v in a.verdicts()], b.verdicts()
        ([('config', False, True)], [])
        """
        sql = ("SELECT v.id, c.ref, v.change_id, v.accepted, v.summary, v.created_at, c.learner, c.base_version, "
               "c.candidate_version FROM verdicts v JOIN changes c ON v.change_id = c.id WHERE ")
        if ref is not None:
            sql += "c.ref = ?"
            params: list[Any] = [self.full_ref(ref)]
        else:
            sql += "substr(c.ref, 1, ?) = ?"
            params = [len(self.prefix), self.prefix]
        sql += " ORDER BY v.created_at DESC, v.id DESC LIMIT ? OFFSET ?"
        params += [int(limit), int(offset)]
        return [{"id": r[0], "ref": self.short_ref(r[1]), "change_id": r[2], "accepted": bool(r[3]), "summary": r[4],
                 "created_at": r[5], "learner": r[6], "base_version": r[7], "candidate_version": r[8]}
                for r in self.ledger.backend.query(sql, params)]

    def verdict(self, verdict_id: str) -> dict[str, Any]:
        """A gate verdict with its full evidence, if it judged a change to one of the tenant's refs."""
        rows = self.ledger.backend.query(
            "SELECT c.ref, c.id, v.accepted, v.summary, v.created_at FROM verdicts v JOIN changes c ON v.change_id = c.id "
            "WHERE v.id = ?", (verdict_id,))
        if not rows or not str(rows[0][0]).startswith(self.prefix):
            raise VersionNotFoundError(f"no verdict {verdict_id!r} for this tenant; verdict ids are in GET /v1/ledger/log")
        ref, change_id, accepted, summary, created = rows[0]
        return {"id": verdict_id, "ref": self.short_ref(ref), "change_id": change_id, "accepted": bool(accepted),
                "summary": summary, "created_at": created, "evidence": self.ledger.verdict(verdict_id).to_dict()}

    def diff(self, a: str, b: str) -> tuple[Version, Version, list[dict[str, Any]]]:
        """Artifact by artifact, how version ``b`` differs from ``a`` (both must be the tenant's)."""
        va, vb = self.resolve(a), self.resolve(b)
        rows = [{k: (None if isinstance(x, float) and not math.isfinite(x) else x) for k, x in d.__dict__.items()}
                for d in self.ledger.diff(va, vb)]  # JSON has no Inf (a relative change from a zero tensor)
        return va, vb, rows

    def rollback(self, ref: str, to: str | None, reason: str, actor: str) -> Version:
        """Move one of the tenant's refs back (to ``to``, a version of this tenant, or to where it was
        before its last move)."""
        if not self.owns_ref(ref):
            raise VersionNotFoundError(f"this tenant has no ref {ref!r}; its refs are {sorted(self.refs()) or 'none yet'}")
        target = None if to is None else self.resolve(to).id
        return self.ledger.rollback(self.full_ref(ref), target, reason=reason, actor=actor)
