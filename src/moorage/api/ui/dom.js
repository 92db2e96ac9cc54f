// Building the DOM from data without ever parsing it as HTML: every text goes in
// through textContent, every attribute through setAttribute on a fixed name.
// Endpoint names, status_info and logs are written by tenants.

const SVG_NS = "http://www.w3.org/2000/svg";

function append(node, children) {
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function apply(node, attrs) {
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on")) {
      node.addEventListener(key.slice(2), value);
    } else if (value === true) {
      node.setAttribute(key, "");
    } else {
      node.setAttribute(key, String(value));
    }
  }
  return node;
}

/** An HTML element: h("td", {class: "x"}, "text", child). */
export function h(tag, attrs, ...children) {
  return append(apply(document.createElement(tag), attrs), children);
}

/** An SVG element, the same way. */
export function svg(tag, attrs, ...children) {
  return append(apply(document.createElementNS(SVG_NS, tag), attrs), children);
}

/** Replaces a node's children with these. */
export function replace(node, ...children) {
  node.replaceChildren();
  return append(node, children);
}

/** Sets a node's text only when it changed (keeps selection and screen readers calm). */
export function setText(node, text) {
  const value = text === null || text === undefined ? "" : String(text);
  if (node.textContent !== value) node.textContent = value;
}

/**
 * An amount of money as the API gives it (a number or a decimal string), one rule for
 * prices and costs alike: up to 6 decimals (the API rounds to 6), trailing zeros
 * trimmed but at least 2 kept, so `0.01` and `0.000403` sit side by side.
 */
export function money(amount, currency) {
  const value = Number(amount);
  if (!Number.isFinite(value)) return "–";
  const digits = value.toFixed(6).replace(/(\.\d\d\d*?)0+$/, "$1");
  return `${digits} ${String(currency || "").toUpperCase()}`.trim();
}
