// facebatch report: renders window.FACEBATCH_REPORT (data.js). No network, no libraries;
// works from file://. Corrections are kept in localStorage, downloaded as CSV, and loaded
// back from corrections.js (written by `facebatch report --import`).
(function () {
  "use strict";
  const D = window.FACEBATCH_REPORT;
  const PAGE = 60;
  // What went wrong while drawing (a face that could not be drawn, a page that failed):
  // shown where it happened and kept here, so one bad value never blanks the page.
  const problems = [];
  const problem = (what, e) => {
    const text = what + ": " + (e && e.message ? e.message : String(e));
    problems.push(text);
    console.warn("facebatch report: " + text);
    return text;
  };

  // ---- numbers ----------------------------------------------------------------------
  // data.js writes NaN and the infinities as the strings "NaN", "Infinity", "-Infinity"
  // (JSON has no such numbers) and a missing value as null.
  const num = (v) => (v === null || v === undefined ? null : typeof v === "number" ? v : Number(v));
  const fmt = (v, digits) => {
    const x = num(v);
    if (x === null) return "\u2013";
    if (Number.isNaN(x)) return "NaN";
    if (x === Infinity) return "\u221e";
    if (x === -Infinity) return "\u2212\u221e";
    return x.toFixed(digits);
  };
  const nums = (a) => (Array.isArray(a) ? a.map(num) : null);
  for (const r of D.rows) {
    try {
      r.confidence = num(r.confidence);
      r.det_score = num(r.det_score);
      r.box = nums(r.box);
      r.landmarks = nums(r.landmarks);
      r.probs = nums(r.probs) || [];
      if (r.members) for (const m of Object.keys(r.members)) r.members[m] = nums(r.members[m]) || [];
      if (!r.groups) r.groups = {};
    } catch (e) { problem("row " + (r && r.id), e); }
  }
  const rows = new Map(D.rows.map((r) => [r.id, r]));
  const storeKey = D.store_key || "facebatch-report:" + (D.metadata["facebatch.run_id"] || D.input);
  let choices = {};
  try { choices = JSON.parse(localStorage.getItem(storeKey) || "{}"); } catch (e) { choices = {}; }
  // Corrections imported into the report folder (corrections.js) for this run: the
  // browser's own choices since then win ("skip" marks one taken back).
  const imported = window.FACEBATCH_CORRECTIONS;
  const importedHere = !!(imported && imported.key === storeKey && imported.choices);
  if (importedHere) {
    for (const [id, c] of Object.entries(imported.choices)) if (!(id in choices)) choices[id] = c;
  }
  const state = { tab: "summary", page: 0, focus: 0, zoom: null, slice: [] };
  // What a choice says of a face: its own label is a confirmation, not a correction.
  const verdict = (r, c) => (c === "not_a_face" ? "not_a_face" : c === r.label ? "confirmed" : "corrected");
  // Members' disagreement (data.js: the largest gap between two members' probabilities
  // of a label); -1 for a face of a single network.
  const disagreement = (r) => (Number.isFinite(num(r.disagreement)) ? num(r.disagreement) : -1);
  const hasMembers = D.rows.some((r) => r.disagreement !== undefined);
  // The label a face's folders name (`.../male/x.jpg`), if any: what the folder says.
  const lowerLabels = D.labels.map((l) => l.toLowerCase());
  const folderLabel = (r) => {
    const parts = String(r.path).toLowerCase().split("/").slice(0, -1);
    for (let i = parts.length - 1; i >= 0; i--) {
      const k = lowerLabels.indexOf(parts[i]);
      if (k >= 0) return D.labels[k];
    }
    return null;
  };

  const el = (tag, attrs, ...kids) => {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") e.className = v;
      else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
      else if (v !== undefined && v !== null) e.setAttribute(k, v);
    }
    for (const k of kids.flat()) e.append(k instanceof Node ? k : document.createTextNode(String(k)));
    return e;
  };
  const pct = (x) => (100 * x).toFixed(1) + "%";
  const $ = (id) => document.getElementById(id);

  // ---- tabs -------------------------------------------------------------------------
  const tabs = [["summary", "Summary"]];
  for (const l of D.labels) tabs.push(["label:" + l, l + " (" + (D.summary.by_label[l] || 0) + ")"]);
  tabs.push(["near", "Near the threshold (" + (D.galleries.near || []).length + ")"]);
  if (D.galleries.disagree) tabs.push(["disagree", "Members disagree (" + D.galleries.disagree.length + ")"]);
  tabs.push(["no_face", "No face (" + (D.summary.by_status.no_face || 0) + ")"]);
  tabs.push(["error", "Errors (" + (D.summary.by_status.error || 0) + ")"]);
  if (D.kind === "predictions") tabs.push(["eval", "Evaluation"]);

  function renderTabs() {
    const nav = $("tabs");
    nav.replaceChildren(...tabs.map(([key, name]) =>
      el("button", { type: "button", "data-tab": key, "aria-current": state.tab === key ? "page" : null,
        onclick: () => show(key) }, name)));
  }

  function show(key) {
    state.tab = key; state.page = 0; state.focus = 0;
    history.replaceState(null, "", "#" + encodeURIComponent(key));
    render();
  }

  // ---- filters ----------------------------------------------------------------------
  for (const l of D.labels) $("f-label").append(el("option", { value: l }, l));
  for (const g of D.group_columns) $("f-group").append(el("option", { value: g }, g));
  if (!hasMembers) $("f-sort").querySelector("option[value=disagree]").remove();
  for (const id of ["f-path", "f-label", "f-min", "f-max", "f-group", "f-group-value", "f-folder", "f-sort"]) {
    $(id).addEventListener("input", () => { state.page = 0; state.focus = 0; render(); });
  }
  $("prev").addEventListener("click", () => movePage(-1));
  $("next").addEventListener("click", () => movePage(1));

  function filtered(ids) {
    const path = $("f-path").value.toLowerCase();
    const label = $("f-label").value;
    const lo = parseFloat($("f-min").value || "0"), hi = parseFloat($("f-max").value || "1");
    const g = $("f-group").value, gv = $("f-group-value").value.toLowerCase();
    const folder = $("f-folder").checked;
    const out = ids.map((id) => rows.get(id)).filter((r) => r
      && (!path || r.path.toLowerCase().includes(path))
      && (!label || r.label === label || r.truth === label)
      // A face without a confidence, or with one that is not a number, is always shown.
      && (!Number.isFinite(r.confidence) || (r.confidence >= lo && r.confidence <= hi))
      && (!g || (r.groups[g] || "").toLowerCase().includes(gv))
      && (!folder || (r.status === "ok" && folderLabel(r) !== null && folderLabel(r) !== r.label)));
    const sort = $("f-sort").value;
    if (sort === "disagree") out.sort((a, b) => disagreement(b) - disagreement(a) || a.id - b.id);
    else if (sort === "path") out.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : a.id - b.id));
    return out;
  }

  // ---- cards ------------------------------------------------------------------------
  const choiceNames = D.labels.concat(["not_a_face", "skip"]);
  function card(r, i) {
    const c = choices[r.id];
    const thumbs = el("div", { class: "thumbs" });
    if (r.thumb === "ok") {
      const zoom = () => openZoom(r);
      if (r.status === "ok") thumbs.append(el("img", { class: "face", src: D.crops_dir + "/" + r.id + ".png", alt: "aligned face", title: "click or z: zoom", onclick: zoom }));
      thumbs.append(el("img", { class: "context", src: "context/" + r.id + ".jpg", alt: "face in its photo", title: "click or z: zoom", onclick: zoom }));
    } else {
      const why = { missing: "photo missing since the run", changed: "photo changed since the run (size or time differs)", unreadable: "photo not readable" }[r.thumb] || r.thumb;
      thumbs.append(el("div", { class: "missing" }, why));
    }
    const pred = r.status === "ok"
      ? el("div", { class: "pred" }, (r.label ?? "\u2013") + " ", el("span", { class: "conf" }, fmt(r.confidence, 3)),
        r.truth ? el("span", { class: "truth" }, r.truth === r.label ? "" : "  (true: " + r.truth + ")") : "",
        r.members ? el("div", { class: "members" }, Object.entries(r.members).map(([m, p]) =>
          m + " " + D.labels.map((l, k) => l + " " + fmt(p[k], 2)).join(" ")).join("; ")) : "")
      : el("div", { class: "error" }, r.status === "error" ? (r.error || "error") : "no face found");
    const buttons = el("div", { class: "buttons" });
    if (r.status === "ok") {
      choiceNames.forEach((name, k) => {
        const key = k < D.labels.length ? String(k + 1) : name === "not_a_face" ? "x" : "s";
        buttons.append(el("button", { type: "button", class: c === name ? "on" : "", title: "key " + key,
          onclick: () => choose(r.id, name) }, name.replace(/_/g, " ")));
      });
    }
    const folder = r.status === "ok" ? folderLabel(r) : null;
    if (folder && folder !== r.label) pred.append(el("div", { class: "folder" }, "folder says " + folder));
    return el("div", { class: "card" + (c && c !== "skip" ? " chosen " + verdict(r, c) : ""), tabindex: "0", "data-id": r.id, "data-index": i,
      onfocus: () => { state.focus = i; } },
      thumbs,
      el("div", { class: "path", title: r.path }, r.path + (r.face_index !== null && r.face_index !== undefined ? "  face " + r.face_index : "")),
      pred, buttons);
  }

  // A card, or in its place a card saying why this face could not be drawn: an exception in
  // one face never stops the others.
  function safeCard(r, i) {
    try {
      return card(r, i);
    } catch (e) {
      const why = problem("face " + r.id + " (" + r.path + ")", e);
      return el("div", { class: "card broken", tabindex: "0", "data-id": r.id, "data-index": i,
        onfocus: () => { state.focus = i; } },
        el("div", { class: "path", title: String(r.path) }, String(r.path)),
        el("div", { class: "error" }, "this face could not be drawn: " + why));
    }
  }

  function choose(id, name) {
    // Pressing a choice again takes it back (over an imported one: "skip").
    if (choices[id] === name) {
      if (importedHere && id in imported.choices) choices[id] = "skip";
      else delete choices[id];
    } else choices[id] = name;
    localStorage.setItem(storeKey, JSON.stringify(choices));
    const keep = state.focus;
    render();
    focusCard(keep);
  }

  function gallery(key) {
    const all = filtered(D.galleries[key] || []);
    const pages = Math.max(1, Math.ceil(all.length / PAGE));
    state.page = Math.min(state.page, pages - 1);
    const slice = all.slice(state.page * PAGE, (state.page + 1) * PAGE);
    state.slice = slice;
    $("page-info").textContent = "page " + (state.page + 1) + " of " + pages + " (" + all.length + " faces shown of "
      + galleryTotal(key) + ")";
    const left = (D.left_out || {})[key] || 0;
    const leftNote = left
      ? el("p", { class: "left-out" }, left + " faces of this gallery are left out: it shows at most " + D.limit
        + " (its least confident half and a random sample of the rest). Build the report again with --limit "
        + ((D.galleries[key] || []).length + left) + " to show them all.")
      : "";
    const note = key.startsWith("label:") || key.startsWith("cell:")
      ? el("p", {}, "Least confident first, then a random sample of the rest.")
      : key === "near" ? el("p", {}, "Faces whose two most likely labels are within 0.2 of each other, closest first.")
      : key === "disagree" ? el("p", {}, "Faces where two of the ensemble's networks differ by 0.2 or more in a label's probability, furthest apart first.") : "";
    return [note, leftNote, el("div", { class: "grid", id: "grid" }, slice.map(safeCard))];
  }

  // "Accept this page": every face on the page without a choice keeps its label
  // (a confirmation each).
  function acceptPage() {
    for (const r of state.slice) {
      if (r.status === "ok" && r.thumb === "ok" && r.label && (!(r.id in choices) || choices[r.id] === "skip")) choices[r.id] = r.label;
    }
    localStorage.setItem(storeKey, JSON.stringify(choices));
    const keep = state.focus;
    render();
    focusCard(keep);
  }
  $("accept-page").addEventListener("click", acceptPage);

  // ---- zoom -------------------------------------------------------------------------
  function openZoom(r) {
    state.zoom = r.id;
    const z = $("zoom");
    const kids = [];
    if (r.status === "ok") kids.push(el("img", { class: "zoom-face", src: D.crops_dir + "/" + r.id + ".png", alt: "aligned face, enlarged" }));
    kids.push(el("img", { class: "zoom-context", src: "context/" + r.id + ".jpg", alt: "face in its photo, enlarged" }));
    kids.push(el("p", {}, r.path + (r.face_index !== null && r.face_index !== undefined ? "  face " + r.face_index : "")
      + (r.label ? "  \u2013 " + r.label + " " + fmt(r.confidence, 3) : "") + "  (Esc or click: close)"));
    z.replaceChildren(...kids);
    z.hidden = false;
  }
  function closeZoom() {
    state.zoom = null;
    $("zoom").hidden = true;
    focusCard(state.focus);
  }
  $("zoom").addEventListener("click", closeZoom);

  function galleryTotal(key) {
    if (key.startsWith("label:")) return D.summary.by_label[key.slice(6)] || 0;
    if (key === "error" || key === "no_face") return D.summary.by_status[key] || 0;
    return (D.galleries[key] || []).length;
  }

  function movePage(d) {
    state.page = Math.max(0, state.page + d); state.focus = 0;
    render(); focusCard(0);
  }

  function focusCard(i) {
    const cards = document.querySelectorAll("#grid .card");
    if (!cards.length) return;
    const k = Math.max(0, Math.min(cards.length - 1, i));
    state.focus = k;
    cards[k].focus();
  }

  const SVG = "http://www.w3.org/2000/svg";
  function svgEl(tag, attrs, text) {
    const e = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = text;
    return e;
  }

  // ---- summary ----------------------------------------------------------------------
  function table(head, body, numeric = true) {
    return el("table", {}, el("tr", {}, head.map((h) => el("th", {}, h))),
      body.map((r) => el("tr", {}, r.map((c, i) => el("td", { class: i && numeric ? "num" : "" }, c)))));
  }

  // A label's confidences: bars from where a most likely label's confidence can start
  // (1 / number of labels: 0.5 for two) to 1, with a count axis.
  function histogram(counts, title) {
    const n = counts.length, first = Math.min(n - 1, Math.floor(n / Math.max(1, D.labels.length)));
    const shown = counts.slice(first), max = Math.max(1, ...shown);
    const left = 36, w = 300, h = 120, top = 6;
    const svg = svgEl("svg", { width: left + w + 10, height: top + h + 34, role: "img", "aria-label": title, class: "histogram" });
    const bw = w / shown.length, Y = (v) => top + h - (h * v) / max;
    for (const v of [...new Set([0, Math.round(max / 2), max])]) {
      svg.append(svgEl("line", { x1: left, x2: left + w, y1: Y(v), y2: Y(v), stroke: "#e3e6eb" }));
      svg.append(svgEl("text", { x: left - 4, y: Y(v) + 4, "text-anchor": "end" }, String(v)));
    }
    shown.forEach((c, i) => {
      const lo = (first + i) / n, hi = (first + i + 1) / n;
      const r = svgEl("rect", { x: left + i * bw + 1, y: Y(c), width: bw - 2, height: top + h - Y(c), fill: "#3a64b8" });
      r.append(svgEl("title", {}, lo.toFixed(2) + "-" + hi.toFixed(2) + ": " + c + " faces"));
      svg.append(r);
    });
    const lo = first / n;
    for (const [v, anchor] of [[lo, "start"], [(lo + 1) / 2, "middle"], [1, "end"]]) {
      svg.append(svgEl("text", { x: left + ((v - lo) / (1 - lo)) * w, y: top + h + 14, "text-anchor": anchor }, String(+v.toFixed(2))));
    }
    svg.append(svgEl("text", { x: left, y: top + h + 30 }, title + " (faces per bin)"));
    return svg;
  }

  function summary() {
    const s = D.summary, md = D.metadata;
    const out = [];
    out.push(el("h2", {}, "Summary"));
    out.push(el("p", {}, s.rows + " rows from " + s.photos + " photos; " + D.input));
    const leftOut = Object.entries(D.left_out || {}).filter(([k]) => k.startsWith("label:") || k === "no_face" || k === "error");
    if (leftOut.length) {
      const n = leftOut.reduce((a, [, v]) => a + v, 0);
      out.push(el("p", { class: "left-out" }, n + " rows are in no gallery: each shows at most " + D.limit + " faces ("
        + leftOut.map(([k, v]) => k.replace(/^label:/, "") + " " + v).join(", ") + " left out). Build the report again with a larger --limit to show them."));
    }
    out.push(el("div", { class: "cols" },
      el("div", {}, el("h3", {}, "Rows by status"), table(["status", "rows"], Object.entries(s.by_status))),
      el("div", {}, el("h3", {}, "Faces by label"), table(["label", "faces"], Object.entries(s.by_label))),
      el("div", {}, el("h3", {}, "Faces per photo"), table(["faces", "photos"], Object.entries(s.faces_per_photo)))));
    out.push(el("h3", {}, "Confidence by label"));
    out.push(el("div", { class: "cols", id: "histograms" },
      Object.entries(s.confidence_histogram).map(([l, c]) => histogram(c, l + ": confidence of its faces"))));
    if (Object.keys(s.errors_by_kind).length) {
      out.push(el("h3", {}, "Errors by kind"));
      out.push(table(["kind", "rows"], Object.entries(s.errors_by_kind).sort((a, b) => b[1] - a[1])));
    }
    out.push(el("h3", {}, "Run"));
    out.push(table(["key", "value"], Object.entries(md).map(([k, v]) => [k, v.length > 300 ? v.slice(0, 300) + "…" : v]), false));
    return out;
  }

  // ---- evaluation -------------------------------------------------------------------
  function wilson(k, n) {
    if (!n) return [0, 1];
    const z = 1.96, p = k / n, d = 1 + (z * z) / n;
    const c = (p + (z * z) / (2 * n)) / d, m = (z * Math.sqrt((p * (1 - p)) / n + (z * z) / (4 * n * n))) / d;
    return [Math.max(0, c - m), Math.min(1, c + m)];
  }

  function evaluation() {
    const s = D.summary, out = [el("h2", {}, "Evaluation")];
    const head = ["true \\ predicted"].concat(D.labels);
    const body = D.labels.map((t, i) => [t].concat(D.labels.map((p, j) => {
      const key = "cell:" + t + ":" + p;
      return el("a", { href: "#", onclick: (e) => {
          e.preventDefault();
          if (!tabs.some(([k]) => k === key)) tabs.push([key, t + " as " + p]);
          show(key);
        } },
        String(s.confusion[i][j]));
    })));
    out.push(el("h3", {}, "Confusion matrix (click a cell to see its faces)"));
    out.push(el("table", { class: "confusion" }, el("tr", {}, head.map((h) => el("th", {}, h))),
      body.map((r) => el("tr", {}, r.map((c, i) => i ? el("td", {}, c) : el("th", {}, c))))));
    for (const chart of s.groups) {
      if (chart.skipped) {
        out.push(el("p", { class: "skipped" }, "Accuracy by " + chart.column + ": not drawn (" + chart.skipped + ")."));
        continue;
      }
      const binned = chart.edges && chart.edges.length ? ", binned at " + chart.edges.join(", ") : "";
      out.push(el("h3", {}, "Accuracy by " + chart.column + binned + " (95% Wilson interval; * fewer than 30 images)"));
      out.push(groupBars(chart.column, chart.groups));
    }
    out.push(el("h3", {}, "Reliability: accuracy against confidence (15 bins)"));
    out.push(reliability(s.reliability));
    return out;
  }


  // Horizontal bars with their 95% Wilson interval as a whisker; small groups drawn pale.
  function groupBars(col, groups) {
    const rowH = 26, left = 180, w = 420, h = rowH * groups.length + 30;
    const svg = svgEl("svg", { width: left + w + 60, height: h, role: "img", "aria-label": "accuracy by " + col, class: "groups" });
    const x = (v) => left + v * w;
    for (const t of [0, 0.25, 0.5, 0.75, 1]) {
      svg.append(svgEl("line", { x1: x(t), x2: x(t), y1: 0, y2: h - 24, stroke: "#d8dce3" }));
      svg.append(svgEl("text", { x: x(t) - 8, y: h - 8 }, pct(t).replace(".0", "")));
    }
    groups.forEach(([g, c], i) => {
      const acc = c.n ? c.correct / c.n : 0, [lo, hi] = wilson(c.correct, c.n), y = i * rowH + 4;
      svg.append(svgEl("text", { x: 0, y: y + 15 }, g + (c.n < 30 ? " *" : "") + " (n=" + c.n + ")"));
      const bar = svgEl("rect", { x: x(0), y: y + 3, width: acc * w, height: rowH - 10, fill: "#3a64b8", "fill-opacity": c.n < 30 ? 0.35 : 0.85 });
      bar.append(svgEl("title", {}, pct(acc) + " [" + pct(lo) + ", " + pct(hi) + "]"));
      svg.append(bar);
      svg.append(svgEl("line", { x1: x(lo), x2: x(hi), y1: y + rowH / 2 - 2, y2: y + rowH / 2 - 2, stroke: "#1d2330", "stroke-width": 2 }));
      svg.append(svgEl("text", { x: x(1) + 6, y: y + 15 }, pct(acc)));
    });
    return svg;
  }

  // Bars of accuracy per confidence bin against the diagonal of perfect calibration.
  function reliability(bins) {
    const size = 300, pad = 30;
    const svg = svgEl("svg", { width: size + 2 * pad, height: size + 2 * pad, role: "img", "aria-label": "reliability diagram", class: "reliability" });
    const X = (v) => pad + v * size, Y = (v) => pad + (1 - v) * size;
    svg.append(svgEl("rect", { x: pad, y: pad, width: size, height: size, fill: "none", stroke: "#d8dce3" }));
    bins.forEach((b, i) => {
      if (!b[0]) return;
      const acc = b[2] / b[0];
      const r = svgEl("rect", { x: X(i / 15) + 1, y: Y(acc), width: size / 15 - 2, height: (acc * size), fill: "#3a64b8", "fill-opacity": 0.75 });
      r.append(svgEl("title", {}, b[0] + " faces, mean confidence " + (b[1] / b[0]).toFixed(3) + ", accuracy " + pct(acc)));
      svg.append(r);
    });
    svg.append(svgEl("line", { x1: X(0), y1: Y(0), x2: X(1), y2: Y(1), stroke: "#1d2330" }));
    svg.append(svgEl("text", { x: pad, y: size + 2 * pad - 6 }, "confidence 0 to 1; bars: accuracy"));
    return svg;
  }

  // ---- corrections ------------------------------------------------------------------
  const csvCell = (v) => {
    const s = v === null || v === undefined ? "" : String(v);
    return /[",\n\r]/.test(s) ? '"' + s.replace(/"/g, '""') + '"' : s;
  };

  // The columns `facebatch report --import` writes too (docs/output-schema.md): the crop
  // by absolute path, so the file trains from wherever the browser saves it.
  function correctionsCsv() {
    const lines = [["path", "label", "verdict", "id", "photo", "face_index", "box", "model_label", "model_confidence", "already_aligned"].join(",")];
    const ids = Object.keys(choices).map(Number).sort((a, b) => a - b);
    for (const id of ids) {
      const r = rows.get(id), name = choices[id];
      if (!r || name === "skip" || r.thumb !== "ok" || r.status !== "ok") continue;
      lines.push([D.report_dir + "/" + D.crops_dir + "/" + r.id + ".png", name, verdict(r, name), r.id, r.photo, r.face_index,
        r.box ? r.box.map((v) => fmt(v, 1)).join(" ") : "", r.label, r.confidence, "true"].map(csvCell).join(","));
    }
    return lines.join("\n") + "\n";
  }

  function updateCount() {
    const n = { corrected: 0, confirmed: 0, not_a_face: 0 };
    for (const [id, c] of Object.entries(choices)) {
      const r = rows.get(Number(id));
      if (r && c !== "skip") n[verdict(r, c)]++;
    }
    $("correction-count").textContent = n.corrected + " corrected, " + n.confirmed + " confirmed, " + n.not_a_face + " not a face";
  }
  $("save-note").textContent = "Download saves corrections.csv where your browser saves downloads; it trains from "
    + "there (facebatch train DATA corrections.csv --init MODEL --out NEW). To keep it with this report: "
    + "facebatch report --import <the saved corrections.csv> --out " + D.report_dir;

  $("download").addEventListener("click", () => {
    const blob = new Blob([correctionsCsv()], { type: "text/csv" });
    const a = el("a", { href: URL.createObjectURL(blob), download: "corrections.csv" });
    document.body.append(a); a.click(); a.remove();
  });
  $("clear").addEventListener("click", () => {
    if (!confirm("Forget every correction made on this report?")) return;
    choices = {}; localStorage.removeItem(storeKey); render();
  });

  // ---- keys -------------------------------------------------------------------------
  document.addEventListener("keydown", (e) => {
    if (e.target.matches("input, select, textarea") || e.ctrlKey || e.metaKey || e.altKey) return;
    if (state.zoom !== null) {
      if (e.key === "Escape" || e.key === "z") { closeZoom(); e.preventDefault(); }
      return;
    }
    const cards = document.querySelectorAll("#grid .card");
    const current = cards[state.focus];
    const id = current ? Number(current.dataset.id) : null;
    const r = id !== null ? rows.get(id) : null;
    if (/^[1-9]$/.test(e.key) && r && r.status === "ok" && Number(e.key) <= D.labels.length) {
      choose(id, D.labels[Number(e.key) - 1]); focusCard(state.focus + 1);
    } else if (e.key === "x" && r && r.status === "ok") { choose(id, "not_a_face"); focusCard(state.focus + 1); }
    else if (e.key === "s" && r && r.status === "ok") { choose(id, "skip"); focusCard(state.focus + 1); }
    else if (e.key === "z" && r && r.thumb === "ok") openZoom(r);
    else if (e.key === "a" && state.tab !== "summary" && state.tab !== "eval") acceptPage();
    else if (e.key === "ArrowRight" || e.key === "j") focusCard(state.focus + 1);
    else if (e.key === "ArrowLeft" || e.key === "k") focusCard(state.focus - 1);
    else if (e.key === "n") movePage(1);
    else if (e.key === "p") movePage(-1);
    else return;
    e.preventDefault();
  });

  // ---- render -----------------------------------------------------------------------
  function render() {
    renderTabs();
    updateCount();
    const galleryTab = state.tab !== "summary" && state.tab !== "eval";
    $("filters").hidden = !galleryTab;
    const view = $("view");
    try {
      if (state.tab === "summary") view.replaceChildren(...summary());
      else if (state.tab === "eval") view.replaceChildren(...evaluation());
      else view.replaceChildren(...gallery(state.tab).filter((x) => x));
    } catch (e) {
      view.replaceChildren(el("p", { class: "error" }, "This page could not be drawn: " + problem("page " + state.tab, e)));
    }
    document.body.dataset.tab = state.tab;
  }

  window.facebatchReport = { show, correctionsCsv, acceptPage, choices: () => choices, problems: () => problems.slice() };
  // A page can be linked to: index.html#label:female opens that gallery, and the browser's
  // back and forward buttons move between the pages seen.
  function fromHash() {
    const wanted = decodeURIComponent(location.hash.slice(1));
    if (wanted !== state.tab && tabs.some(([key]) => key === wanted)) {
      state.tab = wanted; state.page = 0; state.focus = 0;
      return true;
    }
    return false;
  }
  window.addEventListener("hashchange", () => { if (fromHash()) render(); });
  fromHash();
  render();
})();
