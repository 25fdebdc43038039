"""``lifelong bench lm-read``: a language model that learns while it reads, against long context.

Data (fixed rule, offline): Debian's ``python3.11-doc`` sources (English prose from Python's own
documentation). Test documents are the ``.rst.txt`` files under ``howto/``, ``tutorial/``, ``faq/`` and
``reference/`` with at least ``doc_tokens`` tokens, in sorted path order; each document is its first
``doc_tokens`` tokens. Hyper-parameters are tuned on a disjoint validation set: the first eligible files
under ``library/``.

For the last 512 tokens of each document, mean next-token loss (nats/token) under:
(a) a short window only (the 64 preceding tokens), (b) a window of the 512 preceding tokens,
(c) the whole preceding document in context, (d) reading TTT over the preceding document and then the
512-token window, (e) a cartridge trained on the preceding document and then the 512-token window.
Differences are paired over documents with 95% bootstrap intervals.

Cost: wall time per scored token after reading, and the growth of resident memory while scoring, as the
preceding context grows 1k, 2k, 4k, 8k tokens, for (c), (d) and (e); plus the one-off cost of reading and
of training the cartridge.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lifelong.bench.common import Progress, Target, quiet_from_env, torch_threads, write_results
from lifelong.control.budgets import Budget
from lifelong.control.governor import Governor
from lifelong.control.ledger import Ledger
from lifelong.control.stats import paired_bootstrap_ci
from lifelong.core.errors import LifelongError
from lifelong.models.lm import CausalLM
from lifelong.weights.cartridges import Cartridge, make_self_study, train_cartridge
from lifelong.weights.reading import Reader

NAME = "lm-read"
DOC_ROOT = Path("/usr/share/doc/python3.11/html/_sources")
TEST_DIRS = ("howto", "tutorial", "faq", "reference")
VALIDATION_DIR = "library"
TARGET_TOKENS = 512
SHORT_WINDOW = 64
WINDOW = 512
CONDITIONS = ("a_short_window", "b_window_512", "c_full_context", "d_reading_ttt", "e_cartridge")


@dataclass(frozen=True)
class Settings:
    """Everything that shapes the run (recorded in the JSON)."""

    model: str = "gemma3-270m"
    dtype: str = "bfloat16"
    doc_tokens: int = 4096
    n_docs: int = 20
    n_validation: int = 4
    chunk_tokens: int = 512
    train_window: int = 256
    reader_steps: tuple[int, ...] = (1, 2)
    reader_lrs: tuple[float, ...] = (3e-4, 1e-3, 3e-3)
    lora_rank: int = 16
    cartridge_tokens: int = 128
    cartridge_samples: int = 24
    cartridge_steps: int = 60
    cartridge_lr: float = 2e-2
    cost_contexts: tuple[int, ...] = (1024, 2048, 4096, 8192)
    cost_scored_tokens: int = 128


class MissingDataError(LifelongError, FileNotFoundError):
    """The offline documentation this benchmark reads is not installed."""


def eligible_files(root: Path, dirs: tuple[str, ...]) -> list[Path]:
    """``.rst.txt`` files under the given sub-folders, in sorted path order."""
    if not root.exists():
        raise MissingDataError(
            f"{root} is missing: install Debian's python3.11-doc (`make lm-data`, i.e. apt-get install python3.11-doc)"
        )
    return sorted(p for d in dirs for p in (root / d).rglob("*.rst.txt"))


def select_documents(lm: CausalLM, dirs: tuple[str, ...], n: int, doc_tokens: int,
                     root: Path = DOC_ROOT) -> list[tuple[str, list[int]]]:
    """The first ``n`` files (sorted path order) with at least ``doc_tokens`` tokens, each cut to its
    first ``doc_tokens`` tokens (BOS included)."""
    docs = []
    for path in eligible_files(root, dirs):
        ids = lm.encode(path.read_text(encoding="utf-8", errors="replace"))
        if len(ids) >= doc_tokens:
            docs.append((str(path.relative_to(root)), ids[:doc_tokens]))
        if len(docs) == n:
            break
    return docs


def nll(lm: CausalLM, context: list[int], target: list[int], past: Any = None) -> np.ndarray:
    """Per-token NLL of ``target`` after ``context`` (and an optional cache before both)."""
    with torch.no_grad():
        if past is None:
            return lm.token_nll(context + target, start=len(context)).float().numpy()
        return lm.token_nll(context + target, start=len(context), past=past).float().numpy()


def with_bos(lm: CausalLM, ids: list[int]) -> list[int]:
    """Prepend the BOS token when the model uses one and it is not there yet."""
    bos = lm.tokenizer.bos_token_id
    return [bos] + ids if lm.add_bos and bos is not None and (not ids or ids[0] != bos) else ids


def evaluate_document(lm: CausalLM, ids: list[int], reader: Reader, s: Settings, seed: int,
                      reader_steps: int, reader_lr: float) -> dict[str, Any]:
    """All five conditions on one document; returns mean losses and the one-off costs."""
    target, preceding = ids[-TARGET_TOKENS:], ids[1:-TARGET_TOKENS]
    out: dict[str, Any] = {}
    out["a_short_window"] = float(nll(lm, with_bos(lm, preceding[-SHORT_WINDOW:]), target).mean())
    out["b_window_512"] = float(nll(lm, with_bos(lm, preceding[-WINDOW:]), target).mean())
    out["c_full_context"] = float(nll(lm, with_bos(lm, preceding), target).mean())

    reader.reset()
    reader.budget = Budget(steps=reader_steps, lr=reader_lr, params=reader.budget.params, max_grad_norm=1.0)
    for g in reader.optimizer.param_groups:
        g["lr"] = reader_lr
    start = time.perf_counter()
    reader.read(lm.decode(preceding))
    out["reading_seconds"] = time.perf_counter() - start
    with torch.no_grad():
        out["d_reading_ttt"] = float(reader.score_ids(target, window=WINDOW).mean())
    out["reading_loss_by_chunk"] = list(reader.report.chunk_loss_before)
    reader.reset()

    start = time.perf_counter()
    cart = Cartridge.from_corpus(lm, with_bos(lm, preceding), p=s.cartridge_tokens)
    samples = make_self_study(lm, with_bos(lm, preceding), chunk_tokens=s.chunk_tokens, n=s.cartridge_samples,
                              response_tokens=48, seed=seed)
    report = train_cartridge(lm, cart, samples, steps=s.cartridge_steps, lr=s.cartridge_lr, seed=seed)
    out["cartridge_seconds"] = time.perf_counter() - start
    out["cartridge_loss_first_last"] = [float(np.mean(report.losses[:5])), float(np.mean(report.losses[-5:]))]
    with torch.no_grad():
        out["e_cartridge"] = float(nll(lm, preceding[-WINDOW:], target, past=cart.cache(lm)).mean())
    return out


def _peak_rss_reset() -> None:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM, the peak resident set size
    except OSError:
        pass


def _rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def measure_cost(lm: CausalLM, reader: Reader, long_ids: list[int], s: Settings, seed: int) -> dict[str, Any]:
    """Per-scored-token time and memory growth after reading, as the preceding context grows."""
    rows: dict[str, dict[str, dict[str, float]]] = {c: {} for c in ("c_full_context", "d_reading_ttt", "e_cartridge")}
    target = long_ids[-s.cost_scored_tokens:]
    for n in s.cost_contexts:
        preceding = long_ids[1 : 1 + n]
        # (c): reading = prefill the context into the cache; then score the target tokens with it.
        with torch.no_grad():
            _, cache = lm.forward(torch.tensor([with_bos(lm, preceding)]), None, use_cache=True)
            base = _rss_kib("VmRSS")
            _peak_rss_reset()
            t0 = time.perf_counter()
            lm.forward(torch.tensor([target]), cache, use_cache=True)
            dt = time.perf_counter() - t0
        rows["c_full_context"][str(n)] = {"ms_per_token": 1000 * dt / len(target),
                                          "memory_growth_mib": (_rss_kib("VmHWM") - base) / 1024}
        del cache
        # (d): reading happened; scoring uses the 512-token window and the adapted weights.
        reader.reset()
        reader.history = with_bos(lm, preceding)
        with torch.no_grad():
            base = _rss_kib("VmRSS")
            _peak_rss_reset()
            t0 = time.perf_counter()
            reader.score_ids(target, window=WINDOW)
            dt = time.perf_counter() - t0
        rows["d_reading_ttt"][str(n)] = {"ms_per_token": 1000 * dt / len(target),
                                         "memory_growth_mib": (_rss_kib("VmHWM") - base) / 1024}
        reader.reset()
        # (e): the cartridge's size does not depend on n; the window is the same 512 tokens.
        cart = Cartridge.from_corpus(lm, with_bos(lm, preceding), p=s.cartridge_tokens)
        with torch.no_grad():
            base = _rss_kib("VmRSS")
            _peak_rss_reset()
            t0 = time.perf_counter()
            nll(lm, preceding[-WINDOW:], target, past=cart.cache(lm))
            dt = time.perf_counter() - t0
        rows["e_cartridge"][str(n)] = {"ms_per_token": 1000 * dt / len(target),
                                       "memory_growth_mib": (_rss_kib("VmHWM") - base) / 1024}
    return rows


def kv_bytes(lm: CausalLM, tokens: int) -> int:
    """Key/value cache bytes for ``tokens`` tokens across all layers, in the model's dtype."""
    cfg = lm.model.config.get_text_config() if hasattr(lm.model.config, "get_text_config") else lm.model.config
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    kv_heads = getattr(cfg, "num_key_value_heads", cfg.num_attention_heads)
    return 2 * cfg.num_hidden_layers * kv_heads * head_dim * tokens * torch.finfo(lm.dtype).bits // 8


def run(out_dir: str | Path = "docs/results", *, seeds: tuple[int, ...] = (0,), quick: bool = False,
        quiet: bool | None = None, threads: int | None = 2, settings: Settings | None = None) -> dict[str, Any]:
    """Run the benchmark and write lm-read.md, lm-read.json and plots."""
    quiet = quiet_from_env(quiet)
    s = settings or Settings()
    if quick:
        s = Settings(model="tiny-random", dtype="float32", doc_tokens=1024, n_docs=3, n_validation=1, chunk_tokens=256,
                     train_window=128, reader_steps=(1,), reader_lrs=(1e-3,), cartridge_tokens=16, cartridge_samples=2,
                     cartridge_steps=3, cost_contexts=(256, 512), cost_scored_tokens=32)
    seed = seeds[0]
    started = time.time()
    torch.manual_seed(seed)
    with torch_threads(threads), Progress(quiet) as progress, _ledger() as ledger:
        progress.log(f"loading {s.model} ({s.dtype})...")
        lm = CausalLM.tiny_random(seed=seed) if s.model == "tiny-random" else CausalLM.load(s.model, dtype=s.dtype)
        if quick:
            docs = _synthetic_docs(lm, s.n_docs, s.doc_tokens, seed)
            val_docs = _synthetic_docs(lm, s.n_validation, s.doc_tokens, seed + 1)
            long_ids = _synthetic_docs(lm, 1, max(s.cost_contexts) + s.cost_scored_tokens + 2, seed + 2)[0][1]
        else:
            docs = select_documents(lm, TEST_DIRS, s.n_docs, s.doc_tokens)
            val_docs = select_documents(lm, (VALIDATION_DIR,), s.n_validation, s.doc_tokens)
            need = max(s.cost_contexts) + s.cost_scored_tokens + 1
            long_ids = next(ids for _, ids in select_documents(lm, (VALIDATION_DIR,), 200, need))
        governor = Governor(ledger, f"{lm.name}/reader")
        reader = Reader(lm, governor, adapter="lora", chunk_tokens=s.chunk_tokens, window=s.train_window,
                        lora_rank=s.lora_rank, max_tokens=10**6, seed=seed,
                        budget=Budget(steps=1, lr=1e-3, params=("*lora_*",), max_grad_norm=1.0))

        # Tune the reader's steps per chunk and learning rate on the validation documents only.
        grid = [(st, lr) for st in s.reader_steps for lr in s.reader_lrs]
        task = progress.add("tuning reading TTT on validation documents", len(grid) * len(val_docs))
        tuning: dict[str, float] = {}
        for st, lr in grid:
            gains = []
            for _, ids in val_docs:
                target, preceding = ids[-TARGET_TOKENS:], ids[1:-TARGET_TOKENS]
                base = float(nll(lm, with_bos(lm, preceding[-WINDOW:]), target).mean())
                reader.reset()
                reader.budget = Budget(steps=st, lr=lr, params=("*lora_*",), max_grad_norm=1.0)
                for g in reader.optimizer.param_groups:
                    g["lr"] = lr
                reader.read(lm.decode(preceding))
                with torch.no_grad():
                    gains.append(base - float(reader.score_ids(target, window=WINDOW).mean()))
                progress.advance(task)
            tuning[f"steps={st},lr={lr:g}"] = float(np.mean(gains))
        best = max(tuning, key=tuning.get)  # type: ignore[arg-type]
        best_steps, best_lr = int(best.split(",")[0].split("=")[1]), float(best.split("lr=")[1])
        reader.reset()

        task = progress.add("documents x conditions", len(docs))
        per_doc = {}
        for name, ids in docs:
            per_doc[name] = evaluate_document(lm, ids, reader, s, seed, best_steps, best_lr)
            progress.advance(task)
        progress.log("measuring cost against context length...")
        cost = measure_cost(lm, reader, long_ids, s, seed)
        kv_full = {str(n): kv_bytes(lm, n + WINDOW) for n in s.cost_contexts}
        kv_cart = kv_bytes(lm, s.cartridge_tokens + WINDOW)

    result = summarise(per_doc, cost, kv_full, kv_cart, s, tuning, best_steps, best_lr)
    targets = make_targets(result, s)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    plots = make_plots(result, s, out)
    config = {"settings": s.__dict__, "seed": seed, "quick": quick, "documents": list(per_doc),
              "validation_documents": [n for n, _ in val_docs], "torch_threads": threads,
              "self_study": "template seed prompts answered by the same model with the chunk in context"}
    write_results(NAME, out, markdown=render_markdown(result, s, plots), config=config, table=result, targets=targets,
                  started=started, packages=("torch", "transformers", "peft", "safetensors", "numpy"))
    return {"result": result, "targets": [t.to_dict() for t in targets]}


class _ledger:
    """A throwaway ledger for the run's governor (its events are not part of the results)."""

    def __enter__(self) -> Ledger:
        import tempfile

        self._dir = tempfile.TemporaryDirectory()
        self.ledger = Ledger.open(Path(self._dir.name) / "ledger.db")
        return self.ledger

    def __exit__(self, *exc: object) -> None:
        self.ledger.close()
        self._dir.cleanup()


def _synthetic_docs(lm: CausalLM, n: int, tokens: int, seed: int) -> list[tuple[str, list[int]]]:
    rng = np.random.default_rng(seed)
    words = ["alpha", "beta", "gamma", "delta", "kappa", "omega", "sigma", "theta"]
    out = []
    for i in range(n):
        text = " ".join(rng.choice(words, size=tokens))
        out.append((f"synthetic-{seed}-{i}", lm.encode(text)[:tokens]))
    return out


def summarise(per_doc, cost, kv_full, kv_cart, s, tuning, best_steps, best_lr) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """Means, paired differences with bootstrap intervals, gap closure, costs."""
    names = list(per_doc)
    loss = {c: np.array([per_doc[n][c] for n in names]) for c in CONDITIONS}
    means = {c: float(v.mean()) for c, v in loss.items()}

    def paired(a: str, b: str) -> dict[str, float]:
        diff = loss[a] - loss[b]
        lo, hi = paired_bootstrap_ci(diff, n_resamples=10_000, seed=0)
        return {"mean": float(diff.mean()), "ci": [lo, hi]}

    gap = loss["b_window_512"] - loss["c_full_context"]
    gain = loss["b_window_512"] - loss["d_reading_ttt"]
    rng = np.random.default_rng(0)
    closures = []
    for _ in range(10_000):
        idx = rng.integers(0, len(names), len(names))
        g = gap[idx].mean()
        closures.append(gain[idx].mean() / g if g > 0 else np.nan)
    closure = float(gain.mean() / gap.mean()) if gap.mean() > 0 else float("nan")
    return {
        "documents": names,
        "per_document": per_doc,
        "mean_loss": means,
        "d_minus_b": paired("d_reading_ttt", "b_window_512"),
        "e_minus_b": paired("e_cartridge", "b_window_512"),
        "c_minus_b": paired("c_full_context", "b_window_512"),
        "gap_closed_by_reading": {"mean": closure, "ci": [float(np.nanquantile(closures, 0.025)),
                                                          float(np.nanquantile(closures, 0.975))]},
        "reading_seconds_mean": float(np.mean([per_doc[n]["reading_seconds"] for n in names])),
        "cartridge_seconds_mean": float(np.mean([per_doc[n]["cartridge_seconds"] for n in names])),
        "cost": cost,
        "kv_bytes_full_context": kv_full,
        "kv_bytes_cartridge_plus_window": kv_cart,
        "tuning": tuning,
        "chosen": {"reader_steps": best_steps, "reader_lr": best_lr},
    }


def make_targets(r: dict[str, Any], s: Settings) -> list[Target]:
    """The issue's targets, computed from the run."""
    ctx = [str(n) for n in s.cost_contexts]
    lo, hi = ctx[0], ctx[-1]

    def ratio(cond: str) -> float:
        c = r["cost"][cond]
        return c[hi]["ms_per_token"] / c[lo]["ms_per_token"]

    kv_ratio = r["kv_bytes_full_context"][hi] / r["kv_bytes_cartridge_plus_window"]
    return [
        Target.check("reading TTT minus 512-window loss, upper end of the 95% interval (nats/token)",
                     r["d_minus_b"]["ci"][1], 0.0, "<", f"mean {r['d_minus_b']['mean']:+.4f}"),
        Target.check("share of the window-to-full-context gap closed by reading TTT", r["gap_closed_by_reading"]["mean"],
                     0.30, ">=", f"95% CI {r['gap_closed_by_reading']['ci']}"),
        Target.check(f"reading TTT per-token cost at {hi} vs {lo} context", ratio("d_reading_ttt"), 1.2, "<="),
        Target.check(f"cartridge per-token cost at {hi} vs {lo} context", ratio("e_cartridge"), 1.2, "<="),
        Target.check(f"full-context per-token cost at {hi} vs {lo} context (should grow)", ratio("c_full_context"), 1.2, ">",
                     f"KV memory of full context at {hi} / cartridge+window: {kv_ratio:.1f}x"),
    ]


def make_plots(r: dict[str, Any], s: Settings, out: Path) -> dict[str, str]:
    """Loss by condition (per document) and cost against context."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = {}
    fig, ax = plt.subplots(figsize=(7, 4))
    x = np.arange(len(CONDITIONS))
    for name in r["documents"]:
        ax.plot(x, [r["per_document"][name][c] for c in CONDITIONS], color="#bbb", linewidth=0.8)
    ax.plot(x, [r["mean_loss"][c] for c in CONDITIONS], color="#1f5fbf", marker="o", linewidth=2.5, label="mean")
    ax.set_xticks(x)
    ax.set_xticklabels(["short window", "512 window", "full context", "reading TTT", "cartridge"], fontsize=8)
    ax.set_ylabel("loss on the last 512 tokens (nats/token)")
    ax.legend()
    files["loss"] = f"{NAME}-loss.png"
    fig.tight_layout()
    fig.savefig(out / files["loss"], dpi=120)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 4))
    for cond, label in (("c_full_context", "full context"), ("d_reading_ttt", "reading TTT"), ("e_cartridge", "cartridge")):
        ctx = sorted(r["cost"][cond], key=int)
        ax.plot([int(c) for c in ctx], [r["cost"][cond][c]["ms_per_token"] for c in ctx], marker="o", label=label)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("preceding context (tokens)")
    ax.set_ylabel("ms per scored token after reading")
    ax.legend()
    files["cost"] = f"{NAME}-cost.png"
    fig.tight_layout()
    fig.savefig(out / files["cost"], dpi=120)
    plt.close(fig)
    return files


def render_markdown(r: dict[str, Any], s: Settings, plots: dict[str, str]) -> str:
    """The results page."""
    labels = {"a_short_window": "(a) 64-token window", "b_window_512": "(b) 512-token window",
              "c_full_context": "(c) whole preceding document in context", "d_reading_ttt": "(d) reading TTT + 512 window",
              "e_cartridge": f"(e) cartridge (p={s.cartridge_tokens}) + 512 window"}
    lines = [
        f"# {NAME}: learning while reading",
        "",
        f"Model: {s.model} ({s.dtype}), {len(r['documents'])} documents of {s.doc_tokens} tokens from Debian's "
        "python3.11-doc (howto, tutorial, faq, reference; the first eligible files in path order). Loss on each "
        "document's last 512 tokens.",
        "",
        "| condition | mean loss (nats/token) |",
        "|---|---|",
        *[f"| {labels[c]} | {r['mean_loss'][c]:.4f} |" for c in CONDITIONS],
        "",
        "Paired over documents (95% bootstrap intervals):",
        "",
        f"- reading TTT minus 512 window: {r['d_minus_b']['mean']:+.4f} [{r['d_minus_b']['ci'][0]:+.4f}, {r['d_minus_b']['ci'][1]:+.4f}]",
        f"- cartridge minus 512 window: {r['e_minus_b']['mean']:+.4f} [{r['e_minus_b']['ci'][0]:+.4f}, {r['e_minus_b']['ci'][1]:+.4f}]",
        f"- full context minus 512 window: {r['c_minus_b']['mean']:+.4f} [{r['c_minus_b']['ci'][0]:+.4f}, {r['c_minus_b']['ci'][1]:+.4f}]",
        f"- share of the (b)-(c) gap closed by reading: {r['gap_closed_by_reading']['mean']:.2f} "
        f"[{r['gap_closed_by_reading']['ci'][0]:.2f}, {r['gap_closed_by_reading']['ci'][1]:.2f}]",
        "",
        f"Reading TTT: LoRA r={s.lora_rank} on q/v projections, {r['chosen']['reader_steps']} AdamW step(s) per "
        f"{s.chunk_tokens}-token chunk at lr {r['chosen']['reader_lr']:g} (chosen on validation documents: "
        f"{r['tuning']}), conditioning on {s.train_window} preceding tokens, score-first. One-off cost "
        f"{r['reading_seconds_mean']:.1f} s per document. Cartridge: {s.cartridge_samples} self-study samples "
        f"(template prompts answered by the same model with the chunk in context), {s.cartridge_steps} Adam steps at "
        f"lr {s.cartridge_lr:g}, top-20 distillation; {r['cartridge_seconds_mean']:.1f} s per document.",
        "",
        f"![loss by condition]({plots['loss']})",
        "",
        "## Cost after reading",
        "",
        "| context | " + " | ".join(f"{c} ms/token" for c in ("full", "reading", "cartridge")) + " | "
        + " | ".join(f"{c} memory growth MiB" for c in ("full", "reading", "cartridge")) + " | full KV MiB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for n in [str(c) for c in s.cost_contexts]:
        row = [r["cost"][c][n] for c in ("c_full_context", "d_reading_ttt", "e_cartridge")]
        lines.append(f"| {n} | " + " | ".join(f"{x['ms_per_token']:.1f}" for x in row) + " | "
                     + " | ".join(f"{x['memory_growth_mib']:.0f}" for x in row)
                     + f" | {r['kv_bytes_full_context'][n] / 2**20:.1f} |")
    lines += [
        "",
        f"Cartridge + window KV: {r['kv_bytes_cartridge_plus_window'] / 2**20:.1f} MiB, whatever the context length.",
        "",
        f"![cost against context]({plots['cost']})",
    ]
    return "\n".join(lines)
