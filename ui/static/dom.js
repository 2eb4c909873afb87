// Small DOM and API helpers shared by the pages.

// h builds an element: h("td", {class: "x"}, "text", child).
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v);
  }
  el.append(...children.filter((c) => c != null));
  return el;
}

// api calls /api/v1 and answers the decoded JSON (null for 204); it throws
// with the API's error message.
export async function api(method, path, body) {
  const init = { method, headers: {} };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers["Content-Type"] = "application/json";
  }
  const res = await fetch("/api/v1" + path, init);
  if (res.status === 401) {
    location.href = "/ui/login";
    throw new Error("not logged in");
  }
  if (res.status === 204) return null;
  const data = await res.json();
  if (!res.ok) throw new Error(data.error || res.statusText);
  return data;
}

export function ago(t) {
  if (!t || t.startsWith("0001")) return "";
  const s = Math.round((Date.now() - Date.parse(t)) / 1000);
  if (s < 60) return s + "s ago";
  if (s < 3600) return Math.round(s / 60) + "m ago";
  return Math.round(s / 3600) + "h ago";
}

export function labelText(labels) {
  return Object.entries(labels || {}).map(([k, v]) => k + "=" + v).join(" ");
}
