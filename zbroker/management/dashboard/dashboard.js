// zbroker dashboard: reads the management API every REFRESH_MS and redraws the open view;
// a login form while nobody is logged in (session.js keeps the login and makes the requests;
// policies.js the policy badges, the queue page's policy and the Policies view).
"use strict";
const REFRESH_MS = 2000;
const HISTORY = 150;  // chart points kept (5 minutes at REFRESH_MS)
const SERIES = [["publish", "#f60"], ["deliver_get", "#2a7fff"], ["ack", "#2bb24c"]];
const history = [];
const esc = (v) => String(v ?? "").replace(/[&<>"']/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c]));
const num = (v) => (v ?? 0).toLocaleString("en-US");
const rate = (stats, key) => ((stats || {})[key + "_details"] || {}).rate || 0;
const rateText = (stats, key) => rate(stats, key).toFixed(1) + "/s";
const q = encodeURIComponent;

const api = (path, options) => session.request(path, options);

function table(columns, rows, empty) {
  if (!rows.length) return `<p>${esc(empty)}</p>`;
  const head = columns.map(([title, , cls]) => `<th class="${cls || ""}">${esc(title)}</th>`).join("");
  const body = rows.map((row) => "<tr>" + columns.map(([, cell, cls]) =>
    `<td class="${cls || ""}">${cell(row)}</td>`).join("") + "</tr>").join("");
  return `<table><thead><tr>${head}</tr></thead><tbody>${body}</tbody></table>`;
}

function features(queue) {
  const f = [];
  if (queue.durable) f.push(["D", "durable"]);
  if (queue.auto_delete) f.push(["AD", "auto-delete"]);
  if (queue.exclusive) f.push(["Excl", "exclusive"]);
  const names = {"x-message-ttl": "TTL", "x-expires": "Exp", "x-max-length": "Lim", "x-max-length-bytes": "Lim B",
    "x-dead-letter-exchange": "DLX", "x-dead-letter-routing-key": "DLK", "x-max-priority": "Pri",
    "x-single-active-consumer": "SAC", "x-overflow": "Ovfl", "x-delivery-limit": "DLim"};
  for (const [key, value] of Object.entries(queue.arguments || {}))
    f.push([names[key] || "Args", `${key}: ${value}`]);
  return f.map(([label, title]) => `<span class="feature" title="${esc(title)}">${esc(label)}</span>`).join("") +
    policyBadges(queue);
}

function drawChart(canvas) {
  const ctx = canvas.getContext("2d");
  const w = canvas.width = canvas.clientWidth, h = canvas.height = canvas.clientHeight;
  ctx.clearRect(0, 0, w, h);
  const top = Math.max(1, ...history.flatMap((p) => SERIES.map(([k]) => p[k])));
  ctx.fillStyle = "#666"; ctx.font = "12px sans-serif";
  ctx.fillText(top.toFixed(1) + "/s", 4, 12); ctx.fillText("0/s", 4, h - 4);
  for (const [key, colour] of SERIES) {
    ctx.strokeStyle = colour; ctx.lineWidth = 2; ctx.beginPath();
    history.forEach((p, i) => {
      const x = w - (history.length - 1 - i) * (w / HISTORY), y = h - 4 - (p[key] / top) * (h - 20);
      i ? ctx.lineTo(x, y) : ctx.moveTo(x, y);
    });
    ctx.stroke();
  }
}

const queueColumns = [
  ["Name", (r) => `<a href="#/queues/${q(r.vhost)}/${q(r.name)}">${esc(r.name)}</a>`],
  ["Virtual host", (r) => esc(r.vhost)],
  ["Type", (r) => esc(r.type)], ["Features", features], ["State", (r) => esc(r.state)],
  ["Ready", (r) => num(r.messages_ready), "n"], ["Unacked", (r) => num(r.messages_unacknowledged), "n"],
  ["Total", (r) => num(r.messages), "n"],
  ["Incoming", (r) => rateText(r.message_stats, "publish"), "n"],
  ["Deliver / get", (r) => rateText(r.message_stats, "deliver_get"), "n"],
  ["Ack", (r) => rateText(r.message_stats, "ack"), "n"],
];

const views = {
  async overview() {
    const o = await api("/overview");
    const t = o.object_totals, qt = o.queue_totals, s = o.message_stats;
    const alarms = (o.alarms || []).length ? `<p class="alarm">Alarm: ${esc(o.alarms.join(", "))} — publishers are blocked</p>` : "";
    const tile = (label, value) => `<div class="tile">${esc(label)}<b>${value}</b></div>`;
    const legend = SERIES.map(([k, c]) => `<span><i style="background:${c}"></i>${k} <b data-rate="${k}">${rateText(s, k)}</b></span>`).join("");
    return `${alarms}<div class="tiles">${tile("Connections", num(t.connections))}${tile("Channels", num(t.channels))}
      ${tile("Queues", num(t.queues))}${tile("Consumers", num(t.consumers))}${tile("Ready", num(qt.messages_ready))}
      ${tile("Unacked", num(qt.messages_unacknowledged))}${tile("Total", num(qt.messages))}</div>
      <h2>Message rates</h2><div class="legend">${legend}</div><canvas id="rates"></canvas>
      <h2>Listeners</h2>${table([["Protocol", (r) => esc(r.protocol)], ["Interface", (r) => esc(r.ip_address)], ["Port", (r) => esc(r.port)]], o.listeners || [], "none")}`;
  },
  async queues() {
    const list = await api("/queues");
    return `<h2>Queues (${list.length})</h2>` + table(queueColumns, list, "No queues.");
  },
  async queue(where) {
    const r = await api(`/queues/${where}`);
    const bindings = await api(`/queues/${where}/bindings`);
    return `<h2>Queue ${esc(r.name)}</h2>` + table(queueColumns.slice(1), [r], "") + queuePolicy(r) +
      `<h2>Consumers (${r.consumer_details.length})</h2>` + table([
        ["Channel", (c) => esc(c.channel_details.name)], ["Tag", (c) => esc(c.consumer_tag)],
        ["Ack required", (c) => c.ack_required], ["Prefetch", (c) => num(c.prefetch_count), "n"],
        ["Active", (c) => esc(c.activity_status)]], r.consumer_details, "No consumers.") +
      `<h2>Bindings</h2>` + table([["From", (b) => esc(b.source || "(default exchange)")],
        ["Routing key", (b) => esc(b.routing_key)], ["Arguments", (b) => esc(JSON.stringify(b.arguments))]], bindings, "No bindings.") +
      `<h2>Get messages</h2><p><label>Messages <input id="get-count" type="number" value="1" min="1" size="4"></label>
        <select id="get-mode"><option value="ack_requeue_true">Nack message requeue true</option>
        <option value="ack_requeue_false">Automatic ack</option><option value="reject_requeue_false">Reject requeue false</option></select>
        <button id="get">Get messages</button><button id="purge">Purge messages</button><button id="delete">Delete queue</button></p>
        <div id="got"></div>`;
  },
  async exchanges() {
    const list = await api("/exchanges");
    return `<h2>Exchanges (${list.length})</h2>` + table([
      ["Name", (r) => esc(r.name || "(AMQP default)")], ["Type", (r) => esc(r.type)],
      ["Features", (r) => (r.durable ? '<span class="feature">D</span>' : "") + (r.internal ? '<span class="feature">I</span>' : "") +
        policyBadges(r)],
      ["Message rate in", (r) => rateText(r.message_stats, "publish_in"), "n"],
      ["Message rate out", (r) => rateText(r.message_stats, "publish_out"), "n"]], list, "No exchanges.");
  },
  async connections() {
    const list = await api("/connections");
    return `<h2>Connections (${list.length})</h2>` + table([
      ["Name", (r) => esc(r.name)], ["Client", (r) => esc(r.client_properties.connection_name || r.client_properties.product || "")],
      ["User", (r) => esc(r.user)], ["State", (r) => esc(r.state)], ["Protocol", (r) => esc(r.protocol)],
      ["Channels", (r) => num(r.channels), "n"],
      ["", (r) => `<button data-close="${esc(r.name)}">Close</button>`]], list, "No connections.");
  },
  policies: policiesView,
  async channels() {
    const list = await api("/channels");
    return `<h2>Channels (${list.length})</h2>` + table([
      ["Channel", (r) => esc(r.name)], ["User", (r) => esc(r.user)],
      ["Mode", (r) => (r.confirm ? "C" : "") + (r.transactional ? "T" : "")],
      ["Prefetch", (r) => num(r.prefetch_count), "n"], ["Unacked", (r) => num(r.messages_unacknowledged), "n"],
      ["Publish", (r) => rateText(r.message_stats, "publish"), "n"],
      ["Deliver", (r) => rateText(r.message_stats, "deliver"), "n"],
      ["Ack", (r) => rateText(r.message_stats, "ack"), "n"]], list, "No channels.");
  },
};

function route() {
  const parts = location.hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
  // #/queues/<vhost>/<name>, as RabbitMQ's UI: the arg is the API's "<vhost>/<name>", encoded.
  if (parts[0] === "queues" && parts.length > 2) return ["queues", "queue", `${q(parts[1])}/${q(parts.slice(2).join("/"))}`];
  return [parts[0] || "overview", parts[0] || "overview"];
}

async function sampleRates() {
  const o = await api("/overview");
  const point = {};
  for (const [k] of SERIES) point[k] = rate(o.message_stats, k);
  return [point, o.node];
}

/** Show the login form (with the API's refusal, if any) and nothing of the broker's. */
function showLogin(reason) {
  generation++;
  history.length = 0;
  document.getElementById("view").innerHTML = "";
  document.getElementById("node").textContent = "";
  document.getElementById("login-status").textContent = reason || "";
  document.body.classList.add("logged-out");
  document.getElementById("password").value = "";
  (document.getElementById("username").value ? document.getElementById("password")
    : document.getElementById("username")).focus();
}

function showApp() {
  generation++;
  document.getElementById("user-name").textContent = session.user();
  document.getElementById("login-status").textContent = "";
  document.body.classList.remove("logged-out");
  refresh();
}

/** What the user has put in the view's fields (by id), the focus and the caret: a redraw keeps them. */
function fieldsOf(main) {
  const focused = document.activeElement;
  const values = {};
  main.querySelectorAll("input[id], select[id], textarea[id]").forEach((f) => { values[f.id] = f.value; });
  const caret = focused && focused.id && typeof focused.selectionStart === "number"
    ? [focused.selectionStart, focused.selectionEnd] : null;
  return {values, focused: focused && focused.id, caret};
}

function restoreFields({values, focused, caret}) {
  for (const [id, value] of Object.entries(values)) {
    const field = document.getElementById(id);
    if (field && (field.tagName !== "SELECT" || [...field.options].some((o) => o.value === value))) field.value = value;
  }
  const field = focused && document.getElementById(focused);
  if (!field) return;
  field.focus();
  if (caret) field.setSelectionRange(...caret);
}

/** The page's API work runs one piece at a time, in the order it was asked for: an action
 * (delete, purge, close) never overlaps a redraw that read the view before it, so a redraw
 * cannot ask for the queue the user has just deleted. */
let lane = Promise.resolve();
function inLane(work) {
  const run = lane.then(work);
  lane = run.catch(() => {});
  return run;
}

let busy = false;  // a redraw is running or waiting in the lane: the timer does not queue another
let generation = 0;  // bumped at each log in and log out: a refresh begun before is dropped
function refresh() {
  if (busy || !session.active()) return;
  busy = true;
  inLane(redraw);
}

async function redraw() {
  const started = generation;
  const status = document.getElementById("status");
  try {
    if (!session.active()) return;  // logged out while this waited in the lane
    const [point, node] = await sampleRates();
    const [tab, view, arg] = route();
    const html = await (views[view] || views.overview)(arg);
    if (started !== generation) return;
    history.push(point);
    if (history.length > HISTORY) history.shift();
    document.getElementById("node").textContent = node;
    document.querySelectorAll("nav a").forEach((a) => a.classList.toggle("active", a.dataset.tab === tab));
    const main = document.getElementById("view");
    const got = document.getElementById("got")?.innerHTML;
    const typed = fieldsOf(main);
    main.innerHTML = html;
    if (got && document.getElementById("got")) document.getElementById("got").innerHTML = got;
    restoreFields(typed);
    const canvas = document.getElementById("rates");
    if (canvas) drawChart(canvas);
    status.textContent = "live · " + new Date().toLocaleTimeString();
    status.className = "ok";
  } catch (error) {
    if (started !== generation) return;
    if (error instanceof LoggedOut) {
      showLogin(error.message);
    } else {
      status.textContent = "error: " + error.message;
      status.className = "bad";
    }
  } finally {
    busy = false;
    if (started !== generation) refresh();  // logged in meanwhile: draw for the new login now
  }
}

document.addEventListener("click", async (event) => {
  if (event.target.id === "logout") {
    session.logout();
    showLogin("");
    return;
  }
  const [, view, name] = route();  // the view the user clicked in, not the one a later redraw shows
  if (event.target.id === "delete" && view === "queue" &&
      !confirm(`Delete queue ${decodeURIComponent(name.split("/").pop())}?`)) return;
  const action = actionFor(event.target, view, name);
  if (!action) return;  // not one of the page's buttons
  try {
    await inLane(action);
    refresh();
  } catch (error) {
    if (error instanceof LoggedOut) showLogin(error.message);
    else alert(error.message);
  }
});

/** What the clicked button asks of the API, as work for the lane; null for any other click. */
function actionFor(target, view, name) {
  if (target.id === "get" && view === "queue") return async () => {
    const messages = await api(`/queues/${name}/get`, {method: "POST", headers: {"Content-Type": "application/json"},
      body: JSON.stringify({count: Number(document.getElementById("get-count").value), ackmode: document.getElementById("get-mode").value, encoding: "auto", truncate: 50000})});
    document.getElementById("got").innerHTML = messages.length ? messages.map((m, i) =>
      `<h2>Message ${i + 1}</h2><p>Exchange: ${esc(m.exchange || "(AMQP default)")} · Routing key: ${esc(m.routing_key)} · Redelivered: ${m.redelivered} · ${num(m.payload_bytes)} bytes (${esc(m.payload_encoding)})</p><pre class="payload">${esc(m.payload)}</pre>`).join("")
      : "<p>Queue is empty.</p>";
  };
  if (target.id === "purge" && view === "queue") return () => api(`/queues/${name}/contents`, {method: "DELETE"});
  if (target.id === "delete" && view === "queue") return async () => {
    await api(`/queues/${name}`, {method: "DELETE"});
    location.hash = "#/queues";
  };
  if (target.dataset && target.dataset.policyKind && view === "policies") return () => deletePolicy(target);
  if (target.dataset && target.dataset.close) return () => api(`/connections/${q(target.dataset.close)}`,
    {method: "DELETE", headers: {"X-Reason": "Closed from the dashboard"}});
  return null;
}

document.addEventListener("submit", async (event) => {
  if (event.target.id !== "policy-form") return;
  event.preventDefault();
  try {
    await inLane(setPolicy);
    refresh();
  } catch (error) {
    if (error instanceof LoggedOut) showLogin(error.message);
    else alert(error.message);
  }
});

document.getElementById("login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.target;
  form.querySelector("button").disabled = true;
  try {
    await session.login(form.username.value, form.password.value);
    form.password.value = "";
    showApp();
  } catch (error) {
    showLogin(error.message);
  } finally {
    form.querySelector("button").disabled = false;
  }
});

/** A URL with credentials (http://user:pass@host/) logs in with them, then the page
 * reloads at the same address without them (out of the address bar and the history). */
async function start() {
  const fromUrl = session.urlLogin();
  if (fromUrl) {
    document.getElementById("username").value = fromUrl[0];
    try {
      await session.login(...fromUrl);
      location.replace(location.origin + location.pathname + location.search + location.hash);
      return;
    } catch (error) {
      session.logout();
      showLogin(error.message);
      return;
    }
  }
  if (session.active()) showApp();
  else showLogin("");
}

window.addEventListener("hashchange", refresh);
setInterval(refresh, REFRESH_MS);
start();
