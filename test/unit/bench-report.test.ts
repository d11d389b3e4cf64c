import assert from 'node:assert/strict';
import { chartLayout, escapeXml, formatMs, formatRatio, markdownTable, svgChart } from '../../scripts/bench/report';
import { summarize } from '../../scripts/bench/stats';
import type { CaseResult, SuiteResult } from '../../scripts/bench/types';

function caseResult(name: string, knitMs: number[], referenceMs: number[]): CaseResult {
  const knit = summarize(knitMs);
  const reference = summarize(referenceMs);
  return {
    name, knitLabel: 'knit-host-local', referenceLabel: 'host-local',
    knitMs, referenceMs, knit, reference, ratio: knit.median / reference.median,
  };
}

const result: SuiteResult = {
  suite: 'version',
  description: 'VERSION <latency> & co',
  date: '2026-01-01T00:00:00.000Z',
  host: { hostname: 'vm', cpus: 2, kernel: '6.1.0', node: 'v20.20.2', load: [0.5, 1.25] },
  runs: 3,
  warmup: 1,
  notes: ['release skipped: not built'],
  cases: [
    caseResult('bundle | pipe', [40, 42, 44], [5, 6, 7]),
    caseResult('release', [30, 33, 36], [6, 6, 6]),
  ],
};

describe('bench: report writers', () => {
  it('formats milliseconds and ratios', () => {
    assert.equal(formatMs(41.96), '42.0');
    assert.equal(formatMs(NaN), '-');
    assert.equal(formatRatio(7), '7.00×');
    assert.equal(formatRatio(Infinity), '-');
  });

  it('markdown: header, one row per case with medians, spread and ratio, then notes', () => {
    const md = markdownTable(result);
    const lines = md.trimEnd().split('\n');
    assert.equal(lines[0], '## version: VERSION <latency> & co');
    assert.ok(lines[2].includes('3 interleaved runs after 1 warm-up'));
    assert.ok(lines[2].includes('2 CPUs · load 0.5→1.3 · Linux 6.1.0'), lines[2]);
    assert.equal(lines[4], '| case | knit | median | p10–p90 | reference | median | p10–p90 | knit/ref |');
    assert.equal(lines[6], '| bundle \\| pipe | knit-host-local | 42.0 | 40.4–43.6 | host-local | 6.0 | 5.2–6.8 | 7.00× |');
    assert.equal(lines[7], '| release | knit-host-local | 33.0 | 30.6–35.4 | host-local | 6.0 | 6.0–6.0 | 5.50× |');
    assert.equal(lines[9], '- release skipped: not built');
  });

  it('escapes XML', () => {
    assert.equal(escapeXml('a<b & "c">'), 'a&lt;b &amp; &quot;c&quot;&gt;');
  });

  it('svg: well-formed, two bars per case scaled to the largest median, labels and ratios', () => {
    const svg = svgChart(result);
    assert.ok(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg"'));
    assert.ok(svg.trimEnd().endsWith('</svg>'));
    assert.ok(svg.includes('VERSION &lt;latency&gt; &amp; co'), 'title escaped');
    assert.ok(!/&(?!(amp|lt|gt|quot);)/.test(svg), 'every & starts an entity');
    for (const m of svg.matchAll(/<text[^>]*>([^]*?)<\/text>/g)) assert.ok(!m[1].includes('<'), `raw < in ${m[1]}`);
    const bars = [...svg.matchAll(new RegExp(`<rect x="${chartLayout.labelWidth}" y="[\\d.]+" width="([\\d.]+)"`, 'g'))]
      .map((m) => Number(m[1]));
    assert.equal(bars.length, 4);
    assert.equal(bars[0], chartLayout.barArea, 'largest median spans the bar area');
    assert.equal(bars[1], Number(((6 / 42) * chartLayout.barArea).toFixed(1)));
    for (const label of ['42.0 ms', '6.0 ms', '33.0 ms', '7.00×', '5.50×', 'bundle | pipe']) {
      assert.ok(svg.includes(`>${label}</text>`), `has ${label}`);
    }
    const opened = (svg.match(/<text\b/g) ?? []).length;
    assert.equal(opened, (svg.match(/<\/text>/g) ?? []).length, 'balanced text elements');
  });
});
