// One flag as a person reads it: what was measured against which threshold, the top
// targets, the actions taken with their times, the traffic around the event, the
// sampled frames (decoded from the flag's pcap) with the pcap download, the tenant's
// earlier flags, and the review buttons the role allows.

import { bytes, get, post, query } from "./api.js";
import { ageEl, badge, deadlineEl, h, say, table, text, when } from "./dom.js";
import { decodePcap } from "./frames.js";
import { historyChart } from "./chart.js";
import { may } from "./session.js";

// [name, value] pairs of a JSON object, or of an array of pairs or {name, value} objects.
function pairs(v) {
  if (Array.isArray(v)) {
    return v.map((x, i) => (Array.isArray(x) ? [String(x[0]), x[1]] : [String(i + 1), x]));
  }
  if (v && typeof v === "object") return Object.entries(v);
  return [];
}

function number(v) {
  return typeof v === "number" ? (Number.isInteger(v) ? String(v) : v.toFixed(2)) : text(v);
}

function evidence(f) {
  const limits = Object.fromEntries(pairs(f.thresholds));
  const rows = pairs(f.figures).map(([name, value]) => {
    const limit = limits[name];
    const over = typeof limit === "number" && typeof value === "number" && value >= limit;
    return [
      name.replaceAll("_", " "),
      number(value),
      limit === undefined ? "—" : number(limit),
      limit === undefined ? "no threshold" : over ? "over threshold" : "under threshold",
    ];
  });
  for (const [name, limit] of Object.entries(limits)) {
    if (!pairs(f.figures).some(([n]) => n === name)) rows.push([name.replaceAll("_", " "), "not measured", number(limit), "—"]);
  }
  return table("Figures against thresholds", ["Figure", "Measured", "Threshold", "Verdict"], rows, { id: "figures" });
}

// A top target as words: a host, a port, a host's port or a MAC, from an object
// {addr, port, mac, count} or a pair [that object, count]; anything else as text.
function target(t) {
  const [who, count] = Array.isArray(t) ? [t[0], t[1]] : [t, t && typeof t === "object" ? t.count : undefined];
  if (!who || typeof who !== "object") return [text(who), count === undefined ? "—" : number(count)];
  const parts = [];
  if (who.mac) parts.push("MAC " + who.mac);
  if (who.addr && who.port) parts.push(who.addr + " port " + who.port);
  else if (who.addr) parts.push("host " + who.addr);
  else if (who.port) parts.push("port " + who.port + " (any host)");
  return [parts.length ? parts.join(", ") : "—", count === undefined ? "—" : number(count)];
}

function targets(f) {
  const list = Array.isArray(f.top_targets) ? f.top_targets : [];
  const rows = list.map((t, i) => [String(i + 1), ...target(t)]);
  if (rows.length === 0) return h("p", {}, "No top targets recorded.");
  return table("Top targets, heaviest first", ["#", "Target", "Count"], rows, { id: "targets" });
}

function actions(d) {
  if (d.actions.length === 0) return h("p", { id: "actions-none" }, "No action was taken (observe or flag only).");
  const rows = d.actions.map((a) => [when(a.at), a.decision, a.action, a.target, a.until ? when(a.until) : "—", a.by]);
  return table("Actions taken", ["When", "Decision", "Action", "Target", "Until", "By"], rows, { id: "actions" });
}

async function frames(id, box) {
  const buf = await bytes("/api/v1/flags/" + id + "/pcap");
  const list = decodePcap(buf);
  const url = URL.createObjectURL(new Blob([buf], { type: "application/vnd.tcpdump.pcap" }));
  const rows = list.map((f, i) => [
    String(i + 1),
    when(Math.floor(f.at)) + "." + String(Math.floor((f.at % 1) * 1e6)).padStart(6, "0"),
    f.src,
    f.sport === "" ? "—" : String(f.sport),
    f.dst,
    f.dport === "" ? "—" : String(f.dport),
    f.proto,
    f.flags || "—",
    String(f.length),
  ]);
  box.replaceChildren(
    h("a", { id: "pcap-download", href: url, download: "flag-" + id + ".pcap" }, "Download the pcap (" + list.length + " frames, " + buf.byteLength + " bytes)"),
    rows.length === 0
      ? h("p", { id: "frames-none" }, "No frames were sampled for this flag.")
      : table("Sampled frames", ["#", "Time", "Source", "Port", "Destination", "Port", "Protocol", "Flags", "Bytes"], rows, { id: "frames" }),
  );
}

async function earlier(f, box) {
  const list = await get("/api/v1/flags" + query({ tenant: f.tenant, limit: 20 }));
  const rows = list
    .filter((x) => x.id !== f.id)
    .map((x) => [h("a", { href: "#/flag/" + x.id }, "#" + x.id), x.kind, badge(x.state), when(x.first_seen)]);
  box.replaceChildren(
    rows.length === 0
      ? h("p", {}, "No other flags for " + f.tenant + ".")
      : table("Other flags of " + f.tenant + ", newest first", ["Flag", "Kind", "State", "First seen"], rows, { id: "earlier" }),
  );
}

function review(f, reload) {
  if (!may("operator")) return null;
  const ended = f.state === "dismissed" || f.state === "escalated";
  const reason = h("input", { id: "review-reason", type: "text" });
  const act = async (what) => {
    const why = reason.value.trim();
    if (what === "dismiss" && !why) return say("Dismissing needs a reason.", true);
    try {
      await post("/api/v1/flags/" + f.id + "/" + what, why ? { reason: why } : {});
      say((what === "ack" ? "Acknowledged" : "Dismissed") + " flag #" + f.id + ".");
      await reload();
    } catch (e) {
      say("Could not " + what + " flag #" + f.id + ": " + e.message, true);
    }
  };
  return h(
    "section",
    { class: "review", "aria-labelledby": "review-h" },
    h("h3", { id: "review-h" }, "Review"),
    h("label", { for: "review-reason" }, "Reason or note"),
    reason,
    h("button", { type: "button", id: "ack", disabled: ended || f.state === "acked", onclick: () => act("ack") }, "Acknowledge"),
    h("button", { type: "button", id: "dismiss", disabled: ended, onclick: () => act("dismiss") }, "Dismiss"),
  );
}

export async function showFlag(root, id) {
  const render = async () => {
    const d = await get("/api/v1/flags/" + encodeURIComponent(id));
    const f = d;
    const frameBox = h("div", { id: "frames-box" }, "Loading frames…");
    const earlierBox = h("div", { id: "earlier-box" });
    const chartBox = h("div", { id: "chart-box" }, "Loading traffic…");
    root.replaceChildren(
      h("p", {}, h("a", { href: "#/queue" }, "← Flags")),
      h("h2", {}, "Flag #" + f.id + ": " + f.kind + " by ", h("a", { href: "#/tenant/" + encodeURIComponent(f.tenant) }, f.tenant)),
      h(
        "dl",
        { class: "facts", id: "flag-facts" },
        h("dt", {}, "State"), h("dd", { id: "flag-state" }, badge(f.state), f.state_reason ? " — " + f.state_reason : ""),
        f.node ? [h("dt", {}, "Node"), h("dd", { id: "flag-node" }, f.node)] : null,
        h("dt", {}, "First seen"), h("dd", {}, when(f.first_seen), " (", ageEl(f.first_seen), ")"),
        h("dt", {}, "Last seen"), h("dd", {}, when(f.last_seen), " (", ageEl(f.last_seen), ")"),
        h("dt", {}, "Deadline"), h("dd", {}, f.deadline ? [when(f.deadline), " (", deadlineEl(f.deadline), ")"] : "none"),
        h("dt", {}, "Policy generation"), h("dd", {}, String(f.policy_generation)),
        h("dt", {}, "Samples"), h("dd", {}, d.samples + " kept" + (d.samples_refused ? ", " + d.samples_refused + " refused (bound reached)" : "")),
      ),
      // No review section for a viewer (replaceChildren would write a null as "null").
      ...[review(f, render)].filter((x) => x !== null),
      h("section", { "aria-labelledby": "ev-h" }, h("h3", { id: "ev-h" }, "Evidence"), evidence(f), targets(f), actions(d)),
      h("section", { "aria-labelledby": "chart-h" }, h("h3", { id: "chart-h" }, "Traffic around the event"), chartBox),
      h("section", { "aria-labelledby": "frames-h" }, h("h3", { id: "frames-h" }, "Frames"), frameBox),
      h("section", { "aria-labelledby": "earlier-h" }, h("h3", { id: "earlier-h" }, "Earlier flags"), earlierBox),
    );
    const fail = (box, what) => (e) => box.replaceChildren(h("p", { class: "error" }, "Could not load " + what + ": " + e.message));
    await Promise.all([
      frames(f.id, frameBox).catch(fail(frameBox, "the frames")),
      earlier(f, earlierBox).catch(fail(earlierBox, "earlier flags")),
      historyChart(chartBox, f.tenant, f.first_seen - 600, f.last_seen + 600, [f.first_seen, f.last_seen]).catch(fail(chartBox, "the traffic history")),
    ]);
  };
  await render();
  return null;
}
