// bootfleet dashboard: hash-routed pages over the /api/v1 routes. The admin
// cookie set at login authenticates every call.
import { nodesPage } from "./nodes.js";
import { nodePage } from "./node.js";
import { unitsPage } from "./units.js";
import { loadPage } from "./load.js";

let stop = () => {};

function route() {
  stop();
  const main = document.getElementById("main");
  main.replaceChildren();
  const hash = location.hash || "#/nodes";
  const m = hash.match(/^#\/node\/([^/]+)$/);
  if (m) stop = nodePage(main, decodeURIComponent(m[1]));
  else if (hash === "#/units") stop = unitsPage(main);
  else if (hash.startsWith("#/load")) stop = loadPage(main, new URLSearchParams(hash.split("?")[1] || ""));
  else stop = nodesPage(main);
}

window.addEventListener("hashchange", route);
route();
