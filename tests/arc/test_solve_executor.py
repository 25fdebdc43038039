"""The per-task pipeline: answers never reach the solver, unexpressible and single-demonstration tasks are
handled as documented, and fanning out over processes (or Ray) gives the same attempts as running serially."""

from __future__ import annotations

import functools
import importlib.util
import os

import numpy as np
import pytest

from lifelong.arc.executor import LocalExecutor, SerialExecutor, make_executor
from lifelong.arc.grids import ArcTask
from lifelong.arc.model import CellNet
from lifelong.arc.solve import METHODS, SolverConfig, solve_task, task_seed
from lifelong.arc.ttt import TTTConfig

INIT = CellNet(width=8, depth=1, dilations=(1,), ctx_width=8, task_dim=8, seed=0).to_bytes()
CFG = SolverConfig(ttt=TTTConfig(steps=3, batch_queries=4), checkpoints=(0, 2), colour_perms=1, cap=20)


def _task(task_id: str, answer: list[list[int]], n: int = 3) -> ArcTask:
    rng = np.random.default_rng(0)
    demos = [(g, (g + 1) % 10) for g in (rng.integers(0, 10, (3, 4)) for _ in range(n))]
    return ArcTask.from_pairs(demos, [([[1, 2, 3, 4]], answer)], task_id)


def test_attempts_do_not_depend_on_the_hidden_answer() -> None:
    a = solve_task(_task("t", [[2, 3, 4, 5]]), INIT, CFG, seed=0)
    b = solve_task(_task("t", [[9, 9, 9, 9]]), INIT, CFG, seed=0)
    assert a["attempts"] == b["attempts"]
    assert set(a["attempts"]) == set(METHODS)
    assert sorted(a["curves"]["ttt-loo-aug"]) == [0, 2, 3]  # checkpoints plus the final step
    assert all(len(att) <= 2 for att in a["attempts"]["ttt-loo-aug-vote"])
    assert a["info"]["ttt-loo-aug"]["items"] <= 20  # the cap


def test_a_task_the_model_cannot_express_gets_no_attempt_and_a_note() -> None:
    crop = ArcTask.from_pairs([([[1, 2], [3, 4]], [[1]]), ([[5, 6], [7, 8]], [[5]])], [[[1, 1], [1, 1]]], "crop")
    r = solve_task(crop, INIT, CFG)
    assert r["expressible"] is False and "cannot express" in r["notes"][0]
    assert all(att == [[]] for att in r["attempts"].values())


def test_a_single_demonstration_falls_back_and_the_result_says_so() -> None:
    r = solve_task(_task("one", [[2, 3, 4, 5]], n=1), INIT, CFG)
    assert any("single demonstration" in n for n in r["notes"])
    assert r["attempts"]["ttt-loo-aug-vote"][0]  # it still answers


def test_attempts_do_not_depend_on_scheduling_order() -> None:
    tasks = [_task("p1", [[0]]), _task("p2", [[0]])]
    job = functools.partial(solve_task, init=INIT, config=CFG, seed=1)
    forward = SerialExecutor().map(job, tasks)
    backward = SerialExecutor().map(job, tasks[::-1])[::-1]
    assert [r["attempts"] for r in forward] == [r["attempts"] for r in backward]
    assert task_seed(1, "p1") != task_seed(1, "p2")


def test_local_processes_return_results_in_order() -> None:
    # a torch-free function keeps the spawned workers cheap; solve_task is pickled the same way
    assert LocalExecutor(workers=2).map(abs, [-3, 1, -2, 5]) == [3, 1, 2, 5]
    assert sorted(i for i, _ in LocalExecutor(workers=2).map_unordered(abs, [-1, -2, -3])) == [0, 1, 2]
    with pytest.raises(ValueError, match="executor kind"):
        make_executor("threads")
    with pytest.raises(ValueError, match="workers"):
        LocalExecutor(workers=0)


@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="ray is optional (pip install ray)")
def test_ray_executor_on_loopback_is_shut_down_after() -> None:
    from lifelong.arc.executor import RayExecutor

    ex_env = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
    os.environ.setdefault(ex_env, "0")  # before `import ray`: keeps a local Ray on loopback
    import ray

    assert os.environ.get("RAY_ADDRESS") is None  # never join a cluster someone else started
    with RayExecutor(num_cpus=1) as ex:
        assert os.environ["RAY_AUTH_MODE"] == "disabled"
        assert ex.map(abs, [-1, 2, -3]) == [1, 2, 3]
        assert {n["NodeManagerAddress"] for n in ray.nodes()} == {"127.0.0.1"}
    assert not ray.is_initialized()
