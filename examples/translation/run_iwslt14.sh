#!/usr/bin/env bash
# The paper's IWSLT14 De-En pipeline: AR teacher -> distill -> Difformer -> average best 5
# -> generate 7x3 with AR reranking. Every step is resumable: rerun the script to continue.
# SCALE=small uses small models and budgets (a pipeline check on a CPU).
#   bash examples/translation/prepare-iwslt14.sh      # once, on a machine with internet
#   npm run build && [SCALE=small] [OUT=runs/iwslt14] bash examples/translation/run_iwslt14.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
RAW=examples/translation/iwslt14
OUT=${OUT:-runs/iwslt14}
SCALE=${SCALE:-paper}
D="node bin"
[ -f "$RAW/train.de" ] || { echo "no $RAW/train.de: run examples/translation/prepare-iwslt14.sh first" >&2; exit 1; }
# VALID: how often Difformer saves and so validates (checkpoint.best_* come from these; averaging needs 5)
if [ "$SCALE" = small ]; then
  AR_ARCH=transformer_tiny; DF_ARCH=difformer_tiny; AR_UPD=2000; DF_UPD=4000; TOK=4096; WARM=500; AR_WARM=500; LR=1e-3
  VALID=(--save-interval-updates 400 --keep-interval-updates 1)
else
  AR_ARCH=transformer_iwslt_de_en; DF_ARCH=difformer_iwslt_de_en; AR_UPD=50000; DF_UPD=300000; TOK=8000; WARM=10000; AR_WARM=4000; LR=5e-4
  VALID=(--validate-interval 5)
fi
mkdir -p "$OUT"
[ -d "$OUT/data-bin" ] || $D/difformer-preprocess.js -s de -t en --trainpref $RAW/train --validpref $RAW/valid \
  --testpref $RAW/test --destdir "$OUT/data-bin" --joined-dictionary --spm-vocab-size 10000

# 1. AR teacher (also the reranker): fairseq's IWSLT recipe
$D/difformer-train.js "$OUT/data-bin" --arch $AR_ARCH --share-all-embeddings --optimizer adam \
  --adam-betas '(0.9, 0.98)' --clip-norm 0.0 --lr $LR --lr-scheduler inverse_sqrt --warmup-updates $AR_WARM \
  --dropout 0.3 --weight-decay 0.0001 --criterion label_smoothed_cross_entropy --label-smoothing 0.1 \
  --max-tokens 4096 --max-update $AR_UPD --save-dir "$OUT/ar" --eval-bleu --beam 5 --max-len-a 1.2 --max-len-b 10 \
  --eval-bleu-max-sentences 1000 --best-checkpoint-metric bleu --maximize-best-checkpoint-metric --no-epoch-checkpoints

# 2. sequence-level distillation of the training set (same dictionary)
[ -f "$OUT/data-bin-distill/dict.de.txt" ] || $D/difformer-distill.js "$OUT/data-bin" \
  --path "$OUT/ar/checkpoint_best.safetensors" --destdir "$OUT/data-bin-distill" --beam 5 --max-tokens 8000

# 3. Difformer on the distilled data (official flags)
$D/difformer-train.js "$OUT/data-bin-distill" --arch $DF_ARCH --criterion difformer --label-smoothing 0.1 \
  --rescaling-factor 4 --dropout 0.3 --optimizer adam --adam-betas '(0.9, 0.98)' --lr $LR \
  --lr-scheduler inverse_sqrt --warmup-updates $WARM --warmup-init-lr 1e-7 --min-lr 1e-9 --clip-norm 1 \
  --weight-decay 0.01 --max-tokens $TOK --max-update $DF_UPD --save-dir "$OUT/difformer" \
  --eval-bleu --eval-tokenized-bleu --decoding-steps 20 "${VALID[@]}" \
  --best-checkpoint-metric bleu --maximize-best-checkpoint-metric --keep-best-checkpoints 5 --keep-last-epochs 10

# 4. average the best 5, 5. decode 7 x 3 with early stopping and AR reranking
$D/difformer-average-checkpoints.js --inputs "$OUT/difformer" --num-best-checkpoints 5 --output "$OUT/difformer/avg5.safetensors"
$D/difformer-generate.js "$OUT/data-bin" --path "$OUT/difformer/avg5.safetensors:$OUT/ar/checkpoint_best.safetensors" \
  --gen-subset test --decoding-steps 20 --decoding-early-stopping 5 --length-beam-size 7 --noise-beam-size 3 \
  --candidate-selection ar-rerank --batch-size 50 --remove-bpe sentencepiece --quiet
