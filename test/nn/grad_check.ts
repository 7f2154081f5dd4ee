/**
 * Numerical gradient check by central finite differences, in float32 (tfjs has no float64):
 * compares tf.variableGrads against (f(x + h e_i) - f(x - h e_i)) / 2h on a few sampled
 * entries of each variable. Tolerances are loose enough for float32 round-off over h.
 */
import * as tf from '@tensorflow/tfjs';
import assert from 'node:assert/strict';

export interface GradCheckOptions {
  h?: number;
  /** Entries checked per variable. */
  samples?: number;
  rtol?: number;
  atol?: number;
}

export function checkGradients(f: () => tf.Scalar, vars: Record<string, tf.Variable>, opts: GradCheckOptions = {}): void {
  const h = opts.h ?? 1e-2;
  const samples = opts.samples ?? 8;
  const rtol = opts.rtol ?? 2e-3;
  const atol = opts.atol ?? 2e-4;
  const list = Object.values(vars);
  const { value, grads } = tf.variableGrads(f, list);
  value.dispose();
  const evalAt = (): number => tf.tidy(() => f().dataSync()[0]!);
  for (const [label, v] of Object.entries(vars)) {
    const g = grads[v.name]!.dataSync();
    const base = v.dataSync().slice();
    const n = base.length;
    const step = Math.max(1, Math.floor(n / samples));
    for (let i = 0; i < n; i += step) {
      const perturbed = base.slice();
      perturbed[i] = base[i]! + h;
      setValues(v, perturbed);
      const fp = evalAt();
      perturbed[i] = base[i]! - h;
      setValues(v, perturbed);
      const fm = evalAt();
      setValues(v, base);
      const numeric = (fp - fm) / (2 * h);
      const analytic = g[i]!;
      const tol = atol + rtol * Math.max(Math.abs(numeric), Math.abs(analytic));
      assert.ok(
        Math.abs(numeric - analytic) <= tol,
        `${label}[${i}]: analytic ${analytic} vs numeric ${numeric} (tol ${tol})`,
      );
    }
  }
  tf.dispose(Object.values(grads));
}

function setValues(v: tf.Variable, values: Float32Array | Int32Array | Uint8Array): void {
  const t = tf.tensor(values, v.shape, 'float32');
  v.assign(t);
  t.dispose();
}

/** Deterministic pseudo-random float32 values in [-scale, scale). */
export function seededValues(n: number, seed: number, scale = 1): Float32Array {
  let s = seed >>> 0;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = ((s >>> 8) / 16777216 * 2 - 1) * scale;
  }
  return out;
}
