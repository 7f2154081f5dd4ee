/**
 * Noise schedules and the Gaussian diffusion quantities derived from them, in float64, as pure
 * functions (after improved-diffusion's gaussian_diffusion.py and the official Difformer code's
 * get_named_beta_schedule; values checked against reference-brief sections 1.2 and 1.5).
 * Timesteps are discrete t = 0..T-1, and t = 0 already means one noising step.
 * Schedules are added here, never changed once committed: checkpoints depend on them.
 */

export type ScheduleName = 'sqrt' | 'linear' | 'cosine';
export const SCHEDULE_NAMES: readonly ScheduleName[] = ['sqrt', 'linear', 'cosine'];

/** The continuous alpha-bar(s), s in [0, 1], of each named schedule. */
export function alphaBarFn(name: ScheduleName): (s: number) => number {
  switch (name) {
    case 'sqrt': // Diffusion-LM's and Difformer's official schedule
      return (s) => 1 - Math.sqrt(s + 1e-4);
    case 'linear': // Difformer's "linear": the continuous VP-SDE form, not DDPM's linspace betas
      return (s) => Math.exp(-((20 - 0.1) / 2) * s * s - 0.1 * s);
    case 'cosine': // Nichol & Dhariwal, shift 0.008
      return (s) => Math.cos(((s + 0.008) / 1.008) * (Math.PI / 2)) ** 2;
    default: {
      const never: never = name;
      throw new Error(`unknown noise schedule ${String(never)}`);
    }
  }
}

/**
 * betas_for_alpha_bar: beta_i = min(1 - abar((i+1)/T) / abar(i/T), maxBeta), i = 0..T-1.
 */
export function betasForAlphaBar(T: number, alphaBar: (s: number) => number, maxBeta = 0.999): Float64Array {
  const betas = new Float64Array(T);
  for (let i = 0; i < T; i++) betas[i] = Math.min(1 - alphaBar((i + 1) / T) / alphaBar(i / T), maxBeta);
  return betas;
}

/** Every per-timestep quantity sampling and training need, precomputed once. */
export interface Diffusion {
  readonly numTimesteps: number;
  readonly betas: Float64Array;
  readonly alphasCumprod: Float64Array;
  readonly alphasCumprodPrev: Float64Array;
  readonly sqrtAlphasCumprod: Float64Array;
  readonly sqrtOneMinusAlphasCumprod: Float64Array;
  /** q(z_{t-1} | z_t, z_0) = N(coef1 * z_0 + coef2 * z_t, variance). */
  readonly posteriorMeanCoef1: Float64Array;
  readonly posteriorMeanCoef2: Float64Array;
  readonly posteriorVariance: Float64Array;
  /** log of posteriorVariance with t = 0 clipped to t = 1 (the variance is 0 at t = 0). */
  readonly posteriorLogVarianceClipped: Float64Array;
  /** Original timestep of each step (identity unless respaced). */
  readonly timestepMap: Int32Array;
}

/** Builds a diffusion from betas (float64 throughout, as improved-diffusion). */
export function diffusionFromBetas(betas: Float64Array, timestepMap?: Int32Array): Diffusion {
  const T = betas.length;
  const ac = new Float64Array(T);
  let prod = 1;
  for (let t = 0; t < T; t++) {
    prod *= 1 - betas[t]!;
    ac[t] = prod;
  }
  const acPrev = new Float64Array(T);
  acPrev[0] = 1;
  for (let t = 1; t < T; t++) acPrev[t] = ac[t - 1]!;
  const c1 = new Float64Array(T);
  const c2 = new Float64Array(T);
  const pv = new Float64Array(T);
  for (let t = 0; t < T; t++) {
    const b = betas[t]!;
    c1[t] = (b * Math.sqrt(acPrev[t]!)) / (1 - ac[t]!);
    c2[t] = ((1 - acPrev[t]!) * Math.sqrt(1 - b)) / (1 - ac[t]!);
    pv[t] = (b * (1 - acPrev[t]!)) / (1 - ac[t]!);
  }
  const logv = new Float64Array(T);
  for (let t = 0; t < T; t++) logv[t] = Math.log(t === 0 ? (T > 1 ? pv[1]! : pv[0]!) : pv[t]!);
  return {
    numTimesteps: T,
    betas,
    alphasCumprod: ac,
    alphasCumprodPrev: acPrev,
    sqrtAlphasCumprod: ac.map(Math.sqrt),
    sqrtOneMinusAlphasCumprod: ac.map((a) => Math.sqrt(1 - a)),
    posteriorMeanCoef1: c1,
    posteriorMeanCoef2: c2,
    posteriorVariance: pv,
    posteriorLogVarianceClipped: logv,
    timestepMap: timestepMap ?? Int32Array.from({ length: T }, (_, i) => i),
  };
}

export function namedDiffusion(name: ScheduleName, T: number): Diffusion {
  return diffusionFromBetas(betasForAlphaBar(T, alphaBarFn(name)));
}

/**
 * Which original timesteps to keep when sampling with fewer steps (improved-diffusion's
 * space_timesteps with one section): k evenly strided steps including 0 and T-1,
 * tau_j = round(j * (T-1) / (k-1)). Example: T = 2000, k = 20 gives 0, 105, 210, 316, ..., 1999.
 */
export function spaceTimesteps(numTimesteps: number, k: number): number[] {
  if (!Number.isInteger(k) || k < 1 || k > numTimesteps) {
    throw new RangeError(`cannot respace ${numTimesteps} diffusion steps into ${k} steps (need 1 <= K <= ${numTimesteps})`);
  }
  if (k === 1) return [0];
  const frac = (numTimesteps - 1) / (k - 1);
  const out: number[] = [];
  // Python's round() rounds half to even; ties do not occur for the sizes we use, but follow it
  for (let j = 0; j < k; j++) out.push(roundHalfEven(j * frac));
  return out;
}

function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/**
 * The respaced process over the kept timesteps (improved-diffusion's SpacedDiffusion): betas
 * are rebuilt from the kept alpha-bars, beta'_k = 1 - abar_{tau_k} / abar_{tau_{k-1}}, and
 * `timestepMap` maps each new step back to its original timestep for the network.
 */
export function respace(base: Diffusion, keep: number[]): Diffusion {
  const betas = new Float64Array(keep.length);
  let last = 1;
  keep.forEach((t, i) => {
    const a = base.alphasCumprod[t]!;
    betas[i] = 1 - a / last;
    last = a;
  });
  return diffusionFromBetas(betas, Int32Array.from(keep));
}

/**
 * Variance-preserving rescaling by a noise factor F (--vp-rf, not used by the official
 * scripts): abar' = abar / (F^2 - (F^2 - 1) abar), so that SNR' = SNR / F^2.
 */
export function vpRescaledAlphaBar(alphaBar: (s: number) => number, F: number): (s: number) => number {
  return (s) => {
    const a = alphaBar(s);
    return a / (F * F - (F * F - 1) * a);
  };
}

/** The network's time input: t * 1000 / T with --rescale-timesteps, else t. */
export function modelTimestep(t: number, numTimesteps: number, rescale: boolean): number {
  return rescale ? (t * 1000) / numTimesteps : t;
}
