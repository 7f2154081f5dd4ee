/**
 * BERT's WordPiece tokenization (google-research/bert `tokenization.py`, as in HuggingFace's
 * BertTokenizer), used by `difformer-preprocess --tokenizer wordpiece` for the paper's setup
 * (bert-base-multilingual / bert-base vocabularies):
 *
 *   BasicTokenizer   1. clean: drop NUL, U+FFFD and control characters; whitespace -> ' '
 *                    2. put spaces around CJK ideographs; NFC (as HuggingFace)
 *                    3. split on whitespace; per token: optional lowercasing, optional accent
 *                       stripping (NFD, drop combining marks, category Mn); split off every
 *                       punctuation character (ASCII symbols and Unicode P*) as its own token
 *   WordpieceTokenizer  greedy longest-match-first over code points; non-initial pieces carry
 *                    '##'; a word longer than 100 characters, or one that cannot be covered by
 *                    vocabulary pieces, becomes the unknown token as a whole
 *
 * As in HuggingFace, accent stripping follows lowercasing unless set explicitly
 * (bert-base-uncased: lowercase + strip; multilingual-cased: neither). BERT's special tokens
 * ([UNK], [CLS], [SEP], [PAD], [MASK]) in the text are kept whole.
 */
import { readTextFile } from './text.js';

export interface WordpieceOptions {
  lowercase: boolean;
  /** undefined: strip accents exactly when lowercasing (HuggingFace's default). */
  stripAccents: boolean | undefined;
  /** What an unknown word becomes: BERT's '[UNK]', or fairseq's '<unk>' for a data-bin. */
  unkToken: string;
  maxInputCharsPerWord: number;
}

export const wordpieceDefaults: Readonly<WordpieceOptions> = Object.freeze({
  lowercase: false,
  stripAccents: undefined,
  unkToken: '[UNK]',
  maxInputCharsPerWord: 100,
});

const NEVER_SPLIT = new Set(['[UNK]', '[CLS]', '[SEP]', '[PAD]', '[MASK]']);

/** Reads BERT's vocab.txt: one token per line, in id order. */
export function readWordpieceVocab(path: string): string[] {
  const lines = readTextFile(path).split('\n').map((l) => l.replace(/\r$/, ''));
  if (lines[lines.length - 1] === '') lines.pop();
  return lines;
}

function isWhitespace(ch: string): boolean {
  return ch === ' ' || ch === '\t' || ch === '\n' || ch === '\r' || /^\p{Zs}$/u.test(ch);
}

function isControl(ch: string): boolean {
  if (ch === '\t' || ch === '\n' || ch === '\r') return false;
  return /^\p{C}$/u.test(ch);
}

/** BERT counts all non-letter/number ASCII symbols as punctuation ('$', '^', '`', ...). */
export function isPunctuation(ch: string): boolean {
  const cp = ch.codePointAt(0)!;
  if ((cp >= 33 && cp <= 47) || (cp >= 58 && cp <= 64) || (cp >= 91 && cp <= 96) || (cp >= 123 && cp <= 126)) return true;
  return /^\p{P}$/u.test(ch);
}

/** The CJK Unified Ideographs blocks BERT spaces out (not Hangul, Hiragana or Katakana). */
function isCjk(cp: number): boolean {
  return (
    (cp >= 0x4e00 && cp <= 0x9fff) ||
    (cp >= 0x3400 && cp <= 0x4dbf) ||
    (cp >= 0x20000 && cp <= 0x2a6df) ||
    (cp >= 0x2a700 && cp <= 0x2b73f) ||
    (cp >= 0x2b740 && cp <= 0x2b81f) ||
    (cp >= 0x2b820 && cp <= 0x2ceaf) ||
    (cp >= 0xf900 && cp <= 0xfaff) ||
    (cp >= 0x2f800 && cp <= 0x2fa1f)
  );
}

export function stripAccents(text: string): string {
  return text.normalize('NFD').replace(/\p{Mn}/gu, '');
}

/** BasicTokenizer: cleaning, CJK spacing, whitespace and punctuation splitting, case/accents. */
export function basicTokenize(text: string, opts: Pick<WordpieceOptions, 'lowercase' | 'stripAccents'>): string[] {
  let cleaned = '';
  for (const ch of text) {
    const cp = ch.codePointAt(0)!;
    if (cp === 0 || cp === 0xfffd || isControl(ch)) continue;
    if (isWhitespace(ch)) cleaned += ' ';
    else if (isCjk(cp)) cleaned += ` ${ch} `;
    else cleaned += ch;
  }
  const strip = opts.stripAccents ?? opts.lowercase;
  const out: string[] = [];
  // NFC first (HuggingFace does), so decomposed and composed input tokenize alike
  for (let token of cleaned.normalize('NFC').split(' ')) {
    if (token === '') continue;
    if (NEVER_SPLIT.has(token)) {
      out.push(token);
      continue;
    }
    if (opts.lowercase) token = token.toLowerCase();
    if (strip) token = stripAccents(token);
    let current = '';
    for (const ch of token) {
      if (isPunctuation(ch)) {
        if (current) out.push(current);
        out.push(ch);
        current = '';
      } else {
        current += ch;
      }
    }
    if (current) out.push(current);
  }
  return out;
}

/** BERT's full tokenizer: basicTokenize, then greedy longest-match-first WordPiece. */
export class WordpieceTokenizer {
  private readonly vocab: ReadonlySet<string>;
  readonly opts: WordpieceOptions;

  constructor(vocab: Iterable<string>, opts: Partial<WordpieceOptions> = {}) {
    this.vocab = new Set(vocab);
    this.opts = { ...wordpieceDefaults, ...opts };
  }

  /** WordPiece pieces of one basic token. */
  wordpiece(word: string): string[] {
    if (NEVER_SPLIT.has(word)) return [word === '[UNK]' ? this.opts.unkToken : word];
    const chars = Array.from(word); // code points, as Python iterates a str
    if (chars.length > this.opts.maxInputCharsPerWord) return [this.opts.unkToken];
    const pieces: string[] = [];
    let start = 0;
    while (start < chars.length) {
      let end = chars.length;
      let found: string | undefined;
      while (start < end) {
        const sub = (start > 0 ? '##' : '') + chars.slice(start, end).join('');
        if (this.vocab.has(sub)) {
          found = sub;
          break;
        }
        end--;
      }
      if (found === undefined) return [this.opts.unkToken]; // the whole word, as BERT
      pieces.push(found);
      start = end;
    }
    return pieces;
  }

  tokenize(text: string): string[] {
    return basicTokenize(text, this.opts).flatMap((w) => this.wordpiece(w));
  }
}
