/**
 * Registers the built-in tasks, models (with their named architectures) and criterions.
 * Explicit imports, no folder scanning: the registry lists exactly what is here.
 */
import { registerTask } from '../registry.js';
import { summarizationTask } from '../../tasks/summarization.js';
import { translationTask } from '../../tasks/translation.js';

let done = false;

export function registerBuiltins(): void {
  if (done) return;
  done = true;
  registerTask(translationTask);
  registerTask(summarizationTask);
}
