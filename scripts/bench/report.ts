// Writers for a suite's results: a markdown table and a hand-written SVG bar chart
// (pure functions returning strings; bench.ts writes them to bench/results/).
import type { CaseResult, SuiteResult } from './types';

export function formatMs(ms: number): string {
  return Number.isFinite(ms) ? ms.toFixed(1) : '-';
}

export function formatRatio(r: number): string {
  return Number.isFinite(r) ? `${r.toFixed(2)}×` : '-';
}

function cell(s: string): string {
  return s.replace(/\|/g, '\\|');
}

export function markdownTable(result: SuiteResult): string {
  const lines: string[] = [
    `## ${result.suite}: ${result.description}`,
    '',
    `${result.date} · ${result.host.hostname} · ${result.host.cpus} CPUs · ` +
      `load ${result.host.load.map((l) => l.toFixed(1)).join('→')} · Linux ${result.host.kernel} · ` +
      `node ${result.host.node} · ${result.runs} interleaved runs after ${result.warmup} warm-up · ` +
      'milliseconds, exec to exit',
    '',
    '| case | knit | median | p10–p90 | reference | median | p10–p90 | knit/ref |',
    '|---|---|--:|--:|---|--:|--:|--:|',
  ];
  for (const c of result.cases) {
    lines.push('| ' + [
      cell(c.name),
      cell(c.knitLabel), formatMs(c.knit.median), `${formatMs(c.knit.p10)}–${formatMs(c.knit.p90)}`,
      cell(c.referenceLabel), formatMs(c.reference.median),
      `${formatMs(c.reference.p10)}–${formatMs(c.reference.p90)}`,
      formatRatio(c.ratio),
    ].join(' | ') + ' |');
  }
  if (result.notes.length > 0) {
    lines.push('', ...result.notes.map((n) => `- ${n}`));
  }
  return lines.join('\n') + '\n';
}

export function escapeXml(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

export const chartLayout = {
  width: 820,
  labelWidth: 300,
  barArea: 380,
  barHeight: 16,
  nameHeight: 16,
  rowGap: 12,
  top: 56,
  knitColor: '#2b7bb9',
  referenceColor: '#b0b0b0',
} as const;

/** Horizontal bars: per case the knit and reference medians, value labels, and the ratio. */
export function svgChart(result: SuiteResult): string {
  const L = chartLayout;
  const rowHeight = L.nameHeight + 2 * L.barHeight + L.rowGap;
  const height = L.top + result.cases.length * rowHeight + 16;
  const max = Math.max(1e-9, ...result.cases.flatMap((c) => [c.knit.median, c.reference.median]));
  const scale = (ms: number): number => Math.max(1, (ms / max) * L.barArea);
  const x0 = L.labelWidth;
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${L.width}" height="${height}" ` +
      `viewBox="0 0 ${L.width} ${height}" font-family="sans-serif" font-size="12">`,
    `<rect width="${L.width}" height="${height}" fill="#ffffff"/>`,
    `<text x="10" y="20" font-size="15" font-weight="bold">${escapeXml(`${result.suite}: ${result.description}`)}</text>`,
    `<text x="10" y="38" fill="#555555">${escapeXml(`median ms, exec to exit, ${result.runs} interleaved runs · ${result.date}`)}</text>`,
    `<rect x="${L.width - 220}" y="28" width="12" height="12" fill="${L.knitColor}"/>`,
    `<text x="${L.width - 204}" y="38">knit</text>`,
    `<rect x="${L.width - 160}" y="28" width="12" height="12" fill="${L.referenceColor}"/>`,
    `<text x="${L.width - 144}" y="38">reference</text>`,
  ];
  result.cases.forEach((c: CaseResult, i: number) => {
    const y = L.top + i * rowHeight;
    const bars: Array<[string, number, string]> = [
      [c.knitLabel, c.knit.median, L.knitColor],
      [c.referenceLabel, c.reference.median, L.referenceColor],
    ];
    out.push(`<text x="10" y="${y + 12}" font-weight="bold">${escapeXml(c.name)}</text>`);
    bars.forEach(([label, ms, color], j) => {
      const by = y + L.nameHeight + j * L.barHeight;
      const w = scale(ms);
      out.push(
        `<text x="${x0 - 6}" y="${by + L.barHeight - 4}" text-anchor="end" fill="#555555">${escapeXml(label)}</text>`,
        `<rect x="${x0}" y="${by + 1}" width="${w.toFixed(1)}" height="${L.barHeight - 2}" fill="${color}"/>`,
        `<text x="${(x0 + w + 4).toFixed(1)}" y="${by + L.barHeight - 4}">${formatMs(ms)} ms</text>`,
      );
    });
    out.push(`<text x="${L.width - 10}" y="${y + L.nameHeight + L.barHeight + 4}" text-anchor="end" font-weight="bold">` +
      `${escapeXml(formatRatio(c.ratio))}</text>`);
  });
  out.push('</svg>');
  return out.join('\n') + '\n';
}
