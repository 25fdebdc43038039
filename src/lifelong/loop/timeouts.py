"""Run a function with a wall-clock limit by running it in a forked child that can be killed.

An in-process call cannot be interrupted safely; a forked child can. Forking copies the caller, so
the function needs no pickling or importable module path (closures and lambdas work); only its
*result* crosses back, pickled. Use it for checks that may hang (custom verifiers, evaluation
stages). Forking a process that runs many threads can deadlock in rare cases (a lock held by another
thread at the moment of the fork); the child here only runs the function and reports.

>>> call_with_timeout(pow, (2, 10), timeout_s=10)
1024
>>> import time
>>> call_with_timeout(time.sleep, (30,), timeout_s=0.2)
Traceback (most recent call last):
...
TimeoutError: ran past 0.2s
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Sequence
from typing import Any

from lifelong.core.errors import LifelongError

__all__ = ["ChildCallError", "call_with_timeout"]


class ChildCallError(LifelongError, RuntimeError):
    """The function raised in the child (the message names the exception) or the child died.

    >>> try:
    ...     call_with_timeout(int, ("x",), timeout_s=10)
    ... except ChildCallError as err:
    ...     print(str(err).split(":")[0])
    ValueError
    """


def _child(conn: Any, fn: Callable[..., Any], args: Sequence[Any]) -> None:
    try:
        conn.send(("ok", fn(*args)))
    except BaseException as err:  # noqa: BLE001 - reported to the parent
        try:
            conn.send(("error", f"{type(err).__name__}: {err}"))
        except Exception:  # noqa: BLE001 - e.g. an unpicklable result; the parent sees EOF
            pass
    finally:
        conn.close()


def call_with_timeout(fn: Callable[..., Any], args: Sequence[Any] = (), *, timeout_s: float) -> Any:
    """``fn(*args)`` in a forked child; raises ``TimeoutError`` past ``timeout_s`` (the child is killed)
    and :class:`ChildCallError` when ``fn`` raised or the child died.

    >>> call_with_timeout(lambda a, b: a + b, (2, 3), timeout_s=10)
    5
    """
    ctx = multiprocessing.get_context("fork")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(child, fn, tuple(args)), daemon=True)
    proc.start()
    child.close()
    try:
        if not parent.poll(timeout_s):
            raise TimeoutError(f"ran past {timeout_s}s")
        kind, value = parent.recv()
    except EOFError:
        kind, value = "error", f"the child process died (exit code {proc.exitcode})"
    finally:
        if proc.is_alive():
            proc.kill()
        proc.join(1)
        parent.close()
    if kind == "error":
        raise ChildCallError(value)
    return value
