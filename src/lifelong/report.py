"""HTML reports: one self-contained file (plots embedded) that a person can open and read.

>>> html = page("Title", [section("Intro", "<p>hello</p>")])
>>> html.startswith("<!doctype html>") and "hello" in html
True
"""

from __future__ import annotations

import base64
import html as _html
import io
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from lifelong.demo import DemoConfig, StreamLog

STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#1d1d1f}
h1{font-size:1.6em} h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #ddd;padding-bottom:.2em}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0} td,th{border:1px solid #ddd;padding:.3em .5em;text-align:left;vertical-align:top}
th{background:#f5f5f7} .ok{color:#0a7d32;font-weight:600} .no{color:#b3261e;font-weight:600}
.kpi{display:inline-block;margin:0 2em .5em 0} .kpi b{font-size:1.6em;display:block}
img{max-width:100%} code{background:#f5f5f7;padding:0 .2em} pre{white-space:pre-wrap;font-size:.85em}
"""


def esc(text: Any) -> str:
    """HTML-escape anything."""
    return _html.escape(str(text))


def figure_png(fig: Any) -> str:
    """A matplotlib figure as an <img> with embedded PNG data."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    return f'<img alt="plot" src="data:image/png;base64,{data}">'


def table(headers: list[str], rows: list[list[Any]], raw_columns: set[int] | None = None) -> str:
    """An HTML table; cells are escaped unless their column index is in ``raw_columns``."""
    raw_columns = raw_columns or set()
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{c if i in raw_columns else esc(c)}</td>" for i, c in enumerate(r)) + "</tr>"
        for r in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def section(title: str, body: str) -> str:
    """A titled section."""
    return f"<h2>{esc(title)}</h2>\n{body}"


def page(title: str, sections: list[str]) -> str:
    """A complete HTML document."""
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{esc(title)}</title><style>{STYLE}</style>"
        f"</head><body><h1>{esc(title)}</h1>\n" + "\n".join(sections) + "</body></html>"
    )


def _moving(values: list[float], k: int = 5) -> np.ndarray:
    v = np.asarray(values, dtype=float)
    if len(v) < k:
        return v
    return np.convolve(v, np.ones(k) / k, mode="same")


def stream_figure(cfg: DemoConfig, log: StreamLog) -> Any:
    """Accuracy over the stream, with segments, triggers, verdicts and rollbacks marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, ax2) = plt.subplots(2, 1, figsize=(11, 6.5), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    x = np.arange(len(log.segment))
    start = 0
    colours = ["#f2f2f2", "#e6eef8"]
    for si, seg in enumerate(cfg.segments):
        end = start + seg.batches
        for a in (ax, ax2):
            a.axvspan(start - 0.5, end - 0.5, color=colours[si % 2], zorder=0)
        label = seg.corruption if seg.corruption == "clean" else f"{seg.corruption} ({seg.severity})"
        ax.text((start + end) / 2, 1.02, label, ha="center", va="bottom", fontsize=8, transform=ax.get_xaxis_transform())
        start = end
    ax.plot(x, 100 * _moving(log.source_acc), label="no adaptation", color="#888", linestyle="--")
    ax.plot(x, 100 * _moving(log.tent_ungoverned_acc), label="Tent without controls", color="#d98c00", alpha=0.8)
    ax.plot(x, 100 * _moving(log.governed_acc), label="governed (session Tent + gate)", color="#1f5fbf", linewidth=2)
    for i, t in enumerate(log.triggers):
        for a in (ax, ax2):
            a.axvline(t, color="#7b3fbf", linestyle=":", linewidth=1.2, label="drift trigger" if (i == 0 and a is ax) else None)
    for p in log.promotions:
        ax.scatter([p["step"]], [103], marker="^" if p["accepted"] else "x", s=70,
                   color="#0a7d32" if p["accepted"] else "#b3261e", zorder=5, clip_on=False)
    for r in log.rollbacks:
        ax.scatter([r["step"]], [103], marker="v", s=70, color="#000", zorder=5, clip_on=False)
    ax.set_ylim(0, 100)
    ax.set_ylabel("accuracy (%), 5-batch mean")
    ax.legend(loc="lower left", fontsize=8)
    ax2.plot(x, log.entropy, color="#444", linewidth=1)
    ax2.set_ylabel("mean entropy")
    ax2.set_xlabel("batch (green ^ = promotion accepted, red x = rejected, black v = rollback)")
    fig.tight_layout()
    return fig


def digits_sections(cfg: DemoConfig, log: StreamLog, summary: dict[str, Any]) -> tuple[str, list[str]]:
    """The digits chapter: its headline numbers (HTML) and its sections (the stream plot, every verdict
    with its evidence). ``summary`` is what :func:`lifelong.demo.run_demo` returns."""
    import matplotlib.pyplot as plt

    from lifelong.control.ledger import Ledger

    acc = summary["accuracy_on_shifted_segments"]
    kpis = "".join(
        f"<span class='kpi'><b>{100 * v:.1f}%</b>{esc(k.replace('_', ' '))}</span>" for k, v in acc.items()
    )
    fig = stream_figure(cfg, log)
    plot = figure_png(fig)
    plt.close(fig)
    with Ledger.open(summary["ledger"], create=False) as ledger:
        events = ledger.log(ref=summary.get("ref", "digits/global"))
        verdict_rows = []
        for e in reversed(events):
            if e.verdict_id is None:
                continue
            v = ledger.verdict(e.verdict_id)
            t = v.target
            canary = "; ".join(
                f"{c.name}: {100 * c.champion_mean:.1f}% -> {100 * c.candidate_mean:.1f}% "
                f"({'held' if c.passed else 'regressed'})" for c in v.canaries
            )
            verdict_rows.append([
                "<span class='ok'>accepted</span>" if v.accepted else "<span class='no'>rejected</span>",
                esc(t.name if t else ""),
                f"{t.n}" if t else "",
                f"{100 * t.champion_mean:.1f}% -> {100 * t.candidate_mean:.1f}%" if t else "",
                f"{100 * t.effect:+.1f} [{100 * t.ci[0]:+.1f}, {100 * t.ci[1]:+.1f}]" if t else "",
                f"{t.p_value:.2g} ({t.test})" if t and t.p_value is not None else "",
                f"{len(t.negative_flips)} / {len(t.positive_flips)}" if t else "",
                esc(canary),
                esc("; ".join(v.reasons)),
            ])
    head = (f"<p>{summary['batches']} batches of {cfg.batch_size} real handwritten digits; accuracy on the shifted "
            f"segments:</p>{kpis}")
    sections = [
        section("The stream", plot),
        section(
            "Promotions: every verdict and its evidence",
            "<p>Each promotion compares the session's weights (candidate) with the live version (champion) on the "
            "labelled feedback of that session, item by item (exact McNemar test, 95% paired-bootstrap interval), "
            f"and requires the clean canary suite not to lose more than {100 * cfg.canary_tolerance:.0f} points.</p>"
            + table(["verdict", "suite", "n", "accuracy", "effect (points) [95% CI]", "p", "flips -/+", "canary", "reasons"],
                    verdict_rows, raw_columns={0, 1, 4, 5, 6}),
        ),
    ]
    return head, sections


def ledger_section(path: str, limit: int = 200, types: list[str] | None = None) -> str:
    """The ledger's counts and its newest events (of ``types``, default all) as a table."""
    from lifelong.control.ledger import Ledger

    with Ledger.open(path, create=False) as ledger:
        log_rows = [
            [e.seq, time.strftime("%H:%M:%S", time.localtime(e.at)), e.type, e.ref or "", e.actor,
             (e.to_version or "")[:12], e.message]
            for e in ledger.log(limit=limit, types=types)
        ]
        counts = ledger.stats()
    return section(
        "The ledger",
        f"<p>{counts['versions']} versions, {counts['changes']} changes, {counts['verdicts']} verdicts, "
        f"{counts['events']} events in <code>{esc(path)}</code>; below, the newest {limit}"
        + (f" of type {', '.join(types)}" if types else "") + ". Read it with "
        f"<code>lifelong log --ledger {esc(path)}</code>.</p>"
        + table(["#", "time", "event", "ref", "actor", "version", "message"], log_rows),
    )


def write_demo_report(path: Path, cfg: DemoConfig, log: StreamLog, summary: dict[str, Any]) -> Path:
    """The digits demo's report: headline numbers, the stream plot, every verdict with its evidence, the ledger."""
    head, sections = digits_sections(cfg, log, summary)
    path.write_text(page("lifelong demo: a classifier that adapts under controls",
                         [head, *sections, ledger_section(summary["ledger"])]))
    return path


def _verdict_html(v: dict[str, Any] | None) -> str:
    """One gate verdict (as :mod:`lifelong.story` records it) with its evidence."""
    if not v:
        return "<p>(no verdict)</p>"
    word = "<span class='ok'>accepted</span>" if v["accepted"] else "<span class='no'>rejected</span>"
    rows = []
    if v.get("suite") is not None:
        ci = v.get("ci") or [float("nan"), float("nan")]
        rows.append([f"target: {esc(v['suite'])}", v["n"], f"{100 * v['champion']:.0f}% -> {100 * v['candidate']:.0f}%",
                     f"{100 * v['effect']:+.0f} [{100 * ci[0]:+.0f}, {100 * ci[1]:+.0f}]",
                     "" if v.get("p") is None else f"{v['p']:.2g} ({esc(v.get('test'))})", ""])
    for c in v.get("canaries", []):
        rows.append([f"canary: {esc(c['name'])}", c["n"], f"{100 * c['champion']:.0f}% -> {100 * c['candidate']:.0f}%",
                     "", "", "<span class='ok'>held</span>" if c["passed"] else "<span class='no'>regressed</span>"])
    return (f"<p>Verdict: {word} &mdash; {esc('; '.join(v.get('reasons', [])))}</p>"
            + table(["suite", "n", "champion -> candidate", "effect (points) [95% CI]", "p", "canary"], rows,
                    raw_columns={0, 4, 5}))


def _qa_table(rows: list[dict[str, Any]], *, before: list[dict[str, Any]] | None = None) -> str:
    def mark(r: dict[str, Any]) -> str:
        return f"<span class='{'ok' if r['correct'] else 'no'}'>{esc(r['answer'])}</span>"

    if before is None:
        return table(["question", "answer"], [[r["question"], mark(r)] for r in rows], raw_columns={1})
    old = {r["question"]: r for r in before}
    return table(["question", "earlier answer", "later answer"],
                 [[r["question"], mark(old[r["question"]]) if r["question"] in old else "", mark(r)] for r in rows],
                 raw_columns={1, 2})


def _live_figure(live: list[dict[str, Any]], rollback: dict[str, Any] | None) -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 2.6))
    x = [r["turn"] for r in live]
    y = [1 if r["correct"] else 0 for r in live]
    ax.scatter(x, y, c=["#0a7d32" if v else "#b3261e" for v in y], s=30, zorder=3)
    trailing = [float(np.mean(y[max(0, i - 4): i + 1])) for i in range(len(y))]
    ax.plot(x, trailing, color="#1f5fbf", label="mean of the last 5 turns")
    if rollback is not None:
        ax.axvline(rollback["turn"] + 0.5, color="#000", linestyle=":", label="monitor: alarm and rollback")
    phases = [r.get("phase") for r in live]
    for i in range(1, len(phases)):
        if phases[i] != phases[i - 1]:
            ax.axvline(i - 0.5, color="#0a7d32", linestyle="--", label="taught again (gate accepted)")
    ax.set_yticks([0, 1], ["wrong", "right"])
    ax.set_xlabel("alice's live turns after the risky promotion, then after teaching again (each rated by her)")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return fig


def write_story_report(path: Path, cfg: DemoConfig, log: StreamLog, summary: dict[str, Any]) -> Path:
    """The story's report (:mod:`lifelong.story`): the claims, one section per chapter with its evidence,
    the ledger, and how to open the dashboard on the run."""
    import matplotlib.pyplot as plt

    from lifelong.story import short_verdict

    ch = summary["chapters"]
    claim_rows = [[c["chapter"], c["claim"], "<span class='ok'>yes</span>" if c["met"] else "<span class='no'>no</span>",
                   c["detail"]] for c in summary["claims"]]
    head, digit_secs = digits_sections(cfg, log, summary["digits"])
    mem, si, harm, rb = ch["memory"], ch["self_improvement"], ch["harmful"], ch["rollback"]
    digits = summary["digits"]
    n_acc = sum(p["accepted"] for p in digits["promotions"])
    chapter1 = (
        "<p>A digit classifier serves a stream whose corruption changes. Tent adapts it in a session scope that "
        f"starts from the live version; the Page-Hinkley trigger on the prediction entropy fired "
        f"{len(digits['triggers'])} times and each time reset the session to the live version. The gate was asked "
        f"{len(digits['promotions'])} times whether a session's weights beat the live version on that session's "
        f"labelled feedback without hurting the clean canary, and accepted {n_acc}. A rejected session's "
        "adaptation stays in its scope and is reset at the next shift: serving adapts, the live version moves "
        "only on evidence.</p>"
    )
    alice = mem["day1"]["alice"]
    chapter2 = (
        "<p>alice and bob use a support assistant. Its answers come from a deterministic retrieval-grounded "
        "responder (the memory line sharing most words with the question), not a language model, so every "
        "answer below is exact and repeatable. They correct wrong answers; each correction is memory of that "
        "session at once, and reaches the user's memory only through the gate when the session ends (target: "
        "the corrected questions, with and without the new items; canary: the verified FAQ).</p>"
        f"<p>alice's day-1 session: {alice['corrections']} corrections; the same session already answers "
        f"<i>{esc(mem['day1']['alice']['same_session'][0]['question'])}</i> with "
        f"<i>{esc(mem['day1']['alice']['same_session'][0]['answer'])}</i>.</p>"
        + _verdict_html(alice["verdict"])
        + "<p>A later session of alice (day 2), same questions:</p>"
        + _qa_table(mem["alice_later"], before=mem["alice_before"])
        + f"<p>bob, asking <i>{esc(mem['bob_later'][0]['question'])}</i> after his own session, gets "
        f"<i>{esc(mem['bob_later'][0]['answer'])}</i>: alice's memory is hers.</p>"
        + (f"<p>Credit assignment (<code>system.explain</code>):</p><pre>{esc(mem['explain']['summary'])}</pre>"
           if mem.get("explain") else "")
    )
    chapter3 = (
        "<p>A self-improvement round reads the feedback the system recorded and keeps the corrections that "
        f"several users agree on ({len(si['agreed'])} agreed; {si['skipped']['one_user']} taught by one user and "
        f"{si['skipped']['conflicting']} conflicting were left alone). It proposes them as shared facts (a "
        "playbook section) for the global memory. The gate scores the proposal on the questions those "
        "corrections were about, against the live global memory, with the FAQ as canary.</p>"
        + _verdict_html(si["verdict"])
        + "<p>carol never gave feedback; her answers before and after the round:</p>"
        + _qa_table(si["carol_after"], before=si["carol_before"])
    )
    chapter4 = (
        "<p>mallory's corrections contradict the verified FAQ. In her own session they are used at once (that "
        "is the session's scope), but her promotion is gated: her corrections do answer her own questions "
        "(the target improves), while the FAQ canary regresses, so the gate refuses them.</p>"
        + _verdict_html(harm["verdict"])
        + "<p>mallory's next session, after the refusal:</p>" + _qa_table(harm["after"])
    )
    fig = _live_figure(rb["live"], rb["rollback"])
    live_plot = figure_png(fig)
    plt.close(fig)
    rb_events = "".join(f"<li><b>{esc(e['type'])}</b>: {esc(e['message'])}</li>" for e in rb["events"])
    chapter5 = (
        "<p>alice's day-3 session teaches six more facts; one correction is over-general "
        "(it mentions every account topic). The gate checks each correction on its own question, so the "
        "promotion is accepted; the regression monitor then watches alice's ratings of answers that use it.</p>"
        + _verdict_html(rb["verdict"]) + live_plot
        + "<p>The rollback returns alice's memory to the version before that promotion: her earlier facts are "
        "answered right again, and the five good facts of the rolled-back promotion are gone with the bad one "
        "(red after the line): a monitor undoes a whole version. alice then teaches them again with one new "
        "fact, without the over-general item; "
        + esc(short_verdict(rb["retaught"]["verdict"]))
        + f"; her next {rb['retaught']['live_turns']} rated answers: {rb['retaught']['live_right']} right.</p>"
        + f"<ul>{rb_events}</ul>"
        + (f"<pre>{esc(rb['explain']['summary'])}</pre>" if rb.get("explain") else "")
    )
    timing_rows = [[k, f"{v['seconds']:.1f}", f"{v['cpu_seconds']:.1f}"] for k, v in summary["timings"].items()]
    dashboard = (
        "<p>Open the dashboard on this run (the story's refs live under <code>tenant/demo/</code>):</p>"
        f"<pre>{esc(summary['dashboard'])}</pre><p>then browse to http://127.0.0.1:8000/dashboard and enter the "
        "key it prints for tenant <code>demo</code>.</p>"
    )
    sections = [
        f"<p>One ledger, five chapters: test-time training, memory from feedback, a self-improvement round, a "
        f"harmful change refused, a live regression rolled back. Run in {summary['seconds']:.0f} s "
        f"({summary['cpu_seconds']:.0f} CPU s).</p>",
        table(["chapter", "claim", "met", "detail"], claim_rows, raw_columns={2}),
        section("1. Inputs shift; test-time training adapts in a session scope", chapter1 + head),
        *digit_secs,
        section("2. Feedback accumulates into memory that later sessions use", chapter2),
        section("3. A self-improvement round: a change the gate accepts on evidence", chapter3),
        section("4. A harmful change, rejected with its evidence", chapter4),
        section("5. A live regression after a promotion: the monitor rolls back", chapter5),
        section("Timings", table(["chapter", "seconds", "CPU seconds"], timing_rows)),
        section("The dashboard", dashboard),
        ledger_section(summary["ledger"], types=["commit", "reject", "rollback", "alarm", "trigger", "reset"]),
    ]
    path.write_text(page("lifelong demo: one system learning through every channel, under controls", sections))
    return path
