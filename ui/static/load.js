// Load page: a load report (report.json of `bootfleet load run`, opened
// from a file, pasted, or fetched from a same-origin URL in #/load?report=)
// drawn as SVG charts with the per-step table, and a live job view that
// polls GET /api/v1/load/jobs/{id} every second (#/load?job=ID).
import { h } from "./dom.js";

const SVG = "http://www.w3.org/2000/svg";
function s(tag, attrs, text) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  if (text != null) el.textContent = text;
  return el;
}

// lineChart draws ys over xs as a polyline with its title and maximum.
export function lineChart(title, xs, ys) {
  const W = 420, H = 140, pad = 30;
  const svg = s("svg", { class: "chart", width: W, height: H + 20, "data-title": title });
  svg.append(s("text", { x: pad, y: 12 }, title));
  const maxX = Math.max(1, ...xs), maxY = Math.max(1e-9, ...ys);
  svg.append(s("text", { x: 0, y: 28 }, maxY.toFixed(maxY < 10 ? 1 : 0)));
  svg.append(s("line", { x1: pad, y1: H, x2: W, y2: H, stroke: "#999" }));
  const pts = xs.map((x, i) => `${pad + (x / maxX) * (W - pad)},${H - (ys[i] / maxY) * (H - 24)}`);
  if (pts.length === 1) pts.push(pts[0].replace(/^[^,]+/, String(W)));
  svg.append(s("polyline", { points: pts.join(" "), fill: "none", stroke: "#e63946", "stroke-width": 2 }));
  return svg;
}

const f1 = (v) => (v == null ? "" : Number(v).toFixed(1));

export function reportView(r) {
  const tl = r.timeline || [];
  const xs = tl.map((b) => b.second);
  const charts = h("div", { id: "charts" },
    lineChart("sessions", xs, tl.map((b) => b.sessions)),
    lineChart("hits/s", xs, tl.map((b) => b.steps)),
    lineChart("avg latency ms", xs, tl.map((b) => (b.steps ? b.latency_sum_ms / b.steps : 0))),
    lineChart("errors/s", xs, tl.map((b) => b.failures)),
    lineChart("ws messages/s", xs, tl.map((b) => b.ws_received)));
  const cols = ["name", "count", "failures", "avg_ms", "min_ms", "max_ms", "p50_ms", "p90_ms", "p95_ms", "p99_ms"];
  const row = (st) => h("tr", {}, ...cols.map((c) => h("td", {}, c === "name" || c === "count" || c === "failures" ? String(st[c] ?? "") : f1(st[c]))));
  return h("div", { id: "report" },
    h("p", {}, `scenario ${r.scenario || ""} → ${r.target || ""}: ${r.sessions ?? 0} sessions, ${f1(r.hits_per_s)} hits/s, ${r.requests ?? 0} requests, ${r.bytes ?? 0} bytes, ${r.ws_received ?? 0} ws messages`),
    charts,
    h("table", { id: "steps" }, h("tr", {}, ...cols.map((c) => h("th", {}, c))), ...(r.steps || []).map(row), r.total ? row({ ...r.total, name: "total" }) : null));
}

export function loadPage(main, params) {
  const out = h("div", { id: "load-out" });
  const msg = h("p", { class: "error", id: "load-msg" });
  const show = (r) => { msg.textContent = ""; out.replaceChildren(reportView(r)); };
  const parse = (text) => { try { show(JSON.parse(text)); } catch (e) { msg.textContent = "not a report: " + e.message; } };
  const file = h("input", { type: "file", accept: ".json,application/json", onchange: async () => parse(await file.files[0].text()) });
  const paste = h("textarea", { id: "report-json", rows: 3, cols: 60, placeholder: "or paste report.json here" });
  main.append(h("h2", {}, "Load"),
    h("p", {}, "Open a report: ", file, " ", paste, " ", h("button", { id: "report-show", onclick: () => parse(paste.value) }, "Show")),
    msg, out);

  const report = params.get("report");
  if (report) {
    fetch(report).then((r) => r.text()).then(parse, (e) => { msg.textContent = e.message; });
  }
  const job = params.get("job");
  if (!job) return () => {};
  const status = h("p", { id: "job-status" }, "job " + job + ": …");
  const stop = h("button", { id: "job-stop", hidden: "", onclick: async () => {
    const res = await fetch(`/api/v1/load/jobs/${encodeURIComponent(job)}/stop`, { method: "POST" });
    msg.textContent = res.ok ? "" : "stop: " + (await res.text());
  } }, "Stop run");
  main.insertBefore(h("div", {}, status, stop), msg);
  async function poll() {
    try {
      const res = await fetch("/api/v1/load/jobs/" + encodeURIComponent(job));
      if (res.status === 404) {
        status.textContent = `job ${job}: not found (or this server has no load API yet)`;
        stop.hidden = true;
        return;
      }
      const j = await res.json();
      if (!res.ok) throw new Error(j.error || res.statusText);
      status.textContent = `job ${job}: ${j.state || ""}`;
      stop.hidden = !!j.state && /done|stopped|failed|finished/.test(j.state);
      show(j.report || j);
    } catch (e) {
      status.textContent = `job ${job}: ${e.message}`;
    }
  }
  poll();
  const t = setInterval(poll, 1000);
  return () => clearInterval(t);
}
