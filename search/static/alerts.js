// podlog alerts page: the rules the caller may see, with their state; read-only.
// Text reaches the DOM through textContent only.
"use strict";

const REFRESH_MS = 5000;
const $ = (id) => document.getElementById(id);

function authHeaders() {
  const value = sessionStorage.getItem("podlog.auth");
  return value ? { Authorization: value } : {};
}

function cell(row, text, className) {
  const td = document.createElement("td");
  td.textContent = text == null ? "" : String(text);
  if (className) td.className = className;
  row.appendChild(td);
  return td;
}

function searchLink(rule, alert) {
  const p = new URLSearchParams();
  if (rule.query) p.set("q", rule.query);
  p.set("range", "1h");
  for (const [field, value] of Object.entries(alert ? alert.group : {})) p.append(field, value);
  return "/?" + p.toString();
}

function render(rules) {
  const body = $("rule-rows");
  body.replaceChildren();
  for (const rule of rules) {
    const tr = document.createElement("tr");
    tr.dataset.rule = rule.name;
    const name = cell(tr, "");
    const a = document.createElement("a");
    a.href = searchLink(rule, null);
    a.textContent = rule.name;
    name.appendChild(a);
    cell(tr, rule.state, "state state-" + rule.state);
    cell(tr, rule.query || "(every line)", "mono");
    cell(tr, rule.condition + (rule.group_by ? " by " + rule.group_by : ""));
    cell(tr, rule.window + " every " + rule.interval);
    cell(tr, rule.last_evaluation || "never");
    cell(tr, rule.next_run || "");
    const alerts = cell(tr, "");
    for (const alert of rule.alerts) {
      const link = document.createElement("a");
      link.href = searchLink(rule, alert);
      const group = Object.entries(alert.group).map(([k, v]) => k + "=" + v).join(", ");
      link.textContent = alert.status + (group ? " " + group : "") + " (" + alert.count + ")";
      link.className = "alert alert-" + alert.status;
      alerts.appendChild(link);
      alerts.appendChild(document.createElement("br"));
    }
    const problems = [rule.error, rule.notification_error].filter(Boolean);
    if (rule.notification_failures) problems.push(rule.notification_failures + " notification(s) not delivered");
    cell(tr, problems.join("; "), "error");
    body.appendChild(tr);
  }
  $("rules").hidden = rules.length === 0;
  $("status").textContent = rules.length ? "" : "No alert rules you may see (search.alerts.rules_path).";
}

async function refresh() {
  try {
    const response = await fetch("/api/alerts/rules", { headers: authHeaders() });
    if (response.status === 401) {
      $("status").textContent = "Sign in on the search page first.";
      return;
    }
    if (!response.ok) throw new Error("HTTP " + response.status);
    render((await response.json()).rules);
  } catch (error) {
    $("status").textContent = "Could not load the rules: " + error.message;
  }
}

function init() {
  const theme = localStorage.getItem("podlog.theme");
  if (theme) document.documentElement.dataset.theme = theme;
  refresh();
  setInterval(refresh, REFRESH_MS);
}

document.addEventListener("DOMContentLoaded", init);
