/**
 * The two Gaussian steps of the process on tensors, after improved-diffusion's q_sample and
 * p_sample: the forward noising q(z_t | z_0) that training draws from, and one reverse step
 * z_{k-1} ~ q(z_{k-1} | z_k, z_0 = z0hat) that the sampler takes. The per-timestep numbers come
 * from a `Diffusion` (schedule.ts); the noise `eps` is the caller's, so every random draw stays
 * with the seeded RNG that owns it. No networks here.
 */
import * as tf from '@tensorflow/tfjs';
import type { Diffusion } from './schedule.js';

/**
 * z_t = sqrt(ab_t) z0 + F sqrt(1 - ab_t) eps, one timestep per row of the batch.
 * z0, eps [B, L, D]; t: B timesteps of `diffusion`; F: the noise factor (1 = plain DDPM).
 */
export function qSample(diffusion: Diffusion, z0: tf.Tensor3D, t: ArrayLike<number>, eps: tf.Tensor3D, noiseFactor: number): tf.Tensor3D {
  const b = z0.shape[0];
  if (t.length !== b) throw new Error(`qSample: ${t.length} timesteps for a batch of ${b}`);
  const signal = Float32Array.from(t, (ti) => diffusion.sqrtAlphasCumprod[ti]!);
  const sigma = Float32Array.from(t, (ti) => noiseFactor * diffusion.sqrtOneMinusAlphasCumprod[ti]!);
  return tf.tidy(() => tf.add(tf.mul(z0, tf.tensor3d(signal, [b, 1, 1])), tf.mul(eps, tf.tensor3d(sigma, [b, 1, 1]))) as tf.Tensor3D);
}

/**
 * One reverse step from step k (all rows at the same k, as the sampler runs):
 * z_{k-1} = coef1_k z0hat + coef2_k z_k + F exp(0.5 log var_k) eps, with the clipped log
 * variance (improved-diffusion's fixed-small variance). F: the decoding noise factor.
 */
export function posteriorSample(diffusion: Diffusion, k: number, z0hat: tf.Tensor3D, zk: tf.Tensor3D, eps: tf.Tensor3D, noiseFactor: number): tf.Tensor3D {
  const sigma = noiseFactor * Math.exp(0.5 * diffusion.posteriorLogVarianceClipped[k]!);
  return tf.tidy(() => {
    const mean = tf.add(tf.mul(z0hat, diffusion.posteriorMeanCoef1[k]!), tf.mul(zk, diffusion.posteriorMeanCoef2[k]!));
    return tf.add(mean, tf.mul(eps, sigma)) as tf.Tensor3D;
  });
}
