"""Executors: ordered results, per-item errors, deadlines, identical tables on local and Ray, clear errors
when a cluster cannot be reached.

Ray runs as a private local cluster bound to 127.0.0.1 (2 CPUs, no dashboard, token auth off), started
once for this module and shut down at its end.
"""

from __future__ import annotations

import socket
import subprocess
from functools import partial

import pytest

from lifelong.loop.errors import ExecutorError, ExecutorUnavailableError
from lifelong.loop.executors import LocalExecutor, RayExecutor, SerialExecutor, make_executor
from lifelong.loop.rollouts import sample_parallel
from lifelong.loop.workloads import checked_sqrt, scripted_sampler, seeded_draw, sleep_for

ITEMS = [(7, i) for i in range(12)]


@pytest.fixture(scope="module")
def local():
    with LocalExecutor(workers=2) as ex:
        yield ex


@pytest.fixture(scope="module")
def ray_executor():
    pytest.importorskip("ray")
    ex = RayExecutor(num_cpus=2)
    yield ex
    ex.close()
    import ray

    assert not ray.is_initialized()


def test_serial_captures_errors_in_order() -> None:
    res = SerialExecutor().map(checked_sqrt, [4.0, -1.0, 9.0])
    assert [r.index for r in res] == [0, 1, 2]
    assert [r.value for r in res] == [2.0, None, 3.0]
    assert res[1].error.startswith("ValueError: negative input")
    with pytest.raises(ExecutorError, match="item 1 failed"):
        SerialExecutor().values(checked_sqrt, [4.0, -1.0])


def test_local_executor_orders_results_and_captures_errors(local: LocalExecutor) -> None:
    res = local.map(checked_sqrt, [16.0, -4.0, 25.0, 0.0], chunksize=3)
    assert [r.value for r in res] == [4.0, None, 5.0, 0.0] and not res[1].ok


def test_local_executor_refuses_unpicklable_functions(local: LocalExecutor) -> None:
    with pytest.raises(ExecutorError, match="module level"):
        local.map(lambda x: x, [1])


def test_local_deadline_marks_unfinished_items_and_recovers(local: LocalExecutor) -> None:
    res = local.map(sleep_for, [0.0, 30.0, 30.0], timeout=2.0)
    assert res[0].ok and all(r.error.startswith("timeout") for r in res[1:])
    assert local.values(checked_sqrt, [9.0]) == [3.0]  # a fresh pool after the stuck workers were killed


def test_equal_seeds_give_identical_tables_on_every_executor(local: LocalExecutor, ray_executor: RayExecutor) -> None:
    serial = SerialExecutor().values(seeded_draw, ITEMS)
    assert local.values(seeded_draw, ITEMS, chunksize=5) == serial
    assert ray_executor.values(seeded_draw, ITEMS, chunksize=3) == serial
    assert SerialExecutor().values(seeded_draw, [(8, i) for i in range(12)]) != serial


def test_ray_captures_errors_and_deadlines(ray_executor: RayExecutor) -> None:
    res = ray_executor.map(checked_sqrt, [1.0, -1.0, 4.0])
    assert [r.value for r in res] == [1.0, None, 2.0] and "negative input" in res[1].error
    slow = ray_executor.map(sleep_for, [0.0, 60.0], timeout=3.0)
    assert slow[0].ok and slow[1].error.startswith("timeout")


def test_ray_cluster_is_bound_to_loopback(ray_executor: RayExecutor) -> None:
    import ray

    gcs = ray.get_runtime_context().gcs_address
    assert gcs.startswith("127.0.0.1:")
    listening = subprocess.run(["ss", "-ltn"], capture_output=True, text=True).stdout if _has("ss") else ""
    port = gcs.rsplit(":", 1)[1]
    for line in listening.splitlines():
        if f":{port} " in line:
            assert "127.0.0.1" in line


def test_rollouts_on_ray_match_local(local: LocalExecutor, ray_executor: RayExecutor) -> None:
    # A scripted backend keeps torch out of the workers (language-model rollouts on executors are in the
    # loop-scale benchmark and, in process, in test_rollouts.py).
    factory = partial(scripted_sampler, "4")
    a = sample_parallel(local, factory, ["ab", "cd"], n=2, seed=3, chunk=2)
    b = sample_parallel(ray_executor, factory, ["ab", "cd"], n=2, seed=3, chunk=2)
    assert [(r.prompt_id, r.sample, r.seed, r.text) for r in a] == [(r.prompt_id, r.sample, r.seed, r.text) for r in b]
    assert all(r.ok for r in a)


def test_unreachable_ray_cluster_is_a_clear_error_and_local_still_works() -> None:
    with socket.socket() as s:  # a port with nothing listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ExecutorUnavailableError, match="cannot reach a Ray cluster"):
        RayExecutor(address=f"127.0.0.1:{port}")
    with pytest.raises(ExecutorUnavailableError, match="HOST:PORT"):
        RayExecutor(address="not-an-address")
    assert SerialExecutor().values(checked_sqrt, [4.0]) == [2.0]
    with LocalExecutor(workers=1) as ex:
        assert ex.values(checked_sqrt, [4.0]) == [2.0]


def test_make_executor_names() -> None:
    assert make_executor("serial").name == "serial"
    with pytest.raises(ExecutorError):
        make_executor("slurm")


def _has(cmd: str) -> bool:
    import shutil

    return shutil.which(cmd) is not None
