/** Subword pieces back to words, for printing and for scoring. */

/** fairseq's --remove-bpe / --post-process: 'sentencepiece', 'wordpiece', 'subword_nmt', 'none' or a marker. */
export function postProcess(text: string, kind: string | undefined): string {
  if (!kind) return text;
  if (kind === 'sentencepiece') return text.replace(/ /g, '').replace(/\u2581/g, ' ').trim();
  // BERT WordPiece (preprocess --tokenizer wordpiece): '##' pieces join the previous one
  if (kind === 'wordpiece') return text.replace(/ ##/g, '').trim();
  if (kind === 'none') return text;
  const marker = kind === 'subword_nmt' ? '@@ ' : kind;
  return `${text} `.split(marker).join('').trimEnd();
}
