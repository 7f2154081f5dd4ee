/**
 * Named parameter store and seeded RNG.
 *
 * A model is a set of `tf.Variable`s under stable fairseq-style dotted names
 * (`encoder.layers.0.self_attn.q_proj.weight`), so checkpoints, averaging, freezing
 * (`--freeze-embeddings`) and weight inspection all work by name. Blocks in `src/nn/` create
 * their parameters here and read them back by name in their forward functions.
 *
 * Initialisers follow fairseq v0.10.2 / PyTorch:
 * - `xavierUniform(gain)`: U(-b, b), b = gain * sqrt(6 / (fan_in + fan_out)) (attention projections)
 * - `torchLinearWeight` / `torchLinearBias`: nn.Linear's default, U(-1/sqrt(fan_in), 1/sqrt(fan_in))
 *   (fairseq v0.10.2 builds fc1/fc2 and q/k/v biases with plain nn.Linear)
 * - `normal(std)`: embeddings N(0, d^-0.5) with the pad row zeroed; BERT-style N(0, 0.02)
 *
 * The RNG is xoshiro128** seeded through splitmix32; its whole state is four uint32 words
 * (`getState`/`setState`), so a checkpoint can store it and a resumed run draws the same
 * dropout masks. tf.Variables are created without a tf name: tfjs names are global per engine
 * and two models (teacher + student, or tests) would clash; our names live in this store only.
 */
import * as tf from '@tensorflow/tfjs';
import { DifformerError } from '../errors.js';

/** Whole RNG state: four uint32 words. */
export type RngState = [number, number, number, number];

/** Deterministic xoshiro128** generator; state can be saved and restored. */
export class Rng {
  private s0 = 0;
  private s1 = 0;
  private s2 = 0;
  private s3 = 0;

  constructor(seed: number) {
    // splitmix32 expands one seed into four well-mixed words (and never all zero).
    let x = seed >>> 0;
    const next = (): number => {
      x = (x + 0x9e3779b9) >>> 0;
      let z = x;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
      return (z ^ (z >>> 16)) >>> 0;
    };
    this.s0 = next();
    this.s1 = next();
    this.s2 = next();
    this.s3 = next();
  }

  getState(): RngState {
    return [this.s0, this.s1, this.s2, this.s3];
  }

  setState(state: readonly number[]): void {
    if (state.length !== 4 || state.every((w) => (w >>> 0) === 0)) {
      throw new DifformerError('DIFFORMER_BAD_CHECKPOINT', `RNG state must be 4 uint32 words, not all zero; got [${state.join(', ')}]`);
    }
    [this.s0, this.s1, this.s2, this.s3] = state.map((w) => w >>> 0) as RngState;
  }

  /** Next uint32. */
  nextUint32(): number {
    const result = Math.imul(rotl(Math.imul(this.s1, 5), 7), 9) >>> 0;
    const t = this.s1 << 9;
    this.s2 ^= this.s0;
    this.s3 ^= this.s1;
    this.s1 ^= this.s2;
    this.s0 ^= this.s3;
    this.s2 ^= t;
    this.s3 = rotl(this.s3, 11);
    return result;
  }

  /** Uniform in [0, 1) with 24 random bits (exact in float32). */
  uniform(): number {
    return (this.nextUint32() >>> 8) / 16777216;
  }

  /** Integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.uniform() * n);
  }

  /** n uniform draws in [low, high). */
  fillUniform(n: number, low: number, high: number): Float32Array {
    const out = new Float32Array(n);
    const width = high - low;
    for (let i = 0; i < n; i++) out[i] = low + width * ((this.nextUint32() >>> 8) / 16777216);
    return out;
  }

  /** n normal draws N(mean, std^2) by Box-Muller; pairs are used whole, so the count consumed is deterministic. */
  fillNormal(n: number, mean: number, std: number): Float32Array {
    const out = new Float32Array(n);
    for (let i = 0; i < n; i += 2) {
      // u1 in (0, 1] so the log is finite.
      const u1 = ((this.nextUint32() >>> 8) + 1) / 16777216;
      const u2 = (this.nextUint32() >>> 8) / 16777216;
      const r = Math.sqrt(-2 * Math.log(u1));
      out[i] = mean + std * r * Math.cos(2 * Math.PI * u2);
      if (i + 1 < n) out[i + 1] = mean + std * r * Math.sin(2 * Math.PI * u2);
    }
    return out;
  }
}

function rotl(x: number, k: number): number {
  return ((x << k) | (x >>> (32 - k))) >>> 0;
}

/** Initialisation schemes. Fan sizes assume PyTorch layout: weight [out, in]. */
export type Init =
  | { kind: 'zeros' }
  | { kind: 'ones' }
  | { kind: 'normal'; std: number; mean?: number }
  | { kind: 'uniform'; low: number; high: number }
  | { kind: 'xavierUniform'; gain?: number };

/** 'fairseq' = the Transformer's own init; 'bert' = fairseq's init_bert_params (N(0, 0.02), zero biases). */
export type InitStyle = 'fairseq' | 'bert';

export const zeros: Init = { kind: 'zeros' };
export const ones: Init = { kind: 'ones' };
export function normal(std: number, mean = 0): Init {
  return { kind: 'normal', std, mean };
}
export function xavierUniform(gain = 1): Init {
  return { kind: 'xavierUniform', gain };
}
/** nn.Linear's default weight init, kaiming_uniform(a=sqrt(5)): U(-1/sqrt(fan_in), 1/sqrt(fan_in)). */
export function torchLinearWeight(fanIn: number): Init {
  const b = 1 / Math.sqrt(fanIn);
  return { kind: 'uniform', low: -b, high: b };
}
/** nn.Linear's default bias init: U(-1/sqrt(fan_in), 1/sqrt(fan_in)). */
export const torchLinearBias = torchLinearWeight;

export interface CreateOptions {
  /** Zero this row after init (embedding padding index). */
  padRow?: number;
  trainable?: boolean;
}

/** Named tf.Variables plus non-persistent buffers (e.g. sinusoidal tables). */
export class ParamStore {
  readonly rng: Rng;
  private readonly vars = new Map<string, tf.Variable>();
  private readonly aliasOf = new Map<string, string>();
  private readonly buffers = new Map<string, tf.Tensor>();

  constructor(seed = 1) {
    this.rng = new Rng(seed);
  }

  /** Create a parameter with the given init; names must be new. */
  create(name: string, shape: number[], init: Init, opts: CreateOptions = {}): tf.Variable {
    if (this.vars.has(name) || this.aliasOf.has(name)) {
      throw new DifformerError('DIFFORMER_DUPLICATE_NAME', `parameter ${name} already exists`);
    }
    const values = this.initValues(shape, init);
    if (opts.padRow !== undefined) {
      const rowSize = shape.slice(1).reduce((a, b) => a * b, 1);
      values.fill(0, opts.padRow * rowSize, (opts.padRow + 1) * rowSize);
    }
    const initial = tf.tensor(values, shape, 'float32');
    const v = tf.variable(initial, opts.trainable ?? true);
    // The variable holds a reference to the same data; our handle can go.
    initial.dispose();
    this.vars.set(name, v);
    return v;
  }

  private initValues(shape: number[], init: Init): Float32Array {
    const n = shape.reduce((a, b) => a * b, 1);
    switch (init.kind) {
      case 'zeros':
        return new Float32Array(n);
      case 'ones':
        return new Float32Array(n).fill(1);
      case 'normal':
        return this.rng.fillNormal(n, init.mean ?? 0, init.std);
      case 'uniform':
        return this.rng.fillUniform(n, init.low, init.high);
      case 'xavierUniform': {
        const fanOut = shape[0] ?? 1;
        const fanIn = shape.length > 1 ? shape.slice(1).reduce((a, b) => a * b, 1) : 1;
        const b = (init.gain ?? 1) * Math.sqrt(6 / (fanIn + fanOut));
        return this.rng.fillUniform(n, -b, b);
      }
      default: {
        const never: never = init;
        throw new Error(`unknown init ${JSON.stringify(never)}`);
      }
    }
  }

  /** Make `name` another name for `target` (tied weights); aliases are not listed or saved. */
  alias(name: string, target: string): void {
    if (this.vars.has(name) || this.aliasOf.has(name)) {
      throw new DifformerError('DIFFORMER_DUPLICATE_NAME', `parameter ${name} already exists`);
    }
    this.aliasOf.set(name, this.resolve(target));
  }

  private resolve(name: string): string {
    const target = this.aliasOf.get(name) ?? name;
    if (!this.vars.has(target)) {
      throw new DifformerError('DIFFORMER_UNKNOWN_NAME', `no parameter named ${name}; known: ${[...this.vars.keys()].join(', ')}`);
    }
    return target;
  }

  has(name: string): boolean {
    return this.vars.has(name) || this.aliasOf.has(name);
  }

  get(name: string): tf.Variable {
    return this.vars.get(this.resolve(name)) as tf.Variable;
  }

  /** Canonical parameter names in creation order (aliases excluded). */
  names(): string[] {
    return [...this.vars.keys()];
  }

  /** alias name -> canonical name. */
  aliases(): Record<string, string> {
    return Object.fromEntries(this.aliasOf);
  }

  /** name -> variable (the live variables, not copies: do not dispose them). */
  toRecord(): Record<string, tf.Variable> {
    return Object.fromEntries(this.vars);
  }

  /**
   * Copy values in by name. Throws naming the parameter and both shapes on a mismatch; with
   * `strict` (default) also on missing or unexpected names. Alias names in the record are
   * accepted in place of their canonical names.
   */
  assign(record: Record<string, tf.Tensor>, opts: { strict?: boolean } = {}): void {
    const strict = opts.strict ?? true;
    const byCanonical = new Map<string, tf.Tensor>();
    const unexpected: string[] = [];
    for (const [name, t] of Object.entries(record)) {
      if (!this.has(name)) unexpected.push(name);
      else if (!byCanonical.has(this.resolve(name)) || this.vars.has(name)) byCanonical.set(this.resolve(name), t);
    }
    const missing = this.names().filter((n) => !byCanonical.has(n));
    if (strict && (unexpected.length > 0 || missing.length > 0)) {
      throw new DifformerError(
        'DIFFORMER_BAD_CHECKPOINT',
        `parameter names differ: missing [${missing.join(', ')}], unexpected [${unexpected.join(', ')}]`,
      );
    }
    for (const [name, t] of byCanonical) {
      const v = this.vars.get(name) as tf.Variable;
      if (!tf.util.arraysEqual(v.shape, t.shape)) {
        throw new DifformerError(
          'DIFFORMER_BAD_CHECKPOINT',
          `shape mismatch for ${name}: model has [${v.shape.join(', ')}], checkpoint has [${t.shape.join(', ')}]`,
        );
      }
    }
    for (const [name, t] of byCanonical) {
      const v = this.vars.get(name) as tf.Variable;
      if (t.dtype === 'float32') v.assign(t);
      else {
        const f = tf.cast(t, 'float32');
        v.assign(f);
        f.dispose(); // the variable keeps its own reference to the data
      }
    }
  }

  /** Number of scalar parameters (tied weights counted once). */
  numParams(opts: { trainableOnly?: boolean } = {}): number {
    let n = 0;
    for (const v of this.vars.values()) if (!opts.trainableOnly || v.trainable) n += v.size;
    return n;
  }

  /** Set the trainable flag of every parameter whose name starts with `prefix`; returns the names. */
  setTrainable(prefix: string, trainable: boolean): string[] {
    const hit: string[] = [];
    for (const [name, v] of this.vars) {
      if (name.startsWith(prefix)) {
        v.trainable = trainable;
        hit.push(name);
      }
    }
    if (hit.length === 0) {
      throw new DifformerError('DIFFORMER_UNKNOWN_NAME', `no parameter name starts with "${prefix}"`);
    }
    return hit;
  }

  /** Trainable variables, for an optimizer's varList. */
  trainableVariables(): tf.Variable[] {
    return [...this.vars.values()].filter((v) => v.trainable);
  }

  /** Keep a constant, non-saved tensor (the store owns and disposes it). */
  registerBuffer(name: string, t: tf.Tensor): void {
    this.buffers.get(name)?.dispose();
    this.buffers.set(name, tf.keep(t));
  }

  getBuffer(name: string): tf.Tensor {
    const b = this.buffers.get(name);
    if (b === undefined) throw new DifformerError('DIFFORMER_UNKNOWN_NAME', `no buffer named ${name}`);
    return b;
  }

  dispose(): void {
    for (const v of this.vars.values()) v.dispose();
    for (const b of this.buffers.values()) b.dispose();
    this.vars.clear();
    this.aliasOf.clear();
    this.buffers.clear();
  }
}

/**
 * tf.tidy for functions returning a typed object of tensors (tfjs types the result as
 * TensorContainer, which interfaces and null fields do not satisfy). Tensors anywhere in the
 * result are kept; everything else created inside is disposed.
 */
export function tidyObject<T>(fn: () => T): T {
  return tf.tidy(fn as unknown as () => tf.TensorContainer) as unknown as T;
}

/**
 * Runs `f` off the gradient tape: ops inside a customGrad forward are not recorded, and the
 * gradient into `anchor` is zero (torch.no_grad / detach: the self-conditioning first pass,
 * --sg-length-pred).
 */
export function untaped<T extends tf.Tensor>(anchor: tf.Tensor, f: () => T): T {
  const shape = anchor.shape;
  const op = tf.customGrad((_a: tf.Tensor | tf.GradSaveFunc) => ({ value: f(), gradFunc: () => [tf.zeros(shape)] }));
  return op(anchor) as T;
}
