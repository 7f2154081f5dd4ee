import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import {
  attentionProbs,
  causalBias,
  initMultiheadAttention,
  multiheadAttention,
  paddingBias,
  projectKeyValue,
  reorderKeyValue,
} from '../../src/nn/attention.js';
import { ParamStore } from '../../src/nn/params.js';
import { decoderLayer, decoderLayerStep, initDecoderLayer, type DecoderLayerCache, type LayerOptions } from '../../src/nn/transformer_layer.js';
import { checkGradients, seededValues } from './grad_check.js';

await tf.setBackend('cpu');

const B = 2;
const T = 3;
const S = 4;
const C = 8;
const H = 2;
const ctx = (store: ParamStore) => ({ training: false, rng: store.rng });

function rand3(b: number, t: number, c: number, seed: number): tf.Tensor3D {
  return tf.tensor3d(seededValues(b * t * c, seed), [b, t, c]);
}

/** Plain-JS multi-head attention following fairseq's formula, for one (query, key) pair of inputs. */
function referenceAttention(store: ParamStore, prefix: string, q: number[][][], kv: number[][][], masked: (b: number, t: number, s: number) => boolean): number[][][] {
  const w = (n: string) => store.get(`${prefix}.${n}.weight`).arraySync() as number[][];
  const bias = (n: string) => store.get(`${prefix}.${n}.bias`).arraySync() as number[];
  const proj = (x: number[], n: string) => w(n).map((row, o) => row.reduce((a, wi, i) => a + wi * x[i]!, bias(n)[o]!));
  const d = C / H;
  return q.map((qb, b) =>
    qb.map((qt, t) => {
      const qp = proj(qt, 'q_proj').map((x) => x * d ** -0.5);
      const ks = kv[b]!.map((x) => proj(x, 'k_proj'));
      const vs = kv[b]!.map((x) => proj(x, 'v_proj'));
      const ctxv: number[] = new Array(C).fill(0);
      for (let h = 0; h < H; h++) {
        const scores = ks.map((k, s) => (masked(b, t, s) ? -Infinity : k.slice(h * d, (h + 1) * d).reduce((a, x, i) => a + x * qp[h * d + i]!, 0)));
        const m = Math.max(...scores);
        const e = scores.map((x) => Math.exp(x - m));
        const z = e.reduce((a, x) => a + x, 0);
        for (let s = 0; s < ks.length; s++) for (let i = 0; i < d; i++) ctxv[h * d + i]! += (e[s]! / z) * vs[s]![h * d + i]!;
      }
      return proj(ctxv, 'out_proj');
    }),
  );
}

test('multi-head attention matches a plain-JS fairseq reference (cross, padding mask)', () => {
  const store = new ParamStore(3);
  initMultiheadAttention(store, 'attn', { embedDim: C, numHeads: H });
  const q = rand3(B, T, C, 1);
  const k = rand3(B, S, C, 2);
  const pad = tf.tensor2d([[0, 0, 0, 0], [0, 0, 1, 1]]);
  const bias = paddingBias(pad);
  const out = multiheadAttention(store, 'attn', q, k, { numHeads: H, bias, dropout: 0 }, ctx(store));
  const ref = referenceAttention(store, 'attn', q.arraySync(), k.arraySync(), (b, _t, s) => b === 1 && s >= 2);
  const got = out.arraySync();
  for (let b = 0; b < B; b++) for (let t = 0; t < T; t++) for (let c = 0; c < C; c++) assert.ok(Math.abs(got[b]![t]![c]! - ref[b]![t]![c]!) < 1e-5);
  tf.dispose([q, k, pad, bias, out]);
  store.dispose();
});

test('masked keys get zero attention; causal rows see only the past', () => {
  const store = new ParamStore(4);
  initMultiheadAttention(store, 'attn', { embedDim: C, numHeads: H });
  const x = rand3(B, S, C, 5);
  const pad = tf.tensor2d([[0, 0, 0, 1], [0, 1, 1, 1]]);
  const bias = tf.add(causalBias(S), paddingBias(pad));
  const kv = projectKeyValue(store, 'attn', x, H);
  const probs = attentionProbs(store, 'attn', x, kv, { numHeads: H, bias, dropout: 0 }).arraySync();
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < H; h++) {
      for (let t = 0; t < S; t++) {
        const row = probs[b]![h]![t]!;
        assert.ok(Math.abs(row.reduce((a, p) => a + p, 0) - 1) < 1e-5);
        for (let s = 0; s < S; s++) {
          const padded = (b === 0 && s === 3) || (b === 1 && s >= 1);
          if (padded || s > t) assert.equal(row[s], 0, `b${b} h${h} t${t} s${s}`);
          else assert.ok(row[s]! > 0);
        }
      }
    }
  }
  tf.dispose([x, pad, bias, kv.key, kv.value]);
  store.dispose();
});

test('attention gradients match central finite differences (cross + key padding mask)', () => {
  const store = new ParamStore(6);
  initMultiheadAttention(store, 'attn', { embedDim: C, numHeads: H });
  const q = tf.variable(rand3(B, T, C, 7));
  const k = tf.variable(rand3(B, S, C, 8));
  const r = rand3(B, T, C, 9);
  const bias = paddingBias(tf.tensor2d([[0, 0, 0, 0], [0, 0, 0, 1]]));
  const f = () => tf.sum(tf.mul(multiheadAttention(store, 'attn', q, k, { numHeads: H, bias, dropout: 0 }, ctx(store)), r)) as tf.Scalar;
  const vars: Record<string, tf.Variable> = { query: q, key: k };
  for (const n of store.names()) vars[n] = store.get(n);
  checkGradients(f, vars);
  tf.dispose([q, k, r, bias]);
  store.dispose();
});

test('causal self-attention gradients match central finite differences', () => {
  const store = new ParamStore(10);
  initMultiheadAttention(store, 'attn', { embedDim: C, numHeads: H });
  const x = tf.variable(rand3(B, T, C, 11));
  const r = rand3(B, T, C, 12);
  const bias = causalBias(T);
  const f = () => tf.sum(tf.mul(multiheadAttention(store, 'attn', x, null, { numHeads: H, bias, dropout: 0 }, ctx(store)), r)) as tf.Scalar;
  checkGradients(f, { x, q: store.get('attn.q_proj.weight'), k: store.get('attn.k_proj.weight'), v: store.get('attn.v_proj.bias') });
  tf.dispose([x, r, bias]);
  store.dispose();
});

for (const normalizeBefore of [false, true]) {
  test(`incremental decoder layer equals the full causal forward (${normalizeBefore ? 'pre' : 'post'}-LN)`, () => {
    const o: LayerOptions = {
      embedDim: C,
      ffnEmbedDim: 16,
      attentionHeads: H,
      normalizeBefore,
      dropout: 0.1, // inactive: not training
      attentionDropout: 0.1,
      activationDropout: 0.1,
      activationFn: 'relu',
    };
    const store = new ParamStore(13);
    initDecoderLayer(store, 'decoder.layers.0', o);
    const tgtLen = 5;
    const x = rand3(B, tgtLen, C, 14);
    const enc = rand3(B, S, C, 15);
    const encBias = paddingBias(tf.tensor2d([[0, 0, 0, 0], [1, 0, 0, 0]])); // left-padded source
    const selfBias = causalBias(tgtLen);
    const full = decoderLayer(store, 'decoder.layers.0', x, selfBias, { encoderOut: enc, bias: encBias }, o, ctx(store));
    const kv = projectKeyValue(store, 'decoder.layers.0.encoder_attn', enc, H);
    let cache: DecoderLayerCache = { self: null };
    for (let t = 0; t < tgtLen; t++) {
      const xt = tf.slice(x, [0, t, 0], [B, 1, C]);
      const r = decoderLayerStep(store, 'decoder.layers.0', xt, cache, { kv, bias: encBias }, o, ctx(store));
      if (cache.self !== null) tf.dispose([cache.self.key, cache.self.value]);
      cache = r.cache;
      const want = tf.slice(full, [0, t, 0], [B, 1, C]);
      const diff = tf.max(tf.abs(tf.sub(r.out, want))).dataSync()[0]!;
      assert.ok(diff < 1e-5, `step ${t}: max diff ${diff}`);
      tf.dispose([xt, r.out, want]);
    }
    assert.deepEqual(cache.self?.key.shape, [B, H, tgtLen, C / H]);
    tf.dispose([x, enc, encBias, selfBias, full, kv.key, kv.value, cache.self!.key, cache.self!.value]);
    store.dispose();
  });
}

test('reorderKeyValue gathers the batch axis', () => {
  const key = tf.tensor4d([1, 2, 3], [3, 1, 1, 1]);
  const value = tf.tensor4d([4, 5, 6], [3, 1, 1, 1]);
  const idx = tf.tensor1d([2, 2, 0], 'int32');
  const r = reorderKeyValue({ key, value }, idx);
  assert.deepEqual(Array.from(r.key.dataSync()), [3, 3, 1]);
  assert.deepEqual(Array.from(r.value.dataSync()), [6, 6, 4]);
  tf.dispose([key, value, idx, r.key, r.value]);
});

test('attention init: fairseq scheme and BERT scheme', () => {
  const fair = new ParamStore(1);
  initMultiheadAttention(fair, 'a', { embedDim: 64, numHeads: 4 });
  const bound = Math.SQRT1_2 * Math.sqrt(6 / 128);
  const q = fair.get('a.q_proj.weight').dataSync();
  assert.ok(q.every((x) => Math.abs(x) <= bound));
  assert.ok(Math.max(...q.map(Math.abs)) > 0.9 * bound);
  assert.ok(fair.get('a.out_proj.bias').dataSync().every((x) => x === 0));
  assert.deepEqual(fair.names(), ['a.k_proj.weight', 'a.k_proj.bias', 'a.v_proj.weight', 'a.v_proj.bias', 'a.q_proj.weight', 'a.q_proj.bias', 'a.out_proj.weight', 'a.out_proj.bias']);
  const bert = new ParamStore(1);
  initMultiheadAttention(bert, 'a', { embedDim: 64, numHeads: 4, init: 'bert' });
  const w = Array.from(bert.get('a.k_proj.weight').dataSync());
  const std = Math.sqrt(w.reduce((a, x) => a + x * x, 0) / w.length);
  assert.ok(Math.abs(std - 0.02) < 0.002, `std ${std}`);
  assert.ok(bert.get('a.q_proj.bias').dataSync().every((x) => x === 0));
  fair.dispose();
  bert.dispose();
});
