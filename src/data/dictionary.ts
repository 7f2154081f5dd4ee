/**
 * fairseq's Dictionary (fairseq/data/dictionary.py, v0.10.2): ids 0-3 are `<s>`, `<pad>`,
 * `</s>`, `<unk>`; `dict.txt` lists `token count` lines (specials not written) in descending
 * count order with alphabetical ties; `madeupwordNNNN 0` entries pad the size to a multiple of
 * the padding factor. Files we write load in fairseq and vice versa.
 */
import { createHash } from 'node:crypto';
import { DifformerError } from '../errors.js';

export const BOS = '<s>';
export const PAD = '<pad>';
export const EOS = '</s>';
export const UNK = '<unk>';

export class Dictionary {
  readonly symbols: string[] = [];
  readonly counts: number[] = [];
  private readonly indices = new Map<string, number>();
  readonly bosIndex: number;
  readonly padIndex: number;
  readonly eosIndex: number;
  readonly unkIndex: number;
  /** Number of special symbols at the start (never written to dict.txt). */
  readonly nspecial: number;

  constructor() {
    this.bosIndex = this.addSymbol(BOS);
    this.padIndex = this.addSymbol(PAD);
    this.eosIndex = this.addSymbol(EOS);
    this.unkIndex = this.addSymbol(UNK);
    this.nspecial = this.symbols.length;
  }

  get size(): number {
    return this.symbols.length;
  }

  addSymbol(word: string, n = 1, overwrite = false): number {
    const idx = this.indices.get(word);
    if (idx !== undefined && !overwrite) {
      this.counts[idx]! += n;
      return idx;
    }
    const i = this.symbols.length;
    this.indices.set(word, i);
    this.symbols.push(word);
    this.counts.push(n);
    return i;
  }

  index(sym: string): number {
    return this.indices.get(sym) ?? this.unkIndex;
  }

  has(sym: string): boolean {
    return this.indices.has(sym);
  }

  symbol(i: number): string {
    return i >= 0 && i < this.symbols.length ? this.symbols[i]! : UNK;
  }

  /** Counts whitespace tokens of one line (fairseq also counts one EOS per line, not saved). */
  addLine(line: string): void {
    for (const w of tokenize(line)) this.addSymbol(w);
    this.counts[this.eosIndex]! += 1;
  }

  /**
   * fairseq's finalize: keep symbols with count >= threshold, at most nwords in total
   * (specials included; -1 = all), sorted by count descending with ties alphabetical (fairseq
   * inserts in sorted order and sorts stably), padded with madeupwordNNNN to a multiple.
   */
  finalize(threshold = -1, nwords = -1, paddingFactor = 8): void {
    const limit = nwords <= 0 ? this.size : nwords;
    const special = this.symbols.slice(0, this.nspecial);
    const specialCounts = this.counts.slice(0, this.nspecial);
    const rest: [string, number][] = [];
    for (let i = this.nspecial; i < this.symbols.length; i++) rest.push([this.symbols[i]!, this.counts[i]!]);
    rest.sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
    const kept = rest.filter(([, c]) => c >= threshold).slice(0, Math.max(0, limit - this.nspecial));
    this.reset(special, specialCounts);
    for (const [w, c] of kept) this.addSymbol(w, c);
    if (paddingFactor > 1) {
      let i = 0;
      while (this.size % paddingFactor !== 0) {
        this.addSymbol(`madeupword${String(i).padStart(4, '0')}`, 0);
        i++;
      }
    }
  }

  private reset(symbols: string[], counts: number[]): void {
    this.symbols.length = 0;
    this.counts.length = 0;
    this.indices.clear();
    symbols.forEach((s, i) => {
      this.indices.set(s, i);
      this.symbols.push(s);
      this.counts.push(counts[i]!);
    });
  }

  /** Token ids of a line plus EOS (fairseq's encode_line with append_eos). */
  encodeLine(line: string, appendEos = true): Int32Array {
    const words = tokenize(line);
    const out = new Int32Array(words.length + (appendEos ? 1 : 0));
    for (let i = 0; i < words.length; i++) out[i] = this.index(words[i]!);
    if (appendEos) out[words.length] = this.eosIndex;
    return out;
  }

  /** Ids back to text, dropping pad and EOS (fairseq's string() without bpe removal). */
  string(ids: ArrayLike<number>, opts: { keepBos?: boolean; escapeUnk?: boolean; unkString?: string } = {}): string {
    const out: string[] = [];
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i]!;
      if (id === this.padIndex || id === this.eosIndex) continue;
      if (id === this.bosIndex && !opts.keepBos) continue;
      // fairseq prints reference <unk> as <<unk>> so that it never matches a hypothesis
      out.push(id !== this.unkIndex ? this.symbol(id) : opts.escapeUnk ? '<<unk>>' : opts.unkString ?? this.symbol(id));
    }
    return out.join(' ');
  }

  /** dict.txt contents: non-special symbols with counts. */
  toText(): string {
    const lines: string[] = [];
    for (let i = this.nspecial; i < this.size; i++) lines.push(`${this.symbols[i]} ${this.counts[i]}`);
    return lines.length ? `${lines.join('\n')}\n` : '';
  }

  /** A short identity used in checkpoints to detect a dictionary mismatch. */
  hash(): string {
    return createHash('sha256').update(this.symbols.join('\n')).digest('hex').slice(0, 16);
  }

  /** Parses dict.txt text; `source` names the file in error messages. */
  static fromText(text: string, source = 'dictionary'): Dictionary {
    const d = new Dictionary();
    const lines = text.split('\n');
    lines.forEach((raw, lineNo) => {
      const line = raw.replace(/\r$/, '');
      if (line.trim() === '') return;
      let body = line;
      let overwrite = false;
      if (body.endsWith(' #fairseq:overwrite')) {
        overwrite = true;
        body = body.slice(0, -' #fairseq:overwrite'.length);
      }
      const sp = body.lastIndexOf(' ');
      const word = sp > 0 ? body.slice(0, sp) : '';
      const countStr = sp > 0 ? body.slice(sp + 1) : '';
      if (!word || !/^\d+$/.test(countStr)) {
        throw new DifformerError(
          'DIFFORMER_BAD_DICTIONARY',
          `${source}:${lineNo + 1}: malformed dictionary line '${line.slice(0, 60)}' (expected '<token> <count>')`,
        );
      }
      if (d.has(word) && !overwrite) {
        throw new DifformerError(
          'DIFFORMER_BAD_DICTIONARY',
          `${source}:${lineNo + 1}: duplicate word '${word}' (add '#fairseq:overwrite' to allow it)`,
        );
      }
      d.addSymbol(word, Number(countStr), overwrite);
    });
    return d;
  }
}

export function tokenize(line: string): string[] {
  const t = line.trim();
  return t === '' ? [] : t.split(/\s+/);
}

/** Throws naming both sizes when two dictionaries that must agree do not. */
export function assertSameDictionary(expected: Dictionary, actual: Dictionary, what: string): void {
  if (expected.size !== actual.size || expected.hash() !== actual.hash()) {
    throw new DifformerError(
      'DIFFORMER_DICTIONARY_MISMATCH',
      `${what}: dictionary mismatch (${expected.size} types vs ${actual.size} types${
        expected.size === actual.size ? ', same size but different symbols' : ''
      })`,
    );
  }
}
