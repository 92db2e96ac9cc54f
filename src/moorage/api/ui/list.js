// The endpoint list (refreshed every few seconds) and the form that creates one.

import { call, get, paths } from "./api.js";
import { h, money, replace, setText } from "./dom.js";
import { Poller } from "./poll.js";

const REFRESH_MS = 3000;
const CURRENCIES = ["usd", "cny", "nmt"];
const COLUMNS = ["Name", "Status", "Replicas (ready/wanted)", "Flavor", "Price per hour", "Cost so far"];

export function statusCell(endpoint) {
  return [
    h("span", { class: `badge status-${endpoint.status}` }, endpoint.status),
    endpoint.status_info ? h("span", { class: "info" }, endpoint.status_info) : null,
  ];
}

/**
 * Ready replicas over target_instance_number, as `moorage ls` shows them. A stopped
 * endpoint keeps its target (Start brings that many back), so it reads `0/2 (stopped)`.
 */
export function replicaCount(endpoint) {
  const ready = endpoint.endpoint_metadata?.ready_replicas ?? 0;
  const wanted = endpoint.resource_metadata?.target_instance_number ?? 0;
  return `${ready}/${wanted}${endpoint.status === "stopped" ? " (stopped)" : ""}`;
}

/** A flavor as one short option: `CPU · 0.05 USD/h · 3 free` (fits a phone's width). */
export function flavorLabel(flavor, currency) {
  const price = money(flavor.billing?.[`${currency}_price_unit`], currency);
  const unit = flavor.node_max_gpu > 0 ? "/h per GPU" : "/h";
  return `${flavor.display_name} · ${price}${unit} · ${flavor.available_num} free`;
}

/** The command's hint, shared by the create and edit forms. */
export const COMMAND_HINT = "Runs as sh -c. The app must listen on $PORT; on the process runtime bind 127.0.0.1.";
export const COMMAND_PLACEHOLDER = "python3 -m http.server --bind 127.0.0.1 $PORT";

/** A table whose rows are kept by endpoint id and updated in place (focus survives). */
class EndpointTable {
  constructor() {
    this.rows = new Map();
    this.body = h("tbody");
    this.total = h("p", { class: "muted" });
    this.element = h(
      "div",
      {},
      h(
        "table",
        { class: "reflow", id: "endpoints" },
        h("caption", {}, "Your endpoints"),
        h("thead", {}, h("tr", {}, COLUMNS.map((c) => h("th", { scope: "col" }, c)))),
        this.body,
      ),
      this.total,
    );
  }

  row(endpoint) {
    let row = this.rows.get(endpoint.service_id);
    if (!row) {
      const cells = COLUMNS.map((label) => h("td", { "data-label": label }));
      const link = h("a", { href: `#/endpoint/${endpoint.service_id}` });
      cells[0].append(link);
      row = { tr: h("tr", { "data-service-id": endpoint.service_id }, cells), cells, link, status: "" };
      this.rows.set(endpoint.service_id, row);
    }
    return row;
  }

  update(page) {
    const seen = new Set();
    for (const endpoint of page.service_list) {
      seen.add(endpoint.service_id);
      const row = this.row(endpoint);
      const billing = endpoint.billing_metadata || {};
      setText(row.link, endpoint.name);
      const status = `${endpoint.status}\u0000${endpoint.status_info || ""}`;
      if (row.status !== status) {
        replace(row.cells[1], ...statusCell(endpoint));
        row.status = status;
      }
      setText(row.cells[2], replicaCount(endpoint));
      setText(row.cells[3], endpoint.resource_metadata?.resource_display_name || endpoint.resource_metadata?.flavor_id);
      setText(row.cells[4], money(billing.price_per_hour, billing.payment_type));
      setText(row.cells[5], money(billing.cost_so_far, billing.payment_type));
      this.body.append(row.tr); // in the API's order; moving keeps focus inside
    }
    for (const [id, row] of this.rows) {
      if (!seen.has(id)) {
        row.tr.remove();
        this.rows.delete(id);
      }
    }
    setText(
      this.total,
      page.total > page.service_list.length
        ? `Showing ${page.service_list.length} of ${page.total} endpoints.`
        : `${page.total} endpoint${page.total === 1 ? "" : "s"}.`,
    );
  }
}

export function parseEnv(text) {
  const env = {};
  text.split("\n").forEach((line, index) => {
    const trimmed = line.trim();
    if (!trimmed) return;
    const at = trimmed.indexOf("=");
    if (at <= 0) throw new Error(`Environment, line ${index + 1}: write NAME=value`);
    env[trimmed.slice(0, at).trim()] = trimmed.slice(at + 1);
  });
  return env;
}

/** A labelled input in a form grid; `wide` spans two columns where there are two. */
export function field(id, label, input, hint, wide) {
  input.id = id;
  input.name = id;
  return h("div", { class: wide ? "field wide" : "field" }, h("label", { for: id }, label), input, hint ? h("small", { id: `${id}-hint` }, hint) : null);
}

/** The create form; `created` is told the new endpoint. */
function createForm(ui, poller, created) {
  const error = h("p", { class: "error", id: "create-error", role: "alert" });
  const currency = h("select", {}, CURRENCIES.map((c) => h("option", { value: c }, c.toUpperCase())));
  const flavor = h("select", { required: true }, h("option", { value: "" }, "loading flavors…"));
  let flavors = [];
  const showFlavors = () => {
    const chosen = flavor.value;
    replace(
      flavor,
      flavors.map((f) =>
        h(
          "option",
          { value: f.flavor_id, selected: f.flavor_id === chosen },
          flavorLabel(f, currency.value),
        ),
      ),
    );
  };
  currency.addEventListener("change", showFlavors);
  get(paths.flavors, poller.signal)
    .then((body) => {
      flavors = body.flavor_list.filter((f) => !f.is_deleted);
      showFlavors();
    })
    .catch((e) => {
      if (e.name !== "AbortError") error.textContent = `Could not load flavors: ${e.message}`;
    });

  const inputs = {
    name: h("input", { type: "text", required: true, maxlength: 128, autocomplete: "off" }),
    image: h("input", { type: "text", required: true, value: "python:3.11-slim", maxlength: 512 }),
    command: h("textarea", { rows: 2, maxlength: 8192, placeholder: COMMAND_PLACEHOLDER, "aria-describedby": "create-command-hint" }),
    port: h("input", { type: "number", min: 1, max: 65535, value: 8080, required: true }),
    gpus: h("input", { type: "number", min: 0, max: 64, value: 0, required: true }),
    replicas: h("input", { type: "number", min: 1, max: 1000, value: 1, required: true }),
    env: h("textarea", { rows: 3, placeholder: "NAME=value", "aria-describedby": "create-env-hint" }),
  };
  const submit = h("button", { type: "submit" }, "Create endpoint");
  const form = h(
    "form",
    { class: "form grid", id: "create-form", novalidate: true, "aria-describedby": "create-error" },
    field("create-name", "Name", inputs.name),
    field("create-image", "Image", inputs.image),
    field("create-command", "Command", inputs.command, COMMAND_HINT),
    field("create-port", "Port", inputs.port),
    field("create-payment", "Payment currency", currency),
    field("create-flavor", "Flavor", flavor, null, true),
    field("create-gpus", "GPUs per replica", inputs.gpus),
    field("create-replicas", "Replicas", inputs.replicas),
    field("create-env", "Environment (optional)", inputs.env, "One NAME=value per line."),
    h("div", { class: "actions" }, submit),
    error,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.textContent = "";
    let body;
    try {
      body = {
        name: inputs.name.value.trim(),
        payment_type: currency.value,
        resource_metadata: {
          flavor_id: flavor.value,
          scale_type: "manual",
          target_instance_number: Number(inputs.replicas.value),
        },
        deploy_metadata: {
          image_url: inputs.image.value.trim(),
          command: inputs.command.value.trim() || null,
          port: Number(inputs.port.value),
          gpu_num: Number(inputs.gpus.value),
          env: parseEnv(inputs.env.value),
        },
      };
    } catch (e) {
      error.textContent = e.message;
      return;
    }
    submit.disabled = true;
    ui.say(`Creating ${body.name}…`);
    try {
      const endpoint = await call("POST", paths.services, body, poller.signal);
      ui.say(`Created ${endpoint.name}.`);
      inputs.name.value = "";
      created(endpoint);
    } catch (e) {
      if (e.name === "AbortError") return;
      if (!ui.refused(e)) {
        error.textContent = e.message;
        ui.say("");
      }
    } finally {
      submit.disabled = false;
    }
  });
  return h("section", { "aria-labelledby": "create-title" }, h("h3", { id: "create-title" }, "Create an endpoint"), form);
}

export function listView(ui) {
  const poller = new Poller();
  const table = new EndpointTable();
  const problem = h("p", { class: "error", role: "alert" });
  const refresh = async (signal) => {
    try {
      table.update(await get(`${paths.services}?page_size=100`, signal));
      problem.textContent = "";
    } catch (e) {
      if (e.name === "AbortError" || ui.refused(e)) throw e;
      problem.textContent = `Could not load endpoints: ${e.message}`;
    }
  };
  const element = h(
    "div",
    {},
    h("h2", { tabindex: -1, id: "list-title" }, "Endpoints"),
    problem,
    table.element,
    createForm(ui, poller, () => refresh(poller.signal)),
  );
  poller.every(REFRESH_MS, refresh);
  return { element, stop: () => poller.stop() };
}
