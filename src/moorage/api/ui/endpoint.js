// One endpoint: its state and replicas, the actions on it (scale, stop, start,
// delete, edit), live logs, events, usage and traffic charts.

import { ApiError, call, get, paths, stream } from "./api.js";
import { h, money, replace, setText } from "./dom.js";
import { editForm } from "./edit.js";
import { replicaCount, statusCell } from "./list.js";
import { Poller } from "./poll.js";
import { drawChart, sampleTime, Series } from "./traffic.js";

const REFRESH_MS = 2000;
const EVENTS_MS = 4000;
const USAGE_MS = 30000;
const TRAFFIC_MS = 2000;
const LOG_TAIL = 200;
const LOG_KEEP_CHARS = 200000;
const ANSI = /\x1b\[[0-9;?]*[ -\/]*[@-~]/g;

function table(id, caption, columns) {
  const body = h("tbody");
  const element = h(
    "table",
    { class: "reflow", id },
    h("caption", { class: "visually-hidden" }, caption),
    h("thead", {}, h("tr", {}, columns.map((c) => h("th", { scope: "col" }, c)))),
    body,
  );
  return {
    element,
    fill(rows) {
      replace(body, rows.map((cells) => h("tr", {}, cells.map((cell, i) => h("td", { "data-label": columns[i] }, cell)))));
    },
  };
}

function summary() {
  const fields = {
    status: "Status",
    replicas: "Replicas (ready/wanted)",
    flavor: "Flavor",
    price: "Price per hour",
    costSoFar: "Cost so far",
    costMonth: "Cost this month",
    budget: "Budget",
    url: "Endpoint URL",
    image: "Image",
    revision: "Revision",
  };
  const values = {};
  const list = h("dl", { class: "summary", id: "summary" });
  for (const [key, label] of Object.entries(fields)) {
    values[key] = h("dd", { id: `summary-${key}` });
    list.append(h("div", {}, h("dt", {}, label), values[key]));
  }
  return { element: list, values };
}

/** Follows the logs while the page shows; stops when it goes. */
function logsPanel(id, ui, poller) {
  const pre = h("pre", { class: "logs", id: "logs", tabindex: 0, "aria-label": "Replica logs" });
  const state = h("p", { class: "muted", id: "logs-state", "aria-live": "polite" });
  const again = h("button", { type: "button", hidden: true }, "Follow again");
  let text = "";
  const follow = async () => {
    again.hidden = true;
    state.textContent = "Following the logs…";
    try {
      await stream(`${paths.action(id, "logs")}?follow=true&tail=${LOG_TAIL}`, poller.signal, (piece) => {
        // Terminal colour codes (ESC [ ... m) would show as stray characters.
        text = (text + piece).replace(ANSI, "").slice(-LOG_KEEP_CHARS);
        const atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
        pre.textContent = text;
        if (atBottom) pre.scrollTop = pre.scrollHeight;
      });
      state.textContent = "The log stream ended.";
    } catch (e) {
      if (e.name === "AbortError" || ui.refused(e)) return;
      state.textContent = `The log stream stopped: ${e.message}`;
    }
    if (!poller.stopped) again.hidden = false;
  };
  again.addEventListener("click", follow);
  follow();
  return h("section", { "aria-labelledby": "logs-title" }, h("h3", { id: "logs-title" }, "Logs"), state, again, pre);
}

function trafficPanel(id, poller) {
  const note = h("p", { class: "muted", id: "traffic-state" });
  const rate = h("figure", { class: "figure", id: "chart-rate" });
  const latency = h("figure", { class: "figure", id: "chart-latency" });
  const series = new Series();
  const draw = () => {
    drawChart(rate, "Requests per second", series.points, "rate", (v) => `${v.toFixed(v < 10 ? 2 : 0)} req/s`);
    drawChart(latency, "Mean latency", series.points, "latency", (v) => `${(v * 1000).toFixed(0)} ms`);
  };
  draw();
  poller.every(TRAFFIC_MS, async (signal) => {
    try {
      const sample = await get(paths.action(id, "traffic"), signal);
      series.add({ ...sample, t: sampleTime(sample, performance.now() / 1000) });
      setText(note, `In flight: ${sample.in_flight}, waiting: ${sample.waiting}, errors so far: ${sample.errors_total}.`);
      rate.hidden = latency.hidden = false;
      draw();
    } catch (e) {
      if (e.name === "AbortError") throw e;
      // The route itself missing (an older moorage) answers 404 "Not Found".
      setText(note, e instanceof ApiError && e.status === 404 ? "no traffic data" : `Traffic: ${e.message}`);
      rate.hidden = latency.hidden = true;
    }
  });
  return h("section", { "aria-labelledby": "traffic-title" }, h("h3", { id: "traffic-title" }, "Traffic"), note, rate, latency);
}

// Which of Stop and Start applies in each status (Delete always does).
const STOPPABLE = new Set(["running", "initializing", "available", "unavailable"]);

/**
 * What a finished call has only asked for (replicas start and stop afterwards): the
 * status line says so, then follows the endpoint's refreshes until it is done.
 */
function progress(label, endpoint, how) {
  const where = how(endpoint);
  return { text: `${label}: ${where.done ? "done" : "asked"}; ${where.text}`, done: where.done };
}

const readiness = (e) => {
  const ready = e.endpoint_metadata.ready_replicas;
  const wanted = e.resource_metadata.target_instance_number;
  // A stopped endpoint keeps the new target; none run until it is started.
  if (e.status === "stopped") return { done: true, text: `${ready}/${wanted} ready (stopped: Start runs them)` };
  return { done: e.status === "available" && ready === wanted, text: `${ready}/${wanted} ready` };
};
const stopping = (e) => ({ done: e.status === "stopped", text: e.status === "stopped" ? "stopped" : `${e.endpoint_metadata.replicas.length} replicas left` });

function actions(id, ui, poller, current) {
  const error = h("p", { class: "error", id: "action-error", role: "alert" });
  const replicas = h("input", { type: "number", id: "scale-replicas", min: 1, max: 1000, required: true });
  let watching = null; // { label, how }: an action asked for and not yet done
  const follow = (label, how, endpoint) => {
    const said = progress(label, endpoint, how);
    ui.say(said.text);
    watching = said.done ? null : { label, how };
  };
  const act = async (what, run, how) => {
    error.textContent = "";
    watching = null;
    ui.say(`${what}…`);
    try {
      const endpoint = await run();
      if (how) follow(what, how, endpoint);
      else ui.say(`${what}: done.`);
      return true;
    } catch (e) {
      if (e.name !== "AbortError" && !ui.refused(e)) {
        error.textContent = e.message;
        ui.say("");
      }
      return false;
    }
  };
  const scale = h(
    "form",
    { class: "form inline", id: "scale-form", novalidate: true },
    h("label", { for: "scale-replicas" }, "Replicas wanted"),
    replicas,
    h("button", { type: "submit" }, "Scale"),
  );
  scale.addEventListener("submit", (event) => {
    event.preventDefault();
    const wanted = Number(replicas.value);
    act(
      `Scaling to ${wanted}`,
      () => call("PUT", paths.service(id), { resource_metadata: { target_instance_number: wanted } }, poller.signal),
      readiness,
    ).then(() => poller.refresh());
  });
  const button = (label, run) => {
    const b = h("button", { type: "button", disabled: true }, label);
    b.addEventListener("click", run);
    return b;
  };
  const stop = button("Stop", () => act("Stopping", () => call("POST", paths.action(id, "stop"), undefined, poller.signal), stopping).then(() => poller.refresh()));
  const start = button("Start", () => act("Starting", () => call("POST", paths.action(id, "start"), undefined, poller.signal), readiness).then(() => poller.refresh()));
  const remove = button("Delete", async () => {
    const name = current().name;
    if (!window.confirm(`Delete the endpoint ${name}? Its replicas stop and it cannot be undone.`)) return;
    if (await act(`Deleting ${name}`, () => call("DELETE", paths.service(id), undefined, poller.signal))) {
      ui.go("#/");
    }
  });
  remove.disabled = false;
  remove.classList.add("danger");
  return {
    element: h("section", { "aria-labelledby": "actions-title" }, h("h3", { id: "actions-title" }, "Actions"), scale, h("div", { class: "actions" }, stop, start, remove), error),
    update(endpoint) {
      if (replicas.value === "") replicas.value = String(endpoint.resource_metadata.target_instance_number);
      stop.disabled = !STOPPABLE.has(endpoint.status);
      start.disabled = endpoint.status !== "stopped";
      if (watching) follow(watching.label, watching.how, endpoint);
    },
  };
}

export function endpointView(ui, id) {
  const poller = new Poller();
  let endpoint = null;
  const title = h("h2", { tabindex: -1, id: "endpoint-title" }, "Endpoint");
  const problem = h("p", { class: "error", role: "alert" });
  const info = summary();
  const replicas = table("replicas", "Replicas", ["Replica", "State", "Since", "Last failure"]);
  const events = table("events", "Events, newest first", ["Time", "Kind", "What happened"]);
  const usage = table("usage", "Your usage by day (all your endpoints)", ["Day (UTC)", "Instance seconds", "GPU seconds", "Cost"]);
  const controls = actions(id, ui, poller, () => endpoint);
  const edit = editForm(id, ui, poller, (saved) => show(saved));

  const show = (e) => {
    endpoint = e;
    const billing = e.billing_metadata || {};
    const currency = billing.payment_type;
    setText(title, e.name);
    replace(info.values.status, ...statusCell(e));
    setText(info.values.replicas, replicaCount(e));
    setText(info.values.flavor, e.resource_metadata.resource_display_name || e.resource_metadata.flavor_id);
    setText(info.values.price, money(billing.price_per_hour, currency));
    setText(info.values.costSoFar, money(billing.cost_so_far, currency));
    setText(info.values.costMonth, money(billing.cost_this_month, currency));
    setText(info.values.budget, billing.budget_message ? `${billing.budget_state}: ${billing.budget_message}` : billing.budget_state);
    setText(info.values.url, e.endpoint_metadata.endpoint_url);
    setText(info.values.image, e.deploy_metadata.image_url);
    setText(info.values.revision, e.deploy_metadata.revision);
    replicas.fill(
      e.endpoint_metadata.replicas.map((r) => [r.replica_id, h("span", { class: `badge replica-${r.state}` }, r.state), r.since || "–", r.last_failure || "–"]),
    );
    controls.update(e);
    edit.update(e);
  };
  const refresh = async (signal) => {
    try {
      show(await get(paths.service(id), signal));
      problem.textContent = "";
    } catch (e) {
      if (e.name === "AbortError" || ui.refused(e)) throw e;
      problem.textContent =
        e instanceof ApiError && e.status === 404 ? "This endpoint does not exist (deleted?)." : `Could not load the endpoint: ${e.message}`;
    }
  };
  poller.refresh = () => refresh(poller.signal);

  const back = h("button", { type: "button" }, "← All endpoints");
  back.addEventListener("click", () => ui.go("#/"));
  const element = h(
    "div",
    {},
    back,
    title,
    problem,
    info.element,
    controls.element,
    edit.element,
    h("section", { "aria-labelledby": "replicas-title" }, h("h3", { id: "replicas-title" }, "Replicas"), replicas.element),
    trafficPanel(id, poller),
    logsPanel(id, ui, poller),
    h("section", { "aria-labelledby": "events-title" }, h("h3", { id: "events-title" }, "Events"), events.element),
    h(
      "section",
      { "aria-labelledby": "usage-title" },
      h("h3", { id: "usage-title" }, "Usage"),
      h("p", { class: "muted" }, "Per day for your whole account; this endpoint's own cost is above (cost so far, cost this month)."),
      usage.element,
    ),
  );
  poller.every(REFRESH_MS, refresh);
  poller.every(EVENTS_MS, async (signal) => {
    const page = await get(`${paths.action(id, "events")}?page_size=50`, signal);
    events.fill(page.event_list.map((ev) => [ev.time, ev.kind, ev.message]));
  });
  poller.every(USAGE_MS, async (signal) => {
    const report = await get(paths.usageByDay, signal);
    const currency = endpoint?.billing_metadata?.payment_type || "usd";
    usage.fill(report.rows.map((r) => [r.key, String(r.instance_seconds), String(r.gpu_seconds), money(r.cost?.[currency], currency)]));
  });
  return { element, stop: () => poller.stop() };
}
