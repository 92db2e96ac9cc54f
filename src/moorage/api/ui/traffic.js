// Request rate and mean latency from the gateway's cumulative counters
// (GET .../traffic), drawn as small inline SVG line charts. No chart library: the
// dashboard works offline and loads nothing but its own files.

import { svg, h, replace } from "./dom.js";

export const WINDOW_S = 300;

/** When a sample was taken, in seconds: the server's time when it is a number; its
 * timestamps to the second ("YYYY-MM-DD HH:MM:SS") are too coarse for a 2 s poll, so
 * then the time the answer arrived here. */
export function sampleTime(sample, arrivedS) {
  if (typeof sample.time === "number" && Number.isFinite(sample.time)) return sample.time;
  return arrivedS;
}

/**
 * The point between two samples: requests per second and mean latency in seconds
 * (null when no response finished). Null when a counter went down (a gateway
 * restarted) or no time passed: that interval is skipped, not drawn as a spike.
 */
export function point(previous, current) {
  const dt = current.t - previous.t;
  const requests = current.requests_total - previous.requests_total;
  const responses = current.responses_total - previous.responses_total;
  const latency = current.latency_seconds_total - previous.latency_seconds_total;
  if (!(dt > 0) || requests < 0 || responses < 0 || latency < 0) return null;
  return {
    t: current.t,
    rate: requests / dt,
    latency: responses > 0 ? latency / responses : null,
  };
}

/** Keeps the samples' points of the last WINDOW_S seconds. */
export class Series {
  constructor() {
    this.last = null;
    this.points = [];
  }

  add(sample) {
    if (this.last !== null) {
      const next = point(this.last, sample);
      if (next !== null) this.points.push(next);
    }
    this.last = sample;
    const oldest = sample.t - WINDOW_S;
    while (this.points.length && this.points[0].t < oldest) this.points.shift();
  }
}

function niceMax(value) {
  if (!(value > 0)) return 1;
  const power = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 5, 10]) if (value <= step * power) return step * power;
  return 10 * power;
}

/**
 * Draws one series into `figure` (a <figure> with a caption): a line over the last
 * five minutes, the scale's top value, and the latest value as text as well.
 */
export function drawChart(figure, title, points, key, format) {
  const width = 600;
  const height = 160;
  const pad = { left: 84, right: 8, top: 10, bottom: 22 };
  const shown = points.filter((p) => p[key] !== null);
  const latest = shown.length ? format(shown[shown.length - 1][key]) : "no data yet";
  const top = niceMax(Math.max(0, ...shown.map((p) => p[key])));
  const end = points.length ? points[points.length - 1].t : 0;
  const x = (t) => pad.left + ((t - (end - WINDOW_S)) / WINDOW_S) * (width - pad.left - pad.right);
  const y = (v) => pad.top + (1 - v / top) * (height - pad.top - pad.bottom);
  const chart = svg(
    "svg",
    {
      viewBox: `0 0 ${width} ${height}`,
      role: "img",
      "aria-label": `${title}, last 5 minutes; latest ${latest}`,
      class: "chart",
    },
    svg("line", { x1: pad.left, y1: y(0), x2: width - pad.right, y2: y(0), class: "axis" }),
    svg("line", { x1: pad.left, y1: y(top), x2: width - pad.right, y2: y(top), class: "grid" }),
    svg("text", { x: pad.left - 6, y: y(top) + 4, "text-anchor": "end", class: "label" }, format(top)),
    svg("text", { x: pad.left - 6, y: y(0) + 4, "text-anchor": "end", class: "label" }, format(0)),
    svg("text", { x: pad.left, y: height - 4, class: "label" }, "−5 min"),
    svg("text", { x: width - pad.right, y: height - 4, "text-anchor": "end", class: "label" }, "now"),
  );
  if (shown.length > 1) {
    const line = shown.map((p) => `${x(p.t).toFixed(1)},${y(p[key]).toFixed(1)}`).join(" ");
    chart.append(svg("polyline", { points: line, class: "line", fill: "none" }));
  } else if (shown.length === 1) {
    chart.append(svg("circle", { cx: x(shown[0].t), cy: y(shown[0][key]), r: 3, class: "dot" }));
  }
  replace(figure, h("figcaption", {}, `${title}: `, h("strong", {}, latest)), chart);
}
