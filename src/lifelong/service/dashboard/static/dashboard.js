// The lifelong dashboard: vanilla JavaScript over the service's JSON API, nothing loaded from elsewhere.
// The API key lives in this tab's sessionStorage only. All text from the API goes into the page as text
// nodes (never as HTML), so memory contents and messages cannot inject markup.
"use strict";
(() => {
  const KEY = "lifelong.apiKey";
  const SVGNS = "http://www.w3.org/2000/svg";
  const EVENT_TYPES = ["commit", "reject", "rollback", "alarm", "trigger", "reset", "note"];
  const DEFAULT_TYPES = EVENT_TYPES.filter((t) => t !== "note");  // notes (feedback, signals, curves) on request
  const COLORS = { accept: "#1a7f4b", reject: "#c2410c", champion: "#6b7280", rollback: "#7c3aed",
    alarm: "#b91c1c", trigger: "#b45309", accent: "#2563eb" };
  const PALETTE = ["#2563eb", "#c2410c", "#1a7f4b", "#7c3aed", "#b45309", "#0e7490", "#be185d", "#4b5563"];
  const state = { refs: {}, events: [], limit: 300, types: new Set(DEFAULT_TYPES), ref: "", knownRefs: new Set(), loads: 0, selected: null,
    memOffset: 0, memLimit: 25, tab: "timeline", pending: null };
  const $ = (id) => document.getElementById(id);

  // ------------------------------------------------------------------ DOM helpers
  function build(ns, tag, attrs, kids) {
    const node = ns ? document.createElementNS(ns, tag) : document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "text") node.textContent = String(v);
      else if (k === "class") node.setAttribute("class", v);
      else if (k === "dataset") Object.assign(node.dataset, v);
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v === true ? "" : String(v));
    }
    for (const kid of kids.flat(Infinity)) {
      if (kid === null || kid === undefined || kid === false) continue;
      node.appendChild(kid instanceof Node ? kid : document.createTextNode(String(kid)));
    }
    return node;
  }
  const el = (tag, attrs, ...kids) => build(null, tag, attrs, kids);
  const svg = (tag, attrs, ...kids) => build(SVGNS, tag, attrs, kids);
  const short = (id) => (id ? String(id).slice(0, 10) : "none");
  const num = (x) => typeof x === "number" && Number.isFinite(x);
  const fmt = (x, d = 3) => (num(x) ? x.toFixed(d) : "n/a");
  const signed = (x, d = 3) => (num(x) ? (x >= 0 ? "+" : "") + x.toFixed(d) : "n/a");
  const pad2 = (n) => String(n).padStart(2, "0");
  function when(at) {
    const d = new Date(at * 1000);
    return `${d.getFullYear()}-${pad2(d.getMonth() + 1)}-${pad2(d.getDate())} ${pad2(d.getHours())}:${pad2(d.getMinutes())}:${pad2(d.getSeconds())}`;
  }
  // A time label as precise as the span of the axis needs.
  function clock(at, span) {
    const d = new Date(at * 1000);
    const hm = `${pad2(d.getHours())}:${pad2(d.getMinutes())}`;
    if (span > 2 * 86400) return `${d.getMonth() + 1}/${d.getDate()} ${hm}`;
    if (span > 600) return hm;
    const hms = `${hm}:${pad2(d.getSeconds())}`;
    return span > 5 ? hms : `${hms}.${String(d.getMilliseconds()).padStart(3, "0")}`;
  }
  function kv(pairs) {
    return el("dl", { class: "kv" }, pairs.filter((p) => p).map(([k, v]) => [el("dt", { text: k }), el("dd", {}, v)]));
  }
  function badge(text, cls) { return el("span", { class: "badge " + (cls || text), text }); }
  function setStatus(message, kind) {
    const s = $("status");
    s.textContent = message || "";
    s.className = "status " + (kind || "ok");
  }

  // ------------------------------------------------------------------ API
  async function api(path, options) {
    const opts = options || {};
    const headers = { Accept: "application/json" };
    if (opts.body) headers["Content-Type"] = "application/json";
    const key = sessionStorage.getItem(KEY);
    if (key) headers.Authorization = "Bearer " + key;
    const response = await fetch(path, { method: opts.method || "GET", body: opts.body, headers });
    let body = null;
    try { body = await response.json(); } catch (_) { body = null; }
    if (!response.ok) {
      const message = body && body.error ? body.error.message : `HTTP ${response.status}`;
      const err = new Error(message);
      err.status = response.status;
      throw err;
    }
    return body;
  }
  const qs = (params) => new URLSearchParams(params).toString();

  async function guarded(what, fn) {
    try {
      return await fn();
    } catch (err) {
      if (err.status === 401) {
        sessionStorage.removeItem(KEY);
        showConnected(false);
        setStatus("The API key was refused: " + err.message, "error");
      } else {
        setStatus(`${what} failed: ${err.message}`, "error");
      }
      return undefined;
    }
  }

  // ------------------------------------------------------------------ connection and tabs
  function showConnected(on) {
    $("forget").hidden = !on;
    $("api-key").hidden = on;
    $("connect").hidden = on;
    if (!on) { $("refs-bar").replaceChildren(); }
  }

  async function loadAll() {
    const ok = await guarded("Loading the ledger", async () => {
      // Both before rendering: the timeline marks live versions from the refs.
      // The filters are applied by the server, so a flood of notes never hides the versions.
      const params = new URLSearchParams({ limit: state.limit });
      for (const t of state.types) params.append("type", t);
      if (state.ref) params.set("ref", state.ref);
      const ticket = ++state.loads;
      const [refs, events] = await Promise.all([api("v1/ledger/refs"),
        state.types.size ? api("v1/ledger/log?" + params.toString()) : Promise.resolve([])]);
      if (ticket !== state.loads) return false;  // a newer load (another filter) is under way
      state.refs = refs;
      state.events = events;
      for (const r of [...Object.keys(refs), ...events.map((e) => e.ref)]) if (r) state.knownRefs.add(r);
      renderRefs();
      renderFilters();
      renderTimeline();
      return true;
    });
    if (!ok) return;
    showConnected(true);
    setStatus(`Connected: ${state.events.length} recent events shown, ${Object.keys(state.refs).length} refs.`);
    if (state.tab === "plots") await loadPlots();
    if (state.tab === "memory") await loadMemory();
  }

  function selectTab(name) {
    state.tab = name;
    for (const b of document.querySelectorAll(".tabs button")) b.classList.toggle("active", b.dataset.tab === name);
    for (const s of document.querySelectorAll(".tab")) s.hidden = s.id !== "tab-" + name;
    if (!sessionStorage.getItem(KEY)) return;
    if (name === "plots") loadPlots();
    if (name === "memory") loadMemory();
    if (name === "timeline") loadAll();
  }

  // ------------------------------------------------------------------ refs and timeline
  function renderRefs() {
    $("refs-bar").replaceChildren(...Object.entries(state.refs).map(([ref, id]) =>
      el("span", { class: "ref", title: id, dataset: { ref } }, ref + " ", el("code", { text: short(id) }))));
  }

  function renderFilters() {
    const refs = [...state.knownRefs].sort();
    const boxes = EVENT_TYPES.map((t) => el("label", {},
      el("input", { type: "checkbox", checked: state.types.has(t), dataset: { type: t },
        onchange: (ev) => { if (ev.target.checked) state.types.add(t); else state.types.delete(t); loadAll(); } }),
      badge(t)));
    const select = el("select", { id: "ref-filter", "aria-label": "ref", onchange: (ev) => { state.ref = ev.target.value; loadAll(); } },
      el("option", { value: "", text: "all refs" }), refs.map((r) => el("option", { value: r, text: r, selected: r === state.ref })));
    $("filters").replaceChildren(...boxes, select);
  }

  function liveEvents() {
    // The newest move of each ref onto its live version is the one marked live.
    const seen = new Set();
    const live = new Set();
    for (const e of state.events) {
      if ((e.type === "commit" || e.type === "rollback") && e.ref && !seen.has(e.ref)) {
        seen.add(e.ref);
        if (state.refs[e.ref] === e.to_version) live.add(e.seq);
      }
    }
    return live;
  }

  function canRollBackTo(e) {
    return (e.type === "commit" || e.type === "rollback") && e.to_version && e.ref in state.refs &&
      state.refs[e.ref] !== e.to_version;
  }

  function renderTimeline() {
    const live = liveEvents();
    const shown = state.events.filter((e) => state.types.has(e.type) && (!state.ref || e.ref === state.ref));
    const items = shown.map((e) => {
      const versions = e.to_version
        ? el("code", { class: "versions" }, e.from_version ? short(e.from_version) + " \u2192 " : "", short(e.to_version))
        : null;
      const actions = [];
      if (e.verdict_id) actions.push(el("button", { type: "button", class: "small evidence", text: "Evidence",
        onclick: (ev) => { ev.stopPropagation(); showEvent(e, "evidence"); } }));
      if (e.to_version) actions.push(el("button", { type: "button", class: "small changes", text: "What changed",
        onclick: (ev) => { ev.stopPropagation(); showEvent(e, "changes"); } }));
      if (canRollBackTo(e)) actions.push(el("button", { type: "button", class: "small rollback-to", text: "Roll back to this",
        onclick: (ev) => { ev.stopPropagation(); askRollback(e.ref, e.to_version); } }));
      return el("li", { class: "event " + e.type + (state.selected === e.seq ? " selected" : ""),
        dataset: { seq: e.seq, type: e.type, ref: e.ref || "" }, onclick: () => showEvent(e) },
      el("div", { class: "head" }, badge(e.type), live.has(e.seq) ? badge("live") : null,
        el("span", { class: "ref-name", text: e.ref || "(no ref)" }), versions, el("span", { class: "when", text: when(e.at) })),
      e.message ? el("div", { class: "msg", text: e.message }) : null,
      actions.length ? el("div", { class: "actions" }, actions) : null);
    });
    $("timeline").replaceChildren(...(items.length ? items : [el("li", { class: "muted", text: "No events to show." })]));
    $("more").hidden = state.events.length < state.limit;
  }

  // ------------------------------------------------------------------ event details
  async function showEvent(e, focus) {
    state.selected = e.seq;
    for (const li of document.querySelectorAll(".event")) li.classList.toggle("selected", li.dataset.seq === String(e.seq));
    const detail = $("detail");
    const head = el("div", { class: "event-detail", dataset: { seq: e.seq } },
      el("h2", {}, badge(e.type), " ", e.ref || "(no ref)", " ", el("span", { class: "muted", text: "#" + e.seq })),
      kv([["when", when(e.at)], ["actor", e.actor],
        e.from_version ? ["from", el("code", { title: e.from_version, text: short(e.from_version) })] : null,
        e.to_version ? ["to", el("code", { title: e.to_version, text: short(e.to_version) })] : null,
        e.change_id ? ["change", el("code", { text: e.change_id })] : null]),
      e.message ? el("p", { class: "message", text: e.message }) : null,
      Object.keys(e.data || {}).length ? el("details", {}, el("summary", { text: "event data" }),
        el("pre", { class: "mono", text: JSON.stringify(e.data, null, 2) })) : null,
      canRollBackTo(e) ? el("button", { type: "button", class: "danger rollback-to", text: `Roll ${e.ref} back to ${short(e.to_version)}`,
        onclick: () => askRollback(e.ref, e.to_version) }) : null);
    const change = el("div", { id: "change" });
    const evidence = el("div", { id: "evidence" });
    const changes = el("div", { id: "changes" });
    detail.replaceChildren(head, evidence, change, changes);
    const jobs = [];
    if (e.change_id && e.to_version) jobs.push(guarded("Loading the change", async () => renderChange(change, e.change_id, await api("v1/ledger/versions/" + encodeURIComponent(e.to_version)))));
    if (e.verdict_id) jobs.push(guarded("Loading the verdict", async () => renderVerdict(evidence, await api("v1/ledger/verdicts/" + encodeURIComponent(e.verdict_id)))));
    if (e.to_version) jobs.push(guarded("Loading the changes", () => renderChanges(changes, e)));
    await Promise.all(jobs);
    const target = focus === "evidence" ? evidence : focus === "changes" ? changes : null;
    if (target && target.scrollIntoView) target.scrollIntoView({ block: "nearest" });
  }

  // ------------------------------------------------------------------ the change a learner proposed
  function renderChange(box, changeId, version) {
    const c = (version.changes || []).find((x) => x.id === changeId);
    if (!c) return;
    const cost = c.cost || {};
    const prov = c.provenance || {};
    box.replaceChildren(el("h3", { text: "Change" }),
      kv([["learner", c.learner], ["kind", c.kind], ["scope", c.scope],
        ["base", el("code", { title: c.base_version || "", text: short(c.base_version) })],
        ["cost", `${cost.steps || 0} steps, ${cost.tokens || 0} tokens, ${cost.examples || 0} examples, ${fmt(cost.seconds || 0, 1)} s`],
        Object.keys(prov).length ? ["provenance", el("pre", { class: "mono provenance", text: JSON.stringify(prov, null, 2) })] : null]));
  }

  // ------------------------------------------------------------------ verdict evidence
  function renderVerdict(box, v) {
    const ev = v.evidence || {};
    const parts = [el("h3", {}, "Verdict ", badge(v.accepted ? "accepted" : "rejected")),
      el("ul", { class: "reasons" }, (ev.reasons || []).map((r) => el("li", { text: r })))];
    if (ev.target) parts.push(renderSuite(ev.target));
    if ((ev.canaries || []).length) {
      parts.push(el("h4", { text: `Canaries (${ev.canaries.length})` }));
      for (const c of ev.canaries) parts.push(renderSuite(c));
    }
    if (!ev.target) parts.push(el("p", { class: "muted", text: "No gate ran: this version was committed directly (an operator's or a feedback write)." }));
    if (ev.thresholds && Object.keys(ev.thresholds).length) {
      parts.push(el("details", { class: "thresholds" }, el("summary", { text: "Thresholds" }),
        kv(Object.entries(ev.thresholds).map(([k, x]) => [k, x === null ? "none" : String(x)]))));
    }
    box.replaceChildren(...parts);
  }

  function flipClass(id, a, b, up, down) {
    if (up.has(id)) return "up";
    if (down.has(id)) return "down";
    if (b > a) return "up";
    if (b < a) return "down";
    return a >= 0.5 ? "both" : "neither";
  }

  function renderSuite(c) {
    const up = new Set(c.positive_flips || []);
    const down = new Set(c.negative_flips || []);
    const ids = c.item_ids || [];
    const cells = ids.map((id, i) => {
      const cls = flipClass(id, c.champion[i], c.candidate[i], up, down);
      return el("span", { class: "flip " + cls, title: `${id}: ${c.champion[i]} \u2192 ${c.candidate[i]}`, dataset: { item: id } });
    });
    const conf = Math.round((c.confidence || 0.95) * 100);
    return el("div", { class: "suite " + c.role, dataset: { suite: c.name, role: c.role } },
      el("div", { class: "title" }, badge(c.role, "note"), el("strong", { text: c.name }), badge(c.passed ? "passed" : "failed")),
      kv([["n", String(c.n)],
        ["mean", `${fmt(c.champion_mean)} \u2192 ${fmt(c.candidate_mean)}`],
        ["effect", el("span", { class: "effect", text: signed(c.effect) })],
        [`${conf}% interval`, el("span", { class: "interval", text: `[${signed(c.ci[0])}, ${signed(c.ci[1])}]` })],
        ["p-value", c.p_value === null ? "n/a" : Number(c.p_value).toPrecision(3)],
        ["test", c.test],
        ["suite hash", el("code", { title: c.suite_hash, text: short(c.suite_hash) })]]),
      intervalPlot(c),
      el("div", { class: "flips", "aria-label": "per-item flips" }, cells),
      el("div", { class: "legend" },
        el("span", {}, el("i", { class: "flip up" }), `fixed ${up.size}`),
        el("span", {}, el("i", { class: "flip down" }), `broken ${down.size}`),
        el("span", {}, el("i", { class: "flip both" }), "right on both"),
        el("span", {}, el("i", { class: "flip neither" }), "wrong on both")),
      down.size ? el("p", { class: "ids negative-flips" }, el("strong", { text: "Negative flips: " }), [...down].join(", ")) : null,
      up.size ? el("p", { class: "ids positive-flips" }, el("strong", { text: "Positive flips: " }), [...up].join(", ")) : null);
  }

  function intervalPlot(c) {
    const W = 340, H = 46, L = 14, R = 14;
    const lo = num(c.ci[0]) ? c.ci[0] : c.effect, hi = num(c.ci[1]) ? c.ci[1] : c.effect;
    const m = Math.max(Math.abs(lo), Math.abs(hi), Math.abs(c.effect || 0), 0.05) * 1.15;
    const x = (v) => L + ((v + m) / (2 * m)) * (W - L - R);
    const color = c.passed ? COLORS.accept : COLORS.reject;
    return svg("svg", { class: "interval-plot", viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: "img",
      "aria-label": `effect ${signed(c.effect)} with interval ${signed(lo)} to ${signed(hi)}` },
    svg("line", { x1: L, x2: W - R, y1: 24, y2: 24, stroke: "#d1d5db" }),
    svg("line", { x1: x(0), x2: x(0), y1: 8, y2: 36, stroke: "#9ca3af", "stroke-dasharray": "3 3" }),
    svg("text", { x: x(0), y: 45, "text-anchor": "middle", text: "0" }),
    svg("line", { x1: x(lo), x2: x(hi), y1: 24, y2: 24, stroke: color, "stroke-width": 5, "stroke-linecap": "round" }),
    svg("circle", { cx: x(c.effect || 0), cy: 24, r: 5, fill: "#fff", stroke: color, "stroke-width": 2 }),
    svg("text", { x: x(lo), y: 12, "text-anchor": "middle", text: signed(lo, 2) }),
    svg("text", { x: x(hi), y: 12, "text-anchor": "middle", text: signed(hi, 2) }));
  }

  // ------------------------------------------------------------------ diffs
  async function renderChanges(box, e) {
    const parts = [el("h3", { text: "What changed" })];
    if (!e.from_version || e.from_version === e.to_version) {
      const v = await api("v1/ledger/versions/" + encodeURIComponent(e.to_version));
      parts.push(el("p", { class: "muted", text: e.from_version ? "Same version on both sides." : "The first version of this ref: its artifacts." }));
      const names = v.artifacts.filter((a) => !a.name.startsWith("items/"));
      const shards = v.artifacts.length - names.length;
      parts.push(table(["artifact", "type"], names.map((a) => [a.name, a.media_type])));
      if (shards) parts.push(el("p", { class: "muted", text: `and ${shards} memory shard records` }));
      box.replaceChildren(...parts);
      return;
    }
    const d = await api("v1/ledger/diff?" + qs({ a: e.from_version, b: e.to_version }));
    const changed = d.artifacts.filter((r) => r.status !== "same");
    const tensors = changed.filter((r) => r.media_type === "application/x-safetensors");
    const shards = changed.filter((r) => r.name.startsWith("items/"));
    const records = changed.filter((r) => r.media_type !== "application/x-safetensors" && !r.name.startsWith("items/") && r.name !== "memory");
    parts.push(el("p", { class: "muted",
      text: `${short(d.a)} \u2192 ${short(d.b)}: ${changed.length} of ${d.artifacts.length} artifacts differ` +
        (tensors.length ? `, ${tensors.length} tensors` : "") + (shards.length ? `, ${shards.length} memory shards` : "") }));
    box.replaceChildren(...parts);
    if (d.memory) box.appendChild(await memoryDiffView(e.from_version, e.to_version));
    if (tensors.length) box.appendChild(await tensorDiffView(e.from_version, e.to_version));
    if (records.length) {
      box.appendChild(el("h4", { text: "Records" }));
      box.appendChild(table(["record", "status", "detail"], records.map((r) => [r.name, r.status, r.detail || ""])));
    }
  }

  function table(header, rows, numeric) {
    const isNum = new Set(numeric || []);
    return el("table", { class: "grid" }, el("thead", {}, el("tr", {}, header.map((h) => el("th", { text: h })))),
      el("tbody", {}, rows.map((r) => el("tr", {}, r.map((c, i) => el("td", { class: isNum.has(i) ? "num" : null }, c))))));
  }

  async function tensorDiffView(a, b) {
    const t = await api("v1/ledger/tensor-diff?" + qs({ a, b }));
    const layers = t.layers.filter((l) => l.changed > 0);
    const box = el("div", { class: "tensor-diff" }, el("h4", { text: `Tensors: norm of the change per layer (${layers.length} of ${t.layers.length} layers changed)` }));
    box.appendChild(barChart(t.layers.map((l) => ({ label: l.layer, value: l.l2 || 0,
      note: l.relative === null ? "" : `${(100 * l.relative).toFixed(1)}%` }))));
    box.appendChild(table(["tensor", "shape", "\u2016a\u2016", "\u2016b\u2212a\u2016", "relative", "max |\u0394|"],
      t.tensors.filter((r) => r.status !== "same").map((r) => [
        el("code", { text: r.name }), r.detail || "[" + r.shape.join("\u00d7") + "]", fmt(r.norm_a, 4), fmt(r.l2, 4),
        r.relative === null ? (r.norm_a === 0 ? "from zero" : r.status) : (100 * r.relative).toFixed(2) + "%", fmt(r.max_abs, 4)]), [2, 3, 4, 5]));
    return box;
  }

  function barChart(bars) {
    const rowH = 18, L = 170, R = 130, W = 560;
    const H = bars.length * rowH + 8;
    const max = Math.max(...bars.map((b) => b.value), 1e-12);
    const g = svg("svg", { class: "bars", viewBox: `0 0 ${W} ${H}`, width: "100%", role: "img", "aria-label": "per-layer norms" });
    bars.forEach((b, i) => {
      const y = 4 + i * rowH;
      const w = ((W - L - R) * b.value) / max;
      g.appendChild(svg("text", { x: L - 6, y: y + 12, "text-anchor": "end", text: b.label.length > 28 ? "\u2026" + b.label.slice(-27) : b.label },
        svg("title", { text: b.label })));
      g.appendChild(svg("rect", { x: L, y: y + 2, width: Math.max(w, b.value > 0 ? 1 : 0), height: rowH - 6, fill: COLORS.accent, rx: 2 },
        svg("title", { text: `${b.label}: ${b.value.toPrecision(4)} ${b.note}` })));
      g.appendChild(svg("text", { x: L + w + 4, y: y + 12, text: `${b.value.toPrecision(3)}${b.note ? " (" + b.note + ")" : ""}` }));
    });
    return g;
  }

  async function memoryDiffView(a, b) {
    const m = await api("v1/ledger/memory-diff?" + qs({ a, b }));
    const box = el("div", { class: "memory-diff" }, el("h4", { text: `Memory: +${m.added.length} \u2212${m.removed.length} ~${m.changed.length}` }));
    for (const item of m.added) box.appendChild(itemCard(item, "added"));
    for (const item of m.removed) box.appendChild(itemCard(item, "removed"));
    for (const c of m.changed) {
      box.appendChild(el("div", { class: "mem-item changed", dataset: { id: c.id } },
        meta(el("code", { text: c.id }), `v${c.before.version} \u2192 v${c.after.version}`, `changed: ${c.fields.join(", ") || "bookkeeping"}`),
        c.fields.includes("content") ? [el("div", { class: "before", text: c.before.content }), el("div", { class: "after", text: c.after.content })]
          : el("div", { text: c.after.content })));
    }
    if (m.missing.length) box.appendChild(el("p", { class: "muted", text: "bodies not found: " + m.missing.join(", ") }));
    return box;
  }

  // A row of small facts; each its own element, so the flex gap separates them.
  function meta(...facts) {
    return el("div", { class: "meta" }, facts.filter((f) => f !== null && f !== undefined && f !== false)
      .map((f) => (f instanceof Node ? f : el("span", { text: f }))));
  }

  function itemCard(item, cls, extra) {
    return el("div", { class: "mem-item " + (cls || ""), dataset: { id: item.id }, onclick: () => showHistory(item.id) },
      el("div", { class: "content", text: item.content }),
      meta(el("code", { text: item.id }), `[${item.section}]`, item.kind, `scope ${item.scope}`,
        `v${item.version}`, item.status !== "active" ? item.status : null, extra || null));
  }

  // ------------------------------------------------------------------ rollback
  function askRollback(ref, to) {
    state.pending = { ref, to };
    $("rollback-what").textContent = `Move ${ref} from ${short(state.refs[ref])} back to ${short(to)}. ` +
      "Nothing is deleted: the rollback is recorded in the ledger and can itself be rolled back.";
    $("rollback-dialog").showModal();
  }

  async function confirmRollback() {
    const pending = state.pending;
    state.pending = null;
    $("rollback-dialog").close();
    if (!pending) return;
    const reason = $("rollback-reason").value.trim() || "rollback from the dashboard";
    const done = await guarded("The rollback", () => api("v1/ledger/rollback", { method: "POST",
      body: JSON.stringify({ ref: pending.ref, to: pending.to, reason }) }));
    if (!done) return;
    await loadAll();
    setStatus(`Rolled ${done.ref} back: ${short(done.from_version)} \u2192 ${short(done.to_version)}.`);
    const event = state.events.find((e) => e.type === "rollback" && e.ref === done.ref);
    if (event) showEvent(event);
  }

  function cancelRollback() {
    if (state.pending) setStatus("Rollback cancelled; nothing changed.");
    state.pending = null;
    if ($("rollback-dialog").open) $("rollback-dialog").close();
  }

  // ------------------------------------------------------------------ plots
  function niceTicks(lo, hi, n) {
    const span = hi - lo || 1;
    const raw = span / (n || 5);
    const mag = Math.pow(10, Math.floor(Math.log10(raw)));
    const r = raw / mag;
    const step = (r >= 7.5 ? 10 : r >= 3.5 ? 5 : r >= 1.5 ? 2 : 1) * mag;
    const out = [];
    for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(Number(v.toFixed(12)));
    return out;
  }

  // One chart: series of points (lines and/or dots), intervals (vertical bars), vertical markers, a
  // horizontal reference line. xs: "index", "time" or "number".
  function chart(spec) {
    const W = 460, H = 230, L = 46, R = 12, T = 10, B = 34;
    const series = (spec.series || []).filter((s) => s.points.length);
    const intervals = spec.intervals || [];
    const vlines = spec.vlines || [];
    const xsAll = [...series.flatMap((s) => s.points.map((p) => p.x)), ...intervals.map((i) => i.x), ...vlines.map((v) => v.x)];
    const ysAll = [...series.flatMap((s) => s.points.map((p) => p.y)), ...intervals.flatMap((i) => [i.lo, i.hi]).filter(num)];
    if (num(spec.hline)) ysAll.push(spec.hline);
    const box = el("div", { class: "plot", dataset: { plot: spec.id } }, el("h3", { text: spec.title }), spec.note ? el("p", { text: spec.note }) : null);
    if (!xsAll.length) {
      box.appendChild(el("p", { class: "empty", text: spec.empty || "Nothing recorded yet." }));
      return box;
    }
    let [x0, x1] = [Math.min(...xsAll), Math.max(...xsAll)];
    if (x0 === x1) { x0 -= 1; x1 += 1; }
    let [y0, y1] = ysAll.length ? [Math.min(...ysAll), Math.max(...ysAll)] : [0, 1];
    if (spec.yDomain) { y0 = Math.min(y0, spec.yDomain[0]); y1 = Math.max(y1, spec.yDomain[1]); }
    if (y0 === y1) { y0 -= 0.5; y1 += 0.5; }
    const padY = (y1 - y0) * 0.06; y0 -= padY; y1 += padY;
    const padX = spec.xs === "index" ? 0.5 : (x1 - x0) * 0.03; x0 -= padX; x1 += padX;
    const X = (v) => L + ((v - x0) / (x1 - x0)) * (W - L - R);
    const Y = (v) => T + (1 - (v - y0) / (y1 - y0)) * (H - T - B);
    const g = svg("svg", { class: "chart", viewBox: `0 0 ${W} ${H}`, width: "100%", role: "img", "aria-label": spec.title });
    for (const t of niceTicks(y0, y1, 5)) {
      g.appendChild(svg("line", { x1: L, x2: W - R, y1: Y(t), y2: Y(t), stroke: "#eef0f3" }));
      g.appendChild(svg("text", { x: L - 5, y: Y(t) + 4, "text-anchor": "end", text: Math.abs(t) < 1e-12 ? "0" : String(+t.toPrecision(3)) }));
    }
    const xt = spec.xs === "index" ? niceTicks(x0, x1, 6).filter((t) => Number.isInteger(t)) : niceTicks(x0, x1, 4);
    for (const t of xt) {
      g.appendChild(svg("line", { x1: X(t), x2: X(t), y1: H - B, y2: H - B + 4, stroke: "#9ca3af" }));
      g.appendChild(svg("text", { x: X(t), y: H - B + 16, "text-anchor": "middle", text: spec.xs === "time" ? clock(t, x1 - x0) : String(+t.toPrecision(4)) }));
    }
    g.appendChild(svg("line", { x1: L, x2: W - R, y1: H - B, y2: H - B, stroke: "#9ca3af" }));
    g.appendChild(svg("line", { x1: L, x2: L, y1: T, y2: H - B, stroke: "#9ca3af" }));
    if (spec.xLabel) g.appendChild(svg("text", { x: (L + W - R) / 2, y: H - 4, "text-anchor": "middle", text: spec.xLabel }));
    if (num(spec.hline)) g.appendChild(svg("line", { x1: L, x2: W - R, y1: Y(spec.hline), y2: Y(spec.hline), stroke: "#6b7280", "stroke-dasharray": "4 3" }));
    for (const v of vlines) {
      g.appendChild(svg("line", { x1: X(v.x), x2: X(v.x), y1: T, y2: H - B, stroke: v.color || COLORS.rollback, "stroke-dasharray": "5 3", "stroke-width": 1.5, class: "vline" },
        svg("title", { text: v.title || "" })));
    }
    for (const i of intervals) {
      if (!num(i.lo) || !num(i.hi)) continue;
      g.appendChild(svg("line", { x1: X(i.x), x2: X(i.x), y1: Y(i.lo), y2: Y(i.hi), stroke: i.color, "stroke-width": 3, "stroke-linecap": "round", opacity: 0.55 },
        svg("title", { text: i.title || "" })));
    }
    for (const s of series) {
      if (s.line !== false && s.points.length > 1) {
        const d = s.points.map((p, k) => `${k ? "L" : "M"}${X(p.x).toFixed(1)},${Y(p.y).toFixed(1)}`).join(" ");
        g.appendChild(svg("path", { d, fill: "none", stroke: s.color, "stroke-width": 1.8, "stroke-dasharray": s.dash || null }));
      }
      if (s.dots !== false) {
        for (const p of s.points) {
          g.appendChild(svg("circle", { cx: X(p.x), cy: Y(p.y), r: s.r || 3.5, fill: p.color || s.color, stroke: "#fff", "stroke-width": 1, class: "point" },
            svg("title", { text: p.title || `${s.name}: ${fmt(p.y)}` })));
        }
      }
    }
    box.appendChild(g);
    const legend = [...series.map((s) => [s.name, s.color]), ...(spec.legend || [])];
    if (legend.length) {
      box.appendChild(el("div", { class: "legend" }, legend.map(([name, color]) =>
        el("span", {}, svg("svg", { width: 12, height: 12 }, svg("rect", { width: 12, height: 12, rx: 2, fill: color })), name))));
    }
    return box;
  }

  async function loadPlots() {
    const s = await guarded("Loading the curves", () => api("v1/ledger/series"));
    if (!s) return;
    const plots = [];
    const rollbacks = s.monitors.filter((m) => m.kind === "rollback");
    // Gate scores, one chart per (ref, suite): the learning curve of what the gate measured.
    const groups = new Map();
    for (const g of s.gate) {
      const k = `${g.ref} \u00b7 ${g.suite}`;
      if (!groups.has(k)) groups.set(k, []);
      groups.get(k).push(g);
    }
    if (!groups.size) plots.push(chart({ id: "gate", title: "Gate: target score per verdict", empty: "No gated verdicts yet." }));
    for (const [k, gs] of groups) {
      const xs = gs.map((_, i) => i + 1);
      plots.push(chart({ id: "gate", title: `Gate scores: ${k}`, xs: "index", xLabel: "verdict", yDomain: [0, 1],
        note: "Mean target score of the champion (the live version) and of each candidate; green accepted, orange rejected.",
        series: [
          { name: "champion", color: COLORS.champion, dash: "4 3", points: gs.map((g, i) => ({ x: xs[i], y: g.champion, title: `champion ${fmt(g.champion)}` })) },
          { name: "candidate", color: COLORS.accent, line: false, r: 4.5, points: gs.map((g, i) => ({ x: xs[i], y: g.candidate, color: g.accepted ? COLORS.accept : COLORS.reject,
            title: `${g.accepted ? "accepted" : "rejected"}: ${fmt(g.champion)} \u2192 ${fmt(g.candidate)} (${g.negative_flips} negative flips)` })) }] }));
      plots.push(chart({ id: "effect", title: `Effect and interval: ${k}`, xs: "index", xLabel: "verdict", hline: 0,
        note: "Candidate minus champion on the target suite, with its confidence interval.",
        intervals: gs.map((g, i) => ({ x: xs[i], lo: g.ci[0], hi: g.ci[1], color: g.accepted ? COLORS.accept : COLORS.reject, title: `[${signed(g.ci[0])}, ${signed(g.ci[1])}]` })),
        series: [{ name: "effect", color: "#111827", line: false, points: gs.map((g, i) => ({ x: xs[i], y: g.effect, color: g.accepted ? COLORS.accept : COLORS.reject, title: `effect ${signed(g.effect)}` })) }] }));
      const canaryNames = [...new Set(gs.flatMap((g) => g.canaries.map((c) => c.name)))];
      if (canaryNames.length) {
        plots.push(chart({ id: "canaries", title: `Canaries: ${k}`, xs: "index", xLabel: "verdict", hline: 0,
          note: "Change of each canary suite's mean score per verdict; below the line is a regression.",
          series: canaryNames.map((name, j) => ({ name, color: PALETTE[j % PALETTE.length],
            points: gs.flatMap((g, i) => g.canaries.filter((c) => c.name === name).map((c) => ({ x: xs[i], y: c.effect,
              title: `${name}: ${signed(c.effect)} (${c.passed ? "held" : "regressed"})` }))) })) }));
      }
    }
    // Feedback: every rating and its running mean.
    const fb = s.feedback;
    const running = [];
    let sum = 0;
    fb.forEach((f, i) => { sum += f.score; if (i >= 10) sum -= fb[i - 10].score; running.push({ x: i + 1, y: sum / Math.min(i + 1, 10) }); });
    plots.push(chart({ id: "feedback", title: "Feedback ratings", xs: "index", xLabel: "rating", yDomain: [-1, 1], hline: 0,
      note: "Each rating (-1 to 1) and the mean of the last 10.", empty: "No ratings yet.",
      series: [{ name: "rating", color: "#9ca3af", line: false, r: 2.5, points: fb.map((f, i) => ({ x: i + 1, y: f.score, title: `${f.user || ""} ${f.score}` })) },
        { name: "running mean", color: COLORS.accent, dots: false, points: running }] }));
    // Monitors: alarms and triggers over time, rollbacks as markers.
    const alarms = s.monitors.filter((m) => m.kind === "alarm" && num(m.value));
    const triggers = s.monitors.filter((m) => m.kind === "trigger" && num(m.value));
    plots.push(chart({ id: "monitors", title: "Monitors", xs: "time", xLabel: "time",
      note: "Regression alarms (live mean) and drift triggers (their statistic); dashed lines are rollbacks.",
      empty: "No alarm, trigger or rollback yet.",
      series: [{ name: "alarm: live mean", color: COLORS.alarm, line: false, r: 5, points: alarms.map((m) => ({ x: m.at, y: m.value, title: m.message })) },
        { name: "trigger", color: COLORS.trigger, line: false, points: triggers.map((m) => ({ x: m.at, y: m.value, title: m.message })) }],
      vlines: rollbacks.map((m) => ({ x: m.at, title: `rollback of ${m.ref}: ${m.message}` })),
      legend: rollbacks.length ? [["rollback", COLORS.rollback]] : [] }));
    // Learning curves: every metric recorded with an event.
    for (const [name, pts] of Object.entries(s.metrics)) {
      const bySteps = pts.every((p) => num(p.step));
      const refs = [...new Set(pts.map((p) => p.ref || ""))];
      plots.push(chart({ id: "metric", title: `Curve: ${name}`, xs: bySteps ? "number" : "time", xLabel: bySteps ? "step" : "time",
        note: `Recorded as data.metrics.${name} on ${pts.length} events.`,
        series: refs.map((r, j) => ({ name: r || "(no ref)", color: PALETTE[j % PALETTE.length],
          points: pts.filter((p) => (p.ref || "") === r).map((p) => ({ x: bySteps ? p.step : p.at, y: p.value, title: `${name} ${fmt(p.value, 4)}` })) })),
        vlines: bySteps ? [] : rollbacks.map((m) => ({ x: m.at, title: `rollback of ${m.ref}` })) }));
    }
    $("plots").replaceChildren(...plots);
  }

  // ------------------------------------------------------------------ memory
  async function loadMemory() {
    await guarded("Loading the memory", async () => {
      const page = await api("v1/memory/items?" + qs({ limit: state.memLimit, offset: state.memOffset }));
      $("memory-total").textContent = page.total ? `(${page.offset + 1}\u2013${page.offset + page.items.length} of ${page.total})` : "(none yet)";
      $("memory-items").replaceChildren(...page.items.map((i) => itemCard(i)));
      $("memory-prev").disabled = state.memOffset === 0;
      $("memory-next").disabled = page.offset + page.items.length >= page.total;
    });
  }

  async function searchMemory(q) {
    const hits = await guarded("The search", () => api("v1/memory/search?" + qs({ q, k: 10 })));
    if (!hits) return;
    $("memory-results").replaceChildren(
      el("h3", { text: `${hits.length} result${hits.length === 1 ? "" : "s"} for \u201c${q}\u201d` }),
      ...hits.map((h) => itemCard(h.item, "hit", `score ${fmt(h.score)}`)));
  }

  async function showHistory(id) {
    const versions = await guarded("Loading the item", () => api(`v1/memory/items/${encodeURIComponent(id)}/history`));
    if (!versions) return;
    const box = $(state.tab === "memory" ? "memory-detail" : "detail");
    box.replaceChildren(el("h2", {}, "Item ", el("code", { text: id })), el("p", { class: "muted", text: `${versions.length} versions, newest last` }),
      ...versions.map((v) => el("div", { class: "mem-item" },
        meta(`v${v.version}`, when(v.updated_at || v.created_at), v.status, `scope ${v.scope}`, `source ${v.provenance.source}`,
          v.valid_until ? `valid until ${when(v.valid_until)}` : null),
        el("div", { class: "content", text: v.content }))));
  }

  // ------------------------------------------------------------------ start
  function init() {
    $("login").addEventListener("submit", (ev) => {
      ev.preventDefault();
      const key = $("api-key").value.trim();
      if (!key) { setStatus("Type the API key of your tenant (lifelong serve prints it).", "error"); return; }
      sessionStorage.setItem(KEY, key);
      $("api-key").value = "";
      loadAll();
    });
    $("forget").addEventListener("click", () => {
      sessionStorage.removeItem(KEY);
      showConnected(false);
      state.events = [];
      $("timeline").replaceChildren();
      setStatus("Key forgotten.");
    });
    for (const b of document.querySelectorAll(".tabs button")) b.addEventListener("click", () => selectTab(b.dataset.tab));
    $("more").addEventListener("click", () => { state.limit += 300; loadAll(); });
    $("rollback-confirm").addEventListener("click", confirmRollback);
    $("rollback-cancel").addEventListener("click", cancelRollback);
    $("rollback-dialog").addEventListener("close", () => { if (state.pending) cancelRollback(); });
    $("memory-search").addEventListener("submit", (ev) => {
      ev.preventDefault();
      const q = $("memory-q").value.trim();
      if (q) searchMemory(q);
    });
    $("memory-prev").addEventListener("click", () => { state.memOffset = Math.max(0, state.memOffset - state.memLimit); loadMemory(); });
    $("memory-next").addEventListener("click", () => { state.memOffset += state.memLimit; loadMemory(); });
    if (sessionStorage.getItem(KEY)) loadAll();
    else setStatus("Enter an API key to see your tenant's ledger and memory.");
  }

  init();
})();
