/**
 * Inline SVG line charts for the HTML report: no script, no font, no
 * network. Every point carries its exact value (data-value, and a <title>
 * tooltip), and points are labelled when there are few enough to read.
 */

interface Series {
  key: string;
  label: string;
  color: string;
  values: (number | null)[];
  dashed?: boolean;
}

interface LineChartSpec {
  /** For tests and styling: data-chart on the <svg>. */
  id: string;
  title: string;
  /** One label per x position (two lines: first, second). */
  x: { key: string; first: string; second: string }[];
  series: Series[];
  format: (v: number) => string;
  /** Axis ticks, when they read better shorter than the values (e.g. 25% rather than 25.0%). */
  tickFormat?: (v: number) => string;
  /** Fixed top of the y axis (e.g. 1 for rates); else a nice number above the data. */
  yMax?: number;
  /** Whole numbers only (counts): ticks never fall between two integers. */
  integer?: boolean;
  /** A horizontal reference line (e.g. LOW_MATCH_RATE). */
  threshold?: { value: number; label: string };
  width?: number;
  height?: number;
}

/** Escapes text for HTML and SVG, attributes included. */
export const esc = (s: string) => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

/** The plot's geometry: margins, the y scale and where each x position and value fall. */
interface Frame {
  width: number;
  height: number;
  m: { top: number; right: number; bottom: number; left: number };
  plotW: number;
  plotH: number;
  max: number;
  step: number;
  xAt: (i: number) => number;
  yAt: (v: number) => number;
}

export function lineChart(spec: LineChartSpec): string {
  const f = frame(spec);
  const { width, height, m, plotW, plotH } = f;
  const labelAt = pointLabeller(spec, f);
  const lines = spec.series.map((s) => seriesGroup(s, spec, f, labelAt));
  return `<figure class="chart"><figcaption>${esc(spec.title)}</figcaption>
<svg data-chart="${esc(spec.id)}" viewBox="0 0 ${width} ${height}" width="100%" role="img" aria-label="${esc(spec.title)}">
${gridLines(spec, f)}<line class="axis" x1="${m.left}" x2="${m.left + plotW}" y1="${m.top + plotH}" y2="${m.top + plotH}"/>
${xLabels(spec, f)}${thresholdLine(spec, f)}${lines.join('')}
</svg><div class="legend">${legend(spec)}</div></figure>`;
}

function frame(spec: LineChartSpec): Frame {
  const width = spec.width ?? 520;
  const height = spec.height ?? 260;
  const m = { top: 20, right: 20, bottom: 46, left: 64 };
  // Points stay clear of the axes so their labels do not collide with the ticks.
  const inset = 44;
  const plotW = width - m.left - m.right;
  const plotH = height - m.top - m.bottom;
  const all = spec.series.flatMap((s) => s.values.filter((v): v is number => v !== null));
  const dataMax = Math.max(0, ...all, spec.threshold?.value ?? 0);
  const { max, step } = spec.yMax !== undefined ? { max: spec.yMax, step: spec.yMax / 4 } : niceScale(dataMax, spec.integer);
  const count = spec.x.length;
  const xAt = (i: number) => m.left + inset + (count === 1 ? (plotW - 2 * inset) / 2 : ((plotW - 2 * inset) * i) / (count - 1));
  const yAt = (v: number) => m.top + plotH - (max === 0 ? 0 : (v / max) * plotH);
  return { width, height, m, plotW, plotH, max, step, xAt, yAt };
}

/** A horizontal grid line and a tick label at each step of the y axis. */
function gridLines(spec: LineChartSpec, { m, plotW, max, step, yAt }: Frame): string {
  const grid: string[] = [];
  for (let v = 0; v <= max + step / 1e6; v += step) {
    const y = yAt(v).toFixed(1);
    grid.push(`<line class="grid" x1="${m.left}" x2="${m.left + plotW}" y1="${y}" y2="${y}"/>`);
    grid.push(`<text class="tick" x="${m.left - 8}" y="${y}" dy="0.32em" text-anchor="end">${esc((spec.tickFormat ?? spec.format)(v))}</text>`);
  }
  return grid.join('');
}

function xLabels(spec: LineChartSpec, { m, plotH, xAt }: Frame): string {
  return spec.x
    .map(
      (x, i) =>
        `<text class="tick" x="${xAt(i).toFixed(1)}" y="${m.top + plotH + 18}" text-anchor="middle">${esc(x.first)}</text>` +
        `<text class="tick sub" x="${xAt(i).toFixed(1)}" y="${m.top + plotH + 32}" text-anchor="middle">${esc(x.second)}</text>`,
    )
    .join('');
}

/** Named in the legend, not on the plot, where it would collide with the points' labels. */
function thresholdLine(spec: LineChartSpec, { m, plotW, yAt }: Frame): string {
  return spec.threshold
    ? `<line class="threshold" x1="${m.left}" x2="${m.left + plotW}" y1="${yAt(spec.threshold.value).toFixed(1)}" y2="${yAt(spec.threshold.value).toFixed(1)}"/>`
    : '';
}

type LabelAt = (i: number, v: number, color: string) => string;

/**
 * Labels the points of every series in turn: one label per distinct value at
 * each x, above the point unless that spot is taken. None when there are too
 * many points to read.
 */
function pointLabeller(spec: LineChartSpec, { m, plotH, xAt, yAt }: Frame): LabelAt {
  const labelPoints = spec.x.length <= 8;
  const placed = new Map<number, { y: number; pointY: number; text: string }[]>();
  return (i, v, color) => {
    if (!labelPoints) return '';
    const text = spec.format(v);
    const taken = placed.get(i) ?? [];
    const above = yAt(v) - 9;
    const below = yAt(v) + 17;
    const free = (y: number) => y > m.top - 4 && y < m.top + plotH - 2 && taken.every((t) => Math.abs(t.y - y) >= 13);
    // No room, and another series already says the same at the same point: once is enough.
    if (!free(above) && !free(below) && taken.some((t) => t.text === text && Math.abs(t.pointY - yAt(v)) < 1)) return '';
    const y = free(above) ? above : free(below) ? below : above;
    placed.set(i, [...taken, { y, pointY: yAt(v), text }]);
    return `<text class="value" x="${xAt(i).toFixed(1)}" y="${y.toFixed(1)}" text-anchor="middle" fill="${color}">${esc(text)}</text>`;
  };
}

/** One series: its line, broken where a value is unknown, and its points with their exact values. */
function seriesGroup(s: Series, spec: LineChartSpec, { xAt, yAt }: Frame, labelAt: LabelAt): string {
  const segments: string[] = [];
  let current: string[] = [];
  s.values.forEach((v, i) => {
    if (v === null) {
      if (current.length > 1) segments.push(current.join(' '));
      current = [];
    } else current.push(`${xAt(i).toFixed(1)},${yAt(v).toFixed(1)}`);
  });
  if (current.length > 1) segments.push(current.join(' '));
  const paths = segments.map(
    (p) => `<polyline fill="none" stroke="${s.color}" stroke-width="${s.dashed ? 2 : 3.5}"${s.dashed ? ' stroke-dasharray="6 4"' : ''} points="${p}"/>`,
  );
  const points = s.values.map((v, i) => {
    if (v === null) return '';
    const x = xAt(i).toFixed(1);
    const y = yAt(v);
    const label = labelAt(i, v, s.color);
    return (
      `<circle data-series="${esc(s.key)}" data-x="${esc(spec.x[i]!.key)}" data-value="${v}" cx="${x}" cy="${y.toFixed(1)}" r="4" fill="${s.color}">` +
      `<title>${esc(`${s.label}, ${spec.x[i]!.first} ${spec.x[i]!.second}: ${spec.format(v)}`)}</title></circle>${label}`
    );
  });
  return `<g class="series">${paths.join('')}${points.join('')}</g>`;
}

function legend(spec: LineChartSpec): string {
  return (
    spec.series
      .map(
        (s) =>
          `<span class="key"><svg width="22" height="10" aria-hidden="true"><line x1="1" x2="21" y1="5" y2="5" stroke="${s.color}" stroke-width="3"${s.dashed ? ' stroke-dasharray="5 3"' : ''}/></svg>${esc(s.label)}</span>`,
      )
      .join('') +
    (spec.threshold
      ? `<span class="key"><svg width="22" height="10" aria-hidden="true"><line x1="1" x2="21" y1="5" y2="5" stroke="#f04438" stroke-width="2" stroke-dasharray="4 3"/></svg>${esc(spec.threshold.label)}</span>`
      : '')
  );
}

/** A y axis top and step that read well: 1, 2 or 5 times a power of ten, four or five steps. */
function niceScale(dataMax: number, integer = false): { max: number; step: number } {
  if (dataMax <= 0) return integer ? { max: 1, step: 1 } : { max: 1, step: 0.25 };
  const rough = dataMax / 4;
  const power = 10 ** Math.floor(Math.log10(rough));
  const nice = [1, 2, 2.5, 5, 10].map((f) => f * power).find((s) => s >= rough) ?? 10 * power;
  const step = integer ? Math.max(1, Math.ceil(nice)) : nice;
  return { max: Math.ceil(dataMax / step) * step, step };
}
