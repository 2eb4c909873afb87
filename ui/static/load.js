// Load page over the distributed load jobs API (/api/v1/load/...):
//   #/load                 the jobs and the kept reports (pick two to compare),
//                          and a report.json opened from a file or pasted;
//   #/load?job=ID          a job's merged live figures, polled every second
//                          (status and its merged report so far), its workers,
//                          its Stop button, then its finished report;
//   #/load?compare=A,B     two jobs' reports side by side per step;
//   #/load?report=URL      a report.json fetched from a same-origin URL.
import { h, api, ago } from "./dom.js";

const SVG = "http://www.w3.org/2000/svg";
function s(tag, attrs, text) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  if (text != null) el.textContent = text;
  return el;
}

const COLORS = ["#e63946", "#1d3557", "#2a9d8f", "#f4a261"];

// lineChart draws one or more series over xs as polylines with the chart's
// title, its maximum and the series' names. series: [{name, ys}], or
// one series' ys.
export function lineChart(title, xs, series) {
  if (!series.length || typeof series[0] !== "object") series = [{ name: "", ys: series }];
  const W = 420, H = 140, pad = 30;
  const svg = s("svg", { class: "chart", width: W, height: H + 20, "data-title": title });
  svg.append(s("text", { x: pad, y: 12 }, title));
  const maxX = Math.max(1, ...xs), maxY = Math.max(1e-9, ...series.flatMap((se) => se.ys));
  svg.append(s("text", { x: 0, y: 28 }, maxY.toFixed(maxY < 10 ? 1 : 0)));
  svg.append(s("line", { x1: pad, y1: H, x2: W, y2: H, stroke: "#999" }));
  series.forEach((se, k) => {
    const pts = xs.map((x, i) => `${(pad + (x / maxX) * (W - pad)).toFixed(1)},${(H - ((se.ys[i] || 0) / maxY) * (H - 24)).toFixed(1)}`);
    if (pts.length === 1) pts.push(pts[0].replace(/^[^,]+/, String(W)));
    const color = COLORS[k % COLORS.length];
    svg.append(s("polyline", { points: pts.join(" "), fill: "none", stroke: color, "stroke-width": 2, "data-series": se.name }));
    if (se.name) svg.append(s("text", { x: W - 60 * (series.length - k), y: 12, fill: color }, se.name));
  });
  return svg;
}

const f1 = (v) => (v == null ? "" : Number(v).toFixed(1));

// reportView draws a report: the per-second charts of its timeline, the
// latency percentiles over time when samples are given ([{second, p50,
// p95, p99}], taken while the job ran), and the per-step table.
export function reportView(r, samples = []) {
  const tl = r.timeline || [];
  const xs = tl.map((b) => b.second);
  const charts = h("div", { id: "charts" },
    lineChart("sessions", xs, tl.map((b) => b.sessions)),
    lineChart("hits/s", xs, tl.map((b) => b.steps)),
    lineChart("latency ms (per second)", xs, [
      { name: "avg", ys: tl.map((b) => (b.steps ? b.latency_sum_ms / b.steps : 0)) },
      { name: "max", ys: tl.map((b) => b.latency_max_ms || 0) }]),
    lineChart("errors/s", xs, tl.map((b) => b.failures)),
    lineChart("ws messages/s", xs, tl.map((b) => b.ws_received)),
    samples.length ? lineChart("latency percentiles ms (since start)", samples.map((p) => p.second), [
      { name: "p50", ys: samples.map((p) => p.p50) },
      { name: "p95", ys: samples.map((p) => p.p95) },
      { name: "p99", ys: samples.map((p) => p.p99) }]) : null);
  const cols = ["name", "count", "failures", "avg_ms", "min_ms", "max_ms", "p50_ms", "p90_ms", "p95_ms", "p99_ms"];
  const row = (st) => h("tr", {}, ...cols.map((c) => h("td", {}, c === "name" || c === "count" || c === "failures" ? String(st[c] ?? "") : f1(st[c]))));
  const warnings = (r.warnings || []).map((w) => h("p", { class: "error" }, w));
  return h("div", { id: "report" },
    h("p", {}, `scenario ${r.scenario || ""} → ${r.target || ""}: ${r.sessions ?? 0} sessions, ${f1(r.hits_per_s)} hits/s, ${r.requests ?? 0} requests, ${r.bytes ?? 0} bytes, ${r.ws_received ?? 0} ws messages` +
      (r.lost_sessions ? `, ${r.lost_sessions} sessions lost` : "")),
    ...warnings,
    charts,
    h("table", { id: "steps" }, h("tr", {}, ...cols.map((c) => h("th", {}, c))), ...(r.steps || []).map(row), r.total ? row({ ...r.total, name: "total" }) : null));
}

// compareSteps pairs two reports' steps by name as load.Compare does: A's
// steps in order, then those only B has, then the totals.
export function compareSteps(a, b) {
  const bs = new Map((b.steps || []).map((st) => [st.name, st]));
  const out = (a.steps || []).map((st) => ({ name: st.name, a: st, b: bs.get(st.name) || null }));
  const seen = new Set(out.map((d) => d.name));
  for (const st of b.steps || []) if (!seen.has(st.name)) out.push({ name: st.name, a: null, b: st });
  out.push({ name: "total", a: a.total || {}, b: b.total || {} });
  return out;
}

// delta is b−a with its percentage of a, as `load compare` writes it.
export function delta(a, b, integer) {
  const d = b - a;
  const num = (d >= 0 ? "+" : "") + (integer ? String(Math.round(d)) : d.toFixed(1));
  if (a === 0) return d === 0 ? num : num + " (new)";
  const pct = (d / a) * 100;
  return `${num} (${pct >= 0 ? "+" : ""}${pct.toFixed(1)}%)`;
}

export function compareView(nameA, a, nameB, b) {
  const fields = [["count", "count", true], ["fail", "failures", true], ["p50", "p50_ms", false], ["p95", "p95_ms", false], ["p99", "p99_ms", false]];
  const head = h("tr", {}, h("th", {}, "step"), ...fields.flatMap(([l]) => [h("th", {}, l + " A"), h("th", {}, l + " B"), h("th", {}, "Δ " + l)]));
  const fmt = (v, integer) => (integer ? String(v ?? 0) : f1(v ?? 0));
  const rows = compareSteps(a, b).map((d) => {
    if (!d.a || !d.b) {
      const side = d.a ? "A" : "B", st = d.a || d.b;
      return h("tr", { "data-step": d.name, class: "only" }, h("td", {}, d.name),
        h("td", { colspan: fields.length * 3 }, `only in ${side}: ${st.count} runs, ${st.failures} failed, p50 ${f1(st.p50_ms)}, p95 ${f1(st.p95_ms)}, p99 ${f1(st.p99_ms)} ms`));
    }
    return h("tr", { "data-step": d.name }, h("td", {}, d.name), ...fields.flatMap(([, k, integer]) => {
      const va = d.a[k] ?? 0, vb = d.b[k] ?? 0, dt = delta(va, vb, integer);
      // Up is worse for failures and latencies.
      const cls = k === "count" || vb === va ? "" : vb > va ? "worse" : "better";
      return [h("td", {}, fmt(va, integer)), h("td", {}, fmt(vb, integer)), h("td", { class: cls }, dt)];
    }));
  });
  const when = (r) => `${r.scenario || ""}, ${r.started ? new Date(r.started).toLocaleString() : ""}, ${f1(r.duration_s)} s`;
  return h("div", { id: "comparison" },
    h("p", {}, `A: ${nameA} (${when(a)})`), h("p", {}, `B: ${nameB} (${when(b)})`),
    h("table", { id: "compare" }, head, ...rows));
}

function listView(msg) {
  const jobsT = h("table", { id: "jobs" });
  const reportsT = h("table", { id: "reports" });
  const cmpBtn = h("button", { id: "compare-go", disabled: "", onclick: () => {
    // The list is newest first: the older report is A, the baseline.
    const ids = [...reportsT.querySelectorAll("input:checked")].map((c) => c.value).reverse();
    location.hash = "#/load?compare=" + ids.map(encodeURIComponent).join(",");
  } }, "Compare selected (2)");
  const link = (id) => h("a", { href: "#/load?job=" + encodeURIComponent(id) }, id);
  async function refresh() {
    try {
      const [jobs, reports] = await Promise.all([api("GET", "/load/jobs"), api("GET", "/load/reports")]);
      jobsT.replaceChildren(h("tr", {}, ...["job", "scenario", "state", "created", "sessions", "workers", "target"].map((c) => h("th", {}, c))),
        ...jobs.map((j) => h("tr", { "data-job": j.id }, h("td", {}, link(j.id)), h("td", {}, j.scenario_name), h("td", { class: "state-" + j.state }, j.state),
          h("td", {}, ago(j.created)), h("td", {}, String(j.sessions)), h("td", {}, String(j.workers)), h("td", {}, j.target || ""))));
      const checked = new Set([...reportsT.querySelectorAll("input:checked")].map((c) => c.value));
      reportsT.replaceChildren(h("tr", {}, ...["", "job", "scenario", "started", "duration s", "workers", "sessions", "lost", "steps", "failures", "p95 ms"].map((c) => h("th", {}, c))),
        ...reports.map((r) => {
          const box = h("input", { type: "checkbox", value: r.job, onchange: update });
          box.checked = checked.has(r.job);
          return h("tr", { "data-report": r.job }, h("td", {}, box), h("td", {}, link(r.job)), h("td", {}, r.scenario), h("td", {}, ago(r.started)),
            h("td", {}, f1(r.duration_s)), h("td", {}, String(r.workers)), h("td", {}, String(r.sessions)), h("td", {}, String(r.lost_sessions)),
            h("td", {}, String(r.steps)), h("td", {}, String(r.failures)), h("td", {}, f1(r.p95_ms)));
        }));
      update();
    } catch (e) {
      msg.textContent = "load jobs: " + e.message;
    }
  }
  function update() { cmpBtn.disabled = reportsT.querySelectorAll("input:checked").length !== 2; }
  refresh();
  const t = setInterval(refresh, 5000);
  return { el: h("div", { id: "load-lists" }, h("h3", {}, "Jobs"), jobsT, h("h3", {}, "Reports"), h("p", {}, cmpBtn), reportsT), stop: () => clearInterval(t) };
}

const ended = (state) => state === "finished" || state === "stopped";

// jobView polls a job's status and its merged report every second until
// it ends, then shows its kept report.
function jobView(main, msg, out, show, job) {
  const status = h("p", { id: "job-status" }, "job " + job + ": …");
  const workers = h("table", { id: "workers" });
  const stop = h("button", { id: "job-stop", hidden: "", onclick: async () => {
    try {
      await api("POST", `/load/jobs/${encodeURIComponent(job)}/stop`);
      msg.textContent = "";
    } catch (e) {
      msg.textContent = "stop: " + e.message;
    }
  } }, "Stop run");
  main.insertBefore(h("div", {}, status, stop, workers), msg);
  const samples = [];
  let timer = null, done = false;
  async function poll() {
    try {
      const res = await fetch("/api/v1/load/jobs/" + encodeURIComponent(job));
      if (res.status === 404) {
        status.textContent = `job ${job}: not found`;
        stop.hidden = true;
        done = true;
        return;
      }
      const st = await res.json();
      if (!res.ok) throw new Error(st.error || res.statusText);
      const j = st.job || {};
      status.textContent = `job ${job} (${j.scenario_name || ""}): ${j.state}, ${f1(st.elapsed_s)} s, ${st.sessions} sessions, ${st.steps} steps, ` +
        `${st.failures} failures, ${f1(st.steps_per_s)} steps/s, p95 ${f1(st.p95_ms)} ms, ${st.ws_received} ws messages` +
        (st.lost_sessions ? `, ${st.lost_sessions} sessions lost` : "") + (st.hot ? " — a generator runs hot" : "");
      stop.hidden = j.state !== "running";
      workers.replaceChildren(h("tr", {}, ...["worker", "state", "node", "share", "sessions", "steps", "failures", "steps/s", "p95 ms", "cpu %", "memory MiB", ""].map((c) => h("th", {}, c))),
        ...(st.workers || []).map((w) => h("tr", {}, h("td", {}, String(w.worker)), h("td", { class: "state-" + w.state }, w.state), h("td", {}, w.node || ""),
          h("td", {}, String(w.share)), h("td", {}, String(w.sessions)), h("td", {}, String(w.steps)), h("td", {}, String(w.failures)),
          h("td", {}, f1(w.steps_per_s)), h("td", {}, f1(w.p95_ms)), h("td", {}, f1(w.cpu_percent)), h("td", {}, f1((w.memory_bytes || 0) / 1048576)),
          h("td", { class: "error" }, (w.hot ? "hot " : "") + (w.reason || "")))));
      const r = await api("GET", `/load/jobs/${encodeURIComponent(job)}/report`);
      const t = r.total || {};
      if (!ended(j.state) && t.count) {
        // On the timeline's clock, so the chart lines up with the others.
        const tl = r.timeline || [];
        const second = tl.length ? tl[tl.length - 1].second : 0;
        if (!samples.length || samples[samples.length - 1].second < second) samples.push({ second, p50: t.p50_ms, p95: t.p95_ms, p99: t.p99_ms });
      }
      show(r, samples);
      // Set after the report is drawn: "finished" means the page shows the
      // kept report, not the last live one.
      status.dataset.state = j.state;
      done = ended(j.state);
    } catch (e) {
      status.textContent = `job ${job}: ${e.message}`;
    }
  }
  async function loop() {
    await poll();
    if (!done) timer = setTimeout(loop, 1000);
  }
  loop();
  return () => { done = true; clearTimeout(timer); };
}

export function loadPage(main, params) {
  const out = h("div", { id: "load-out" });
  const msg = h("p", { class: "error", id: "load-msg" });
  const show = (r, samples) => { msg.textContent = ""; out.replaceChildren(reportView(r, samples)); };
  const parse = (text) => { try { show(JSON.parse(text)); } catch (e) { msg.textContent = "not a report: " + e.message; } };
  const file = h("input", { type: "file", accept: ".json,application/json", onchange: async () => parse(await file.files[0].text()) });
  const paste = h("textarea", { id: "report-json", rows: 3, cols: 60, placeholder: "or paste report.json here" });
  main.append(h("h2", {}, h("a", { href: "#/load" }, "Load")));

  const job = params.get("job");
  if (job) {
    main.append(msg, out);
    return jobView(main, msg, out, show, job);
  }
  const cmp = params.get("compare");
  if (cmp) {
    main.append(msg, out);
    const [a, b] = cmp.split(",");
    if (!a || !b) {
      msg.textContent = "compare: want two jobs, #/load?compare=A,B";
      return () => {};
    }
    Promise.all([a, b].map((id) => api("GET", `/load/jobs/${encodeURIComponent(id)}/report`)))
      .then(([ra, rb]) => out.replaceChildren(compareView(a, ra, b, rb)), (e) => { msg.textContent = "compare: " + e.message; });
    return () => {};
  }
  const lists = listView(msg);
  main.append(lists.el,
    h("h3", {}, "Open a report.json"),
    h("p", {}, file, " ", paste, " ", h("button", { id: "report-show", onclick: () => parse(paste.value) }, "Show")),
    msg, out);
  const report = params.get("report");
  if (report) {
    fetch(report).then((r) => r.text()).then(parse, (e) => { msg.textContent = e.message; });
  }
  return lists.stop;
}
