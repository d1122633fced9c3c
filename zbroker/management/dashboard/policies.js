// zbroker dashboard: policies and operator policies, as RabbitMQ's management UI shows them.
// Rules:
// - A queue's or exchange's policy is a badge among its features (RabbitMQ's "Features"
//   column): the user policy's name links to the Policies view; the operator policy's is
//   a badge of its own colour. A queue's page adds its policy, operator policy and the
//   effective definition (the API's "effective_policy_definition").
// - The Policies view lists both kinds as the API gives them (lowest priority first), with
//   a Delete button per row and one form that adds or replaces either kind (PUT). Who may
//   is the broker's: a refusal is shown as the API's reason, and a list this user may not
//   read says so in place of its table.
// Loaded before dashboard.js; uses its helpers (esc, table, api, q) at call time only.
"use strict";
/** RabbitMQ's "apply-to" values with the labels of its policy form. */
const APPLY_TO = [["all", "Exchanges and queues"], ["exchanges", "Exchanges"], ["queues", "Queues [All types]"],
  ["classic_queues", "Queues [Classic]"], ["quorum_queues", "Queues [Quorum]"], ["streams", "Streams"]];
/** The API's path for each kind, and its title. */
const POLICY_KINDS = [["policies", "User policies"], ["operator-policies", "Operator policies"]];

/** The policy badges of a queue or exchange ("" when none applies). */
function policyBadges(obj) {
  let html = "";
  if (obj.policy) html += `<a class="feature policy" href="#/policies" title="Policy: ${esc(obj.policy)}">${esc(obj.policy)}</a>`;
  if (obj.operator_policy) {
    html += `<span class="feature policy operator" title="Operator policy: ${esc(obj.operator_policy)}">${esc(obj.operator_policy)}</span>`;
  }
  return html;
}

/** A policy definition as RabbitMQ's UI shows it: one "key: value" a line. */
function definitionText(definition) {
  const entries = Object.entries(definition || {});
  if (!entries.length) return "";
  return entries.map(([key, value]) => `<span class="definition">${esc(key)}: ${esc(typeof value === "object" ? JSON.stringify(value) : value)}</span>`).join("<br>");
}

/** A queue page's policy section. */
function queuePolicy(queue) {
  const row = (title, html) => `<tr><th>${esc(title)}</th><td>${html}</td></tr>`;
  return `<h2>Policy</h2><table class="details" id="queue-policy"><tbody>` +
    row("Policy", queue.policy ? `<a href="#/policies">${esc(queue.policy)}</a>` : "") +
    row("Operator policy", esc(queue.operator_policy || "")) +
    row("Effective policy definition", definitionText(queue.effective_policy_definition)) + "</tbody></table>";
}

/** A list from the API, or the API's reason for not giving it. */
async function listOrReason(path) {
  try {
    return [await api(path), null];
  } catch (error) {
    if (error instanceof LoggedOut) throw error;
    return [null, error.message];
  }
}

async function policiesView() {
  const [vhosts] = await listOrReason("/vhosts");
  const names = (vhosts || [{name: "/"}]).map((v) => v.name);
  let html = "";
  for (const [kind, title] of POLICY_KINDS) {
    const [list, reason] = await listOrReason("/" + kind);
    if (list === null) {
      html += `<h2>${esc(title)}</h2><p>Not shown: ${esc(reason)}</p>`;
      continue;
    }
    html += `<h2>${esc(title)} (${list.length})</h2>` + table([
      ["Virtual host", (p) => esc(p.vhost)], ["Name", (p) => esc(p.name)], ["Pattern", (p) => esc(p.pattern)],
      ["Apply to", (p) => esc(p["apply-to"])], ["Definition", (p) => definitionText(p.definition)],
      ["Priority", (p) => esc(p.priority), "n"],
      ["", (p) => `<button data-policy-kind="${kind}" data-policy-vhost="${esc(p.vhost)}" data-policy-name="${esc(p.name)}">Delete</button>`]],
    list, kind === "policies" ? "No policies." : "No operator policies.");
  }
  const options = (pairs) => pairs.map(([value, label]) => `<option value="${esc(value)}">${esc(label)}</option>`).join("");
  return html + `<h2>Add / update a policy</h2><form id="policy-form" class="policy-form">
    <label for="policy-kind">Kind</label><select id="policy-kind">${options([["policies", "Policy"], ["operator-policies", "Operator policy"]])}</select>
    <label for="policy-vhost">Virtual host</label><select id="policy-vhost">${options(names.map((n) => [n, n]))}</select>
    <label for="policy-name">Name</label><input id="policy-name" required>
    <label for="policy-pattern">Pattern</label><input id="policy-pattern" placeholder="^amq." required>
    <label for="policy-apply-to">Apply to</label><select id="policy-apply-to">${options(APPLY_TO)}</select>
    <label for="policy-priority">Priority</label><input id="policy-priority" type="number" value="0">
    <label for="policy-definition">Definition (JSON)</label><textarea id="policy-definition" rows="3" placeholder='{"max-length": 1000}' required></textarea>
    <button type="submit">Add / update policy</button></form>`;
}

/** Delete the policy of a row's Delete button, if the user confirms. */
async function deletePolicy(button) {
  const {policyKind: kind, policyVhost: vhost, policyName: name} = button.dataset;
  if (!confirm(`Delete ${kind === "policies" ? "policy" : "operator policy"} ${name}?`)) return;
  await api(`/${kind}/${q(vhost)}/${q(name)}`, {method: "DELETE"});
}

/** PUT the form's policy; on success its name, pattern and definition are cleared. */
async function setPolicy() {
  const field = (id) => document.getElementById("policy-" + id);
  let definition;
  try {
    definition = JSON.parse(field("definition").value);
  } catch (error) {
    throw new Error("Definition is not JSON: " + error.message);
  }
  const body = {pattern: field("pattern").value, definition, "apply-to": field("apply-to").value,
    priority: Number(field("priority").value)};
  await api(`/${field("kind").value}/${q(field("vhost").value)}/${q(field("name").value)}`,
    {method: "PUT", headers: {"Content-Type": "application/json"}, body: JSON.stringify(body)});
  for (const id of ["name", "pattern", "definition"]) field(id).value = "";
}
