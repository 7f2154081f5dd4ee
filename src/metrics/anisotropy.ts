/**
 * Anisotropy of an embedding table, the Difformer paper's Eq. 5 (section 3.1, after Ethayarajh
 * 2019): the mean cosine similarity over all ordered pairs of distinct tokens,
 *
 *   ANI = 1 / (n (n - 1)) * sum_{i != j} cos(e_i, e_j)
 *
 * 0 for an isotropic table, 1 when every embedding points the same way (the collapse that
 * training with the latent MSE alone produces; Table 1 reports 0.99 with L_vlb + L_round and
 * 0.03 with the anchor loss).
 *
 * Computed exactly in O(n d) rather than over n^2 pairs: with unit rows u_i,
 * sum_{i != j} u_i·u_j = |sum_i u_i|^2 - sum_i |u_i|^2 = |sum_i u_i|^2 - n. So no tfjs batching is
 * needed even for large vocabularies. Accumulation is in float64.
 *
 * Rows excluded: the indices in `exclude` (callers pass the dictionary's specials: BOS, PAD,
 * EOS, UNK, and madeupword padding if they like), and every all-zero row (the padding row, whose
 * cosine is undefined). n counts the rows that remain; fewer than 2 gives NaN.
 */
import type * as tf from '@tensorflow/tfjs';

export interface AnisotropyOptions {
  /** Row indices to leave out (special tokens). */
  exclude?: Iterable<number>;
  /** Only these rows (e.g. tokens seen in training); applied before `exclude`. */
  include?: Iterable<number>;
}

/** The rows `opts` keeps (include, then exclude), after checking the table's size and each index. */
function keptRows(fn: string, table: ArrayLike<number>, vocab: number, dim: number, opts: AnisotropyOptions): number[] {
  if (table.length !== vocab * dim) throw new Error(`${fn}: table has ${table.length} values, expected ${vocab} x ${dim}`);
  const skip = new Set(opts.exclude ?? []);
  const rows = opts.include === undefined ? Array.from({ length: vocab }, (_, i) => i) : [...new Set(opts.include)];
  for (const r of rows) if (r < 0 || r >= vocab) throw new Error(`${fn}: row ${r} outside 0..${vocab - 1}`);
  return rows.filter((r) => !skip.has(r));
}

/** Eq. 5 over a row-major [vocab, dim] table. */
export function anisotropy(table: Float32Array | Float64Array, vocab: number, dim: number, opts: AnisotropyOptions = {}): number {
  const sum = new Float64Array(dim);
  let n = 0;
  for (const r of keptRows('anisotropy', table, vocab, dim, opts)) {
    const off = r * dim;
    let sq = 0;
    for (let k = 0; k < dim; k++) sq += table[off + k]! * table[off + k]!;
    if (sq === 0) continue;
    const inv = 1 / Math.sqrt(sq);
    for (let k = 0; k < dim; k++) sum[k]! += table[off + k]! * inv;
    n++;
  }
  if (n < 2) return NaN;
  let total = 0;
  for (let k = 0; k < dim; k++) total += sum[k]! * sum[k]!;
  return (total - n) / (n * (n - 1));
}

/** Eq. 5 of a [V, d] tensor (reads it back once). */
export function tensorAnisotropy(weight: tf.Tensor2D, opts: AnisotropyOptions = {}): number {
  const [v, d] = weight.shape;
  return anisotropy(weight.dataSync() as Float32Array, v, d, opts);
}

/**
 * Self-rounding rate: the fraction of rows r (those kept by `opts`, as for `anisotropy`) whose
 * own embedding scores highest under the tied output layer, argmax_v e_r·e_v = r, with every
 * row of the table as a candidate. Below 1, decoding the clean embedding of r through z·Eᵀ
 * already gives another token (a larger-norm row nearby wins the dot product), so no denoiser
 * output near e_r can be read back as r. Ties count as misses. O(n V d), float64.
 */
export function selfRoundingRate(table: Float32Array | Float64Array, vocab: number, dim: number, opts: AnisotropyOptions = {}): number {
  let n = 0;
  let hits = 0;
  for (const r of keptRows('selfRoundingRate', table, vocab, dim, opts)) {
    const off = r * dim;
    let own = 0;
    for (let k = 0; k < dim; k++) own += table[off + k]! * table[off + k]!;
    if (own === 0) continue; // the padding row
    n++;
    let beaten = false;
    for (let v = 0; v < vocab && !beaten; v++) {
      if (v === r) continue;
      let s = 0;
      const o = v * dim;
      for (let k = 0; k < dim; k++) s += table[off + k]! * table[o + k]!;
      beaten = s >= own;
    }
    if (!beaten) hits++;
  }
  return n === 0 ? NaN : hits / n;
}
