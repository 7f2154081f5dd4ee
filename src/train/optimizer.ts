/**
 * fairseq's Adam (fairseq/optim/adam.py, v0.10.2) with decoupled weight decay:
 *   m = b1*m + (1-b1)*g;  v = b2*v + (1-b2)*g^2
 *   p -= wd*lr*p                                 (decoupled, before the step, every parameter)
 *   p -= lr*sqrt(1-b2^t)/(1-b1^t) * m/(sqrt(v)+eps)
 * plus fairseq's gradient-norm clipping. State (m, v, step) is saved in checkpoints by name.
 *
 * With the native CPU kernels (src/backend/native_kernels.ts) each parameter's update is one
 * fused pass (same float32 operation order, so the same values) instead of ~12 tf kernels, and
 * the gradient norm is one native sum of squares over all gradients.
 */
import * as tf from '@tensorflow/tfjs';
import { nativeAdamStep, nativeSumSquares } from '../backend/native_kernels.js';

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
      const fused = nativeAdamStep(p, m, v, g, { b1, b2, eps: this.opts.eps, stepSize, decay: this.opts.weightDecay !== 0 ? decay : 1, gradScale: 1 });
      if (fused !== undefined) {
        p.assign(fused[0]);
        m.assign(fused[1]);
        v.assign(fused[2]);
        tf.dispose(fused);
        continue;
      }
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
  const nativeSq = nativeSumSquares([...grads.values()]);
  let norm: number;
  if (nativeSq !== undefined) {
    norm = Math.sqrt(nativeSq) * Math.abs(scale);
  } else {
    const sq = tf.tidy(() => tf.addN([...grads.values()].map((g) => g.square().sum())).mul(scale * scale));
    norm = Math.sqrt(sq.dataSync()[0]!);
    sq.dispose();
  }
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

// ---- memory-lean backprop ------------------------------------------------------------------

/** The parts of tfjs 4.22's engine that `variableGradsLowMemory` drives (internal API, pinned). */
interface TapeNode {
  id: number;
  kernelName: string;
  inputs: Record<string, tf.Tensor>;
  outputs: tf.Tensor[];
  saved?: tf.Tensor[];
  gradient?: (dys: (tf.Tensor | null)[]) => Record<string, () => tf.Tensor>;
}
interface EngineInternals {
  state: { activeTape: TapeNode[] | null; gradientDepth: number };
  startTape(): void;
  endTape(): void;
  scopedRun<R>(start: () => void, end: () => void, f: () => R): R;
  tidy<R extends tf.TensorContainer>(nameOrFn: string | (() => R), fn?: () => R): R;
}

function engineInternals(): EngineInternals | undefined {
  const e = tf.engine() as unknown as Partial<EngineInternals>;
  // (activeTape is undefined before the first gradient computation, null after one)
  const ok = typeof e.startTape === 'function' && typeof e.endTape === 'function' && typeof e.scopedRun === 'function' && typeof e.state?.gradientDepth === 'number';
  return ok ? (e as EngineInternals) : undefined;
}

/** tfjs's getFilteredNodesXToY (tape.ts): the nodes on a path from xs to y, inputs pruned to those from xs. */
function filterTape(tape: TapeNode[], xs: tf.Tensor[], y: tf.Tensor): TapeNode[] {
  const fromX = new Set<number>(xs.map((x) => x.id));
  const nodesFromX = new Set<number>();
  for (const node of tape) {
    if (Object.values(node.inputs).some((t) => fromX.has(t.id))) {
      for (const o of node.outputs) fromX.add(o.id);
      nodesFromX.add(node.id);
    }
  }
  const toY = new Set<number>([y.id]);
  const nodesToY = new Set<number>();
  for (let i = tape.length - 1; i >= 0; i--) {
    const node = tape[i]!;
    if (node.outputs.some((o) => toY.has(o.id))) {
      for (const t of Object.values(node.inputs)) toY.add(t.id);
      nodesToY.add(node.id);
    }
  }
  const out: TapeNode[] = [];
  for (const node of tape) {
    if (!nodesFromX.has(node.id) || !nodesToY.has(node.id)) continue;
    const inputs: Record<string, tf.Tensor> = {};
    for (const [k, t] of Object.entries(node.inputs)) if (fromX.has(t.id)) inputs[k] = t;
    out.push({ ...node, inputs });
  }
  return out;
}

/**
 * tf.variableGrads with the same values, but lean on memory: tfjs's own backprop keeps every
 * intermediate gradient and every tensor saved for backprop until the whole backward pass ends,
 * which doubles the peak (a Transformer at 4096 tokens then no longer fits wasm's 4 GB heap).
 * Here each node's saved tensors and its outputs' gradients are freed as soon as the node is
 * processed, and saved tensors of nodes off the x -> y path right after the forward pass.
 * Falls back to tf.variableGrads if the engine's internals are not what tfjs 4.22 has, or when
 * called inside another gradient computation (higher-order gradients).
 */
export function variableGradsLowMemory(f: () => tf.Scalar, varList: tf.Variable[]): { value: tf.Scalar; grads: tf.NamedTensorMap } {
  const engine = engineInternals();
  const vars = varList.filter((v) => v.trainable);
  if (engine === undefined || engine.state.gradientDepth !== 0 || engine.state.activeTape != null || vars.length === 0) {
    return tf.variableGrads(f, varList);
  }
  const y = engine.scopedRun(
    () => engine.startTape(),
    () => engine.endTape(),
    () => engine.tidy('forward', f),
  );
  const state = engine.state as { activeTape: TapeNode[] | null };
  const tape = state.activeTape ?? [];
  state.activeTape = null;
  if (!(y instanceof tf.Tensor) || y.rank !== 0) {
    for (const node of tape) for (const t of node.saved ?? []) t.dispose();
    throw new Error('variableGradsLowMemory: f must return a scalar tensor');
  }
  const filtered = filterTape(tape, vars, y);
  const onPath = new Set(filtered.map((n) => n.id));
  for (const node of tape) if (!onPath.has(node.id)) for (const t of node.saved ?? []) t.dispose();
  const keepIds = new Set<number>(vars.map((v) => v.id));
  const withGrad: tf.Variable[] = [];
  let grads: tf.Tensor[];
  try {
    grads = tf.tidy(() => {
      // Gradient functions may return their dy itself (Add, Reshape...), so one tensor can be
      // the gradient of several tensors: count references and dispose at zero.
      const acc = new Map<number, tf.Tensor>();
      const refs = new Map<tf.Tensor, number>();
      const hold = (id: number, t: tf.Tensor): void => {
        acc.set(id, t);
        refs.set(t, (refs.get(t) ?? 0) + 1);
      };
      const release = (t: tf.Tensor): void => {
        const n = (refs.get(t) ?? 1) - 1;
        if (n > 0) refs.set(t, n);
        else {
          refs.delete(t);
          t.dispose();
        }
      };
      hold(y.id, tf.onesLike(y));
      for (let i = filtered.length - 1; i >= 0; i--) {
        const node = filtered[i]!;
        if (node.gradient === undefined) throw new Error(`Cannot compute gradient: gradient function not found for ${node.kernelName}.`);
        const dys = node.outputs.map((o) => acc.get(o.id) ?? null);
        const inputGrads = node.gradient(dys);
        for (const [name, x] of Object.entries(node.inputs)) {
          const thunk = inputGrads[name];
          if (thunk === undefined) throw new Error(`Cannot backprop through input ${name}. Available gradients found: ${Object.keys(inputGrads)}.`);
          const dx = tf.tidy(thunk);
          if (dx.dtype !== 'float32') throw new Error(`Error in gradient for op ${node.kernelName}. The gradient of input ${name} must have 'float32' dtype, but has '${dx.dtype}'`);
          if (!tf.util.arraysEqual(dx.shape, x.shape)) {
            throw new Error(`Error in gradient for op ${node.kernelName}. The gradient of input '${name}' has shape '${dx.shape}', which does not match the shape of the input '${x.shape}'`);
          }
          const cur = acc.get(x.id);
          if (cur === undefined) hold(x.id, dx);
          else {
            hold(x.id, tf.add(cur, dx));
            release(cur);
            if (!refs.has(dx)) dx.dispose();
          }
        }
        // The node was the only producer of its outputs: their gradients and its saved tensors are done.
        for (const o of node.outputs) {
          const g = acc.get(o.id);
          if (g !== undefined && !keepIds.has(o.id)) {
            acc.delete(o.id);
            release(g);
          }
        }
        for (const t of node.saved ?? []) if (!refs.has(t)) t.dispose();
        node.saved = [];
      }
      const out: tf.Tensor[] = [];
      for (const v of vars) {
        const g = acc.get(v.id);
        if (g !== undefined) {
          withGrad.push(v);
          out.push(g);
        }
      }
      return out;
    });
  } finally {
    for (const node of filtered) for (const t of node.saved ?? []) t.dispose();
  }
  if (withGrad.length === 0) {
    y.dispose();
    throw new Error('Cannot find a connection between any variable and the result of the loss function y=f(x).');
  }
  const named: tf.NamedTensorMap = {};
  withGrad.forEach((v, i) => (named[v.name] = grads[i]!));
  return { value: y as tf.Scalar, grads: named };
}
