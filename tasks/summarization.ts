/**
 * The `summarization` task: translation's data loading (document -> summary as a language
 * pair, e.g. src -> tgt) with ROUGE as its metric, as used for Gigaword-style headline data.
 */
import { makeTranslationLikeTask } from './translation.js';

export const summarizationTask = makeTranslationLikeTask(
  'summarization',
  'summarize a document into a short text (ROUGE by default)',
  'rouge',
);
