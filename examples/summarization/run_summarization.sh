#!/usr/bin/env bash
# Summarization with Difformer: preprocess -> train -> average -> generate 5x2 -> ROUGE.
# Usage: bash examples/summarization/run_summarization.sh RAW_DIR   (resumable: rerun to continue)
# after `npm run build`. SCALE=small: a tiny model and 2k updates (a CPU pipeline check);
# OUT: where the data-bin and checkpoints go (default runs/summarization).
set -euo pipefail
cd "$(dirname "$0")/../.."
RAW=${1:?usage: run_summarization.sh RAW_DIR with {train,valid,test}.{src,tgt}}
OUT=${OUT:-runs/summarization}
SCALE=${SCALE:-paper}
D="node bin"
# save (and so validate, as fairseq) every N updates: checkpoint.best_* come from these, averaging needs 5
if [ "$SCALE" = small ]; then ARCH=difformer_tiny; UPD=2000; TOK=4096; LR=1e-3; WARM=500; VALID=200
else ARCH=difformer_base; UPD=50000; TOK=8000; LR=5e-4; WARM=10000; VALID=2000; fi
mkdir -p "$OUT"
TEST=""; [ -f "$RAW/test.src" ] && TEST="--testpref $RAW/test"
[ -d "$OUT/data-bin" ] || $D/difformer-preprocess.js -s src -t tgt --trainpref "$RAW/train" \
  --validpref "$RAW/valid" $TEST --destdir "$OUT/data-bin" --joined-dictionary --spm-vocab-size 8000
$D/difformer-train.js "$OUT/data-bin" --task summarization --arch $ARCH --criterion difformer \
  --label-smoothing 0.1 --rescaling-factor 4 --no-pred-length-offset --optimizer adam --adam-betas '(0.9, 0.98)' --lr $LR \
  --lr-scheduler inverse_sqrt --warmup-updates $WARM --clip-norm 1 --weight-decay 0.01 \
  --max-tokens $TOK --max-update $UPD --max-source-positions 512 --truncate-source --save-dir "$OUT/difformer" \
  --eval-bleu --decoding-steps 20 --best-checkpoint-metric rougeL --maximize-best-checkpoint-metric \
  --keep-best-checkpoints 5 --save-interval-updates $VALID --keep-interval-updates 1
$D/difformer-average-checkpoints.js --inputs "$OUT/difformer" --num-best-checkpoints 5 --output "$OUT/difformer/avg5.safetensors"
SUBSET=test; [ -n "$TEST" ] || SUBSET=valid
$D/difformer-generate.js "$OUT/data-bin" --path "$OUT/difformer/avg5.safetensors" --gen-subset $SUBSET \
  --decoding-steps 20 --length-beam-size 5 --noise-beam-size 2 --batch-size 30 --remove-bpe sentencepiece --quiet
