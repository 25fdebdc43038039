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
img{max-width:100%} code{background:#f5f5f7;padding:0 .2em}
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


def write_demo_report(path: Path, cfg: DemoConfig, log: StreamLog, summary: dict[str, Any]) -> Path:
    """The demo's report: headline numbers, the stream plot, every verdict with its evidence, the ledger."""
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
        events = ledger.log(ref="digits/global")
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
        log_rows = [
            [e.seq, time.strftime("%H:%M:%S", time.localtime(e.at)), e.type, e.actor, (e.to_version or "")[:12], e.message]
            for e in ledger.log(limit=200)
        ]
        counts = ledger.stats()
    sections = [
        f"<p>{summary['batches']} batches of {cfg.batch_size} real handwritten digits; accuracy on the shifted "
        f"segments:</p>{kpis}",
        section("The stream", plot),
        section(
            "Promotions: every verdict and its evidence",
            "<p>Each promotion compares the session's weights (candidate) with the live version (champion) on the "
            "labelled feedback of that session, item by item (exact McNemar test, 95% paired-bootstrap interval), "
            f"and requires the clean canary suite not to lose more than {100 * cfg.canary_tolerance:.0f} points.</p>"
            + table(["verdict", "suite", "n", "accuracy", "effect (points) [95% CI]", "p", "flips -/+", "canary", "reasons"],
                    verdict_rows, raw_columns={0, 1, 4, 5, 6}),
        ),
        section(
            "The ledger",
            f"<p>{counts['versions']} versions, {counts['changes']} changes, {counts['verdicts']} verdicts, "
            f"{counts['events']} events in <code>{esc(summary['ledger'])}</code>. Read it with "
            f"<code>lifelong log --ledger {esc(summary['ledger'])}</code>.</p>"
            + table(["#", "time", "event", "actor", "version", "message"], log_rows),
        ),
    ]
    path.write_text(page("lifelong demo: a classifier that adapts under controls", sections))
    return path
