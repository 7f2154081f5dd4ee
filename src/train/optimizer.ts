/**
 * fairseq's Adam (fairseq/optim/adam.py, v0.10.2) with decoupled weight decay:
 *   m = b1*m + (1-b1)*g;  v = b2*v + (1-b2)*g^2
 *   p -= wd*lr*p                                 (decoupled, before the step, every parameter)
 *   p -= lr*sqrt(1-b2^t)/(1-b1^t) * m/(sqrt(v)+eps)
 * plus fairseq's gradient-norm clipping. State (m, v, step) is saved in checkpoints by name.
 */
import * as tf from '@tensorflow/tfjs';

export interface AdamOptions {
  betas: [number, number];
  eps: number;
  weightDecay: number;
}

export class Adam {
  step = 0;
  readonly expAvg = new Map<string, tf.Variable>();
  readonly expAvgSq = new Map<string, tf.Variable>();

  constructor(readonly opts: AdamOptions) {}

  private state(name: string, p: tf.Variable): [tf.Variable, tf.Variable] {
    let m = this.expAvg.get(name);
    let v = this.expAvgSq.get(name);
    if (!m || !v) {
      m = tf.variable(tf.zerosLike(p), false, `adam.exp_avg.${name}`);
      v = tf.variable(tf.zerosLike(p), false, `adam.exp_avg_sq.${name}`);
      this.expAvg.set(name, m);
      this.expAvgSq.set(name, v);
    }
    return [m, v];
  }

  /** One update of the named parameters with the given (already normalized, clipped) gradients. */
  apply(params: Map<string, tf.Variable>, grads: Map<string, tf.Tensor>, lr: number): void {
    this.step += 1;
    const [b1, b2] = this.opts.betas;
    const stepSize = (lr * Math.sqrt(1 - b2 ** this.step)) / (1 - b1 ** this.step);
    const decay = 1 - this.opts.weightDecay * lr;
    for (const [name, g] of grads) {
      const p = params.get(name);
      if (!p) continue;
      const [m, v] = this.state(name, p);
      tf.tidy(() => {
        const m1 = m.mul(b1).add(g.mul(1 - b1));
        const v1 = v.mul(b2).add(g.square().mul(1 - b2));
        m.assign(m1);
        v.assign(v1);
        const base = this.opts.weightDecay !== 0 ? p.mul(decay) : p;
        p.assign(base.sub(m1.div(v1.sqrt().add(this.opts.eps)).mul(stepSize)));
      });
    }
  }

  dispose(): void {
    for (const t of [...this.expAvg.values(), ...this.expAvgSq.values()]) t.dispose();
    this.expAvg.clear();
    this.expAvgSq.clear();
  }
}

/**
 * Scales gradients in place of the map by `scale` and clips their global L2 norm to maxNorm
 * (0 = no clipping), as fairseq's clip_grad_norm_. Returns the norm before clipping.
 */
export function scaleAndClip(grads: Map<string, tf.Tensor>, scale: number, maxNorm: number): number {
  const sq = tf.tidy(() => tf.addN([...grads.values()].map((g) => g.square().sum())).mul(scale * scale));
  const norm = Math.sqrt(sq.dataSync()[0]!);
  sq.dispose();
  let factor = scale;
  if (maxNorm > 0 && norm > maxNorm) factor = (scale * maxNorm) / (norm + 1e-6);
  if (factor !== 1) {
    for (const [name, g] of grads) {
      grads.set(name, tf.tidy(() => g.mul(factor)));
      g.dispose();
    }
  }
  return norm;
}
