// The review queue: newest first, filtered and paged by the server, counts per state,
// select many and ack or dismiss them with one reason (one request, so one audit entry,
// each). Live: polls the cheap summary route and reloads the page when a flag is raised.

import { get, post, query } from "./api.js";
import { ageEl, badge, deadlineEl, h, say, table } from "./dom.js";
import { may } from "./session.js";

const STATES = ["open", "notified", "acked", "dismissed", "escalated"];
const KINDS = ["scan", "flood_out", "flood_in", "spam", "proxy", "spoof_ip", "spoof_arp", "spoof_mac", "bandwidth"];
const PAGE_SIZES = [25, 50, 100, 200];
const POLL_MS = 2000;

// The filter survives moving to a flag and back within the tab.
const filter = { state: "", kind: "", tenant: "", node: "", since: "", until: "", limit: 50, offset: 0 };

function unix(local) {
  if (!local) return "";
  const t = Date.parse(local);
  return Number.isNaN(t) ? "" : Math.floor(t / 1000);
}

function params(withPaging) {
  const p = {
    state: filter.state,
    kind: filter.kind,
    tenant: filter.tenant.trim(),
    node: filter.node.trim(),
    since: unix(filter.since),
    until: unix(filter.until),
  };
  if (withPaging) {
    p.limit = filter.limit;
    p.offset = filter.offset;
  }
  return p;
}

function select(id, label, options, value, onchange) {
  return [
    h("label", { for: id }, label),
    h("select", { id, onchange }, options.map(([v, t]) => h("option", { value: v, selected: v === String(value) }, t))),
  ];
}

function field(id, label, type, value, onchange) {
  return [h("label", { for: id }, label), h("input", { id, type, value, onchange })];
}

function filters(reload) {
  const set = (key) => (ev) => {
    filter[key] = key === "limit" ? Number(ev.target.value) : ev.target.value;
    filter.offset = 0;
    reload();
  };
  return h(
    "form",
    { class: "filters", "aria-label": "Filter flags", onsubmit: (ev) => ev.preventDefault() },
    select("f-state", "State", [["", "any"], ...STATES.map((s) => [s, s])], filter.state, set("state")),
    select("f-kind", "Kind", [["", "any"], ...KINDS.map((k) => [k, k])], filter.kind, set("kind")),
    field("f-tenant", "Tenant", "text", filter.tenant, set("tenant")),
    field("f-node", "Node", "text", filter.node, set("node")),
    field("f-since", "Seen from", "datetime-local", filter.since, set("since")),
    field("f-until", "Seen before", "datetime-local", filter.until, set("until")),
    select("f-limit", "Per page", PAGE_SIZES.map((n) => [String(n), String(n)]), filter.limit, set("limit")),
  );
}

function counts(summary, reload) {
  return h(
    "ul",
    { class: "counts", "aria-label": "Flags per state" },
    STATES.map((s) =>
      h(
        "li",
        {},
        h(
          "button",
          {
            type: "button",
            class: "count state-" + s,
            "aria-pressed": filter.state === s ? "true" : "false",
            "data-state": s,
            onclick: () => {
              filter.state = filter.state === s ? "" : s;
              filter.offset = 0;
              reload();
            },
          },
          s + " ",
          h("strong", {}, String(summary.counts[s] || 0)),
        ),
      ),
    ),
  );
}

// The node column shows only where flags name their node (a controller, a fleet node).
function row(f, writable, nodes) {
  const cells = [
    writable
      ? h("td", {}, h("input", { type: "checkbox", class: "pick", value: f.id, "aria-label": "Select flag " + f.id }))
      : null,
    h("td", {}, h("a", { href: "#/flag/" + f.id }, "#" + f.id)),
    h("td", {}, h("a", { href: "#/tenant/" + encodeURIComponent(f.tenant) }, f.tenant)),
    nodes ? h("td", { class: "node" }, f.node || "—") : null,
    h("td", {}, f.kind),
    h("td", {}, badge(f.state)),
    h("td", {}, ageEl(f.first_seen)),
    h("td", {}, ageEl(f.last_seen)),
    h("td", {}, f.state === "notified" && f.deadline ? deadlineEl(f.deadline) : "—"),
  ];
  return h("tr", { "data-flag": f.id }, cells);
}

function bulkBar(root, reload) {
  const reason = h("input", { id: "bulk-reason", type: "text", placeholder: "why (required to dismiss)" });
  const act = async (what) => {
    const ids = [...root.querySelectorAll("input.pick:checked")].map((c) => c.value);
    if (ids.length === 0) return say("Select flags first.", true);
    const why = reason.value.trim();
    if (what === "dismiss" && !why) return say("Dismissing needs a reason.", true);
    const failed = [];
    for (const id of ids) {
      try {
        await post("/api/v1/flags/" + id + "/" + what, why ? { reason: why } : {});
      } catch (e) {
        failed.push("#" + id + ": " + e.message);
      }
    }
    const done = ids.length - failed.length;
    say(
      (what === "ack" ? "Acknowledged " : "Dismissed ") + done + " of " + ids.length +
        (failed.length ? ". Failed: " + failed.join("; ") : "."),
      failed.length > 0,
    );
    await reload();
  };
  return h(
    "div",
    { class: "bulk", role: "group", "aria-label": "Review selected flags" },
    h("label", { for: "bulk-reason" }, "Reason or note"),
    reason,
    h("button", { type: "button", id: "bulk-ack", onclick: () => act("ack") }, "Acknowledge selected"),
    h("button", { type: "button", id: "bulk-dismiss", onclick: () => act("dismiss") }, "Dismiss selected"),
  );
}

function pager(total, reload) {
  const first = total === 0 ? 0 : filter.offset + 1;
  const last = Math.min(filter.offset + filter.limit, total);
  const go = (offset) => () => {
    filter.offset = offset;
    reload();
  };
  return h(
    "nav",
    { class: "pager", "aria-label": "Pages" },
    h("button", { type: "button", id: "page-prev", disabled: filter.offset === 0, onclick: go(Math.max(0, filter.offset - filter.limit)) }, "Newer"),
    h("span", { id: "page-range" }, first + "–" + last + " of " + total),
    h("button", { type: "button", id: "page-next", disabled: last >= total, onclick: go(filter.offset + filter.limit) }, "Older"),
  );
}

export async function showQueue(root) {
  const writable = may("operator");
  const body = h("div", { id: "queue-body" });
  let latest = null;
  let loading = null;
  const reload = async () => {
    const started = performance.now();
    const [summary, flags] = await Promise.all([
      get("/api/v1/flags/summary" + query(params(false))),
      get("/api/v1/flags" + query(params(true))),
    ]);
    latest = summary.latest_id;
    const all = h("input", {
      type: "checkbox",
      id: "pick-all",
      "aria-label": "Select all flags on this page",
      onchange: (ev) => {
        for (const c of body.querySelectorAll("input.pick")) c.checked = ev.target.checked;
      },
    });
    const nodes = flags.some((f) => f.node);
    const heads = [writable ? all : null, "Flag", "Tenant", nodes ? "Node" : null, "Kind", "State", "First seen", "Last seen", "Deadline"].filter((x) => x !== null);
    const rows = flags.map((f) => row(f, writable, nodes));
    body.replaceChildren(
      counts(summary, reload),
      // replaceChildren writes a null as the text "null": leave the bar out instead.
      ...(writable ? [bulkBar(body, reload)] : []),
      flags.length === 0
        ? h("p", { id: "queue-empty" }, "No flags match.")
        : table("Flags, most recently seen first", heads, rows, { id: "queue", class: "queue" }),
      pager(summary.total, reload),
    );
    // Measured by the browser tests and the bench: fetch and render of one page.
    const took = performance.now() - started;
    body.dataset.renderMs = took.toFixed(1);
    body.dataset.loads = String(Number(body.dataset.loads || 0) + 1);
  };
  const guarded = () => {
    loading = reload().catch((e) => say("Could not load flags: " + e.message, true));
    return loading;
  };
  root.append(h("h2", {}, "Flags"), filters(guarded), body);
  await reload();
  // Live: a new flag id reloads the page in place (selection is kept by the user's
  // next click, not lost silently: a reload only happens when nothing is selected).
  const timer = setInterval(async () => {
    try {
      const s = await get("/api/v1/flags/summary");
      if (s.latest_id !== latest && body.querySelectorAll("input.pick:checked").length === 0) {
        await guarded();
        say("New flag #" + s.latest_id + " raised.");
      }
    } catch (e) {
      say("Live updates paused: " + e.message, true);
    }
  }, POLL_MS);
  return () => clearInterval(timer);
}
