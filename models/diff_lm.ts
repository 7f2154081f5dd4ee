/**
 * Diff-LM baseline (Li et al. 2022, Diffusion-LM; reference-brief section 6) as named
 * architectures of the `difformer` model: the same encoder-decoder, with Difformer's three
 * additions switched off, so the comparison isolates them:
 *
 *   --no-embed-norm        no layer norm on the decoder input / embeddings
 *   --rescaling-factor 1   no noise factor: z_t = sqrt(ab_t) z0 + sqrt(1 - ab_t) eps
 *   --no-self-cond         no self-conditioning
 *   --no-apply-bert-init   fairseq init N(0, d^-1/2) of the embeddings; scaled by s = sqrt(d) this
 *                          gives z0 ~ N(0, 1) per dimension, as Diffusion-LM's nn.Embedding
 *
 * The rest of Diff-LM is chosen elsewhere:
 *   training   --criterion difformer --rounding-loss (CE on the true z0 instead of the anchor loss
 *              on z0hat; kept end to end, so the rounding and MSE terms also move E as in DLM)
 *   embeddings --init-embeddings FILE [--freeze-embeddings] (src/train/init_embeddings.ts)
 *   decoding   --clamping --clamping-mode l2 (nearest embedding by L2, DLM's denoised_fn_round;
 *              src/generate/diffusion_sampler.ts)
 *
 * Kept from Difformer (not Diffusion-LM): the encoder-decoder with cross-attention (DLM is an
 * unconditional LM), x0-prediction with a plain MSE (DLM adds a prior term and the t = 0 special
 * case), the `sqrt` schedule with T = 2000 (as DLM), length prediction and 2D parallel decoding.
 */
import type { DifformerOptions } from './difformer_options.js';
import { difformerArchitectures } from './difformer_options.js';

/** Diffusion-LM's switches over Difformer's defaults (see the file comment). */
const diffLmSwitches: Partial<DifformerOptions> = {
  embedNorm: false,
  embedNormAffine: false,
  embedNormBeforeProj: false,
  selfCond: false,
  selfCondBeforeProj: false,
  rescalingFactor: 1,
  vpRf: false,
  noiseSchedule: 'sqrt',
  diffusionSteps: 2000,
  applyBertInit: false,
};

/** Registered against the `difformer` model (src/cli/builtins.ts). */
export const diffLmArchitectures: Record<string, Partial<DifformerOptions>> = {
  // difformer's sizes: 6 + 6 layers, model dim 512, latent 128 (DLM's ROCStories embedding dim)
  diff_lm: { ...difformerArchitectures.difformer, ...diffLmSwitches },
  diff_lm_iwslt_de_en: { ...difformerArchitectures.difformer_iwslt_de_en, ...diffLmSwitches },
  // Not a published size: small enough to train in seconds on a CPU (tests, quickstart).
  diff_lm_tiny: { ...difformerArchitectures.difformer_tiny, ...diffLmSwitches },
};
