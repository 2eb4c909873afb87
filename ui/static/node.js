// Node page: facts, boot timeline chart (inline SVG), labels, next boot,
// forget, and the units placed on the node.
import { h, api, labelText } from "./dom.js";

const SVG = "http://www.w3.org/2000/svg";
function s(tag, attrs, text) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  if (text != null) el.textContent = text;
  return el;
}

// timelineChart draws one bar per boot step: from the step before it to
// the step itself, labelled with the step's duration.
export function timelineChart(events) {
  const rowH = 20, left = 140, width = 760;
  const svg = s("svg", { id: "timeline", width: left + width + 80, height: Math.max(1, events.length) * rowH + 20 });
  if (!events.length) return svg;
  const t0 = Date.parse(events[0].time);
  const span = Math.max(1, Date.parse(events[events.length - 1].time) - t0);
  let prev = t0;
  events.forEach((e, i) => {
    const t = Date.parse(e.time);
    const x0 = left + ((prev - t0) / span) * width;
    const w = Math.max(3, ((t - prev) / span) * width);
    const y = i * rowH + 4;
    svg.append(s("text", { x: 0, y: y + 12 }, e.event));
    const bar = s("rect", { x: x0, y, width: w, height: rowH - 6, fill: "#457b9d", class: "step" });
    bar.append(s("title", {}, `${e.event} ${e.detail || ""} at ${e.time}`));
    svg.append(bar);
    svg.append(s("text", { x: x0 + w + 4, y: y + 12 }, ((t - prev) / 1000).toFixed(2) + " s"));
    prev = t;
  });
  return svg;
}

export function nodePage(main, mac) {
  let alive = true;
  const msg = h("p", { class: "error", id: "msg" });
  async function load() {
    let n;
    try {
      n = await api("GET", "/nodes/" + encodeURIComponent(mac));
    } catch (e) {
      msg.textContent = e.message;
      main.replaceChildren(h("h2", {}, mac), msg);
      return;
    }
    if (!alive) return;
    const facts = h("table", { id: "facts" });
    for (const k of ["state", "ip", "arch", "firmware", "uuid", "hostname", "vendor_class", "user_class", "group", "profile", "next_boot", "first_seen", "last_seen"]) {
      if (n[k]) facts.append(h("tr", {}, h("th", {}, k), h("td", {}, String(n[k]))));
    }
    if (n.agent) facts.append(h("tr", {}, h("th", {}, "agent"), h("td", {}, JSON.stringify(n.agent))));

    const labelIn = h("input", { id: "label", placeholder: "key=value (or -key to remove)" });
    const nextIn = h("input", { id: "nextboot", placeholder: "profile", value: n.next_boot || "" });
    const act = (f) => async (ev) => {
      ev.preventDefault();
      try { await f(); msg.textContent = ""; load(); } catch (e) { msg.textContent = e.message; }
    };
    const units = h("div", { id: "node-units" });
    const ign = h("pre", { id: "ignition" }, "…");
    main.replaceChildren(
      h("h2", {}, "Node ", mac),
      msg,
      h("h3", {}, "Boot timeline"),
      timelineChart(n.timeline || []),
      h("h3", {}, "Facts"), facts,
      h("h3", {}, "Labels"), h("p", { id: "labels" }, labelText(n.labels) || "none"),
      h("form", { onsubmit: act(() => {
        const v = labelIn.value.trim();
        if (v.startsWith("-")) return api("PATCH", `/nodes/${mac}/labels`, { remove: [v.slice(1)] });
        const [k, ...rest] = v.split("=");
        return api("PATCH", `/nodes/${mac}/labels`, { set: { [k]: rest.join("=") } });
      }) }, labelIn, h("button", { id: "label-apply" }, "Apply label")),
      h("form", { onsubmit: act(() => api("PUT", `/nodes/${mac}/next-boot`, { profile: nextIn.value.trim() })) },
        "Next boot: ", nextIn, h("button", {}, "Set")),
      h("form", { onsubmit: act(async () => {
        if (!confirm("Forget node " + mac + "?")) return;
        await api("DELETE", "/nodes/" + mac);
        location.hash = "#/nodes";
      }) }, h("button", { id: "forget" }, "Forget node")),
      h("h3", {}, "Units"), units,
      h("h3", {}, "Ignition (as served)"), ign,
    );
    try {
      const q = new URLSearchParams({ mac });
      for (const k of ["arch", "firmware", "uuid", "hostname"]) if (n[k]) q.set(k, n[k]);
      const res = await fetch("/api/v1/ignition?" + q);
      const text = await res.text();
      ign.textContent = res.ok ? JSON.stringify(JSON.parse(text), null, 2) : "none: " + text;
    } catch (e) {
      ign.textContent = "ignition: " + e.message;
    }
    try {
      const all = await api("GET", "/units");
      const mine = [];
      for (const u of all) for (const c of u.containers || []) if ((u.nodes || {})[c.name] === mac) mine.push(c);
      units.replaceChildren(mine.length
        ? h("table", {}, ...mine.map((c) => h("tr", {}, h("td", {}, c.name), h("td", {}, c.state), h("td", {}, c.image || ""))))
        : "none");
    } catch (e) {
      units.textContent = "units: " + e.message;
    }
  }
  load();
  return () => { alive = false; };
}
