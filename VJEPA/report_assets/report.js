// EgoClean report: plain JavaScript, no framework, no network. The data is the JSON block #report-data.
// Every text goes into the page through textContent or setAttribute, never as HTML.
"use strict";
(() => {
  const DATA = JSON.parse(document.getElementById("report-data").textContent);
  const ROOT = document.getElementById("report");
  const SVGNS = "http://www.w3.org/2000/svg";
  const ROW_H = 18, ROW_GAP = 4, AXIS_H = 18, SNAP_PX = 8;
  const KINDS = ["cycle", "repeat", "change", "anomaly"];
  const ROW_LABEL = { cycle: "cycles", repeat: "repeats", change: "changes", anomaly: "anomalies" };
  // why a span was flagged (AnomalySpan.kind, "+"-joined); files written before kinds existed have none
  const KIND_LABEL = { novel: "unlike anything else", rare: "seen in few places", held: "lasts too long" };
  const kindText = (a) => (a.kind ? a.kind.split("+").map((k) => KIND_LABEL[k] || k).join(", ") : "");
  // viridis at 9 stops: perceptually uniform and readable with colour-vision deficiencies
  const VIRIDIS = [[68, 1, 84], [71, 44, 122], [59, 81, 139], [44, 113, 142], [33, 144, 141],
    [39, 173, 129], [92, 200, 99], [170, 220, 50], [253, 231, 37]];

  // ---------------------------------------------------------------------------------------- helpers
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "text") node.textContent = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children) if (child !== null && child !== undefined) node.append(child);
    return node;
  }
  function svg(tag, attrs, text) {
    const node = document.createElementNS(SVGNS, tag);
    for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, String(value));
    if (text !== undefined) {
      const title = document.createElementNS(SVGNS, "title");
      title.textContent = text;
      node.append(title);
    }
    return node;
  }
  function fmtTime(s) {
    if (s === null || s === undefined || !isFinite(s)) return "–";
    const whole = Math.max(0, Math.round(s));
    const h = Math.floor(whole / 3600), m = Math.floor((whole % 3600) / 60), sec = whole % 60;
    const mm = h ? String(m).padStart(2, "0") : String(m);
    return (h ? h + ":" : "") + mm + ":" + String(sec).padStart(2, "0");
  }
  const fmtDur = (s) => (s === null || s === undefined ? "–" : Number(s).toFixed(1) + " s");
  function fmtNum(x) {
    if (x === null || x === undefined) return "–";
    if (typeof x !== "number") return String(x);
    const a = Math.abs(x);
    return a >= 1000 ? x.toExponential(2) : a >= 100 ? x.toFixed(0) : a >= 10 ? x.toFixed(1) : x.toFixed(2);
  }
  const plural = (n, one, many) => n + " " + (n === 1 ? one : many || one + "s");
  function isTyping(target) {
    return target && (target.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(target.tagName));
  }
  function niceStep(duration, widthPx) {
    const want = duration / Math.max(1, widthPx / 80);
    for (const step of [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200]) if (step >= want) return step;
    return 3600 * Math.ceil(want / 3600);
  }
  function onResize(node, redraw) {
    let pending = false;
    new ResizeObserver(() => {
      if (pending) return;
      pending = true;
      requestAnimationFrame(() => { pending = false; redraw(); });
    }).observe(node);
  }

  // Setting currentTime before the metadata is known is kept as the start position by the browser; the
  // listener makes sure the last request wins once the metadata arrives.
  function setTime(video, t) {
    video.dataset.want = String(t);
    if (video.readyState >= 1) {
      video.currentTime = t;
      return;
    }
    try { video.currentTime = t; } catch (e) { /* some browsers refuse before metadata */ }
    if (!video.dataset.waiting) {
      video.dataset.waiting = "1";
      video.addEventListener("loadedmetadata", () => {
        delete video.dataset.waiting;
        video.currentTime = Number(video.dataset.want);
      }, { once: true });
    }
  }
  const play = (video) => { const p = video.play(); if (p) p.catch(() => {}); };

  // ---------------------------------------------------------------------------------------- state
  const clips = DATA.clips.map((data, index) => ({ data, index, rendered: false, items: itemsOf(data) }));
  const byName = new Map(clips.map((c) => [c.data.name, c]));
  let active = null; // the clip last played or clicked: n / p and Space act on it
  const allAnomalies = [];
  clips.forEach((clip) => clip.data.anomalies.forEach((a, k) => allAnomalies.push({ clip, k, start: a.start_s })));

  function itemsOf(d) {
    const items = [];
    for (const t of d.boundaries_s || []) items.push({ kind: "cycle", t0: t, t1: null, label: "cycle start " + fmtTime(t) });
    for (const r of d.repeats) items.push({ kind: "repeat", t0: r.start_s, t1: r.end_s,
      label: `repeats ${fmtTime(r.start_s)}–${fmtTime(r.end_s)}, period ${fmtDur(r.period_s)}` });
    for (const t of d.change_points_s) items.push({ kind: "change", t0: t, t1: null, label: "change point " + fmtTime(t) });
    d.anomalies.forEach((a, k) => items.push({ kind: "anomaly", t0: a.start_s, t1: a.end_s, k,
      label: `anomaly ${k + 1}: ${fmtTime(a.start_s)}–${fmtTime(a.end_s)}, score ${fmtNum(a.score)}` +
        (a.kind ? `, ${kindText(a)}` : "") }));
    return items;
  }
  const currentTime = (clip) => (clip && clip.video ? clip.video.currentTime : 0);

  /** Seek a clip's video (rendering the clip first if needed) and play it; other clips pause. */
  function seekClip(clip, t, opts = {}) {
    render(clip);
    setActive(clip);
    setTime(clip.video, Math.max(0, t));
    if (opts.play !== false) play(clip.video);
    if (opts.scroll) clip.video.scrollIntoView({ block: "nearest" });
    update(clip);
  }
  /** One thing plays at a time: the clip about to play pauses the others and the match viewer. */
  function setActive(clip) {
    if (active && active !== clip && active.video && !active.video.paused) active.video.pause();
    for (const key of ["a", "b"]) if (joint[key] && !joint[key].video.paused) joint[key].video.pause();
    active = clip;
  }

  // ---------------------------------------------------------------------------------------- page
  function build() {
    const n = clips.length;
    const joint = DATA.joint;
    const nAnom = allAnomalies.length;
    ROOT.append(el("p", { class: "summary", text: `${plural(n, "clip")}, ${plural(nAnom, "anomaly", "anomalies")}` +
      (joint ? `, ${plural(joint.matches.length, "cross-clip match", "cross-clip matches")}` : "") }));
    if (n > 1) {
      const list = el("ol");
      for (const clip of clips) {
        list.append(el("li", {}, el("a", { href: "#" + sectionId(clip), text: clip.data.name }),
          el("span", { class: "muted", text: " " + shortSummary(clip.data) })));
      }
      ROOT.append(el("nav", { class: "toc", "aria-label": "clips" }, list));
    }
    if (n > 1 || joint) ROOT.append(buildJoint());
    const observer = new IntersectionObserver((entries) => {
      for (const entry of entries) {
        if (!entry.isIntersecting) continue;
        observer.unobserve(entry.target);
        render(clips[Number(entry.target.dataset.index)]);
      }
    }, { rootMargin: "600px 0px" });
    for (const clip of clips) {
      ROOT.append(buildSection(clip));
      observer.observe(clip.section);
    }
    document.addEventListener("keydown", onKey);
    document.documentElement.dataset.ready = "1";
  }
  const sectionId = (clip) => "clip-" + clip.index;
  function shortSummary(d) {
    const period = d.period_s ? `period ${fmtDur(d.period_s)}` : "no period";
    return `${fmtTime(d.duration_s)}, ${period}, ${plural(d.anomalies.length, "anomaly", "anomalies")}`;
  }
  function periodText(d) {
    const conf = d.period_confidence === null || d.period_confidence === undefined ? "–" : d.period_confidence.toFixed(3);
    return d.period_s ? `period ${fmtDur(d.period_s)} (confidence ${conf}), ${plural(d.n_cycles || 0, "cycle")}`
      : `no reliable period (confidence ${conf})`;
  }

  function buildSection(clip) {
    const d = clip.data;
    const enc = d.encoder || {};
    const badge = enc.random_init === true ? el("span", { class: "badge warn", text: "stand-in model (random init)" })
      : enc.model ? el("span", { class: "badge ok", text: "pretrained model" }) : null;
    const header = el("header", {}, el("h2", { text: d.name }), badge,
      el("span", { class: "summary", text: `${fmtTime(d.duration_s)} · ${periodText(d)} · ` +
        `${plural(d.anomalies.length, "anomaly", "anomalies")}` }));
    clip.body = el("div", { class: "placeholder", style: "min-height: 480px", text: "loading…" });
    clip.section = el("section", { class: "clip", id: sectionId(clip), "data-index": clip.index,
      "aria-label": d.name }, header, clip.body);
    return clip.section;
  }

  /** Draw a clip's body the first time it comes near the screen (or is needed by a click). */
  function render(clip) {
    if (clip.rendered) return;
    clip.rendered = true;
    const d = clip.data;
    const body = el("div", { class: "clip-body" });
    const main = el("div", { class: "clip-main" });
    const side = el("div", { class: "clip-side" });
    clip.video = el("video", { controls: true, preload: "metadata", playsinline: true, "aria-label": "video of " + d.name });
    if (d.poster) clip.video.poster = d.poster;
    if (d.video) clip.video.src = d.video;
    clip.readout = el("div", { class: "time-readout", "aria-live": "off" });
    for (const type of ["play", "seeking", "timeupdate"]) clip.video.addEventListener(type, () => {
      if (type === "play") { setActive(clip); loop(); }
      update(clip);
    });
    main.append(d.video ? clip.video : el("p", { class: "muted", text: "video not found beside the report" }),
      clip.readout, buildTimeline(clip), buildMarkLists(clip), buildAnomalyList(clip));
    if (d.cycles) main.append(buildCycleTable(clip));
    side.append(buildSsm(clip), buildFacts(clip));
    body.append(main, side);
    clip.body.replaceWith(body);
    clip.body = body;
    update(clip);
  }

  // ---------------------------------------------------------------------------------------- timeline
  function buildTimeline(clip) {
    const wrap = el("div", { class: "timeline" });
    const labels = el("div", { class: "labels", "aria-hidden": "true" });
    for (const kind of KINDS) {
      labels.append(el("div", { style: `height:${ROW_H + ROW_GAP}px` }, el("span", { class: "swatch " + kind }),
        el("span", { text: ROW_LABEL[kind] })));
    }
    const box = el("div");
    clip.svg = svg("svg", { tabindex: 0, role: "group",
      "aria-label": `timeline of ${clip.data.name}: arrow keys move to the previous or next mark, Enter plays` });
    box.append(clip.svg);
    wrap.append(labels, box);
    const draw = () => drawTimeline(clip, box.clientWidth);
    onResize(box, draw);
    clip.svg.addEventListener("click", (ev) => {
      const rect = clip.svg.getBoundingClientRect();
      const item = pick(clip, ev.clientX - rect.left, ev.clientY - rect.top, rect.width);
      seekClip(clip, item ? item.t0 : xToTime(clip, ev.clientX - rect.left, rect.width));
      if (item && item.kind === "anomaly") markAnomaly(clip, item.k);
    });
    clip.svg.addEventListener("keydown", (ev) => {
      if (ev.key !== "ArrowLeft" && ev.key !== "ArrowRight" && ev.key !== "Home" && ev.key !== "End" && ev.key !== "Enter") return;
      ev.preventDefault();
      const now = currentTime(clip);
      const times = [...new Set(clip.items.map((i) => i.t0))].sort((a, b) => a - b);
      let t = now;
      if (ev.key === "ArrowRight") t = times.find((x) => x > now + 0.25) ?? now;
      if (ev.key === "ArrowLeft") t = [...times].reverse().find((x) => x < now - 0.25) ?? 0;
      if (ev.key === "Home") t = 0;
      if (ev.key === "End") t = times.length ? times[times.length - 1] : now;
      seekClip(clip, t, { play: ev.key === "Enter" });
    });
    return wrap;
  }
  const rowY = (r) => r * (ROW_H + ROW_GAP);
  const xToTime = (clip, x, w) => Math.min(clip.data.duration_s, Math.max(0, (x / w) * clip.data.duration_s));

  function drawTimeline(clip, width) {
    if (!width) return;
    const d = clip.data, s = clip.svg;
    const T = Math.max(d.duration_s, 1e-6), X = (t) => (t / T) * width;
    const height = rowY(KINDS.length) + AXIS_H;
    s.setAttribute("viewBox", `0 0 ${width} ${height}`);
    s.setAttribute("height", height);
    s.replaceChildren();
    KINDS.forEach((kind, r) => s.append(svg("rect", { x: 0, y: rowY(r), width, height: ROW_H, fill: r % 2 ? "#fafafa" : "#f1f1ef" })));
    if (d.cycles) d.cycles.forEach((c, k) => s.append(svg("rect", { x: X(c.start_s), y: rowY(0) + 3, width: Math.max(1, X(c.end_s) - X(c.start_s)),
      height: ROW_H - 6, fill: "var(--cycle)", "fill-opacity": k % 2 ? 0.12 : 0.25 })));
    for (const item of clip.items) {
      const r = KINDS.indexOf(item.kind), y = rowY(r), x = X(item.t0);
      if (item.kind === "cycle") {
        s.append(svg("line", { x1: x, x2: x, y1: y, y2: y + ROW_H, stroke: "var(--cycle)", "stroke-width": 2 }, item.label));
      } else if (item.kind === "change") {
        const c = y + ROW_H / 2, h = ROW_H / 2 - 2;
        s.append(svg("path", { d: `M${x},${c - h}L${x + h},${c}L${x},${c + h}L${x - h},${c}Z`, fill: "var(--change)", stroke: "#7a2f5b" }, item.label));
      } else {
        const w = Math.max(3, X(item.t1) - x);
        const attrs = item.kind === "repeat"
          ? { x, y: y + 4, width: w, height: ROW_H - 8, fill: "var(--repeat)", rx: 2 }
          : { x, y: y + 1, width: w, height: ROW_H - 2, fill: "var(--anomaly)", stroke: "#6b2e00", rx: 1 };
        s.append(svg("rect", attrs, item.label));
      }
    }
    const axisY = rowY(KINDS.length);
    const step = niceStep(T, width);
    for (let t = 0; t <= T + 1e-9; t += step) {
      const x = X(t);
      s.append(svg("line", { x1: x, x2: x, y1: axisY, y2: axisY + 4, stroke: "#777" }));
      const anchor = t === 0 ? "start" : X(t) > width - 20 ? "end" : "middle";
      const label = svg("text", { x, y: axisY + 15, "font-size": 11, fill: "#444", "text-anchor": anchor });
      label.textContent = fmtTime(t);
      s.append(label);
    }
    clip.head = svg("line", { y1: 0, y2: axisY, stroke: "#000", "stroke-width": 2, "pointer-events": "none" });
    s.append(clip.head);
    clip.width = width;
    update(clip);
  }

  /** The mark under a click: a span containing it or the nearest point within SNAP_PX, in the clicked row. */
  function pick(clip, x, y, width) {
    const row = Math.floor(y / (ROW_H + ROW_GAP));
    if (row < 0 || row >= KINDS.length) return null;
    const kind = KINDS[row], T = clip.data.duration_s, X = (t) => (t / T) * width;
    let best = null, bestDist = SNAP_PX;
    for (const item of clip.items) {
      if (item.kind !== kind) continue;
      const x0 = X(item.t0), x1 = item.t1 === null ? x0 : Math.max(X(item.t1), x0 + 3);
      const dist = x < x0 ? x0 - x : x > x1 ? x - x1 : 0;
      if (dist <= bestDist) { best = item; bestDist = dist; }
    }
    return best;
  }

  function buildMarkLists(clip) {
    const d = clip.data;
    const box = el("div", { class: "marks" });
    const chips = (title, items) => {
      if (!items.length) return;
      const line = el("div", {}, el("span", { class: "muted", text: title + ": " }));
      for (const [text, t, label] of items) line.append(el("button", { class: "chip", type: "button", text, "aria-label": label,
        onclick: () => seekClip(clip, t) }));
      box.append(line);
    };
    chips("Repeats", d.repeats.map((r) => [`${fmtTime(r.start_s)}–${fmtTime(r.end_s)}`, r.start_s,
      `repeats from ${fmtTime(r.start_s)} to ${fmtTime(r.end_s)}`]));
    chips("Change points", d.change_points_s.map((t) => [fmtTime(t), t, "change point at " + fmtTime(t)]));
    return box;
  }

  // ---------------------------------------------------------------------------------------- anomalies
  function buildAnomalyList(clip) {
    const d = clip.data;
    const box = el("div", {}, el("h3", { text: `Anomalies (${d.anomalies.length})` }));
    if (!d.anomalies.length) {
      box.append(el("p", { class: "muted", text: "none flagged" }));
      return box;
    }
    const list = el("ol", { class: "anomalies" });
    clip.anomalyButtons = d.anomalies.map((a, k) => {
      const button = el("button", { type: "button", class: "anomaly", "data-k": k,
        "aria-label": `anomaly ${k + 1}, from ${fmtTime(a.start_s)}, ${fmtDur(a.end_s - a.start_s)}, score ${fmtNum(a.score)}` +
          (a.kind ? `, ${kindText(a)}` : ""),
        onclick: () => { seekClip(clip, a.start_s); markAnomaly(clip, k); } },
      a.thumb ? el("img", { src: a.thumb, alt: "", loading: "lazy", width: 160, height: 90 }) : null,
      el("div", { text: `#${k + 1}  ${fmtTime(a.start_s)}–${fmtTime(a.end_s)}` }),
      el("div", { class: "muted", text: `${fmtDur(a.end_s - a.start_s)} · score ${fmtNum(a.score)}` }),
      a.kind ? el("div", { class: "muted", text: kindText(a) }) : null);
      list.append(el("li", {}, button));
      return button;
    });
    box.append(list);
    return box;
  }
  function markAnomaly(clip, k) {
    for (const other of clips) for (const b of other.anomalyButtons || []) b.removeAttribute("aria-current");
    const button = clip.anomalyButtons && clip.anomalyButtons[k];
    if (button) button.setAttribute("aria-current", "true");
    return button;
  }
  /** n / p: the next or previous anomaly of the whole page, from the active clip's current time. */
  function jumpAnomaly(direction) {
    if (!allAnomalies.length) return;
    const ai = active ? active.index : -1, now = currentTime(active);
    const after = (a) => a.clip.index > ai || (a.clip.index === ai && a.start > now + 0.25);
    const before = (a) => a.clip.index < ai || (a.clip.index === ai && a.start < now - 0.75);
    const target = direction > 0 ? allAnomalies.find(after) : [...allAnomalies].reverse().find(before);
    if (!target) return;
    seekClip(target.clip, target.start, { scroll: true });
    const button = markAnomaly(target.clip, target.k);
    if (button) button.focus({ preventScroll: true });
  }
  function onKey(ev) {
    if (ev.ctrlKey || ev.metaKey || ev.altKey || isTyping(ev.target)) return;
    if (ev.key === "n" || ev.key === "p") {
      ev.preventDefault();
      jumpAnomaly(ev.key === "n" ? 1 : -1);
    } else if (ev.key === " " && (ev.target === document.body || ev.target === document.documentElement) && active && active.video) {
      ev.preventDefault();
      if (active.video.paused) play(active.video); else active.video.pause();
    }
  }

  // ---------------------------------------------------------------------------------------- cycles
  // Collapsed, and built on first opening: a worker's clips hold thousands of cycle rows, and building
  // them all as each clip scrolls into view doubled the time to scroll through a 50-clip page.
  function buildCycleTable(clip) {
    const d = clip.data;
    const box = el("details", { class: "cycle-table" }, el("summary", {}, el("h3", { text: `Cycles (${d.cycles.length})` })));
    if (d.cycle_duration_s && typeof d.cycle_duration_s === "object") {
      const parts = Object.entries(d.cycle_duration_s).map(([k, v]) => `${k} ${typeof v === "number" ? fmtNum(v) : v}`);
      box.append(el("p", { class: "muted", text: "cycle duration (s): " + parts.join(", ") }));
    }
    box.addEventListener("toggle", () => { if (box.open && !box.querySelector("table")) fillCycleTable(clip, box); });
    return box;
  }

  function fillCycleTable(clip, box) {
    const columns = [
      ["index", "#", (c) => String(c.index)],
      ["start_s", "start", (c) => el("button", { type: "button", text: fmtTime(c.start_s),
        "aria-label": `play cycle ${c.index} from ${fmtTime(c.start_s)}`, onclick: () => seekClip(clip, c.start_s) })],
      ["duration_s", "duration (s)", (c) => fmtNum(c.duration_s)],
      ["deviation", "deviation", (c) => fmtNum(c.deviation)],
    ];
    box.append(sortableTable("cycles", columns, clip.data.cycles.slice(), "index"));
  }

  /** A table sorted by a click on a column's head (again: the other way). columns: [key, title, cell], where
   *  key names a numeric field of the rows (null: not sortable) and cell(row) gives a string or a node. */
  function sortableTable(cls, columns, rows, firstKey) {
    const tbody = el("tbody");
    let sortKey = firstKey, ascending = true;
    const heads = columns.map(([key, title]) => el("th", { scope: "col", "aria-sort": key === null ? null : key === sortKey ? "ascending" : "none" },
      key === null ? title : el("button", { type: "button", text: title, onclick: () => sortBy(key) })));
    function sortBy(key) {
      ascending = key === sortKey ? !ascending : true;
      sortKey = key;
      heads.forEach((th, i) => { if (columns[i][0] !== null) th.setAttribute("aria-sort", columns[i][0] === key ? (ascending ? "ascending" : "descending") : "none"); });
      fill();
    }
    function fill() {
      const sign = ascending ? 1 : -1;
      rows.sort((a, b) => sign * ((a[sortKey] ?? -Infinity) - (b[sortKey] ?? -Infinity)));
      tbody.replaceChildren(...rows.map((row) => el("tr", {}, ...columns.map(([, , cell]) => {
        const value = cell(row);
        return typeof value === "string" ? el("td", { text: value }) : el("td", {}, value);
      }))));
    }
    fill();
    return el("div", { class: "table-wrap" }, el("table", { class: cls }, el("thead", {}, el("tr", {}, ...heads)), tbody));
  }

  // ---------------------------------------------------------------------------------------- self-similarity
  function buildSsm(clip) {
    const ssm = clip.data.ssm;
    const box = el("div", {}, el("h3", { text: "Self-similarity" }));
    if (!ssm) {
      box.append(el("p", { class: "muted", text: "embeddings not found beside the report" }));
      return box;
    }
    const m = ssm.size;
    const base = el("canvas", { class: "base", width: m, height: m });
    const over = el("canvas", { class: "over", tabindex: 0, role: "img",
      "aria-label": "self-similarity matrix: click a cell (row i, column j) to play time i and show time j; arrow keys move, Enter plays" });
    paintSsm(base, ssm);
    clip.ssmOver = over;
    clip.cursor = null;
    clip.ssmCaption = el("div", { class: "ssm-caption", text: "rows and columns: time; bright = similar. Click a cell." });
    clip.compare = el("video", { muted: true, preload: "none", playsinline: true, hidden: true, "aria-label": "second moment (column j)" });
    clip.compareCaption = el("figcaption", { text: "click the matrix: row i plays above, column j shows here" });
    const choose = (i, j, playIt) => {
      clip.cursor = [i, j];
      seekClip(clip, ssm.t[i], { play: playIt });
      if (clip.data.video) {
        if (!clip.compare.src) { clip.compare.preload = "metadata"; clip.compare.src = clip.data.video; clip.compare.hidden = false; }
        setTime(clip.compare, ssm.t[j]);
      }
      const v = cell(ssm, i, j), lo = ssm.levels[v], hi = ssm.levels[v + 1];
      clip.ssmCaption.textContent = `row ${fmtTime(ssm.t[i])} ↔ column ${fmtTime(ssm.t[j])}: similarity ` +
        (hi - lo < 0.0005 ? lo.toFixed(3) : `${lo.toFixed(3)}–${hi.toFixed(3)}`);
      clip.compareCaption.textContent = `column j: ${fmtTime(ssm.t[j])} (row i plays above)`;
      drawSsmOverlay(clip);
    };
    over.addEventListener("click", (ev) => {
      const r = over.getBoundingClientRect();
      const i = Math.min(m - 1, Math.max(0, Math.floor(((ev.clientY - r.top) / r.height) * m)));
      const j = Math.min(m - 1, Math.max(0, Math.floor(((ev.clientX - r.left) / r.width) * m)));
      choose(i, j, true);
    });
    over.addEventListener("keydown", (ev) => {
      const moves = { ArrowUp: [-1, 0], ArrowDown: [1, 0], ArrowLeft: [0, -1], ArrowRight: [0, 1] };
      const [i, j] = clip.cursor || [0, 0];
      if (moves[ev.key]) {
        ev.preventDefault();
        const step = ev.shiftKey ? 10 : 1;
        choose(Math.min(m - 1, Math.max(0, i + moves[ev.key][0] * step)), Math.min(m - 1, Math.max(0, j + moves[ev.key][1] * step)), false);
      } else if (ev.key === "Enter") {
        ev.preventDefault();
        choose(i, j, true);
      }
    });
    const square = el("div", { class: "ssm-box" }, base, over);
    onResize(square, () => drawSsmOverlay(clip));
    box.append(square, clip.ssmCaption, el("figure", { class: "compare" }, clip.compare, clip.compareCaption));
    return box;
  }
  const cell = (ssm, i, j) => decoded(ssm)[i * ssm.size + j];
  function decoded(ssm) {
    if (!ssm.bytes) {
      const raw = atob(ssm.b64);
      ssm.bytes = new Uint8Array(raw.length);
      for (let i = 0; i < raw.length; i++) ssm.bytes[i] = raw.charCodeAt(i);
    }
    return ssm.bytes;
  }
  /** Linear viridis over the stored value: cells are stored as ranks, so this is histogram-equalised. */
  function paintSsm(canvas, ssm) {
    const bytes = decoded(ssm), n = bytes.length;
    const lut = new Uint8ClampedArray(256 * 3);
    for (let v = 0; v < 256; v++) {
      const pos = (v / 255) * (VIRIDIS.length - 1), a = Math.min(Math.floor(pos), VIRIDIS.length - 2), f = pos - a;
      for (let c = 0; c < 3; c++) lut[v * 3 + c] = VIRIDIS[a][c] * (1 - f) + VIRIDIS[a + 1][c] * f;
    }
    const ctx = canvas.getContext("2d");
    const image = ctx.createImageData(ssm.size, ssm.size);
    for (let i = 0; i < n; i++) {
      const v = bytes[i] * 3;
      image.data[i * 4] = lut[v]; image.data[i * 4 + 1] = lut[v + 1]; image.data[i * 4 + 2] = lut[v + 2]; image.data[i * 4 + 3] = 255;
    }
    ctx.putImageData(image, 0, 0);
  }
  /** The play head as a cross (its row and column) and the chosen cell as a square. */
  function drawSsmOverlay(clip) {
    const over = clip.ssmOver;
    if (!over) return;
    const ssm = clip.data.ssm, m = ssm.size;
    const w = over.clientWidth, dpr = window.devicePixelRatio || 1;
    if (!w) return;
    const side = Math.round(w * dpr); // both: a fresh canvas is 300 x 150, whatever its CSS size
    if (over.width !== side || over.height !== side) { over.width = side; over.height = side; }
    const ctx = over.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, w);
    const px = w / m;
    const idx = blockOf(ssm, currentTime(clip));
    ctx.strokeStyle = "rgba(255,255,255,0.85)";
    ctx.lineWidth = 1;
    ctx.beginPath();
    ctx.moveTo(0, (idx + 0.5) * px); ctx.lineTo(w, (idx + 0.5) * px);
    ctx.moveTo((idx + 0.5) * px, 0); ctx.lineTo((idx + 0.5) * px, w);
    ctx.stroke();
    if (clip.cursor) {
      const [i, j] = clip.cursor;
      ctx.strokeStyle = "#fff"; ctx.lineWidth = 2;
      ctx.strokeRect(j * px - 2, i * px - 2, px + 4, px + 4);
      ctx.strokeStyle = "#000"; ctx.lineWidth = 1;
      ctx.strokeRect(j * px - 3.5, i * px - 3.5, px + 7, px + 7);
    }
  }
  function blockOf(ssm, t) {
    let lo = 0, hi = ssm.t.length - 1;
    while (lo < hi) { const mid = (lo + hi + 1) >> 1; if (ssm.t[mid] <= t) lo = mid; else hi = mid - 1; }
    return lo;
  }

  // ---------------------------------------------------------------------------------------- facts
  function buildFacts(clip) {
    const d = clip.data, e = d.encoder || {};
    const weights = e.random_init === true ? "stand-in: random-init weights (structure is only a smoke test)"
      : e.random_init === false ? "real pretrained checkpoint" : "–";
    const rows = [
      ["period", d.period_s ? fmtDur(d.period_s) : "none reliable"],
      ["confidence", d.period_confidence === null || d.period_confidence === undefined ? "–" : d.period_confidence.toFixed(3)],
      ["cycles", d.n_cycles], ["duration", fmtTime(d.duration_s)],
      ["windows", `${d.n_windows} × ${fmtDur(d.stride_s)} stride`],
      ["model", e.model], ["weights", weights],
      ["window", e.window !== undefined ? `${e.window} frames${e.frame_step > 1 ? `, every ${e.frame_step}th` : ""}` : undefined],
      ["stride", e.stride_s !== undefined ? fmtDur(e.stride_s) : undefined],
      ["crop", e.crop], ["fps", e.fps], ["dtype", e.dtype && e.device ? `${e.dtype} on ${e.device}` : e.dtype],
    ];
    const dl = el("dl", { class: "facts" });
    for (const [k, v] of rows) if (v !== undefined && v !== null) dl.append(el("dt", { text: k }), el("dd", { text: String(v) }));
    return el("div", {}, el("h3", { text: "Facts" }), dl);
  }

  // ---------------------------------------------------------------------------------------- joint view
  const joint = { offsets: [], total: 0 };
  function buildJoint() {
    let offset = 0;
    for (const clip of clips) { joint.offsets.push(offset); offset += clip.data.duration_s; }
    joint.total = Math.max(offset, 1e-6);
    const matches = DATA.joint ? DATA.joint.matches : [];
    joint.matches = matches.filter((m) => byName.has(m.clip_a) && byName.has(m.clip_b));
    const section = el("section", { class: "joint", id: "joint", "aria-label": "all clips end to end" },
      el("h2", { text: "All clips end to end" }));
    const rows = ["clips", "anomalies", "matches"];
    const labels = el("div", { class: "labels", "aria-hidden": "true" });
    const swatch = { clips: "clipseg", anomalies: "anomaly", matches: "match" };
    for (const r of rows) labels.append(el("div", { style: `height:${ROW_H + ROW_GAP}px` }, el("span", { class: "swatch " + swatch[r] }), el("span", { text: r })));
    const box = el("div");
    joint.svg = svg("svg", { tabindex: 0, role: "group", "aria-label": "all clips end to end; click a clip, an anomaly or a match" });
    box.append(joint.svg);
    section.append(el("div", { class: "timeline" }, labels, box));
    onResize(box, () => drawJoint(box.clientWidth));
    joint.svg.addEventListener("click", (ev) => {
      const rect = joint.svg.getBoundingClientRect();
      const x = ev.clientX - rect.left, row = Math.floor((ev.clientY - rect.top) / (ROW_H + ROW_GAP));
      const t = (x / rect.width) * joint.total;
      if (row === 2) {
        const m = nearestMatch(t, rect.width);
        if (m) return openMatch(m);
      }
      if (row === 1) {
        const a = nearestAnomaly(t, rect.width);
        if (a) { seekClip(a.clip, a.start, { scroll: true }); markAnomaly(a.clip, a.k); return; }
      }
      const [clip, local] = locate(t);
      seekClip(clip, local, { scroll: true });
    });
    if (allAnomalies.length) section.append(buildWorkerAnomalies());
    if (DATA.joint) {
      section.append(el("h3", { text: `Cross-clip matches (${joint.matches.length})` }));
      if (!joint.matches.length) section.append(el("p", { class: "muted", text: "none found" }));
      else section.append(buildMatchView(), buildMatchList());
    }
    return section;
  }
  /** Every clip's anomalies in one table, in clip order: sorted by duration or score, the worst of a worker's
   *  day come first; a click plays the span in its clip. */
  function buildWorkerAnomalies() {
    const rows = allAnomalies.map((a, order) => {
      const span = a.clip.data.anomalies[a.k];
      return { a, span, order, duration_s: span.end_s - span.start_s, score: span.score };
    });
    const columns = [
      ["order", "clip and span", (r) => el("button", { type: "button", text: `${r.a.clip.data.name} ${fmtTime(r.span.start_s)}–${fmtTime(r.span.end_s)}`,
        "aria-label": `play ${r.a.clip.data.name} anomaly ${r.a.k + 1} from ${fmtTime(r.span.start_s)}`,
        onclick: () => { seekClip(r.a.clip, r.span.start_s, { scroll: true }); markAnomaly(r.a.clip, r.a.k); } })],
      ["duration_s", "duration (s)", (r) => fmtNum(r.duration_s)],
      ["score", "score", (r) => fmtNum(r.score)],
      [null, "why", (r) => kindText(r.span)],
    ];
    return el("div", {}, el("h3", { text: `Anomalies of every clip (${rows.length})` }),
      sortableTable("worker-anomalies", columns, rows, "order"));
  }
  function locate(t) {
    let c = 0;
    while (c + 1 < clips.length && joint.offsets[c + 1] <= t) c++;
    return [clips[c], t - joint.offsets[c]];
  }
  const jointX = (clip, t, width) => ((joint.offsets[clip.index] + t) / joint.total) * width;
  function nearestAnomaly(t, width) {
    let best = null, bestDist = (SNAP_PX / width) * joint.total;
    for (const a of allAnomalies) {
      const end = a.clip.data.anomalies[a.k].end_s, t0 = joint.offsets[a.clip.index] + a.start, t1 = joint.offsets[a.clip.index] + end;
      const dist = t < t0 ? t0 - t : t > t1 ? t - t1 : 0;
      if (dist <= bestDist) { best = a; bestDist = dist; }
    }
    return best;
  }
  function nearestMatch(t, width) {
    let best = null, bestDist = (SNAP_PX / width) * joint.total;
    for (const m of joint.matches) {
      for (const [name, s0, s1] of [[m.clip_a, m.start_a_s, m.end_a_s], [m.clip_b, m.start_b_s, m.end_b_s]]) {
        const off = joint.offsets[byName.get(name).index], t0 = off + s0, t1 = off + s1;
        const dist = t < t0 ? t0 - t : t > t1 ? t - t1 : 0;
        if (dist <= bestDist) { best = m; bestDist = dist; }
      }
    }
    return best;
  }
  function drawJoint(width) {
    if (!width) return;
    const s = joint.svg, height = rowY(3) + AXIS_H;
    s.setAttribute("viewBox", `0 0 ${width} ${height}`);
    s.setAttribute("height", height);
    s.replaceChildren();
    for (let r = 0; r < 3; r++) s.append(svg("rect", { x: 0, y: rowY(r), width, height: ROW_H, fill: r % 2 ? "#fafafa" : "#f1f1ef" }));
    for (const clip of clips) {
      const x0 = jointX(clip, 0, width), x1 = jointX(clip, clip.data.duration_s, width);
      s.append(svg("rect", { x: x0, y: 1, width: Math.max(1, x1 - x0 - 1), height: ROW_H - 2, fill: clip.index % 2 ? "#a9a9a9" : "#cfcfcf" },
        `${clip.data.name} (${fmtTime(clip.data.duration_s)})`));
      if (x1 - x0 > 60) {
        const label = svg("text", { x: x0 + 4, y: ROW_H - 5, "font-size": 11, fill: "#111", "pointer-events": "none" });
        label.textContent = clip.data.name.replace("rectified_clip_", "clip ");
        s.append(label);
      }
      for (const a of clip.data.anomalies) {
        const ax = jointX(clip, a.start_s, width);
        s.append(svg("rect", { x: ax, y: rowY(1) + 1, width: Math.max(3, jointX(clip, a.end_s, width) - ax), height: ROW_H - 2,
          fill: "var(--anomaly)", stroke: "#6b2e00" }, `${clip.data.name}: anomaly ${fmtTime(a.start_s)}–${fmtTime(a.end_s)}`));
      }
    }
    for (const m of joint.matches) {
      const a = byName.get(m.clip_a), b = byName.get(m.clip_b);
      const label = `${m.clip_a} ${fmtTime(m.start_a_s)}–${fmtTime(m.end_a_s)} ↔ ${m.clip_b} ${fmtTime(m.start_b_s)}–${fmtTime(m.end_b_s)}`;
      for (const [clip, s0, s1] of [[a, m.start_a_s, m.end_a_s], [b, m.start_b_s, m.end_b_s]]) {
        const x = jointX(clip, s0, width);
        s.append(svg("rect", { x, y: rowY(2) + 4, width: Math.max(3, jointX(clip, s1, width) - x), height: ROW_H - 8,
          fill: "var(--match)", stroke: "#1f6f9a" }, label));
      }
    }
    const axisY = rowY(3), step = niceStep(joint.total, width);
    for (let t = 0; t <= joint.total + 1e-9; t += step) {
      const x = (t / joint.total) * width;
      s.append(svg("line", { x1: x, x2: x, y1: axisY, y2: axisY + 4, stroke: "#777" }));
      const text = svg("text", { x, y: axisY + 15, "font-size": 11, fill: "#444", "text-anchor": t === 0 ? "start" : x > width - 20 ? "end" : "middle" });
      text.textContent = fmtTime(t);
      s.append(text);
    }
    joint.head = svg("line", { y1: 0, y2: axisY, stroke: "#000", "stroke-width": 2, "pointer-events": "none" });
    s.append(joint.head);
    joint.width = width;
    if (active) update(active);
  }
  function buildMatchView() {
    const side = (key) => {
      const video = el("video", { controls: true, muted: true, preload: "none", playsinline: true, id: "match-" + key, hidden: true,
        "aria-label": `match, clip ${key.toUpperCase()}` });
      const caption = el("figcaption", { text: `clip ${key.toUpperCase()}: choose a match below` });
      // each side loops over its own span, so the two repetitions can be watched together
      video.addEventListener("timeupdate", () => {
        const span = joint.open && joint.open[key];
        if (span && video.currentTime > span[1]) video.currentTime = span[0];
      });
      joint[key] = { video, caption };
      return el("figure", {}, video, caption);
    };
    return el("div", { class: "match-view" }, side("a"), side("b"));
  }
  function buildMatchList() {
    const LIMIT = 100;
    const tbody = el("tbody");
    const row = (m, n) => el("tr", {},
      el("td", {}, el("button", { type: "button", class: "chip match", "data-n": n, text: "play both",
        "aria-label": `play match ${n + 1}: ${m.clip_a} from ${fmtTime(m.start_a_s)} and ${m.clip_b} from ${fmtTime(m.start_b_s)}`,
        onclick: () => openMatch(m) })),
      el("td", { text: `${m.clip_a} ${fmtTime(m.start_a_s)}–${fmtTime(m.end_a_s)}` }),
      el("td", { text: `${m.clip_b} ${fmtTime(m.start_b_s)}–${fmtTime(m.end_b_s)}` }),
      el("td", { text: m.similarity === null || m.similarity === undefined ? "–" : m.similarity.toFixed(3) }));
    const fill = (n) => tbody.replaceChildren(...joint.matches.slice(0, n).map(row));
    fill(LIMIT);
    const table = el("div", { class: "table-wrap" }, el("table", { class: "match-list" },
      el("thead", {}, el("tr", {}, el("th", { text: "" }), el("th", { text: "clip A" }), el("th", { text: "clip B" }), el("th", { text: "similarity" }))), tbody));
    const box = el("div", {}, table);
    if (joint.matches.length > LIMIT) {
      const more = el("button", { type: "button", class: "chip", text: `show all ${joint.matches.length}`,
        onclick: () => { fill(joint.matches.length); more.remove(); } });
      box.append(more);
    }
    return box;
  }
  /** Both spans of a match side by side: each video seeks to its span and loops over it. */
  function openMatch(m) {
    if (active && active.video && !active.video.paused) active.video.pause();
    joint.open = { a: [m.start_a_s, m.end_a_s], b: [m.start_b_s, m.end_b_s] };
    for (const [key, name, t0, t1] of [["a", m.clip_a, m.start_a_s, m.end_a_s], ["b", m.clip_b, m.start_b_s, m.end_b_s]]) {
      const clip = byName.get(name), side = joint[key];
      side.caption.textContent = `${name}: ${fmtTime(t0)}–${fmtTime(t1)}`;
      if (!clip.data.video) continue;
      if (side.video.getAttribute("src") !== clip.data.video) { side.video.preload = "metadata"; side.video.src = clip.data.video; }
      side.video.hidden = false;
      setTime(side.video, t0);
      play(side.video);
    }
    joint.a.video.scrollIntoView({ block: "nearest" });
  }

  // ---------------------------------------------------------------------------------------- play head
  function update(clip) {
    if (!clip || !clip.rendered) return;
    const t = currentTime(clip);
    if (clip.head && clip.width) {
      const x = (t / Math.max(clip.data.duration_s, 1e-6)) * clip.width;
      clip.head.setAttribute("x1", x);
      clip.head.setAttribute("x2", x);
    }
    if (clip.readout) clip.readout.textContent = `${fmtTime(t)} / ${fmtTime(clip.data.duration_s)}`;
    if (clip.ssmOver) drawSsmOverlay(clip);
    if (joint.head && joint.width && clip === active) {
      const x = jointX(clip, t, joint.width);
      joint.head.setAttribute("x1", x);
      joint.head.setAttribute("x2", x);
    }
  }
  let looping = false;
  function loop() {
    if (looping) return;
    looping = true;
    const tick = () => {
      if (!active || !active.video || active.video.paused) { looping = false; if (active) update(active); return; }
      update(active);
      requestAnimationFrame(tick);
    };
    requestAnimationFrame(tick);
  }

  build();
  window.egocleanReport = { clips, joint, seekClip, openMatch, jumpAnomaly };
})();
