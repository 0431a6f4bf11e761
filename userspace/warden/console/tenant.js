// One tenant: state, plan, current rates, traffic history, flags and audit entries;
// suspend and unsuspend with a reason for admins.

import { get, post, query } from "./api.js";
import { badge, h, now, rate, say, table, text, when } from "./dom.js";
import { historyChart } from "./chart.js";
import { may } from "./session.js";

function direction(name, d) {
  const drops = Object.entries(d.drops || {}).map(([k, n]) => k + " " + n).join(", ") || "none";
  return [name, rate(d.bps), d.pps.toFixed(1), rate(d.plan_bps), String(d.packets), String(d.bytes), drops];
}

function suspendForm(t, reload) {
  if (!may("admin")) return null;
  const suspended = t.state === "suspended";
  const what = suspended ? "unsuspend" : "suspend";
  const reason = h("input", { id: "suspend-reason", type: "text", required: true });
  const act = async () => {
    const why = reason.value.trim();
    if (!why) return say("A reason is required to " + what + ".", true);
    try {
      await post("/api/v1/tenants/" + encodeURIComponent(t.id) + "/" + what, { reason: why });
      say((suspended ? "Unsuspended " : "Suspended ") + t.id + ".");
      await reload();
    } catch (e) {
      say("Could not " + what + " " + t.id + ": " + e.message, true);
    }
  };
  return h(
    "section",
    { class: "review", "aria-labelledby": "suspend-h" },
    h("h3", { id: "suspend-h" }, suspended ? "Lift the suspension" : "Suspend"),
    h("label", { for: "suspend-reason" }, "Reason"),
    reason,
    h("button", { type: "button", id: what, onclick: act }, suspended ? "Unsuspend " + t.id : "Suspend " + t.id),
  );
}

export async function showTenant(root, id) {
  const render = async () => {
    const t = await get("/api/v1/tenants/" + encodeURIComponent(id));
    const [flags, audit] = await Promise.all([
      get("/api/v1/flags" + query({ tenant: id, limit: 50 })),
      get("/api/v1/audit" + query({ limit: 1000 })),
    ]);
    const chartBox = h("div", { id: "chart-box" }, "Loading traffic…");
    const mine = audit.filter((a) => a.target === id).slice(0, 50);
    root.replaceChildren(
      h("p", {}, h("a", { href: "#/queue" }, "← Flags")),
      h("h2", {}, "Tenant " + t.id),
      h(
        "dl",
        { class: "facts", id: "tenant-facts" },
        h("dt", {}, "State"), h("dd", { id: "tenant-state" }, badge(t.state), t.why_suspended ? " — " + t.why_suspended : ""),
        h("dt", {}, "Addresses"), h("dd", {}, t.addresses.join(", ")),
        h("dt", {}, "Slot"), h("dd", {}, String(t.index)),
      ),
      // No form below admin (replaceChildren would write a null as "null").
      ...[suspendForm(t, render)].filter((x) => x !== null),
      table("Rates and plan", ["Direction", "Rate", "Packets/s", "Plan", "Packets", "Bytes", "Drops"], [direction("sent", t.out), direction("received", t.in)], { id: "rates" }),
      h("section", { "aria-labelledby": "chart-h" }, h("h3", { id: "chart-h" }, "Traffic, last hour"), chartBox),
      h(
        "section",
        { "aria-labelledby": "tflags-h" },
        h("h3", { id: "tflags-h" }, "Flags"),
        flags.length === 0
          ? h("p", {}, "No flags.")
          : table("Flags of " + t.id + ", newest first", ["Flag", "Kind", "State", "First seen"], flags.map((f) => [h("a", { href: "#/flag/" + f.id }, "#" + f.id), f.kind, badge(f.state), when(f.first_seen)]), { id: "tenant-flags" }),
      ),
      h(
        "section",
        { "aria-labelledby": "taudit-h" },
        h("h3", { id: "taudit-h" }, "Audit entries"),
        mine.length === 0
          ? h("p", {}, "No audit entries among the latest 1000.")
          : table("Audit entries for " + t.id + ", newest first", ["When", "Who", "What", "Detail"], mine.map((a) => [when(a.at), a.actor, a.action, text(a.detail)]), { id: "tenant-audit" }),
      ),
    );
    const t1 = now();
    await historyChart(chartBox, t.id, t1 - 3600, t1, [t1, t1]).catch((e) =>
      chartBox.replaceChildren(h("p", { class: "error" }, "Could not load the traffic history: " + e.message)),
    );
  };
  await render();
  return null;
}
