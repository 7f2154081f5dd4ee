#!/usr/bin/env bash
# Batch evaluation: every checkpoint x decoding setting on one data-bin, one table.
# Usage: bash examples/evaluate.sh DATA_BIN SUBSET CKPT... 
# Settings are lines of generate flags in $SETTINGS (default: Difformer b=1, 3x2, 7x3).
set -euo pipefail
DATA=${1:?usage: evaluate.sh DATA_BIN SUBSET CKPT...}; SUBSET=${2:?}; shift 2
cd "$(dirname "$0")/.."
SETTINGS=${SETTINGS:-$'--decoding-steps 20\n--decoding-steps 20 --length-beam-size 3 --noise-beam-size 2\n--decoding-steps 20 --length-beam-size 7 --noise-beam-size 3'}
printf '%-40s %-60s %8s %10s\n' checkpoint setting BLEU sent/s
while IFS= read -r setting; do
  for ckpt in "$@"; do
    start=$(date +%s.%N)
    line=$(node bin/difformer-generate.js "$DATA" --path "$ckpt" --gen-subset "$SUBSET" $setting \
      --batch-size 64 --remove-bpe sentencepiece --quiet --log-format none | tail -n 1)
    secs=$(echo "$(date +%s.%N) - $start" | bc)
    n=$(node --input-type=module -e "const{IndexedDataset}=await import('./dist/src/data/indexed_dataset.js');const fs=await import('node:fs');const f=fs.readdirSync(process.argv[1]).find(x=>x.startsWith(process.argv[2]+'.')&&x.endsWith('.idx'));console.log(new IndexedDataset(process.argv[1]+'/'+f.slice(0,-4)).length)" "$DATA" "$SUBSET")
    bleu=$(echo "$line" | sed -E 's/.*BLEU4 = ([0-9.]+).*/\1/')
    printf '%-40s %-60s %8s %10.2f\n' "$(basename "$ckpt")" "$setting" "$bleu" "$(echo "$n / $secs" | bc -l)"
  done
done <<< "$SETTINGS"
