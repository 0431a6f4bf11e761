// Building the page: elements from text only (never HTML strings, so nothing the API
// returns can become markup), times as people read them.

export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") el.className = v;
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(el.dataset, v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

export function now() {
  return Math.floor(Date.now() / 1000);
}

// "3 min ago", "2 h ago": the age of unix time `t`.
export function age(t) {
  return span(now() - t) + " ago";
}

// "in 4 min" or "overdue by 10 s" for a deadline at unix time `t`.
export function countdown(t) {
  const left = t - now();
  return left >= 0 ? "due in " + span(left) : "overdue by " + span(-left);
}

function span(s) {
  s = Math.max(0, Math.round(s));
  if (s < 60) return s + " s";
  if (s < 3600) return Math.floor(s / 60) + " min " + (s % 60) + " s";
  if (s < 86400) return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " min";
  return Math.floor(s / 86400) + " d " + Math.floor((s % 86400) / 3600) + " h";
}

// Unix time `t` as local date and time, to the second.
export function when(t) {
  if (t === null || t === undefined) return "—";
  const d = new Date(t * 1000);
  const p = (n) => String(n).padStart(2, "0");
  return (
    d.getFullYear() + "-" + p(d.getMonth() + 1) + "-" + p(d.getDate()) + " " +
    p(d.getHours()) + ":" + p(d.getMinutes()) + ":" + p(d.getSeconds())
  );
}

// A <time> that shows an age and keeps it current (see tick()).
export function ageEl(t) {
  return h("time", { datetime: new Date(t * 1000).toISOString(), title: when(t), dataset: { age: t } }, age(t));
}

// A deadline that counts down.
export function deadlineEl(t) {
  return h("time", { datetime: new Date(t * 1000).toISOString(), title: when(t), dataset: { deadline: t } }, countdown(t));
}

// Refreshes every age and countdown on the page.
export function tick() {
  for (const el of document.querySelectorAll("[data-age]")) el.textContent = age(Number(el.dataset.age));
  for (const el of document.querySelectorAll("[data-deadline]")) {
    const t = Number(el.dataset.deadline);
    el.textContent = countdown(t);
    el.classList.toggle("overdue", t < now());
  }
}

// A flag or tenant state as a badge: its name in words (colour only adds to it).
export function badge(state) {
  return h("span", { class: "badge state-" + state }, state);
}

// A bit rate, e.g. "12.5 Mbit/s".
export function rate(bps) {
  if (bps === null || bps === undefined) return "unlimited";
  const units = ["bit/s", "kbit/s", "Mbit/s", "Gbit/s", "Tbit/s"];
  let i = 0;
  while (bps >= 1000 && i < units.length - 1) {
    bps /= 1000;
    i++;
  }
  return (i === 0 ? bps.toFixed(0) : bps.toFixed(1)) + " " + units[i];
}

// Any JSON value as readable text: objects as "key: value" pairs.
export function text(v) {
  if (v === null || v === undefined) return "—";
  if (Array.isArray(v)) return v.map(text).join(", ");
  if (typeof v === "object") {
    return Object.entries(v)
      .filter(([, x]) => x !== null && x !== undefined)
      .map(([k, x]) => k + ": " + text(x))
      .join("; ");
  }
  return String(v);
}

// A table with a caption, column heads and rows of cells.
export function table(caption, heads, rows, attrs) {
  return h(
    "table",
    attrs || {},
    h("caption", {}, caption),
    h("thead", {}, h("tr", {}, heads.map((c) => h("th", { scope: "col" }, c)))),
    h("tbody", {}, rows.map((r) => (r instanceof Node ? r : h("tr", {}, r.map((c) => h("td", {}, c)))))),
  );
}

export function say(message, isError) {
  const n = document.getElementById("notice");
  n.textContent = message;
  n.className = isError ? "error" : "";
}
