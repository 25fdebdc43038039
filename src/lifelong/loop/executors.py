"""Executors: run one function over many items, in order, with every item's error captured.

``Executor.map(fn, items)`` returns one :class:`TaskResult` per item, in item order, whatever order the
workers finish in. An exception inside ``fn`` becomes that item's ``error`` (its type and message),
never a crash of the whole batch; a worker process that dies, or a batch that overruns its deadline,
marks only the items it had not finished. A verifier or rollout therefore decides what an error
*scores*; the executor only reports it.

Three implementations share the same call:

- :class:`SerialExecutor`: in the calling process (debugging, doctests, tiny batches);
- :class:`LocalExecutor`: a process pool on this machine;
- :class:`RayExecutor`: Ray tasks, on a local cluster it starts (bound to 127.0.0.1) or on an existing
  cluster given by ``address`` (the same code path; an address that cannot be reached raises
  :class:`~lifelong.loop.errors.ExecutorUnavailableError` at once, and the other executors still work).

Determinism is the caller's half of the contract: give each item its own seed (see
:func:`lifelong.loop.seeding.derive_seed`) and any executor returns the same per-item values.

>>> with SerialExecutor() as ex:
...     results = ex.map(abs, [-2, 3, "x"])
>>> [r.value for r in results], results[2].error.split(":")[0]
([2, 3, None], 'TypeError')
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import socket
import time
import traceback
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any

from lifelong.loop.errors import ExecutorError, ExecutorUnavailableError

__all__ = ["Executor", "LocalExecutor", "RayExecutor", "SerialExecutor", "TaskResult", "make_executor", "run_chunk"]

_MAX_ERROR_CHARS = 2000  # an error message is evidence, not a log dump


@dataclass(frozen=True)
class TaskResult:
    """What one item produced: its value, or the error that stopped it, and how long it took.

    >>> TaskResult(0, value=4).ok, TaskResult(1, error="ValueError: bad").ok
    (True, False)
    """

    index: int
    value: Any = None
    error: str | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """True when ``fn`` returned normally."""
        return self.error is None

    def unwrap(self) -> Any:
        """The value, or :class:`~lifelong.loop.errors.ExecutorError` carrying the item's error.

        >>> TaskResult(0, value="fine").unwrap()
        'fine'
        """
        if self.error is not None:
            raise ExecutorError(f"item {self.index} failed: {self.error}")
        return self.value


def _describe(err: BaseException) -> str:
    """``Type: message`` plus the innermost frame, capped; enough to debug, small enough to store."""
    frames = traceback.extract_tb(err.__traceback__)
    where = f" (at {os.path.basename(frames[-1].filename)}:{frames[-1].lineno})" if frames else ""
    text = f"{type(err).__name__}: {err}{where}"
    return text if len(text) <= _MAX_ERROR_CHARS else text[: _MAX_ERROR_CHARS - 3] + "..."


def run_chunk(fn: Callable[[Any], Any], start: int, items: Sequence[Any]) -> list[TaskResult]:
    """Apply ``fn`` to each item, capturing every exception; the unit of work every executor ships.

    ``KeyboardInterrupt`` and ``SystemExit`` are captured too: a task calling ``sys.exit`` must not
    take a worker (or the caller, in the serial executor) down with it.

    >>> [r.value for r in run_chunk(len, 5, ["ab", "c"])], run_chunk(len, 5, ["ab"])[0].index
    ([2, 1], 5)
    """
    out = []
    for offset, item in enumerate(items):
        t0 = time.perf_counter()
        try:
            value = fn(item)
        except BaseException as err:  # noqa: BLE001 - capturing is this function's whole job
            out.append(TaskResult(start + offset, None, _describe(err), time.perf_counter() - t0))
        else:
            out.append(TaskResult(start + offset, value, None, time.perf_counter() - t0))
    return out


def _chunks(items: Sequence[Any], size: int) -> list[tuple[int, list[Any]]]:
    if size < 1:
        raise ExecutorError(f"chunksize must be >= 1, got {size}")
    return [(i, list(items[i : i + size])) for i in range(0, len(items), size)]


class Executor(ABC):
    """``map(fn, items) -> list[TaskResult]`` in item order; a context manager that releases workers.

    >>> issubclass(LocalExecutor, Executor) and issubclass(RayExecutor, Executor)
    True
    """

    name: str = "executor"
    workers: int = 1

    @abstractmethod
    def map(
        self, fn: Callable[[Any], Any], items: Iterable[Any], *, chunksize: int = 1, timeout: float | None = None
    ) -> list[TaskResult]:
        """Run ``fn`` on every item. ``chunksize`` items travel together (amortising per-task overhead);
        ``timeout`` (seconds) is a deadline for the whole call: unfinished items get ``error="timeout..."``."""

    def values(self, fn: Callable[[Any], Any], items: Iterable[Any], **kwargs: Any) -> list[Any]:
        """Like :meth:`map` but returns plain values and raises on the first failed item.

        >>> SerialExecutor().values(str.upper, ["a", "b"])
        ['A', 'B']
        """
        return [r.unwrap() for r in self.map(fn, items, **kwargs)]

    def close(self) -> None:  # noqa: B027 - optional: executors without workers have nothing to release
        """Release workers (idempotent)."""

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SerialExecutor(Executor):
    """Everything in the calling process, one item after another. ``timeout`` is checked between items
    (a running item cannot be interrupted in-process).

    >>> SerialExecutor().map(int, ["1", "one"])[1].error.startswith("ValueError")
    True
    """

    name = "serial"
    workers = 1

    def map(
        self, fn: Callable[[Any], Any], items: Iterable[Any], *, chunksize: int = 1, timeout: float | None = None
    ) -> list[TaskResult]:
        items = list(items)
        deadline = None if timeout is None else time.monotonic() + timeout
        out: list[TaskResult] = []
        for i, item in enumerate(items):
            if deadline is not None and time.monotonic() > deadline:
                out.extend(TaskResult(j, error=f"timeout: deadline of {timeout}s passed") for j in range(i, len(items)))
                break
            out.extend(run_chunk(fn, i, [item]))
        return out


def _init_worker(threads: int | None) -> None:
    """Pin math-library threads in a worker, so N workers on N cores do not oversubscribe them."""
    if threads is None:
        return
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(threads)
    import sys

    if "torch" in sys.modules:  # already imported (e.g. inherited by fork): set it directly
        sys.modules["torch"].set_num_threads(threads)


class LocalExecutor(Executor):
    """A process pool on this machine (``concurrent.futures.ProcessPoolExecutor``).

    ``context`` is the multiprocessing start method: ``"spawn"`` (the default) starts clean interpreters,
    which is safe with torch and threads but needs ``fn`` importable by module path (define it at module
    level); ``"fork"`` starts faster. ``threads_per_worker`` pins OpenMP/torch threads in each worker.
    The pool starts lazily on the first :meth:`map` and is reused until :meth:`close`.

    >>> with LocalExecutor(workers=1) as ex:
    ...     ex.values(abs, [-1, -2])
    [1, 2]
    """

    name = "local"

    def __init__(self, workers: int = 2, *, context: str = "spawn", threads_per_worker: int | None = 1) -> None:
        if workers < 1:
            raise ExecutorError(f"LocalExecutor.workers must be >= 1, got {workers}")
        if context not in multiprocessing.get_all_start_methods():
            raise ExecutorError(
                f"start method {context!r} is not available here; use one of {multiprocessing.get_all_start_methods()}"
            )
        self.workers = workers
        self.context = context
        self.threads_per_worker = threads_per_worker
        self._pool: ProcessPoolExecutor | None = None

    def _ensure_pool(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                max_workers=self.workers,
                mp_context=multiprocessing.get_context(self.context),
                initializer=_init_worker,
                initargs=(self.threads_per_worker,),
            )
        return self._pool

    def _kill_pool(self) -> None:
        """Stop the pool now, terminating busy workers (after a deadline or a crash)."""
        pool, self._pool = self._pool, None
        if pool is None:
            return
        # ProcessPoolExecutor cannot cancel running work; its worker processes are terminated directly.
        processes = list(getattr(pool, "_processes", {}).values())
        pool.shutdown(wait=False, cancel_futures=True)
        for p in processes:
            if p.is_alive():
                p.terminate()
        for p in processes:
            p.join(timeout=5)

    def map(
        self, fn: Callable[[Any], Any], items: Iterable[Any], *, chunksize: int = 1, timeout: float | None = None
    ) -> list[TaskResult]:
        items = list(items)
        if not items:
            return []
        try:
            pickle.dumps(fn)
        except Exception as err:  # noqa: BLE001 - any pickling failure has the same fix
            raise ExecutorError(
                f"cannot send {getattr(fn, '__qualname__', fn)!r} to worker processes ({type(err).__name__}: {err}); "
                "define it at module level (no lambdas or closures), or use functools.partial over one"
            ) from None
        pool = self._ensure_pool()
        futures = {pool.submit(run_chunk, fn, start, chunk): (start, len(chunk)) for start, chunk in _chunks(items, chunksize)}
        done, pending = wait(futures, timeout=timeout)
        results: list[TaskResult] = []
        broken = False
        for fut in done:
            start, n = futures[fut]
            try:
                results.extend(fut.result())
            except BrokenProcessPool as err:
                broken = True
                results.extend(TaskResult(start + k, error=f"worker died: {err}") for k in range(n))
            except Exception as err:  # noqa: BLE001 - e.g. an item that cannot be pickled
                results.extend(TaskResult(start + k, error=_describe(err)) for k in range(n))
        for fut in pending:
            start, n = futures[fut]
            results.extend(TaskResult(start + k, error=f"timeout: deadline of {timeout}s passed") for k in range(n))
        if pending or broken:
            self._kill_pool()  # a fresh pool next time; the stuck or dead workers are gone
        return sorted(results, key=lambda r: r.index)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


def _probe(address: str, timeout: float = 3.0) -> None:
    """Fail fast, with a clear message, when nothing listens at a cluster address (Ray itself would
    retry for a long time before giving up)."""
    target = address.split("://", 1)[-1]
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        raise ExecutorUnavailableError(
            f"Ray address {address!r} is not HOST:PORT (or ray://HOST:PORT); pass the head node's GCS address, "
            "e.g. '10.0.0.5:6379', or address=None to start a local cluster"
        )
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            pass
    except OSError as err:
        raise ExecutorUnavailableError(
            f"cannot reach a Ray cluster at {address!r} ({err.__class__.__name__}: {err}); check that the head node "
            "runs (`ray status` there) and the port is open, or use LocalExecutor, which needs no cluster"
        ) from None


class RayExecutor(Executor):
    """Ray tasks: a local cluster this object starts and stops, or an existing cluster at ``address``.

    With ``address=None`` a private local cluster is started (never one that another process on the
    machine started) with ``num_cpus`` CPUs, bound to 127.0.0.1, no dashboard, token auth off
    (``RAY_AUTH_MODE=disabled``), and shut down by :meth:`close`. With an address, the executor
    connects to that cluster and leaves it running on close. ``workers`` caps the tasks in flight,
    so 1 and 2 workers can be compared on the same cluster. When Ray is already initialised in this
    process, the executor uses that connection as it is (and does not shut it down).

    >>> with RayExecutor(address="127.0.0.1:1") as ex:   # nothing listens there
    ...     pass
    Traceback (most recent call last):
    ...
    lifelong.loop.errors.ExecutorUnavailableError: cannot reach a Ray cluster at '127.0.0.1:1' ...
    """

    name = "ray"

    def __init__(
        self,
        address: str | None = None,
        *,
        workers: int | None = None,
        num_cpus: int = 2,
        cpus_per_task: float = 1.0,
        init_kwargs: dict[str, Any] | None = None,
    ) -> None:
        if address is not None:
            _probe(address)
        try:
            import ray
        except ImportError:
            raise ExecutorUnavailableError("RayExecutor needs Ray: pip install ray (or use LocalExecutor)") from None
        self._ray = ray
        self.address = address
        self._owns_cluster = False
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
            saved = dict(os.environ)
            cluster_flag = None
            if address is None:
                cluster_flag = _loopback_only(ray)
                os.environ.setdefault("RAY_AUTH_MODE", "disabled")
                # "local" forces a new private cluster; None would join any cluster found on the machine.
                kwargs.update(address="local", num_cpus=num_cpus)
            else:
                kwargs = {"address": address, "log_to_driver": False}
            kwargs.update(init_kwargs or {})
            try:
                ray.init(**kwargs)
            except (ConnectionError, TimeoutError, RuntimeError) as err:
                raise ExecutorUnavailableError(f"Ray did not start or connect ({err}); LocalExecutor still works") from None
            finally:  # the cluster's processes have their settings; the caller's are left as they were
                os.environ.clear()
                os.environ.update(saved)
                if cluster_flag is not None:
                    _set_cluster_flag(cluster_flag)
            self._owns_cluster = address is None
        total = int(ray.cluster_resources().get("CPU", num_cpus))
        self.workers = workers or max(1, int(total // cpus_per_task))
        self._remote = ray.remote(num_cpus=cpus_per_task, max_retries=0)(run_chunk)

    def map(
        self, fn: Callable[[Any], Any], items: Iterable[Any], *, chunksize: int = 1, timeout: float | None = None
    ) -> list[TaskResult]:
        ray = self._ray
        items = list(items)
        if not items:
            return []
        fn_ref = ray.put(fn)  # shipped once, not once per task
        todo = _chunks(items, chunksize)
        deadline = None if timeout is None else time.monotonic() + timeout
        in_flight: dict[Any, tuple[int, int]] = {}
        results: list[TaskResult] = []
        while todo or in_flight:
            while todo and len(in_flight) < self.workers:
                start, chunk = todo.pop(0)
                in_flight[self._remote.remote(fn_ref, start, chunk)] = (start, len(chunk))
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready, _ = ray.wait(list(in_flight), num_returns=1, timeout=left)
            if not ready:  # the deadline passed
                for ref, (start, n) in in_flight.items():
                    ray.cancel(ref, force=True)
                    results.extend(TaskResult(start + k, error=f"timeout: deadline of {timeout}s passed") for k in range(n))
                for start, chunk in todo:
                    results.extend(TaskResult(start + k, error=f"timeout: deadline of {timeout}s passed")
                                   for k in range(len(chunk)))
                break
            for ref in ready:
                start, n = in_flight.pop(ref)
                try:
                    results.extend(ray.get(ref))
                except Exception as err:  # noqa: BLE001 - a dead worker, an unpicklable value...
                    results.extend(TaskResult(start + k, error=f"ray task failed: {_describe(err)}") for k in range(n))
        return sorted(results, key=lambda r: r.index)

    def close(self) -> None:
        if self._owns_cluster and self._ray.is_initialized():
            self._ray.shutdown()
        self._owns_cluster = False


def _set_cluster_flag(value: bool) -> bool:
    """Set Ray's "clusters enabled" flag; returns the previous value (True where it cannot be read)."""
    try:
        from ray._private import ray_constants
    except ImportError:  # a future Ray layout: the environment variable still applies to subprocesses
        return True
    old = bool(getattr(ray_constants, "ENABLE_RAY_CLUSTER", True))
    ray_constants.ENABLE_RAY_CLUSTER = value
    return old


def _loopback_only(ray: Any) -> bool:
    """Make a local cluster bind to 127.0.0.1; returns the flag's previous value. On Linux Ray advertises
    (and binds) the machine's own address; it keeps to loopback only when "clusters" are disabled, as on
    macOS. The flag is read where addresses are resolved, so setting it on the module works even after
    ``import ray``; it is restored once the cluster is up, so a later connection to a real cluster
    advertises the real address."""
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    return _set_cluster_flag(False)


def make_executor(kind: str = "local", **kwargs: Any) -> Executor:
    """Build an executor by name: ``"serial"``, ``"local"`` or ``"ray"``.

    >>> make_executor("serial").name
    'serial'
    """
    kinds: dict[str, Callable[..., Executor]] = {"serial": SerialExecutor, "local": LocalExecutor, "ray": RayExecutor}
    if kind not in kinds:
        raise ExecutorError(f"unknown executor {kind!r}; use one of {sorted(kinds)}")
    return kinds[kind](**kwargs)
