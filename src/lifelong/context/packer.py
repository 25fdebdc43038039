"""The packer: fill a hard token budget with the best items, deterministically.

Items are taken in order of score (relevance x recency x utility), ties broken by id; an item that does
not fit (in the budget, or in its section's quota) is skipped, not truncated, and the next one is
tried. Section headers count against the budget. The same hits and budget always give the same text,
and the total never exceeds the budget (ACE's 80K budget was never enforced: ace #11). Content from
untrusted sources is quoted as data, never presented as instructions.

>>> from lifelong.context.items import Item
>>> from lifelong.context.ranking import Hit
>>> hits = [Hit(Item(id=f"b{i}", content=f"rule number {i} " * (i + 1), section="api" if i % 2 else "style"),
...             score=1.0 - i / 10, relevance=1.0) for i in range(6)]
>>> p = pack(hits, budget=40, quotas={"style": 12})
>>> p.ids, p.tokens <= 40
(('b0', 'b1', 'b3'), True)
>>> print(p.text.splitlines()[0])
## style
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from lifelong.context.items import Item
from lifelong.context.ranking import Hit
from lifelong.context.text import count_tokens
from lifelong.core.errors import BudgetError


def render_item(item: Item) -> str:
    """One line per item, ACE style: the id (for the generator to cite) and the content; untrusted
    content is wrapped as quoted data."""
    if item.provenance.trust.untrusted:  # type: ignore[union-attr]
        from lifelong.models.chat import quote_untrusted

        return f"[{item.id}] " + quote_untrusted(item.content, item.provenance.source)
    return f"[{item.id}] {item.content}"


@dataclass(frozen=True)
class Packed:
    """What the packer chose: the hits in order, the rendered text, its token count, the ids that did not
    fit and the tokens used per section.

    >>> pack([Hit(Item(id="a", content="short rule"), score=1.0, relevance=1.0)], budget=50, headers=False).text
    '[a] short rule'
    """

    hits: tuple[Hit, ...]
    text: str
    tokens: int
    budget: int
    dropped: tuple[str, ...]
    per_section: Mapping[str, int]

    @property
    def ids(self) -> tuple[str, ...]:
        """Ids of the packed items, in the order they appear."""
        return tuple(h.item.id for h in self.hits)


def _quota(value: int | float, budget: int, section: str) -> int:
    if isinstance(value, float) and 0.0 < value <= 1.0:
        return int(value * budget)
    if isinstance(value, int) and value >= 0:
        return value
    raise BudgetError(f"quota for section {section!r} must be a token count >= 0 or a fraction in (0, 1], got {value!r}")


def pack(
    hits: Sequence[Hit],
    budget: int,
    *,
    quotas: Mapping[str, int | float] | None = None,
    count: Callable[[str], int] = count_tokens,
    render: Callable[[Item], str] = render_item,
    headers: bool = True,
) -> Packed:
    """Choose and render hits within ``budget`` tokens (as counted by ``count``). ``quotas`` caps the
    tokens of a section (an int, or a fraction of the budget); sections without a quota share the rest."""
    if not isinstance(budget, int) or budget < 0:
        raise BudgetError(f"budget must be a non-negative number of tokens, got {budget!r}")
    caps = {s: _quota(v, budget, s) for s, v in (quotas or {}).items()}
    order = sorted(hits, key=lambda h: (-h.score, h.item.id))
    seen: set[str] = set()
    chosen: list[tuple[Hit, str]] = []
    used: dict[str, int] = {}
    total, dropped = 0, []
    for hit in order:
        item = hit.item
        if item.id in seen:
            continue
        seen.add(item.id)
        line = render(item)
        cost = count(line) + (count(f"## {item.section}") if headers and item.section not in used else 0)
        section_used = used.get(item.section, 0)
        if total + cost > budget or (item.section in caps and section_used + cost > caps[item.section]):
            dropped.append(item.id)
            continue
        chosen.append((hit, line))
        used[item.section] = section_used + cost
        total += cost
    # Sections appear in the order of their best item; items keep their rank within a section.
    sections: dict[str, list[str]] = {}
    for hit, line in chosen:
        sections.setdefault(hit.item.section, []).append(line)
    blocks = [("\n".join([f"## {s}", *lines]) if headers else "\n".join(lines)) for s, lines in sections.items()]
    text = "\n\n".join(blocks)
    grouped = tuple(h for s in sections for h, _ in chosen if h.item.section == s)
    return Packed(grouped, text, total, budget, tuple(dropped), dict(used))
