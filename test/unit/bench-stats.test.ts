import assert from 'node:assert/strict';
import { quantile, ratio, summarize } from '../../scripts/bench/stats';

describe('bench: statistics', () => {
  it('quantile interpolates between ranks', () => {
    const s = [10, 20, 30, 40, 50];
    assert.equal(quantile(s, 0.5), 30);
    assert.equal(quantile(s, 0), 10);
    assert.equal(quantile(s, 1), 50);
    assert.equal(quantile(s, 0.1), 14);
    assert.equal(quantile(s, 0.9), 46);
    assert.equal(quantile([1, 2, 3, 4], 0.5), 2.5);
    assert.equal(quantile([7], 0.9), 7);
  });

  it('quantile of an empty sample throws', () => {
    assert.throws(() => quantile([], 0.5), /empty/);
  });

  it('summarize sorts a copy and reports median, p10, p90, mean, min, max', () => {
    const samples = [5, 1, 4, 2, 3, 10, 9, 8, 7, 6, 11];
    const s = summarize(samples);
    assert.deepEqual(s, { n: 11, median: 6, p10: 2, p90: 10, mean: 6, min: 1, max: 11 });
    assert.deepEqual(samples.slice(0, 3), [5, 1, 4], 'input left unsorted');
  });

  it('ratio is knit over reference, NaN for a zero reference', () => {
    assert.equal(ratio(30, 6), 5);
    assert.ok(Number.isNaN(ratio(1, 0)));
  });
});
