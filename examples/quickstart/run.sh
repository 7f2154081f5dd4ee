#!/usr/bin/env bash
# Quickstart on the bundled German->English sample (examples/quickstart/data, 4k train pairs):
# preprocess (SentencePiece + joined dictionary) -> train a small Difformer -> generate with
# 2D parallel decoding (length beam x noise beam) -> score. A few minutes on 2 CPU cores.
# Run from the repository root after `npm ci && npm run build`. MAX_UPDATE=... trains longer.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-runs/quickstart}
MAX_UPDATE=${MAX_UPDATE:-150}
DATA=examples/quickstart/data
rm -rf "$OUT" && mkdir -p "$OUT"

# 1. raw text -> data-bin
node bin/difformer-preprocess.js --source-lang de --target-lang en \
  --trainpref $DATA/train --validpref $DATA/valid --testpref $DATA/test \
  --destdir "$OUT/data-bin" --joined-dictionary --spm-vocab-size 2000 --log-format none

# 2. train a small Difformer (anchor loss, embedding norm, noise factor, self-conditioning);
#    fairseq's init instead of the official BERT-style one, as the README advises for short budgets
node bin/difformer-train.js "$OUT/data-bin" --task translation --arch difformer_tiny \
  --criterion difformer --no-apply-bert-init --label-smoothing 0.1 --optimizer adam --lr 1e-3 \
  --lr-scheduler inverse_sqrt --warmup-updates 50 --max-tokens 2048 --seed 1 \
  --save-dir "$OUT/ckpt" --max-update "$MAX_UPDATE" --log-interval 50

# 3. 2D parallel decoding: 3 lengths x 2 noise draws per sentence, 20 steps
node bin/difformer-generate.js "$OUT/data-bin" --path "$OUT/ckpt/checkpoint_last.safetensors" \
  --gen-subset test --decoding-steps 20 --length-beam-size 3 --noise-beam-size 2 \
  --batch-size 64 --remove-bpe sentencepiece --seed 7 --log-format none > "$OUT/gen.out"
tail -n 1 "$OUT/gen.out"

# 4. score the hypotheses with sacreBLEU, and the copy-the-source floor for comparison
grep ^H- "$OUT/gen.out" | sort -t- -k2 -n | cut -f3- > "$OUT/hyp.txt"
node bin/difformer-score.js --sys "$OUT/hyp.txt" --ref $DATA/test.en --metric sacrebleu
echo "copy-the-source floor:"
node bin/difformer-score.js --sys $DATA/test.de --ref $DATA/test.en --metric sacrebleu
