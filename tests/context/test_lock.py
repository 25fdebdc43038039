"""A database locked by another process (a real second process holding the write lock): writes fail
with a clear error after the lock timeout, nothing is lost, reads go on, and writes succeed once the
lock is released. On both backends."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from lifelong.context import Add, StoreLockedError, Update

HOLDER = """
import sys, time
from lifelong.context import open_store, HashingEmbedder
store = open_store(sys.argv[1], tenant="alice", embedder=HashingEmbedder(64))
with store.backend.write_lock("alice"):
    print("locked", flush=True)
    time.sleep(float(sys.argv[2]))
store.close()
"""


def test_locked_by_another_process(make_store: Any, location: str, tmp_path: Path) -> None:
    store = make_store(lock_timeout=0.5)
    store.apply([Add("On 429 wait 2 s", id="retry")])
    before = [i.to_dict() for i in store.items()]
    src = str(Path(__file__).resolve().parents[2] / "src")
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, location, "3"], stdout=subprocess.PIPE, text=True,
                            env={"PYTHONPATH": src, "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"})
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
        t0 = time.time()
        with pytest.raises(StoreLockedError, match="locked by another process") as err:
            store.apply([Update(id="retry", content="lost edit?"), Add("new", id="new")])
        assert 0.4 < time.time() - t0 < 3.0 and "nothing was written" in str(err.value)
        assert [i.to_dict() for i in store.items()] == before  # reads still work, nothing changed
        assert store.search("429")[0].item.id == "retry"
    finally:
        proc.wait(timeout=20)
    assert proc.returncode == 0
    store.apply([Update(id="retry", content="On 429 wait 2 s, then back off")])
    assert store.get("retry").version == 2 and "new" not in store
