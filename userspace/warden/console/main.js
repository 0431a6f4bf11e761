// The console: sign-in, the role, and the views by location hash
// (#/queue, #/flag/ID, #/tenant/ID, #/audit).

import { ApiError, get, setToken, token } from "./api.js";
import { h, say, tick } from "./dom.js";
import { showQueue } from "./queue.js";
import { showFlag } from "./flag.js";
import { showTenant } from "./tenant.js";
import { showAudit } from "./audit.js";
import { session } from "./session.js";

function signInForm() {
  return document.getElementById("sign-in");
}

async function signIn(ev) {
  ev.preventDefault();
  const input = document.getElementById("token");
  setToken(input.value.trim());
  input.value = "";
  document.getElementById("sign-in-error").textContent = "";
  await start();
}

function signOut() {
  setToken(null);
  session.who = null;
  location.hash = "";
  location.reload();
}

async function start() {
  if (!token()) return showSignIn("");
  try {
    session.who = await get("/api/v1/whoami");
  } catch (e) {
    setToken(null);
    return showSignIn(e instanceof ApiError && e.status === 401 ? "That token is not valid." : e.message);
  }
  signInForm().hidden = true;
  document.getElementById("nav").hidden = false;
  document.getElementById("who").textContent = session.who.name + " (" + session.who.role + ")";
  document.body.dataset.role = session.who.role;
  await route();
}

function showSignIn(error) {
  document.getElementById("nav").hidden = true;
  const view = document.getElementById("view");
  for (const c of [...view.children]) if (c !== signInForm()) c.remove();
  signInForm().hidden = false;
  document.getElementById("sign-in-error").textContent = error;
  document.getElementById("token").focus();
}

async function route() {
  if (!session.who) return;
  if (session.stop) session.stop();
  session.stop = null;
  const view = document.getElementById("view");
  for (const c of [...view.children]) if (c !== signInForm()) c.remove();
  const [, page, id] = (location.hash || "#/queue").split("/");
  const root = h("div", { id: "page" });
  view.append(root);
  try {
    if (page === "flag" && id) session.stop = await showFlag(root, decodeURIComponent(id));
    else if (page === "tenant" && id) session.stop = await showTenant(root, decodeURIComponent(id));
    else if (page === "audit") session.stop = await showAudit(root);
    else session.stop = await showQueue(root);
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) return showSignIn("Signed out: " + e.message);
    root.append(h("p", { class: "error", role: "alert" }, "Could not load this page: " + e.message));
  }
  const heading = root.querySelector("h2");
  if (heading) {
    heading.tabIndex = -1;
    heading.focus();
  }
}

document.addEventListener("DOMContentLoaded", () => {
  signInForm().addEventListener("submit", signIn);
  document.getElementById("sign-out").addEventListener("click", signOut);
  window.addEventListener("hashchange", () => {
    say("");
    route();
  });
  setInterval(tick, 1000);
  start();
});
