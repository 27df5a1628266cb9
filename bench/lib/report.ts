/*
 * The report: one row per figure (Darkroom, its baseline from the same run, the ratio), the
 * project's targets judged PASS/MISS (never an exit code), and an SVG bar chart of each measured
 * value against its target, written by hand (no dependencies).
 */

export interface Row {
  id: string;
  metric: string;
  darkroom: string;
  baseline: string;
  ratio: string;
}

export interface Target {
  id: string;
  label: string;
  /** The measured value, in `unit`. */
  value: number;
  unit: string;
  /** `min`: value must be ≥ limit; `max`: value must be ≤ limit. */
  kind: 'min' | 'max';
  limit: number;
  pass: boolean;
}

export function target(id: string, label: string, value: number, unit: string, kind: 'min' | 'max', limit: number): Target {
  const pass = Number.isFinite(value) && (kind === 'min' ? value >= limit : value <= limit);
  return { id, label, value, unit, kind, limit, pass };
}

export const fmt = {
  n: (v: number, d = 0) => (Number.isFinite(v) ? v.toLocaleString('en-US', { minimumFractionDigits: d, maximumFractionDigits: d }) : 'n/a'),
  ms: (v: number) => (Number.isFinite(v) ? `${v < 10 ? v.toFixed(2) : v < 100 ? v.toFixed(1) : v.toFixed(0)} ms` : 'n/a'),
  pct: (v: number) => (Number.isFinite(v) ? `${(v * 100).toFixed(1)} %` : 'n/a'),
  x: (v: number) => (Number.isFinite(v) ? `${v.toFixed(2)}×` : 'n/a'),
};

export function formatValue(t: Pick<Target, 'value' | 'unit'>): string {
  switch (t.unit) {
    case 'ms':
      return fmt.ms(t.value);
    case '%':
      return fmt.pct(t.value);
    case '×':
      return fmt.x(t.value);
    case 'B':
      return `${fmt.n(t.value)} B`;
    default:
      return `${fmt.n(t.value, 2)} ${t.unit}`.trim();
  }
}

export function formatLimit(t: Target): string {
  return `${t.kind === 'min' ? '≥' : '≤'} ${formatValue({ value: t.limit, unit: t.unit })}`;
}

function table(headers: string[], rows: string[][]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i]!)).join(' | ')} |`;
  return [line(headers), `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...rows.map(line)].join('\n');
}

export function figuresTable(rows: Row[]): string {
  return table(
    ['#', 'figure', 'Darkroom', 'baseline (same run)', 'ratio'],
    rows.map((r) => [r.id, r.metric, r.darkroom, r.baseline, r.ratio]),
  );
}

export function targetsTable(targets: Target[]): string {
  return table(
    ['#', 'target', 'measured', 'target', 'result'],
    targets.map((t) => [t.id, t.label, formatValue(t), formatLimit(t), t.pass ? 'PASS' : 'MISS']),
  );
}

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

/**
 * Horizontal bars, one per target: how the measurement stands against its target as
 * "target met this many times over" (value/limit for a floor, limit/value for a ceiling), so 1.0
 * is the target line for every metric and longer is better. Capped at 4× to keep the scale.
 */
export function chartSvg(targets: Target[], title: string, subtitle: string): string {
  const cap = 4;
  const rowH = 30;
  const left = 330;
  const barW = 420;
  const top = 64;
  const width = left + barW + 190;
  const height = top + targets.length * rowH + 50;
  const xOf = (v: number) => left + (Math.min(cap, Math.max(0, v)) / cap) * barW;
  const parts: string[] = [];
  parts.push(
    `<svg xmlns="http://www.w3.org/2000/svg" role="img" aria-labelledby="chart-title" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="system-ui, -apple-system, Segoe UI, sans-serif" font-size="12">`,
    '<title id="chart-title">Darkroom benchmark ratios against their targets</title>',
    `<rect width="100%" height="100%" fill="#ffffff"/>`,
    `<text x="16" y="24" font-size="16" font-weight="600" fill="#111">${esc(title)}</text>`,
    `<text x="16" y="44" fill="#555">${esc(subtitle)}</text>`,
  );
  for (let k = 0; k <= cap; k++) {
    const x = xOf(k);
    parts.push(
      `<line x1="${x}" y1="${top - 6}" x2="${x}" y2="${top + targets.length * rowH}" stroke="${k === 1 ? '#111' : '#ddd'}" stroke-width="${k === 1 ? 1.5 : 1}"${k === 1 ? ' stroke-dasharray="4 3"' : ''}/>`,
      `<text x="${x}" y="${top + targets.length * rowH + 16}" text-anchor="middle" fill="#555">${k}×</text>`,
    );
  }
  parts.push(
    `<text x="${xOf(1) + 4}" y="${top - 10}" fill="#111">target</text>`,
    `<text x="${left + barW / 2}" y="${top + targets.length * rowH + 34}" text-anchor="middle" fill="#555">times the target is met (value ÷ floor, or ceiling ÷ value; ≥ 1 passes; capped at ${cap}×)</text>`,
  );
  targets.forEach((t, i) => {
    const score = !Number.isFinite(t.value) ? 0 : t.kind === 'min' ? t.value / t.limit : t.value === 0 ? cap : t.limit / t.value;
    const y = top + i * rowH;
    const color = t.pass ? '#2e7d32' : '#c62828';
    parts.push(
      `<text x="${left - 8}" y="${y + 18}" text-anchor="end" fill="#111">${esc(`${t.id} ${t.label}`)}</text>`,
      `<rect x="${left}" y="${y + 6}" width="${Math.max(1, xOf(score) - left).toFixed(1)}" height="${rowH - 12}" fill="${color}" opacity="0.85"/>`,
      `<text x="${xOf(cap) + 8}" y="${y + 18}" fill="${color}">${esc(`${t.pass ? 'PASS' : 'MISS'} ${formatValue(t)} (${formatLimit(t)})`)}</text>`,
    );
  });
  parts.push('</svg>');
  return `${parts.join('\n')}\n`;
}
