// The per-layer loss chart: grouped bars (the baseline: RTN, or llama.cpp's reference rounding
// for GGUF output; GPTQ; the chosen method) per layer on a log scale, as plain SVG (no charting dependency). Redrawn whole on each finished layer.

export interface ChartRow {
  block: number;
  name: string;
  rtn: number;
  gptq?: number;
  method: number;
}

const SVG = 'http://www.w3.org/2000/svg';

function el<K extends keyof SVGElementTagNameMap>(tag: K, attrs: Record<string, string | number>, text?: string): SVGElementTagNameMap[K] {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = text;
  return e;
}

const SHORT: Record<string, string> = { q_proj: 'q', k_proj: 'k', v_proj: 'v', o_proj: 'o', gate_proj: 'gate', up_proj: 'up', down_proj: 'down', classifier: 'cls' };

/** Draws `rows` (finished layers, in order) out of `total` layers into `host`; `baseLabel`
 * names the baseline series (the rows' `rtn`). */
export function renderChart(host: HTMLElement, rows: ChartRow[], total: number, methodLabel: string, baseLabel = 'RTN'): void {
  const series: { key: 'rtn' | 'gptq' | 'method'; label: string }[] = [{ key: 'rtn', label: baseLabel }];
  if (rows.some((r) => r.gptq !== undefined)) series.push({ key: 'gptq', label: 'GPTQ' });
  series.push({ key: 'method', label: methodLabel });
  const width = 860, height = 300;
  const m = { left: 66, right: 12, top: 30, bottom: 46 };
  const pw = width - m.left - m.right, ph = height - m.top - m.bottom;
  const svg = el('svg', { viewBox: `0 0 ${width} ${height}`, role: 'img', 'aria-labelledby': 'chart-title chart-desc' });
  svg.append(el('title', { id: 'chart-title' }, `Loss per layer: ${series.map((s) => s.label).join(', ')}`));
  const values = rows.flatMap((r) => series.map((s) => r[s.key]).filter((v): v is number => v !== undefined && v > 0));
  const ratio = rows.length ? rows.reduce((a, r) => a + r.method, 0) / Math.max(1e-300, rows.reduce((a, r) => a + r.rtn, 0)) : NaN;
  svg.append(el('desc', { id: 'chart-desc' }, rows.length
    ? `${rows.length} of ${total} layers done; total ${methodLabel} loss is ${(ratio * 100).toFixed(1)}% of ${baseLabel}'s. The table below lists every value.`
    : 'No layers yet.'));
  let lo = 0, hi = 1;
  if (values.length) {
    lo = Math.floor(Math.log10(Math.min(...values)));
    hi = Math.ceil(Math.log10(Math.max(...values)));
    if (hi === lo) hi = lo + 1;
  }
  const y = (v: number) => m.top + ph - ((Math.log10(v) - lo) / (hi - lo)) * ph;
  // Decade grid lines and labels.
  for (let d = lo; d <= hi; d++) {
    const yy = y(10 ** d);
    svg.append(el('line', { class: 'grid-line', x1: m.left, x2: width - m.right, y1: yy, y2: yy }));
    svg.append(el('text', { x: m.left - 6, y: yy + 4, 'text-anchor': 'end' }, `1e${d}`));
  }
  svg.append(el('line', { class: 'axis', x1: m.left, x2: m.left, y1: m.top, y2: m.top + ph }));
  svg.append(el('line', { class: 'axis', x1: m.left, x2: width - m.right, y1: m.top + ph, y2: m.top + ph }));
  svg.append(el('text', { x: 14, y: m.top + ph / 2, transform: `rotate(-90 14 ${m.top + ph / 2})`, 'text-anchor': 'middle' }, 'loss (log scale)'));
  // Bars: one slot per layer, one bar per series.
  const n = Math.max(total, 1);
  const slot = pw / n;
  const bar = Math.max(1, (slot * 0.8) / series.length);
  rows.forEach((r, i) => {
    const x0 = m.left + i * slot + slot * 0.1;
    series.forEach((s, j) => {
      const v = r[s.key];
      if (v === undefined || !(v > 0)) return;
      const top = y(v);
      const rect = el('rect', { class: s.key, x: x0 + j * bar, y: top, width: Math.max(0.5, bar - 0.5), height: m.top + ph - top });
      rect.append(el('title', {}, `block ${r.block} ${r.name}, ${s.label}: ${v.toExponential(3)}`));
      svg.append(rect);
    });
    const label = el('text', { x: m.left + (i + 0.5) * slot, y: m.top + ph + 12, 'text-anchor': 'middle' }, SHORT[r.name] ?? r.name);
    if (slot < 26) label.setAttribute('transform', `rotate(-60 ${m.left + (i + 0.5) * slot} ${m.top + ph + 12})`), label.setAttribute('text-anchor', 'end');
    svg.append(label);
  });
  // Block separators and labels (7 layers per block; GGUF runs end with the classifier).
  const perBlock = 7;
  for (let b = 0; b * perBlock < n; b++) {
    const x = m.left + b * perBlock * slot;
    const span = Math.min(perBlock, n - b * perBlock) * slot;
    if (b > 0) svg.append(el('line', { class: 'grid-line', x1: x, x2: x, y1: m.top, y2: m.top + ph + 40 }));
    svg.append(el('text', { x: x + span / 2, y: height - 4, 'text-anchor': 'middle' }, rows[b * perBlock]?.name === 'classifier' ? 'head' : `block ${b}`));
  }
  // Legend.
  let lx = m.left;
  for (const s of series) {
    svg.append(el('rect', { class: `${s.key} legend`, x: lx, y: 8, width: 12, height: 12 }));
    const t = el('text', { x: lx + 16, y: 18 }, s.label);
    svg.append(t);
    lx += 26 + 8 * s.label.length;
  }
  host.replaceChildren(svg);
}
