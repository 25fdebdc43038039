"""The ``lifelong`` command: run the demo and benchmarks, and read, compare and undo the ledger.

Every ledger command reads ``--ledger`` (default: ``$LIFELONG_LEDGER``, else the demo's
``runs/demo/ledger.db``), so right after ``make demo`` you can run ``lifelong log``. It is a SQLite path
or a ``postgresql://`` URL (a ledger shared by several hosts: ``lifelong log --ledger postgresql://host/ledger``).
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from lifelong.core.errors import LifelongError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help=(
        "lifelong: models that keep learning after deployment, under controls.\n\n"
        "Learners propose changes, the governor decides (triggers, budgets, a statistical gate, monitors), "
        "and the ledger records every version, verdict and rollback. Start with `lifelong demo`, then "
        "`lifelong log` to read what happened."
    ),
)
console = Console()
err_console = Console(stderr=True)

DEFAULT_LEDGER = "runs/demo/ledger.db"
LedgerOption = Annotated[
    str,
    typer.Option(
        "--ledger",
        "-l",
        envvar="LIFELONG_LEDGER",
        help="Path of the ledger file (SQLite), or a postgresql:// URL. Defaults to the one `lifelong demo` writes.",
    ),
]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars or tables; for scripts.")]

# name -> (module, one-line description); each module has run(out_dir, quick=..., quiet=...)
BENCHMARKS = {
    "ttt-digits": ("lifelong.bench.ttt_digits", "test-time adaptation (TTT, Tent, EATA, SAR) on corrupted digits"),
    "sar-stream": ("lifelong.bench.sar_stream", "why SAR (GroupNorm) trails the unadapted model on the long mixed digits stream"),
    "ttt-layers": ("lifelong.bench.ttt_layers", "TTT-Linear / TTT-MLP against attention on recall and real text"),
    "meta-init": ("lifelong.bench.meta_init", "meta-learned initialisations: TTT-E2E at tiny scale and MAML on sinusoids"),
    "discover": ("lifelong.bench.discover", "TTT-Discover vs evolution vs best-of-N on LABS at equal evaluator budget"),
    "loop-scale": ("lifelong.bench.loop_scale", "rollouts and verification per second: local vs Ray, 1 and 2 workers"),
    "self-improve": ("lifelong.bench.self_improve", "STaR and ReST-EM on multi-digit addition, gated every round"),
    "lm-read": ("lifelong.bench.lm_read", "reading TTT and Cartridges against long context on Python's documentation"),
    "forgetting": ("lifelong.bench.forgetting", "EWC, weight interpolation and replay on permuted and split digits"),
    "locomo": ("lifelong.bench.locomo", "LoCoMo long-term conversation memory: evidence recall@k and QA F1 (--data)"),
    "memory-scale": ("lifelong.bench.memory_scale", "memory store add/search throughput and latency at 10k-1M items vs Chroma"),
    "arc": ("lifelong.bench.arc", "task-level test-time training on ARC-AGI-1: init, TTT, leave-one-out + augmentation, voting"),
    "context-collapse": ("lifelong.bench.context_collapse", "delta curation vs iterative rewriting: 150 specifics over 10 rounds"),
    "rule-drift": ("lifelong.bench.rule_drift", "playbook vs no memory vs full history on a stream of drifting hidden rules"),
    "service": ("lifelong.bench.service", "the HTTP service under 50 concurrent clients: latency, throughput, no lost feedback"),
}


def _open(ledger: str):  # type: ignore[no-untyped-def]
    from lifelong.control.ledger import Ledger

    return Ledger.open(ledger, create=False)


def _fail(err: Exception) -> None:
    err_console.print(f"[bold red]error:[/] {err}")
    raise typer.Exit(1)


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="Folder for the ledger, the report and the summary.")] = Path("runs/demo"),
    quick: Annotated[bool, typer.Option(help="A short digits stream (for smoke tests).")] = False,
    digits_only: Annotated[bool, typer.Option("--digits-only", help="Only chapter 1: the digit classifier "
                                              "adapting to a shifting stream.")] = False,
    quiet: QuietOption = False,
) -> None:
    """Run the main job: one system learning through every channel under the governor, on one ledger.

    Chapter 1: a digit classifier adapts to a shifting stream with Tent in a session scope (drift trigger,
    resets, gated promotions). Chapters 2-5: a support assistant's memory learns from corrections (gated
    per user), a self-improvement round is accepted on evidence, a harmful change is refused, and a live
    regression is rolled back by the monitor. Writes OUT/ledger.db, OUT/report.html and OUT/summary.json,
    then prints the claims, where the report is and how to open the dashboard on the run.
    Offline; a few minutes on 2 cores.
    """
    if digits_only:
        _demo_digits(out, quick, quiet)
        return
    from lifelong.story import StoryConfig, run_story

    try:
        summary = run_story(out, StoryConfig.quick() if quick else StoryConfig(), quiet=quiet)
    except LifelongError as err:
        _fail(err)
        return
    if quiet:
        print(json.dumps({"claims": summary["claims"], "report": summary["report"], "ledger": summary["ledger"],
                          "seconds": summary["seconds"], "cpu_seconds": summary["cpu_seconds"]}))
        return
    acc = summary["digits"]["accuracy_on_shifted_segments"]
    console.print()
    table = Table(title="What happened (each claim checked on this run)")
    for col in ("chapter", "claim", "met", "detail"):
        table.add_column(col, overflow="fold")
    for c in summary["claims"]:
        table.add_row(c["chapter"], c["claim"], "[green]yes[/]" if c["met"] else "[red]no[/]", c["detail"])
    console.print(table)
    console.print("Chapter 1, accuracy on the shifted parts of the stream: " + ", ".join(
        f"{k.replace('_', ' ')} {100 * v:.1f}%" for k, v in acc.items()))
    console.print(f"Chapters 2-5: answers came from a {summary['responder']}.")
    console.print(f"\nTook {summary['seconds']:.0f} s ({summary['cpu_seconds']:.0f} CPU s).")
    console.print(f"Report: [bold]{summary['report']}[/]")
    console.print(f"Read the ledger: [bold]lifelong log --ledger {summary['ledger']}[/]   (show, diff, rollback too)")
    console.print(f"Dashboard on this run: [bold]{summary['dashboard']}[/]\n"
                  "  then open http://127.0.0.1:8000/dashboard and enter the key it prints for tenant demo.")


def _demo_digits(out: Path, quick: bool, quiet: bool) -> None:
    from lifelong.demo import DemoConfig, run_demo

    try:
        summary = run_demo(out, DemoConfig.quick() if quick else DemoConfig(), quiet=quiet)
    except LifelongError as err:
        _fail(err)
        return
    if quiet:
        print(json.dumps({k: summary[k] for k in ("accuracy_on_shifted_segments", "report", "ledger")}))
        return
    acc = summary["accuracy_on_shifted_segments"]
    console.print()
    console.print("[bold]Accuracy on the shifted parts of the stream[/]")
    for k, v in acc.items():
        console.print(f"  {k.replace('_', ' '):<24} {100 * v:5.1f}%")
    console.print(
        f"\n{len(summary['triggers'])} drift triggers, {len(summary['promotions'])} promotions "
        f"({sum(p['accepted'] for p in summary['promotions'])} accepted), {len(summary['rollbacks'])} rollbacks."
    )
    _print_log(summary["ledger"], ref=None, limit=25, types=None)
    console.print(f"\nReport: [bold]{summary['report']}[/]")
    console.print(f"Read the ledger: [bold]lifelong log --ledger {summary['ledger']}[/]   (show, diff, rollback too)")


@app.command()
def bench(
    name: Annotated[str, typer.Argument(help="Benchmark to run; `lifelong bench list` lists them.")],
    out: Annotated[Path, typer.Option(help="Where NAME.md, NAME.json and plots go.")] = Path("docs/results"),
    quick: Annotated[bool, typer.Option(help="A tiny configuration that only checks the pipeline runs.")] = False,
    seeds: Annotated[str | None, typer.Option(help="Comma-separated seeds (default: the benchmark's own).")] = None,
    data: Annotated[Path | None, typer.Option(help="Data file for benchmarks that read one (locomo: locomo10.json; "
                                              "default $LIFELONG_LOCOMO).")] = None,
    quiet: QuietOption = False,
) -> None:
    """Run a benchmark: measure a claim on real data and write its results table and plots."""
    if name == "list":
        for key, (_, desc) in BENCHMARKS.items():
            console.print(f"[bold]{key}[/]  {desc}")
        return
    if name not in BENCHMARKS:
        _fail(LifelongError(f"unknown benchmark {name!r}; available: {', '.join(BENCHMARKS)}"))
    module = importlib.import_module(BENCHMARKS[name][0])
    kwargs = {} if seeds is None else {"seeds": tuple(int(s) for s in seeds.split(",") if s.strip())}
    if data is not None:
        kwargs["data"] = data
    result = module.run(out, quick=quick, quiet=quiet, **kwargs)
    targets = result["targets"]
    if quiet:
        print(json.dumps(targets))
        return
    table = Table(title=f"{name}: targets")
    for col in ("target", "measured", "required", "status"):
        table.add_column(col)
    for t in targets:
        measured = "n/a" if t["measured"] is None else f"{t['measured']:.4g}"
        table.add_row(t["name"], measured, f"{t['comparison']} {t['target']}", "[green]met[/]" if t["met"] else "[red]missed[/]")
    console.print(table)
    console.print(f"Results: {out / (name + '.md')}")


def _print_log(ledger: str, ref: str | None, limit: int, types: list[str] | None) -> None:
    with _open(ledger) as led:
        events = led.log(ref=ref, limit=limit, types=types)
    from lifelong.control.ledger.postgres import redact

    table = Table(title=f"ledger {redact(ledger)}" + (f" (ref {ref})" if ref else ""), show_lines=False)
    for col in ("#", "time", "event", "ref", "version", "actor", "message"):
        table.add_column(col, overflow="fold")
    colours = {"commit": "green", "reject": "red", "rollback": "yellow", "trigger": "magenta", "reset": "cyan", "alarm": "red"}
    for e in events:
        c = colours.get(e.type, "white")
        table.add_row(
            str(e.seq),
            time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(e.at)),
            f"[{c}]{e.type}[/]",
            e.ref or "",
            (e.to_version or "")[:12],
            e.actor,
            e.message,
        )
    console.print(table)


@app.command()
def log(
    ledger: LedgerOption = DEFAULT_LEDGER,
    ref: Annotated[str | None, typer.Option(help="Only events of this ref (e.g. digits/global).")] = None,
    limit: Annotated[int, typer.Option(help="How many events, newest first.")] = 50,
    type: Annotated[list[str] | None, typer.Option("--type", help="Only these event types (repeatable).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON lines instead of a table.")] = False,
) -> None:
    """List the history: commits, rejections, rollbacks, triggers, resets and alarms, newest first."""
    try:
        if as_json:
            with _open(ledger) as led:
                for e in led.log(ref=ref, limit=limit, types=type):
                    print(json.dumps(e.to_dict()))
            return
        _print_log(ledger, ref, limit, type)
    except LifelongError as err:
        _fail(err)


@app.command()
def show(
    version: Annotated[str, typer.Argument(help="A version id, a unique prefix of one, or a ref name.")],
    ledger: LedgerOption = DEFAULT_LEDGER,
) -> None:
    """Show one version: its artifacts, which refs point at it, and the change and verdict that made it."""
    try:
        with _open(ledger) as led:
            v = led.resolve(version)
            refs = [name for name, vid in led.refs().items() if vid == v.id]
            console.print(f"[bold]version {v.id}[/]")
            if refs:
                console.print(f"live as: {', '.join(refs)}")
            if v.created_at:
                console.print(f"created: {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(v.created_at))}")
            if v.meta:
                console.print(f"meta: {json.dumps(dict(v.meta))}")
            table = Table(title="artifacts")
            for col in ("name", "type", "blob"):
                table.add_column(col)
            for name, ref in sorted(v.manifest.items()):
                table.add_row(name, ref.media_type.split("/")[-1], ref.hash[:12])
            console.print(table)
            for ch in led.changes_producing(v.id):
                console.print(
                    f"\n[bold]change {ch.id[:12]}[/] by {ch.learner} ({ch.kind}, {ch.scope} scope) on {ch.ref}, "
                    f"base {str(ch.base_version)[:12]}; cost {ch.cost}"
                )
                for vid, verdict in led.verdicts_for_change(ch.id):
                    colour = "green" if verdict.accepted else "red"
                    console.print(f"  verdict {vid[:12]}: [{colour}]{verdict.summary()}[/]")
                    for c in verdict.canaries:
                        console.print(
                            f"    canary {c.name}: {c.champion_mean:.3f} -> {c.candidate_mean:.3f} "
                            f"({'held' if c.passed else 'regressed'}, n={c.n})"
                        )
    except LifelongError as err:
        _fail(err)


@app.command()
def diff(
    a: Annotated[str, typer.Argument(help="The older version (id, prefix or ref).")],
    b: Annotated[str, typer.Argument(help="The newer version (id, prefix or ref).")],
    ledger: LedgerOption = DEFAULT_LEDGER,
    all_: Annotated[bool, typer.Option("--all", help="Also list artifacts that did not change.")] = False,
) -> None:
    """Compare two versions artifact by artifact: which tensors changed and by how much (L2 norm of the
    difference, relative to the old norm, largest element change); which records changed."""
    try:
        with _open(ledger) as led:
            rows = led.diff(a, b)
    except LifelongError as err:
        _fail(err)
        return
    table = Table(title=f"diff {a} -> {b}")
    for col in ("artifact", "status", "L2 change", "relative", "max |change|", "detail"):
        table.add_column(col)
    shown = 0
    for r in rows:
        if r.status == "same" and not all_:
            continue
        shown += 1
        fmt = lambda v: "" if v is None else f"{v:.4g}"  # noqa: E731
        table.add_row(r.name, r.status, fmt(r.l2), fmt(r.relative), fmt(r.max_abs), r.detail)
    console.print(table)
    same = sum(r.status == "same" for r in rows)
    console.print(f"{shown if not all_ else len(rows) - same} changed, {same} unchanged")


@app.command()
def rollback(
    version: Annotated[str | None, typer.Argument(help="Version to return to; default: the one before the last move.")] = None,
    ref: Annotated[str | None, typer.Option(help="The ref to move; needed when the ledger has several.")] = None,
    reason: Annotated[str, typer.Option(help="Why; recorded in the ledger.")] = "manual rollback",
    ledger: LedgerOption = DEFAULT_LEDGER,
) -> None:
    """Point a ref back at an earlier version. Only versions the ref has been at are allowed; the move is
    recorded with its reason, and the tensors restored are bit-identical to those committed."""
    try:
        with _open(ledger) as led:
            refs = led.refs()
            if ref is None:
                if len(refs) != 1:
                    raise LifelongError(f"this ledger has refs {sorted(refs)}; say which with --ref")
                ref = next(iter(refs))
            before = led.head(ref)
            after = led.rollback(ref, version, reason=reason, actor=os.environ.get("USER", "cli"))
        console.print(f"{ref}: {before.short_id} -> [bold]{after.short_id}[/] ({reason})")
    except LifelongError as err:
        _fail(err)


@app.command()
def checkout(
    version: Annotated[str, typer.Argument(help="Version id, prefix or ref.")],
    out: Annotated[Path, typer.Option(help="Where to write the tensors (.safetensors).")],
    ledger: LedgerOption = DEFAULT_LEDGER,
) -> None:
    """Write a version's tensors to a safetensors file, verified against their content hashes."""
    from safetensors.torch import save_file

    try:
        with _open(ledger) as led:
            tensors = led.checkout(version)
        out.parent.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(out))
        console.print(f"wrote {len(tensors)} tensors to {out}")
    except LifelongError as err:
        _fail(err)


@app.command()
def verify(ledger: LedgerOption = DEFAULT_LEDGER) -> None:
    """Check the whole ledger: every blob against its hash, every version's blobs, every ref's target."""
    try:
        with _open(ledger) as led:
            problems = led.verify()
            counts = led.stats()
    except LifelongError as err:
        _fail(err)
        return
    if problems:
        for p in problems:
            err_console.print(f"[red]{p}[/]")
        raise typer.Exit(1)
    console.print(f"ledger ok: {counts}")


@app.command()
def serve(
    data: Annotated[Path, typer.Option(help="Folder for ledger.db, memory.db and service.db.")] = Path("runs/service"),
    host: Annotated[str, typer.Option(help="Address to bind; 0.0.0.0 exposes the service to the network.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    backend: Annotated[str, typer.Option(help="Chat backend: embedded, openai, llamacpp or echo.")] = "embedded",
    model: Annotated[str | None, typer.Option(help="Embedded model name, remote model name, or GGUF path.")] = None,
    base_url: Annotated[str | None, typer.Option(help="Base URL of a remote OpenAI-compatible server.")] = None,
    add_key: Annotated[list[str] | None, typer.Option("--add-key", help="Create an API key for TENANT and print it (repeatable).")] = None,
    timeout: Annotated[float, typer.Option(help="Seconds a backend may take before a request gets 504.")] = 60.0,
    ledger: Annotated[str | None, typer.Option(help="The ledger's location instead of DATA/ledger.db: a "
                                                   "postgresql:// URL for instances sharing one history.")] = None,
    memory: Annotated[str | None, typer.Option(help="The memory store's location instead of DATA/memory.db: "
                                                   "a postgresql:// URL (a database apart from the ledger's).")] = None,
) -> None:
    """Serve the HTTP API (OpenAPI at /docs) and an OpenAI-compatible /v1/chat/completions.

    API keys are stored hashed; a new key is printed once. With no keys yet, one is made for tenant 'default'.
    """
    from lifelong.service.runner import serve_from_cli

    try:
        serve_from_cli(data, host=host, port=port, backend=backend, model=model, base_url=base_url,
                       add_keys=add_key or [], timeout=timeout, echo=console.print, ledger=ledger, memory=memory)
    except LifelongError as err:
        _fail(err)


def main() -> None:
    """Entry point of the ``lifelong`` script."""
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
