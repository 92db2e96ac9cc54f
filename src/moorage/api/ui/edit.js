// The endpoint page's Edit form: image, command, port, environment and flavor,
// prefilled from the endpoint. Saving sends `PUT /v1/inference-service/{id}` with only
// the fields the user changed (a new deploy_metadata or flavor is a new revision),
// then follows that revision's rollout from the page's own refreshes.

import { call, get, paths } from "./api.js";
import { h, replace, setText } from "./dom.js";
import { COMMAND_HINT, COMMAND_PLACEHOLDER, field, flavorLabel, parseEnv } from "./list.js";

/** An env map as the textarea shows it: one NAME=value per line, sorted by name. */
export function envText(env) {
  return Object.keys(env || {})
    .sort()
    .map((name) => `${name}=${env[name]}`)
    .join("\n");
}

/** The form's values as the endpoint has them (what "changed" is measured against). */
function valuesOf(endpoint) {
  const deploy = endpoint.deploy_metadata;
  return {
    image: deploy.image_url,
    command: deploy.command ?? "",
    port: String(deploy.port),
    env: envText(deploy.env),
    flavor: endpoint.resource_metadata.flavor_id,
  };
}

/**
 * The PUT body for what differs between `before` and `after` (both as valuesOf gives
 * them), or null when nothing does. An emptied command is null: the image's own
 * entrypoint runs. Throws (naming the line) on an environment line without `=`.
 */
export function changes(before, after) {
  const deploy = {};
  if (after.image.trim() !== before.image.trim()) deploy.image_url = after.image.trim();
  if (after.command.trim() !== before.command.trim()) deploy.command = after.command.trim() || null;
  if (after.port.trim() !== before.port.trim()) {
    const port = after.port.trim();
    // Not a number: sent as typed, so the API's message names the field and its range.
    deploy.port = /^[0-9]+$/.test(port) ? Number(port) : port;
  }
  if (after.env.trim() !== before.env.trim()) deploy.env = parseEnv(after.env);
  const body = {};
  if (Object.keys(deploy).length) body.deploy_metadata = deploy;
  if (after.flavor !== before.flavor) body.resource_metadata = { flavor_id: after.flavor };
  return Object.keys(body).length ? body : null;
}

/** Where revision `revision` stands: its ready replicas against the target. */
function rollout(endpoint, revision) {
  const wanted = endpoint.resource_metadata.target_instance_number;
  const replicas = endpoint.endpoint_metadata.replicas;
  const ready = replicas.filter((r) => r.revision === revision && r.state === "ready").length;
  if (endpoint.deploy_metadata.revision !== revision) {
    return { done: true, text: `Revision ${revision} no longer runs (now revision ${endpoint.deploy_metadata.revision}).` };
  }
  if (endpoint.status === "stopped") {
    return { done: true, text: `Saved as revision ${revision}; it runs when the endpoint starts.` };
  }
  const others = replicas.some((r) => r.revision !== revision);
  if (ready >= wanted && !others) return { done: true, text: `Revision ${revision} is serving: ${ready}/${wanted} ready.` };
  return { done: false, text: `Revision ${revision} is rolling out: ${ready}/${wanted} of its replicas ready.` };
}

export function editForm(id, ui, poller, saved) {
  const error = h("p", { class: "error", id: "edit-error", role: "alert" });
  const state = h("p", { class: "muted", id: "edit-state", "aria-live": "polite" });
  const inputs = {
    image: h("input", { type: "text", required: true, maxlength: 512, autocomplete: "off" }),
    command: h("textarea", { rows: 2, maxlength: 8192, placeholder: COMMAND_PLACEHOLDER, "aria-describedby": "edit-command-hint" }),
    port: h("input", { type: "number", min: 1, max: 65535, required: true }),
    flavor: h("select", { required: true }),
    env: h("textarea", { rows: 3, placeholder: "NAME=value", "aria-describedby": "edit-env-hint" }),
  };
  const submit = h("button", { type: "submit" }, "Save changes");
  const form = h(
    "form",
    { class: "form grid", id: "edit-form", novalidate: true, "aria-describedby": "edit-error" },
    field("edit-image", "Image", inputs.image),
    field("edit-command", "Command", inputs.command, COMMAND_HINT),
    field("edit-port", "Port", inputs.port),
    field("edit-flavor", "Flavor", inputs.flavor, null, true),
    field("edit-env", "Environment", inputs.env, "One NAME=value per line; replaces the whole environment."),
    h("div", { class: "actions" }, submit),
    error,
  );
  let before = null; // the endpoint's values the form was filled from
  let flavors = null; // null until loaded
  let watching = null; // the revision a save started, followed until it serves

  const showFlavors = (endpoint) => {
    const current = endpoint.resource_metadata;
    const currency = endpoint.billing_metadata?.payment_type || "usd";
    const listed = (flavors || []).filter((f) => !f.is_deleted || f.flavor_id === current.flavor_id);
    const options = listed.map((f) => h("option", { value: f.flavor_id }, flavorLabel(f, currency)));
    if (!listed.some((f) => f.flavor_id === current.flavor_id)) {
      options.unshift(h("option", { value: current.flavor_id }, current.resource_display_name || current.flavor_id));
    }
    replace(inputs.flavor, options);
  };
  const fill = (endpoint) => {
    before = valuesOf(endpoint);
    showFlavors(endpoint);
    for (const [key, input] of Object.entries(inputs)) input.value = before[key];
  };
  const current = () => Object.fromEntries(Object.entries(inputs).map(([k, input]) => [k, input.value]));
  const same = (a, b) => Object.keys(inputs).every((k) => a[k] === b[k]);
  const untouched = () => document.activeElement?.closest("form") !== form && same(before, current());
  const loadFlavors = (endpoint) => {
    get(paths.flavors, poller.signal)
      .then((body) => {
        flavors = body.flavor_list;
        const chosen = inputs.flavor.value;
        showFlavors(endpoint);
        inputs.flavor.value = chosen;
      })
      .catch((e) => {
        if (e.name !== "AbortError" && !ui.refused(e)) error.textContent = `Could not load flavors: ${e.message}`;
      });
  };

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!before) return;
    error.textContent = "";
    let body;
    try {
      body = changes(before, current());
    } catch (e) {
      error.textContent = e.message;
      return;
    }
    if (!body) {
      setText(state, "Nothing changed.");
      return;
    }
    submit.disabled = true;
    ui.say("Saving changes…");
    try {
      const endpoint = await call("PUT", paths.service(id), body, poller.signal);
      watching = endpoint.deploy_metadata.revision;
      ui.say(`Saved: revision ${watching}.`);
      fill(endpoint);
      setText(state, rollout(endpoint, watching).text);
      saved(endpoint);
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

  return {
    element: h("section", { "aria-labelledby": "edit-title" }, h("h3", { id: "edit-title" }, "Edit"), form, state),
    update(endpoint) {
      if (!before) {
        fill(endpoint);
        loadFlavors(endpoint);
      } else if (untouched() && !same(before, valuesOf(endpoint))) {
        // Changed elsewhere (the CLI, another tab) while this form was not being
        // edited: show what runs now, so a save compares against it.
        fill(endpoint);
      }
      if (watching !== null) {
        const where = rollout(endpoint, watching);
        setText(state, where.text);
        if (where.done) watching = null;
      }
    },
  };
}
