"""Fanning per-task work out: in this process, over local worker processes, or over Ray.

A minimal interface, kept inside :mod:`lifelong.arc` until the shared executor
(``lifelong.loop.executors``) exists: ``map_unordered(fn, items)`` yields ``(index, result)`` pairs as
the work finishes (so a progress bar can move), and ``map(fn, items)`` returns the results in order.
``fn`` must be picklable (a module-level function, or a ``functools.partial`` of one) for the process
and Ray executors. Each worker process pins torch to ``threads`` intra-op threads (1 by default), so
``workers`` processes use about ``workers`` cores and do not fight over them.

>>> SerialExecutor().map(abs, [-1, 2, -3])
[1, 2, 3]
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from typing import Any, Protocol, TypeVar, runtime_checkable

T = TypeVar("T")
R = TypeVar("R")


@runtime_checkable
class Executor(Protocol):
    """Anything that can run ``fn`` over ``items``.

    >>> isinstance(SerialExecutor(), Executor)
    True
    """

    def map_unordered(self, fn: Callable[[Any], Any], items: Sequence[Any]) -> Iterator[tuple[int, Any]]:
        """Yield ``(index, fn(items[index]))`` as each finishes."""
        ...

    def map(self, fn: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
        """All results, in the order of ``items``."""
        ...


class _OrderedMap:
    def map(self, fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
        out: list[Any] = [None] * len(items)
        for i, r in self.map_unordered(fn, items):  # type: ignore[attr-defined]
            out[i] = r
        return out


class SerialExecutor(_OrderedMap):
    """Runs everything in the calling process, in order (tests, debugging, one core).

    >>> list(SerialExecutor().map_unordered(str, [1, 2]))
    [(0, '1'), (1, '2')]
    """

    def __init__(self, threads: int | None = None) -> None:
        self.threads = threads

    def map_unordered(self, fn: Callable[[T], R], items: Sequence[T]) -> Iterator[tuple[int, R]]:
        if self.threads:
            _pin_threads(self.threads)
        for i, item in enumerate(items):
            yield i, fn(item)


def _pin_threads(threads: int) -> None:
    """Limit torch (and the BLAS libraries under numpy) to ``threads`` threads in this process.

    Through the environment when torch is not imported yet (a fresh worker: importing torch here would
    cost every worker seconds even for work that never uses it), directly when it is.
    """
    import sys

    os.environ["OMP_NUM_THREADS"] = str(threads)
    os.environ["MKL_NUM_THREADS"] = str(threads)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)


class LocalExecutor(_OrderedMap):
    """A pool of ``workers`` spawned processes (spawn, not fork: forking a process that already runs
    torch threads can deadlock), each with ``threads`` torch threads.

    >>> ex = LocalExecutor(workers=1)
    >>> ex.map(abs, [-4])
    [4]
    """

    def __init__(self, workers: int = 2, threads: int = 1) -> None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.workers = workers
        self.threads = threads

    def map_unordered(self, fn: Callable[[T], R], items: Sequence[T]) -> Iterator[tuple[int, R]]:
        import multiprocessing

        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(self.workers, mp_context=ctx, initializer=_pin_threads,
                                 initargs=(self.threads,)) as pool:
            pending = {pool.submit(fn, item): i for i, item in enumerate(items)}
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for fut in sorted(done, key=lambda f: pending[f]):
                    yield pending.pop(fut), fut.result()


class RayExecutor(_OrderedMap):
    """Ray tasks of ``threads`` CPUs each; connects to ``address``, or starts a local Ray with ``num_cpus``
    CPUs and shuts it down in :meth:`close` (or on leaving a ``with`` block). Install with ``pip install ray``.

    A local Ray binds to 127.0.0.1 only: Ray on Linux replaces a loopback ``node_ip_address`` by the
    machine's address unless ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` is set before ``import ray``, which
    this class does (when it imports Ray first), together with ``RAY_AUTH_MODE=disabled`` (no token file
    written to ``~/.ray``). Both are ``setdefault``: an explicit setting wins.

    >>> RayExecutor.close.__doc__.split()[0]   # (starting Ray takes seconds: see the tests)
    'Shut'
    """

    def __init__(self, address: str | None = None, num_cpus: int | None = None, threads: int = 1) -> None:
        if address is None:
            os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
            os.environ.setdefault("RAY_AUTH_MODE", "disabled")
        try:
            import ray
        except ImportError as err:
            raise ImportError("RayExecutor needs Ray: pip install ray (or use LocalExecutor)") from err
        self._ray = ray
        self.threads = threads
        self._started = False
        if not ray.is_initialized():
            if address is None:
                ray.init(num_cpus=num_cpus, include_dashboard=False, _node_ip_address="127.0.0.1",
                         configure_logging=False, log_to_driver=False)
            else:
                ray.init(address=address, configure_logging=False, log_to_driver=False)
            self._started = True

    def map_unordered(self, fn: Callable[[T], R], items: Sequence[T]) -> Iterator[tuple[int, R]]:
        ray = self._ray
        remote = ray.remote(num_cpus=self.threads)(_ray_call)
        refs = {remote.remote(fn, item, self.threads): i for i, item in enumerate(items)}
        while refs:
            done, _ = ray.wait(list(refs), num_returns=1)
            for ref in done:
                yield refs.pop(ref), ray.get(ref)

    def close(self) -> None:
        """Shut Ray down if this executor started it."""
        if self._started:
            self._ray.shutdown()
            self._started = False

    def __enter__(self) -> RayExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _ray_call(fn: Callable[[Any], Any], item: Any, threads: int) -> Any:
    _pin_threads(threads)
    return fn(item)


def make_executor(kind: str = "local", workers: int = 2, threads: int = 1) -> Executor:
    """``"serial"``, ``"local"`` (processes) or ``"ray"``.

    >>> type(make_executor("serial")).__name__
    'SerialExecutor'
    """
    if kind == "serial":
        return SerialExecutor(threads)
    if kind == "local":
        return LocalExecutor(workers, threads)
    if kind == "ray":
        return RayExecutor(num_cpus=workers, threads=threads)
    raise ValueError(f"executor kind must be 'serial', 'local' or 'ray', got {kind!r}")
