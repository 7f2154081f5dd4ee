#!/usr/bin/env bash
# Quickstart on the bundled German->English sample (examples/quickstart/data):
# preprocess (SentencePiece + joined dictionary) -> score.
# Run from the repository root after `npm ci && npm run build`.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-runs/quickstart}
DATA=examples/quickstart/data
rm -rf "$OUT" && mkdir -p "$OUT"
bin=./bin

# 1. raw text -> data-bin
node $bin/difformer-preprocess.js --source-lang de --target-lang en \
  --trainpref $DATA/train --validpref $DATA/valid --testpref $DATA/test \
  --destdir "$OUT/data-bin" --joined-dictionary --spm-vocab-size 2000

# 2. the floor any translation model must beat: copy the German source unchanged
echo "copy-the-source floor on the test split:"
node $bin/difformer-score.js --sys $DATA/test.de --ref $DATA/test.en
node $bin/difformer-score.js --sys $DATA/test.de --ref $DATA/test.en --metric sacrebleu
