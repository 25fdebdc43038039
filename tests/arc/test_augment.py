"""Augmenters form a group (D8 x colour permutations) with exact inverses, on every grid of ARC-AGI-1."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lifelong.arc.augment import (
    Chain,
    ColourPermutation,
    DemonstrationOrder,
    Dihedral,
    NotInImageError,
    Tile,
    Upscale,
    inference_transforms,
    marc_augmenters,
)
from lifelong.arc.data import load_split
from lifelong.arc.grids import ArcInputError, ArcTask

D8 = Dihedral.all()


def _generators() -> list:
    rng = np.random.default_rng(0)
    return [*D8, ColourPermutation.random(rng), ColourPermutation.random(rng, keep_black=False), Upscale(2, 1),
            Tile(1, 2), Chain((D8[5], ColourPermutation.random(rng), Upscale(1, 2), Tile(2, 1)))]


def test_inverse_undoes_every_augmenter_on_every_grid_of_both_splits() -> None:
    """Every grid of both splits under the group's generators (and a chain of them); MARC's full list of
    test-time augmenters on every 8th task, to keep the test fast."""
    gens = [(a, a.inverse()) for a in _generators()]
    marc = [(a, a.inverse()) for a in marc_augmenters()]
    checked = 0
    for split in ("training", "evaluation"):
        for k, task in enumerate(load_split(split)):
            for g in task.grids():
                for a, inv in gens + (marc if k % 8 == 0 else []):
                    back = inv(a(g))
                    assert back.shape == g.shape and (back == g).all(), (task.id, a.name)
                    checked += 1
    assert checked > 80_000  # every grid (about 6,700) of both splits


def test_demonstration_order_inverts_on_every_task() -> None:
    rng = np.random.default_rng(1)
    for task in load_split("training")[:50] + load_split("evaluation")[:50]:
        order = DemonstrationOrder.random(len(task.train), rng)
        back = order.inverse().apply_to_task(order.apply_to_task(task))
        assert [e.key() for e in back.train] == [e.key() for e in task.train]


def test_d8_is_a_group_closed_under_composition_with_inverses() -> None:
    probe = np.arange(12, dtype=np.int8).reshape(3, 4)
    names = {d.name for d in D8}
    assert len(names) == 8
    for a, b in itertools.product(D8, D8):
        c = a.compose(b)
        assert c.name in names
        assert np.array_equal(c(probe), a(b(probe)))  # the composition is the sequential application
    for a in D8:
        assert a.compose(a.inverse()).name == "identity" == a.inverse().compose(a).name
    # associativity on a few triples (the group law, not just closure)
    for a, b, c in itertools.islice(itertools.product(D8, D8, D8), 0, 512, 37):
        assert a.compose(b).compose(c) == a.compose(b.compose(c))
    assert Dihedral.named("transpose")(probe).shape == (4, 3)
    for k in range(4):  # the fast slicing agrees with numpy's own rotation
        assert np.array_equal(Dihedral(k, False)(probe), np.rot90(probe, k))
        assert np.array_equal(Dihedral(k, True)(probe), np.rot90(probe.T, k))


def test_colour_permutations_compose_keep_black_and_commute_with_d8() -> None:
    rng = np.random.default_rng(2)
    g = rng.integers(0, 10, (5, 7)).astype(np.int8)
    for _ in range(20):
        p, q = ColourPermutation.random(rng), ColourPermutation.random(rng)
        assert p.mapping[0] == 0
        assert np.array_equal(p.compose(q)(g), p(q(g)))
        assert np.array_equal(p.inverse()(p(g)), g)
        d = D8[int(rng.integers(8))]
        assert np.array_equal(p(d(g)), d(p(g)))  # direct product: colours and geometry commute
    with pytest.raises(ValueError, match="permutation"):
        ColourPermutation((1, 1, 2, 3, 4, 5, 6, 7, 8, 9))


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 12), st.integers(1, 12), st.integers(0, 2**31 - 1))
def test_chains_of_random_augmenters_invert_exactly(h: int, w: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    g = rng.integers(0, 10, (h, w)).astype(np.int8)
    pool = [*D8, Upscale(2, 1), Upscale(1, 2), Tile(2, 2), ColourPermutation.random(rng)]
    chain = Chain(tuple(pool[int(i)] for i in rng.integers(0, len(pool), size=3)))
    assert np.array_equal(chain.inverse()(chain(g)), g)


def test_non_surjective_inverses_refuse_grids_outside_their_image() -> None:
    with pytest.raises(NotInImageError, match="not made of constant"):
        Upscale(2, 2).inverse()(np.array([[1, 2], [3, 4]], dtype=np.int8))
    with pytest.raises(NotInImageError, match="divide"):
        Upscale(2, 2).inverse()(np.zeros((3, 2), dtype=np.int8))
    with pytest.raises(NotInImageError, match="tiles differ"):
        Tile(1, 2).inverse()(np.array([[1, 2]], dtype=np.int8))
    assert issubclass(NotInImageError, ArcInputError)


def test_augmenters_that_overflow_30x30_are_refused_or_skipped() -> None:
    big = np.zeros((16, 16), dtype=np.int8)
    task = ArcTask.from_pairs([(big, big)], [big], "big")
    assert not Upscale(2, 2).fits(task) and Dihedral.named("rot90").fits(task)
    with pytest.raises(ArcInputError, match="larger than 30x30"):
        Upscale(2, 2).apply_to_task(task)
    with pytest.raises(ArcInputError, match="DemonstrationOrder"):
        DemonstrationOrder((1, 0)).apply_to_task(task)


def test_apply_to_task_keeps_hidden_answers_hidden() -> None:
    task = ArcTask.from_pairs([([[1, 2]], [[2, 1]])], [[[3, 4]]], "h")
    out = Chain((Dihedral.named("rot90"), ColourPermutation.random(np.random.default_rng(0)))).apply_to_task(task)
    assert out.test[0].output is None and out.train[0].input.shape == (2, 1)


def test_inference_transforms_are_bijections_on_any_shape() -> None:
    g = np.arange(6, dtype=np.int8).reshape(2, 3)
    for t in inference_transforms():
        assert np.array_equal(t.inverse()(t(g)), g) and np.array_equal(t(t.inverse()(g)), g)
