"use strict";
// The status page: renders /status every two seconds. Everything from the daemon goes in as
// text (textContent), never as markup.
const csrf = document.querySelector('meta[name="csrf"]').content;

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k.startsWith("data-")) e.setAttribute(k, v);
    else if (k === "class") e.className = v;
    else e[k] = v;
  }
  for (const c of children) e.append(c instanceof Node ? c : String(c ?? ""));
  return e;
}

function cell(label, ...content) {
  return el("td", { "data-label": label }, ...content);
}

function ago(unixSecs) {
  if (!unixSecs) return "";
  const s = Math.round(unixSecs - Date.now() / 1000);
  if (s > 0) return s < 120 ? `in ${s} s` : `in ${Math.round(s / 60)} min`;
  return -s < 120 ? `${-s} s ago` : `${Math.round(-s / 60)} min ago`;
}

function replace(id, children) {
  const target = document.getElementById(id);
  target.replaceChildren(...children);
}

async function approve(upstream, tool) {
  const r = await fetch("/ui/approve", {
    method: "POST",
    headers: { "content-type": "application/json", "x-csrf-token": csrf },
    body: JSON.stringify(tool ? { upstream, tool } : { upstream }),
  });
  if (!r.ok) alert(`approval failed: ${await r.text()}`);
  refresh();
}

function render(s) {
  const down = s.upstreams.filter((u) => u.state !== "ready").length;
  document.getElementById("summary").textContent =
    `${s.version} at ${s.endpoint}: ${s.tools} tools from ${s.upstreams.length} upstreams` +
    (down ? `, ${down} not ready` : "") + `, ${s.sessions} sessions, up ${Math.round(s.uptime_secs / 60)} min`;

  const body = document.querySelector("#upstreams tbody");
  body.replaceChildren(...s.upstreams.map((u) => {
    const soon = u.next_retry_at && u.next_retry_at * 1000 > Date.now() ? ago(u.next_retry_at) : "now";
    const retry = u.next_retry_at ? ` (next try ${soon})` : "";
    return el("tr", { "data-upstream": u.name, "data-state": u.state },
      cell("Upstream", el("b", {}, u.name)),
      cell("State", el("span", { class: `state-${u.state}` }, u.state), retry),
      cell("Era", u.protocol_version || "–"),
      cell("Transport", u.transport),
      cell("Tools", el("span", { "data-tools": String(u.tools) }, u.tools),
        u.tools_hidden ? ` (${u.tools_hidden} hidden)` : "",
        u.tools_pending ? ` (${u.tools_pending} pending)` : ""),
      cell("Last error", u.last_error || "–"),
      cell("What to do", u.hint || "–"));
  }));

  const pending = s.upstreams.flatMap((u) => (u.pins_pending || []).map((t) => [u.name, t]));
  document.getElementById("pending-section").hidden = pending.length === 0;
  replace("pending", pending.map(([up, tool]) => el("li", { "data-pending": `${up}/${tool}` },
    el("code", {}, `${up} ${tool}`),
    el("button", { type: "button", onclick: () => approve(up, tool) }, "Approve"))));

  document.querySelector("#profiles tbody").replaceChildren(...(s.profiles || []).map((p) =>
    el("tr", { "data-profile": p.name },
      cell("Profile", el("b", {}, p.name), p.browser_default ? " (browser default)" : ""),
      cell("Shows", p.shows),
      cell("Tools", p.tools),
      cell("Sessions", p.sessions))));
  replace("sessions", (s.sessions_detail || []).map((c) =>
    el("li", {}, `${c.client} — profile ${c.profile}, ${c.protocol_version}, idle ${c.idle_secs} s`)));

  const agent = s.agent;
  document.getElementById("agent-section").hidden = !agent;
  if (agent) {
    replace("logins", agent.reachable
      ? (agent.logins || []).map((l) => el("li", { "data-login": l.name },
          `${l.name}: ${l.logged_in ? "logged in" : "not logged in"}`,
          l.expires_at ? `, token expires ${ago(l.expires_at)}` : "",
          l.logged_in ? "" : ` — run mcp-cred-agent login ${l.name}`))
      : [el("li", {}, `the agent is not reachable: ${agent.error}`)]);
  }

  const c = s.connectors;
  document.getElementById("connectors-section").hidden = !c;
  if (c) {
    document.getElementById("connectors").textContent = c.error
      ? `refused: ${c.error}`
      : `${c.public_url}: ${c.grants.length} with access` +
        (c.grants.length ? ` (${c.grants.map((g) => `${g.name} → ${g.profile}`).join(", ")})` : "");
  }

  const errors = s.recent_errors || [];
  replace("errors", errors.length
    ? errors.map((e) => el("li", {}, `${new Date(e.at * 1000).toLocaleTimeString()} ${e.upstream}: ${e.error}`))
    : [el("li", { class: "muted" }, "none")]);
}

async function refresh() {
  const updated = document.getElementById("updated");
  try {
    const r = await fetch("/status", { cache: "no-store" });
    render(await r.json());
    updated.textContent = `updated ${new Date().toLocaleTimeString()}`;
    document.body.dataset.loaded = "true";
  } catch (e) {
    updated.textContent = `the bridge is not answering (${e})`;
  }
  const root = document.documentElement;
  root.dataset.overflow = String(root.scrollWidth > window.innerWidth);
}

refresh();
setInterval(refresh, 2000);
