import assert from 'node:assert/strict';
import { test } from 'node:test';
import { modelTimestep, namedDiffusion, respace, spaceTimesteps } from '../../src/diffusion/schedule.js';

// Reference values: reference-brief sections 1.2 and 1.5 (sqrt schedule, T = 2000).
const close = (a: number, b: number, tol = 1e-5) => assert.ok(Math.abs(a - b) <= tol * Math.max(1, Math.abs(b)), `${a} vs ${b}`);

test('sqrt schedule, T = 2000: beta_0, alpha-bar at 0/100/500/1000/1500/1999, clipped last beta', () => {
  const d = namedDiffusion('sqrt', 2000);
  close(d.betas[0]!, 0.0146413);
  close(d.alphasCumprod[0]!, 0.985359);
  close(d.alphasCumprod[100]!, 0.782884);
  close(d.alphasCumprod[500]!, 0.504445);
  close(d.alphasCumprod[1000]!, 0.295423);
  close(d.alphasCumprod[1500]!, 0.134978);
  assert.ok(Math.abs(d.alphasCumprod[1999]! - 2.0204e-7) < 1e-10);
  assert.equal(d.betas[1999], 0.999);
  assert.equal([...d.betas].filter((b) => b === 0.999).length, 1, 'only the last beta is clipped');
  for (let t = 1; t < 2000; t++) assert.ok(d.alphasCumprod[t]! < d.alphasCumprod[t - 1]!);
});

test('K = 20 respacing keeps the brief\'s timesteps', () => {
  assert.deepEqual(spaceTimesteps(2000, 20), [0, 105, 210, 316, 421, 526, 631, 736, 842, 947, 1052, 1157, 1263, 1368, 1473, 1578, 1683, 1789, 1894, 1999]);
  assert.deepEqual(spaceTimesteps(2000, 1), [0]);
  assert.throws(() => spaceTimesteps(2000, 2001), /cannot respace 2000 diffusion steps into 2001/);
});

test('posterior coefficients of the respaced chain at k = 19, 10, 5', () => {
  const d = respace(namedDiffusion('sqrt', 2000), spaceTimesteps(2000, 20));
  for (const [k, c1, c2, v] of [
    [19, 0.163769, 0.002671, 0.973172],
    [10, 0.092481, 0.889831, 0.113011],
    [5, 0.145069, 0.847069, 0.089131],
  ] as const) {
    close(d.posteriorMeanCoef1[k]!, c1);
    close(d.posteriorMeanCoef2[k]!, c2);
    close(d.posteriorVariance[k]!, v);
  }
  assert.equal(d.timestepMap[5], 526);
  assert.equal(d.posteriorLogVarianceClipped[0], d.posteriorLogVarianceClipped[1], 'log variance at k = 0 clipped to k = 1');
});

test('respacing to all T steps returns the same schedule', () => {
  const base = namedDiffusion('sqrt', 50);
  const same = respace(base, spaceTimesteps(50, 50));
  for (let t = 0; t < 50; t++) close(same.alphasCumprod[t]!, base.alphasCumprod[t]!, 1e-12);
});

test('linear (VP-SDE) and cosine schedules decrease from near 1 to near 0; rescaled timesteps', () => {
  for (const name of ['linear', 'cosine'] as const) {
    const d = namedDiffusion(name, 2000);
    assert.ok(d.alphasCumprod[0]! > 0.99 && d.alphasCumprod[1999]! < 1e-3, name);
  }
  // linear: abar(s) = exp(-(19.9/2) s^2 - 0.1 s); at t = 999, abar = abar((999+1)/2000)
  close(namedDiffusion('linear', 2000).alphasCumprod[999]!, Math.exp(-(19.9 / 2) * 0.25 - 0.05), 1e-9);
  assert.equal(modelTimestep(1999, 2000, true), 999.5);
  assert.equal(modelTimestep(7, 2000, false), 7);
});
