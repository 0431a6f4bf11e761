// The audit log, newest first.

import { get, query } from "./api.js";
import { h, table, text, when } from "./dom.js";

export async function showAudit(root) {
  const entries = await get("/api/v1/audit" + query({ limit: 200 }));
  const rows = entries.map((a) => [String(a.id), when(a.at), a.actor, a.action, a.target, text(a.detail)]);
  root.replaceChildren(
    h("h2", {}, "Audit log"),
    rows.length === 0 ? h("p", {}, "No entries.") : table("The latest 200 entries, newest first", ["#", "When", "Who", "What", "Target", "Detail"], rows, { id: "audit" }),
  );
  return null;
}
