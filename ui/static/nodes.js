// Nodes page: the inventory as a live table fed by the API's watch stream
// (newline-delimited JSON). Changes are batched per animation frame and
// only the rows that changed are touched, so a thousand nodes stay smooth.
import { h, ago, labelText } from "./dom.js";

const columns = ["state", "mac", "ip", "arch", "group/profile", "labels", "last seen"];

function cells(n) {
  return [
    n.state || "",
    n.mac,
    n.ip || "",
    n.arch || "",
    [n.group, n.profile].filter(Boolean).join("/"),
    labelText(n.labels),
    ago(n.last_seen),
  ];
}

export function nodesPage(main) {
  const ctl = new AbortController();
  const rows = new Map(); // mac → {tr, node, text}
  const dirty = new Map(); // mac → node, or null when deleted
  let filter = "";
  let scheduled = false;

  const search = h("input", { type: "search", placeholder: "filter: text or key=value", id: "filter" });
  const count = h("span", { id: "count" });
  const status = h("span", { id: "stream", class: "hint" }, "connecting…");
  const tbody = h("tbody", { id: "nodes" });
  main.append(
    h("p", {}, search, " ", count, " ", status),
    h("table", {}, h("thead", {}, h("tr", {}, ...columns.map((c) => h("th", {}, c)))), tbody),
  );

  const matches = (text) => !filter || filter.split(/\s+/).every((f) => text.includes(f));

  function flush() {
    scheduled = false;
    const now = performance.now();
    for (const [mac, node] of dirty) {
      let r = rows.get(mac);
      if (node === null) {
        if (r) { r.tr.remove(); rows.delete(mac); }
        continue;
      }
      const vals = cells(node);
      if (!r) {
        const tr = h("tr", { "data-mac": mac });
        const link = h("a", { href: "#/node/" + encodeURIComponent(mac) });
        const tds = vals.map(() => h("td"));
        tds[1].append(link);
        tr.append(...tds);
        r = { tr, tds, link };
        rows.set(mac, r);
        // Keep rows sorted by MAC: insert before the first larger one.
        let before = null;
        for (const el of tbody.children) if (el.dataset.mac > mac) { before = el; break; }
        tbody.insertBefore(tr, before);
      }
      vals.forEach((v, i) => {
        const el = i === 1 ? r.link : r.tds[i];
        if (el.textContent !== v) el.textContent = v;
      });
      r.tds[0].className = "state-" + vals[0];
      r.node = node;
      r.text = vals.join(" ").toLowerCase();
      r.tr.dataset.seen = node.last_seen || "";
      r.tr.dataset.updated = String(now);
      r.tr.hidden = !matches(r.text);
    }
    dirty.clear();
    count.textContent = rows.size + " nodes";
    window.__bootfleetRendered = (window.__bootfleetRendered || 0) + 1;
  }

  function change(c) {
    dirty.set(c.node.mac, c.deleted ? null : c.node);
    if (!scheduled) { scheduled = true; requestAnimationFrame(flush); }
  }

  search.addEventListener("input", () => {
    filter = search.value.trim().toLowerCase();
    for (const r of rows.values()) r.tr.hidden = !matches(r.text);
  });

  async function watch() {
    while (!ctl.signal.aborted) {
      try {
        const res = await fetch("/api/v1/nodes?watch=1", { signal: ctl.signal });
        if (res.status === 401) { location.href = "/ui/login"; return; }
        if (!res.ok) throw new Error(res.statusText);
        status.textContent = "live";
        const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
        let buf = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buf += value;
          let i;
          while ((i = buf.indexOf("\n")) >= 0) {
            const line = buf.slice(0, i);
            buf = buf.slice(i + 1);
            if (line) change(JSON.parse(line));
          }
        }
      } catch (e) {
        if (ctl.signal.aborted) return;
        status.textContent = "stream lost: " + e.message + "; retrying";
      }
      await new Promise((r) => setTimeout(r, 1000));
    }
  }
  watch();
  // Refresh "last seen" every 10 s without touching other cells.
  const tick = setInterval(() => {
    for (const r of rows.values()) r.tds[6].textContent = ago(r.node.last_seen);
  }, 10000);
  return () => { ctl.abort(); clearInterval(tick); };
}
