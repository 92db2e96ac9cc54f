// The dashboard's shell: sign in and out, and which view shows (from the URL's
// fragment, which holds an endpoint id at most, never the token).

import { ApiError, get, paths, signIn, signOut, token } from "./api.js";
import { endpointView } from "./endpoint.js";
import { listView } from "./list.js";

const $ = (id) => document.getElementById(id);
let current = null;

const ui = {
  say(message) {
    $("status").textContent = message;
  },
  alert(message) {
    $("alert").textContent = message;
  },
  go(hash) {
    if (location.hash === hash) route();
    else location.hash = hash;
  },
  /** True (and signed out) when the API refused the token itself. */
  refused(error) {
    if (error instanceof ApiError && error.status === 401) {
      leave(`Signed out: the API refused the token (${error.message}).`);
      return true;
    }
    return false;
  },
};

function stopView() {
  if (current) current.stop();
  current = null;
  $("view").replaceChildren();
}

function leave(message) {
  signOut();
  stopView();
  $("view").hidden = true;
  $("nav").hidden = true;
  $("sign-in").hidden = false;
  $("sign-in-error").textContent = message || "";
  ui.say(message ? "" : "Signed out.");
  $("token").focus();
}

function route() {
  if (!token()) {
    leave("");
    return;
  }
  stopView();
  $("sign-in").hidden = true;
  $("nav").hidden = false;
  $("view").hidden = false;
  ui.alert("");
  const match = /^#\/endpoint\/([0-9a-f]{1,64})$/.exec(location.hash);
  current = match ? endpointView(ui, match[1]) : listView(ui);
  $("view").append(current.element);
  // Each page change (and signing in, whose form just went away) puts keyboard focus
  // on the page's heading, so a screen reader says where one is and Tab starts there.
  const heading = current.element.querySelector("h2");
  if (heading) heading.focus({ preventScroll: true });
}

async function submitToken(event) {
  event.preventDefault();
  const input = $("token");
  const value = input.value.trim();
  if (!value) {
    $("sign-in-error").textContent = "Paste a token first.";
    return;
  }
  signIn(value);
  ui.say("Checking the token…");
  try {
    await get(`${paths.services}?page_size=1`);
  } catch (error) {
    signOut();
    ui.say("");
    $("sign-in-error").textContent =
      error instanceof ApiError && error.status === 401 ? `The API refused this token: ${error.message}` : `Could not sign in: ${error.message}`;
    return;
  }
  input.value = "";
  $("sign-in-error").textContent = "";
  ui.say("Signed in.");
  route();
}

function start() {
  $("sign-in-form").addEventListener("submit", submitToken);
  $("sign-out").addEventListener("click", () => leave(""));
  $("nav-list").addEventListener("click", () => ui.go("#/"));
  window.addEventListener("hashchange", route);
  if (token()) route();
  else $("sign-in").hidden = false;
}

start();
