"""The per-cell model: padding never leaks, context order does not matter, the task scope resets exactly,
test-time training learns, weights round-trip through safetensors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lifelong.arc.batching import collate, prepare
from lifelong.arc.grids import ArcInputError, ArcTask, Example
from lifelong.arc.inference import augmented_candidates, predict
from lifelong.arc.model import CellNet
from lifelong.arc.shapes import ShapeRule, infer_shape_rule
from lifelong.arc.ttt import TTTConfig, demonstration_items, group_entries, task_scope, train
from lifelong.arc.voting import vote

SMALL = {"width": 8, "depth": 2, "dilations": (1, 2), "ctx_width": 8, "task_dim": 8}


def _random_net(seed: int = 0) -> CellNet:
    net = CellNet(**SMALL, seed=seed)
    with torch.no_grad():  # perturb every weight so the zero-initialised paths are exercised too
        g = torch.Generator().manual_seed(seed)
        for p in net.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=g))
    return net


def _grid(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    return rng.integers(0, 10, (h, w)).astype(np.int8)


def test_padding_and_batch_neighbours_never_change_a_prediction() -> None:
    rng = np.random.default_rng(0)
    net = _random_net()
    rule = ShapeRule()
    demos = [Example(_grid(rng, 3, 4), _grid(rng, 3, 4)), Example(_grid(rng, 5, 2), _grid(rng, 5, 2))]
    small = prepare(demos, _grid(rng, 3, 4), None, rule)
    big_demos = [Example(_grid(rng, 9, 11), _grid(rng, 9, 11))]
    big = prepare(big_demos, _grid(rng, 12, 7), None, rule)
    with torch.no_grad():
        alone = net(collate([small]))
        together = net(collate([small, big]))
    assert torch.allclose(alone[0], together[0, :, :3, :4], atol=1e-5)


def test_the_context_is_a_set_order_does_not_matter() -> None:
    rng = np.random.default_rng(1)
    net = _random_net(1)
    demos = [Example(_grid(rng, 4, 4), _grid(rng, 4, 4)) for _ in range(3)]
    q = _grid(rng, 4, 4)
    with torch.no_grad():
        a = net(collate([prepare(demos, q, None, ShapeRule())]))
        b = net(collate([prepare(demos[::-1], q, None, ShapeRule())]))
        c = net(collate([prepare(demos[:2], q, None, ShapeRule())]))
    assert torch.allclose(a, b, atol=1e-5) and not torch.allclose(a, c, atol=1e-5)


def test_an_untrained_model_copies_its_input_and_augmented_inference_maps_back_exactly() -> None:
    rng = np.random.default_rng(2)
    net = CellNet(**SMALL, seed=0)
    demos = [(_grid(rng, 3, 5), _grid(rng, 3, 5)) for _ in range(3)]
    test_in = _grid(rng, 4, 6)
    task = ArcTask.from_pairs(demos, [test_in], "copy")
    assert np.array_equal(predict(net, task)[0], test_in)
    cands = augmented_candidates(net, task)[0]
    assert len(cands) == 7 * 4  # 7 transforms x (all demos + 3 leave-one-out contexts)
    assert all(np.array_equal(g, test_in) for _, g in cands)  # every transform inverted exactly
    assert np.array_equal(vote(cands)[0], test_in)


def test_task_scope_resets_bit_exactly_even_on_error() -> None:
    net = _random_net(3)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    task = ArcTask.from_pairs([([[1, 2]], [[2, 1]]), ([[3, 4]], [[4, 3]])], [[[5, 6]]], "t")
    with pytest.raises(RuntimeError, match="boom"):
        with task_scope(net):
            train(net, group_entries(demonstration_items(task)), TTTConfig(steps=5, lr=0.1), seed=0)
            assert any(not torch.equal(before[k], v) for k, v in net.state_dict().items())
            raise RuntimeError("boom")
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


def test_test_time_training_learns_a_recolouring_from_three_demonstrations() -> None:
    rng = np.random.default_rng(4)
    mapping = np.array([0, 2, 1, 4, 3, 6, 5, 8, 7, 9], dtype=np.int8)
    demos = []
    for _ in range(3):
        g = _grid(rng, 5, 5)
        demos.append((g, mapping[g]))
    test_in = _grid(rng, 6, 4)
    task = ArcTask.from_pairs(demos, [test_in], "recolour")
    net = CellNet(**SMALL, seed=0)
    with task_scope(net):
        hist = train(net, group_entries(demonstration_items(task)),
                     TTTConfig(steps=60, lr=1e-2, batch_queries=3, colour_lr_scale=30.0), seed=0)
        pred = predict(net, task, context="none")[0]
    assert hist["loss"][-1] < 0.1 * hist["loss"][0]
    assert np.array_equal(pred, mapping[test_in])


def test_checkpoints_fire_in_order_including_zero() -> None:
    net = CellNet(**SMALL, seed=0)
    task = ArcTask.from_pairs([([[1]], [[2]]), ([[3]], [[4]])], [[[1]]], "c")
    seen: list[int] = []
    with task_scope(net):
        train(net, group_entries(demonstration_items(task)), TTTConfig(steps=4), checkpoints=(0, 2, 4),
              on_checkpoint=seen.append)
    assert seen == [0, 2, 4]


def test_weights_round_trip_through_safetensors_bytes() -> None:
    net = _random_net(5)
    again = CellNet.from_bytes(net.to_bytes())
    assert again.config == net.config
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), again.state_dict().values(), strict=True))
    data = net.to_bytes()
    header = int.from_bytes(data[:8], "little")
    assert data[8:9] == b"{" and b'"config"' in data[8 : 8 + header]  # safetensors: JSON header, no pickle


def test_shape_rules_and_their_limits() -> None:
    same = [Example(np.zeros((2, 3), np.int8), np.ones((2, 3), np.int8))]
    assert infer_shape_rule(same) == ShapeRule()
    scaled = [Example(np.zeros((2, 3), np.int8), np.ones((6, 3), np.int8)),
              Example(np.zeros((1, 1), np.int8), np.ones((3, 1), np.int8))]
    assert infer_shape_rule(scaled) == ShapeRule("scale", 3, 1)
    mixed = [scaled[0], Example(np.zeros((1, 1), np.int8), np.ones((2, 1), np.int8))]
    assert infer_shape_rule(mixed) is None
    crop = [Example(np.zeros((4, 4), np.int8), np.ones((2, 2), np.int8))]
    assert infer_shape_rule(crop) is None
    with pytest.raises(ArcInputError, match="cannot express"):
        prepare([], np.zeros((2, 2), np.int8), np.zeros((3, 3), np.int8), ShapeRule())
    assert not ShapeRule("scale", 3, 3).fits(np.zeros((11, 2), np.int8))
