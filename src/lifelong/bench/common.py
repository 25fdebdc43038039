"""What every benchmark shares: targets, the results files, environment capture and progress.

Every benchmark writes ``docs/results/NAME.md`` (tables and plots) and ``docs/results/NAME.json`` with
its configuration, the machine and package versions, the measured table, and a ``targets`` list whose
``met`` flags are computed from the run, never typed in.

>>> t = Target.check("tent gain at severity 5 (points)", measured=6.2, target=5.0, comparison=">=")
>>> t.met, t.to_dict()["comparison"]
(True, '>=')
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

_COMPARATORS = {
    ">=": lambda a, b: a >= b,
    ">": lambda a, b: a > b,
    "<=": lambda a, b: a <= b,
    "<": lambda a, b: a < b,
}


@dataclass(frozen=True)
class Target:
    """One target from an issue, with the measured value and whether it was met."""

    name: str
    measured: float | None
    target: float
    comparison: str
    met: bool
    note: str = ""

    @classmethod
    def check(cls, name: str, measured: float | None, target: float, comparison: str, note: str = "") -> Target:
        """Evaluate ``measured <comparison> target``; a missing measurement is never met."""
        if comparison not in _COMPARATORS:
            raise ValueError(f"comparison must be one of {sorted(_COMPARATORS)}, got {comparison!r}")
        if measured is not None and not math.isfinite(measured):
            measured = None  # JSON has no NaN; an undefined measurement is reported as missing, never met
        met = measured is not None and bool(_COMPARATORS[comparison](measured, target))
        return cls(name, measured, target, comparison, met, note)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form the results files use."""
        d = {"name": self.name, "measured": self.measured, "target": self.target,
             "comparison": self.comparison, "met": self.met}
        if self.note:
            d["note"] = self.note
        return d

    def line(self) -> str:
        """One Markdown table row."""
        m = "n/a" if self.measured is None else f"{self.measured:.4g}"
        return f"| {self.name} | {m} | {self.comparison} {self.target:g} | {'met' if self.met else '**missed**'} |"


def package_versions(names: Sequence[str]) -> dict[str, str | None]:
    """Installed versions of the named distributions (None when absent)."""
    out: dict[str, str | None] = {}
    for n in names:
        try:
            out[n] = metadata.version(n)
        except metadata.PackageNotFoundError:
            out[n] = None
    return out


def git_commit() -> str | None:
    """The commit of the working tree, with ``-dirty`` when it has uncommitted changes."""
    try:
        root = Path(__file__).resolve().parents[3]
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, check=True)
        return sha.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.CalledProcessError):
        return None


THREADS_ENV = "LIFELONG_THREADS"


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "cpu_count": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
    }
    try:
        import torch

        info["torch_threads"] = torch.get_num_threads()
    except ImportError:
        pass
    if os.environ.get(THREADS_ENV):
        info["threads_override"] = os.environ[THREADS_ENV]  # the run's torch threads came from the environment
    return info


def write_results(
    name: str,
    out_dir: str | os.PathLike[str],
    *,
    markdown: str,
    config: dict[str, Any],
    table: Any,
    targets: Sequence[Target],
    started: float,
    packages: Sequence[str] = ("torch", "numpy", "scipy", "scikit-learn", "river", "safetensors"),
    extra: dict[str, Any] | None = None,
) -> tuple[Path, Path]:
    """Write NAME.md and NAME.json; the Markdown gets the targets table and the provenance appended."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    elapsed = time.time() - started
    commit = git_commit()
    payload = {
        "name": name,
        "config": config,
        "machine": machine(),
        "packages": package_versions(packages),
        "commit": commit,
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "seconds": round(elapsed, 1),
        "table": table,
        "targets": [t.to_dict() for t in targets],
        **(extra or {}),
    }
    json_path = out / f"{name}.json"
    json_path.write_text(json.dumps(payload, indent=2, sort_keys=False, default=_json_default) + "\n")
    lines = [markdown.rstrip(), "", "## Targets", "", "| target | measured | required | status |",
             "|---|---|---|---|", *[t.line() for t in targets], ""]
    for t in targets:
        if t.note:
            lines.append(f"- *{t.name}*: {t.note}")
    lines += [
        "",
        "## Provenance",
        "",
        f"Produced by `lifelong bench {name}` in {elapsed / 60:.1f} min on {payload['machine']['cpu_count']} CPU cores "
        f"({payload['machine']['platform']}), commit `{commit}`. Configuration, seeds, package versions and the "
        f"full measured table are in [{name}.json]({name}.json).",
        "",
    ]
    md_path = out / f"{name}.md"
    md_path.write_text("\n".join(lines))
    return md_path, json_path


def _json_default(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


def save_figure(fig: Any, out: str | Path, name: str, dpi: int = 110) -> str:
    """Lay out, write ``out/name`` and close a matplotlib figure; returns ``name`` for the results page.

    >>> import tempfile, matplotlib
    >>> matplotlib.use("Agg")
    >>> import matplotlib.pyplot as plt
    >>> save_figure(plt.figure(), tempfile.mkdtemp(), "empty.png")
    'empty.png'
    """
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(Path(out) / name, dpi=dpi)
    plt.close(fig)
    return name


def quiet_from_env(quiet: bool | None) -> bool:
    """Quiet when asked, or when ``LIFELONG_QUIET=1``."""
    if quiet is not None:
        return quiet
    return os.environ.get("LIFELONG_QUIET", "") not in ("", "0")


class Progress:
    """A rich progress bar that disappears in quiet mode.

    >>> with Progress(quiet=True) as p:
    ...     task = p.add("work", total=3)
    ...     for _ in range(3):
    ...         p.advance(task)
    """

    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet
        self._progress: Any = None

    def __enter__(self) -> Progress:
        if not self.quiet:
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
            from rich.progress import Progress as RichProgress

            self._progress = RichProgress(
                TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                transient=False,
            )
            self._progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)

    def add(self, description: str, total: int) -> int:
        """Start a task bar."""
        return self._progress.add_task(description, total=total) if self._progress is not None else 0

    def advance(self, task: int, n: int = 1) -> None:
        """Advance a task bar."""
        if self._progress is not None:
            self._progress.advance(task, n)

    def log(self, message: str) -> None:
        """Print a line above the bars (nothing in quiet mode)."""
        if self._progress is not None:
            self._progress.console.print(message)


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Temporarily set torch's intra-op threads (benchmarks pin them so timings are comparable).

    ``LIFELONG_THREADS=N`` in the environment overrides ``n``: two small-model benchmarks can then share
    two cores, one thread each (the override is recorded in the results' ``machine`` block).

    >>> import torch
    >>> with torch_threads(1):
    ...     torch.get_num_threads()
    1
    """
    import torch

    if os.environ.get(THREADS_ENV):
        n = int(os.environ[THREADS_ENV])
    old = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)
