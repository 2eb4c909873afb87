// Units page: each unit's placement, containers' state per node, why
// replicas are pending, CPU/memory, and recent logs on demand.
import { h, api } from "./dom.js";

const mib = (b) => (b / 1048576).toFixed(1) + " MiB";

export function unitsPage(main) {
  const msg = h("p", { class: "error" });
  const body = h("div", { id: "units" });
  main.append(h("h2", {}, "Units"), msg, body);
  async function load() {
    let units;
    try { units = await api("GET", "/units"); } catch (e) { msg.textContent = e.message; return; }
    msg.textContent = "";
    body.replaceChildren(...units.map((u) => {
      const name = u.unit.name;
      const logs = h("pre", { hidden: "" });
      return h("section", { "data-unit": name },
        h("h3", {}, name),
        u.placement.pending ? h("p", { class: "error" }, `${u.placement.pending} pending: ${u.placement.reason || ""}`) : null,
        h("table", {},
          h("tr", {}, ...["replica", "node", "container", "state", "CPU", "memory", "restarts"].map((c) => h("th", {}, c))),
          ...(u.placement.replicas || []).map((r) => {
            const c = (u.containers || []).find((c) => c.replica === r.index) || {};
            return h("tr", {}, h("td", {}, String(r.index)),
              h("td", {}, h("a", { href: "#/node/" + r.node }, r.node || "—")),
              h("td", {}, c.name || ""), h("td", {}, (c.state || "") + (c.error ? " " + c.error : "")),
              h("td", {}, c.cpu_percent != null ? c.cpu_percent.toFixed(1) + " %" : ""),
              h("td", {}, c.memory_bytes != null ? mib(c.memory_bytes) : ""),
              h("td", {}, String(c.restarts || 0)));
          })),
        h("button", { onclick: async () => {
          try {
            const res = await fetch(`/api/v1/units/${encodeURIComponent(name)}/logs`);
            logs.textContent = await res.text();
          } catch (e) { logs.textContent = e.message; }
          logs.hidden = false;
        } }, "Recent logs"), " ",
        h("button", { onclick: async () => {
          if (!confirm("Destroy unit " + name + "?")) return;
          try { await api("DELETE", "/units/" + encodeURIComponent(name)); load(); } catch (e) { msg.textContent = e.message; }
        } }, "Destroy"),
        logs);
    }));
  }
  load();
  const t = setInterval(load, 5000);
  return () => clearInterval(t);
}
