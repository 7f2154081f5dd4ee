import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { posteriorSample, qSample } from '../../src/diffusion/process.js';
import { namedDiffusion, respace, spaceTimesteps } from '../../src/diffusion/schedule.js';

await tf.setBackend('cpu');

const T = 2000;
const sqrt = namedDiffusion('sqrt', T);
const close = (a: number, b: number, tol = 1e-5): boolean => Math.abs(a - b) <= tol * Math.max(1, Math.abs(b));
const rows = (x: tf.Tensor3D): number[] => (x.arraySync() as number[][][]).map((r) => r[0]![0]!);

test('qSample: signal sqrt(ab_t) z0 and noise F sqrt(1 - ab_t) eps, one t per row', () => {
  const t = [0, 1000, 1999];
  const ones = tf.ones([3, 2, 4]) as tf.Tensor3D;
  const zeros = tf.zeros([3, 2, 4]) as tf.Tensor3D;
  const signal = qSample(sqrt, ones, t, zeros, 4);
  const noise = qSample(sqrt, zeros, t, ones, 4);
  // the brief's value: sqrt schedule, T = 2000, alpha-bar at t = 1000 is 0.295423
  assert.ok(close(rows(signal)[1]!, Math.sqrt(0.295423), 1e-5));
  rows(signal).forEach((v, i) => assert.ok(close(v, Math.sqrt(sqrt.alphasCumprod[t[i]!]!)), `t=${t[i]}`));
  rows(noise).forEach((v, i) => assert.ok(close(v, 4 * Math.sqrt(1 - sqrt.alphasCumprod[t[i]!]!)), `t=${t[i]}`));
  assert.throws(() => qSample(sqrt, ones, [1, 2], zeros, 1), /2 timesteps for a batch of 3/);
  tf.dispose([ones, zeros, signal, noise]);
});

test('posteriorSample: a perfect z0hat at the noiseless z_k lands on the noiseless z_{k-1}; the noise is F sigma_k', () => {
  const chain = respace(sqrt, spaceTimesteps(T, 20)); // the sampler's K = 20 chain
  const z0 = tf.fill([1, 3, 4], 0.7) as tf.Tensor3D;
  const zeros = tf.zerosLike(z0) as tf.Tensor3D;
  const ones = tf.onesLike(z0) as tf.Tensor3D;
  for (const k of [19, 10, 1]) {
    const zk = tf.mul(z0, Math.sqrt(chain.alphasCumprod[k]!)) as tf.Tensor3D;
    const mean = posteriorSample(chain, k, z0, zk, zeros, 1);
    // coef1 + coef2 sqrt(ab_k) = sqrt(ab_{k-1}): the posterior mean of a clean trajectory
    assert.ok(close(rows(mean)[0]!, 0.7 * Math.sqrt(chain.alphasCumprod[k - 1]!)), `k=${k}`);
    const noise = posteriorSample(chain, k, zeros, zeros, ones, 2);
    assert.ok(close(rows(noise)[0]!, 2 * Math.sqrt(chain.posteriorVariance[k]!)), `k=${k}`);
    tf.dispose([zk, mean, noise]);
  }
  // at k = 0 the variance is 0; the clipped log variance (k = 1's) is used, as improved-diffusion
  const last = posteriorSample(chain, 0, zeros, zeros, ones, 1);
  assert.ok(close(rows(last)[0]!, Math.sqrt(chain.posteriorVariance[1]!)));
  tf.dispose([z0, zeros, ones, last]);
});
