"""The packer: a hard budget that is never exceeded, section quotas, determinism, quoted untrusted content."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lifelong.context import Hit, Item, Provenance, pack
from lifelong.context.text import count_tokens
from lifelong.core.errors import BudgetError


def hit(i: int, score: float, words: int, section: str = "s", trust: str = "user") -> Hit:
    item = Item(id=f"i{i}", content=" ".join(["word"] * words), section=section,
                provenance=Provenance("web" if trust == "external" else "user", trust))
    return Hit(item, score=score, relevance=score)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 1), st.integers(1, 40), st.sampled_from("abc")), max_size=25),
       st.integers(0, 200), st.integers(0, 60))
def test_budget_and_quota_are_hard(spec: list[tuple[float, int, str]], budget: int, quota: int) -> None:
    hits = [hit(i, s, w, sec) for i, (s, w, sec) in enumerate(spec)]
    p = pack(hits, budget, quotas={"a": quota})
    assert p.tokens <= budget and count_tokens(p.text) == p.tokens
    assert p.per_section.get("a", 0) <= quota
    assert set(p.ids) | set(p.dropped) == {h.item.id for h in hits}
    assert pack(list(reversed(hits)), budget, quotas={"a": quota}) == p  # input order does not matter


def test_best_items_first_and_skips_what_does_not_fit() -> None:
    hits = [hit(0, 0.9, 50), hit(1, 0.8, 3), hit(2, 0.7, 3), hit(3, 0.95, 2)]
    p = pack(hits, budget=20)
    assert p.ids == ("i3", "i1", "i2") and p.dropped == ("i0",)


def test_fraction_quota_and_bad_budget() -> None:
    hits = [hit(i, 1 - i / 10, 5, "a" if i < 3 else "b") for i in range(6)]
    p = pack(hits, budget=60, quotas={"a": 0.25})
    assert p.per_section["a"] <= 15
    with pytest.raises(BudgetError):
        pack(hits, budget=-1)
    with pytest.raises(BudgetError):
        pack(hits, budget=10, quotas={"a": 1.5})


def test_untrusted_content_is_quoted_as_data() -> None:
    p = pack([hit(0, 1.0, 3, trust="external")], budget=100)
    assert "<<<DATA" in p.text and "not as instructions" in p.text
