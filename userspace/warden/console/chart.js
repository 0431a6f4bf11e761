// A tenant's traffic and drops over time, from Warden's own counter history
// (GET /api/v1/tenants/{id}/history), drawn as SVG: sent and received bit rates and the
// drop rate, with the event's span marked. Each series is also named in words and in its
// dash pattern, not by colour alone.

import { get, query } from "./api.js";
import { h, rate, when } from "./dom.js";

const NS = "http://www.w3.org/2000/svg";
const W = 720;
const H = 220;
const PAD = { left: 70, right: 70, top: 12, bottom: 28 };

function svg(tag, attrs, ...children) {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  for (const c of children) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return el;
}

function path(points, x, y, key) {
  let d = "";
  let pen = "M";
  for (const p of points) {
    if (p[key] === null || p[key] === undefined) {
      pen = "M";
      continue;
    }
    d += pen + x(p.at).toFixed(1) + "," + y(p[key]).toFixed(1) + " ";
    pen = "L";
  }
  return d;
}

// The steps of `hist` as a dense series: a step without a point while the daemon was
// recording had no traffic (zero); before that it is a gap.
function dense(hist, from, to) {
  const step = hist.step_seconds;
  const byAt = new Map(hist.points.map((p) => [p.at, p]));
  const start = Math.ceil(from / step) * step;
  const end = Math.min(to, Date.now() / 1000);
  const zero = { out_bps: 0, in_bps: 0, dropped_pps: 0 };
  const out = [];
  for (let at = start; at < end; at += step) {
    const p = byAt.get(at);
    if (p) out.push(p);
    else if (hist.recording_since !== null && at > hist.recording_since) out.push({ at, ...zero });
    else out.push({ at, out_bps: null, in_bps: null, dropped_pps: null });
  }
  return out;
}

// Draws the chart into `box` for unix times [from, to], marking `marks`.
export async function historyChart(box, tenant, from, to, marks) {
  const hist = await get("/api/v1/tenants/" + encodeURIComponent(tenant) + "/history" + query({ since: from, until: to }));
  if (hist.points.length === 0) {
    box.replaceChildren(h("p", { id: "chart-none" }, "No traffic history for " + tenant + " between " + when(from) + " and " + when(to) + "."));
    return;
  }
  const points = dense(hist, from, to);
  const peakRate = Math.max(1, ...hist.points.map((p) => Math.max(p.out_bps, p.in_bps)));
  const peakDrop = Math.max(1, ...hist.points.map((p) => p.dropped_pps));
  const x = (t) => PAD.left + ((t - from) / Math.max(1, to - from)) * (W - PAD.left - PAD.right);
  const y = (v) => H - PAD.bottom - (v / peakRate) * (H - PAD.top - PAD.bottom);
  const yd = (v) => H - PAD.bottom - (v / peakDrop) * (H - PAD.top - PAD.bottom);
  const scaled = points.map((p) => ({ ...p, drop: p.dropped_pps }));
  const chart = svg(
    "svg",
    { viewBox: "0 0 " + W + " " + H, role: "img", "aria-labelledby": "chart-title", class: "chart", id: "chart" },
    svg("title", { id: "chart-title" }, "Traffic of " + tenant + " from " + when(from) + " to " + when(to) + ": peak " + rate(peakRate) + ", peak drops " + peakDrop.toFixed(1) + " packets/s"),
    svg("rect", { class: "event", x: x(marks[0]), y: PAD.top, width: Math.max(2, x(marks[1]) - x(marks[0])), height: H - PAD.top - PAD.bottom }),
    svg("line", { class: "axis", x1: PAD.left, y1: H - PAD.bottom, x2: W - PAD.right, y2: H - PAD.bottom }),
    svg("text", { class: "label", x: 4, y: PAD.top + 10 }, rate(peakRate)),
    svg("text", { class: "label", x: W - PAD.right + 4, y: PAD.top + 10 }, peakDrop.toFixed(1) + " drop/s"),
    svg("text", { class: "label", x: PAD.left, y: H - 8 }, when(from)),
    svg("text", { class: "label", x: W - PAD.right, y: H - 8, "text-anchor": "end" }, when(to)),
    svg("path", { class: "series out", d: path(points, x, y, "out_bps") }),
    svg("path", { class: "series in", d: path(points, x, y, "in_bps") }),
    svg("path", { class: "series drop", d: path(scaled, x, yd, "drop") }),
  );
  const legend = h(
    "ul",
    { class: "legend" },
    h("li", { class: "out" }, "solid: sent by the tenant (bit/s, left scale)"),
    h("li", { class: "in" }, "dashed: received by the tenant (bit/s, left scale)"),
    h("li", { class: "drop" }, "dotted: packets dropped (per second, right scale)"),
    h("li", { class: "event" }, "shaded: the flag's first to last detection"),
  );
  box.replaceChildren(
    chart,
    legend,
    h("p", { class: "note" }, hist.points.length + " steps with traffic at " + hist.step_seconds + " s resolution; recorded by this daemon since " + when(hist.recording_since) + "."),
  );
}
