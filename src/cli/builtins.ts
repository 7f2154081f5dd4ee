/**
 * Registers the built-in tasks, models (with their named architectures) and criterions.
 * Explicit imports, no folder scanning: the registry lists exactly what is here.
 */
import { knownNames, registerArchitecture, registerCriterion, registerModel, registerTask } from '../registry.js';
import { labelSmoothedCrossEntropyComponent } from '../../criterions/label_smoothed_cross_entropy.js';
import { transformerArchitectures, transformerComponent } from '../../models/transformer_component.js';
import { difformerArchitectures, difformerModelComponent } from '../../models/difformer.js';
import { difformerCriterionComponent } from '../../criterions/difformer.js';
import { cmlmArchitectures, cmlmModelComponent } from '../../models/cmlm.js';
import { natLossCriterionComponent } from '../../criterions/nat_loss.js';
import { diffLmArchitectures } from '../../models/diff_lm.js';
import { summarizationTask } from '../../tasks/summarization.js';
import { translationTask } from '../../tasks/translation.js';

/** Registers the built-ins unless the registry already has them (after resetRegistry it has not). */
export function registerBuiltins(): void {
  if (knownNames().tasks.includes(translationTask.name)) return;
  registerTask(translationTask);
  registerTask(summarizationTask);
  registerModel(transformerComponent);
  for (const [arch, preset] of Object.entries(transformerArchitectures)) registerArchitecture(transformerComponent.name, arch, preset);
  registerCriterion(labelSmoothedCrossEntropyComponent);
  registerModel(difformerModelComponent);
  for (const [arch, preset] of Object.entries(difformerArchitectures)) registerArchitecture(difformerModelComponent.name, arch, preset);
  registerCriterion(difformerCriterionComponent);
  // Diff-LM baseline: named configurations of the difformer model (models/diff_lm.ts)
  for (const [arch, preset] of Object.entries(diffLmArchitectures)) registerArchitecture(difformerModelComponent.name, arch, preset);
  // CMLM / Mask-Predict baseline (models/cmlm.ts, criterions/nat_loss.ts)
  registerModel(cmlmModelComponent);
  for (const [arch, preset] of Object.entries(cmlmArchitectures)) registerArchitecture(cmlmModelComponent.name, arch, preset);
  registerCriterion(natLossCriterionComponent);
}
