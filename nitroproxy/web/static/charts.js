// Charts as plain SVG: one time axis, up to three series, bars or lines. Each chart is a
// figure with a caption, an SVG labelled with a one-line summary for screen readers, and
// the numbers themselves in a table under "Data".

import { fmtShortTime, fmtTime, h, nextId, table } from "./core.js";

const W = 420;
const H = 190;
const PAD = { left: 58, right: 10, top: 12, bottom: 26 };

function niceMax(v) {
  if (!(v > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

// spec: {title, points, step, from, to, kind: "bar"|"line", format: v => text,
//        series: [{label, get: point => number|null}]}
export function chart(spec) {
  const { title, points, step, series, format } = spec;
  const axis = spec.axis || format;
  const kind = spec.kind || "line";
  const titleId = nextId("chart");
  const descId = nextId("desc");
  const start = Math.floor(spec.from / step) * step;
  const end = Math.max(start + step, Math.ceil(spec.to / step) * step);
  const values = series.flatMap((s) => points.map(s.get)).filter((v) => v !== null && v !== undefined);
  const max = niceMax(Math.max(0, ...values));
  const plotW = W - PAD.left - PAD.right;
  const plotH = H - PAD.top - PAD.bottom;
  const x = (ts) => PAD.left + ((ts - start) / (end - start)) * plotW;
  const y = (v) => PAD.top + plotH - (v / max) * plotH;

  const svg = h("svg", { class: "chart", viewBox: `0 0 ${W} ${H}`, role: "img",
    "aria-labelledby": titleId, "aria-describedby": descId, preserveAspectRatio: "xMidYMid meet" });
  svg.append(h("title", { id: titleId }, title), h("desc", { id: descId }, summary(spec)));
  for (const f of [0, 0.5, 1]) {
    svg.append(h("line", { class: "grid", x1: PAD.left, x2: W - PAD.right, y1: y(max * f), y2: y(max * f) }));
    svg.append(h("text", { x: PAD.left - 6, y: y(max * f) + 4, "text-anchor": "end" }, axis(max * f)));
  }
  svg.append(h("line", { class: "axis", x1: PAD.left, x2: W - PAD.right, y1: y(0), y2: y(0) }));
  const span = end - start;
  svg.append(h("text", { x: PAD.left, y: H - 8 }, fmtShortTime(start, step, span)));
  svg.append(h("text", { x: W - PAD.right, y: H - 8, "text-anchor": "end" }, fmtShortTime(end, step, span)));

  const slot = (plotW * step) / (end - start);
  series.forEach((s, i) => {
    const g = h("g", { class: `s${i}`, "aria-hidden": "true" });
    if (kind === "bar") {
      const bw = Math.max(1.5, (slot * 0.8) / series.length);
      for (const p of points) {
        const v = s.get(p);
        if (!v) continue;
        g.append(h("rect", { x: x(p.ts) + slot * 0.1 + i * bw, y: y(v), width: bw, height: y(0) - y(v) }));
      }
    } else {
      let d = "";
      let pen = false;
      for (const p of points) {
        const v = s.get(p);
        if (v === null || v === undefined) { pen = false; continue; }
        const px = x(p.ts) + slot / 2;
        d += `${pen ? "L" : "M"}${px.toFixed(1)},${y(v).toFixed(1)}`;
        pen = true;
      }
      if (d) g.append(h("path", { class: "line", d }));
      for (const p of points) {
        const v = s.get(p);
        if (v !== null && v !== undefined) g.append(h("circle", { cx: x(p.ts) + slot / 2, cy: y(v), r: 2.5 }));
      }
    }
    svg.append(g);
  });

  const legend = h("ul", { class: "legend", "aria-hidden": "true" },
    series.map((s, i) => h("li", {}, h("span", { class: `s${i}` }), s.label)));
  const data = h("details", {}, h("summary", {}, `Data: ${title}`),
    table(title, [
      { label: "Time", value: (p) => fmtTime(p.ts) },
      ...series.map((s) => ({ label: s.label, num: true, value: (p) => format(s.get(p)) })),
    ], points, { empty: "No calls in this period." }));
  return h("figure", {}, h("figcaption", {}, title), svg, legend, data);
}

function summary({ points, series, format }) {
  if (!points.length) return "No calls in this period.";
  return series.map((s) => {
    const vals = points.map(s.get).filter((v) => v !== null && v !== undefined);
    if (!vals.length) return `${s.label}: no values`;
    const peak = Math.max(...vals);
    return `${s.label}: ${vals.length} points, highest ${format(peak)}, latest ${format(vals[vals.length - 1])}`;
  }).join("; ") + ".";
}
