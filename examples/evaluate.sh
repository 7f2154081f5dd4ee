#!/usr/bin/env bash
# Batch evaluation: every checkpoint x decoding setting on one data-bin, one markdown table.
#
#   bash examples/evaluate.sh DATA_BIN SUBSET CKPT...
#
# Environment:
#   SETTINGS  lines of generate flags (default: Difformer K=20 with b=1, 3x2 and 7x3)
#   REF       raw reference file of SUBSET: adds sacreBLEU, or ROUGE-1/2/L F1 with METRIC=rouge
#   N         sentences to decode (0 = all)        OUT   where outputs go (default: a temp dir)
# Columns: sacreBLEU / ROUGE, fairseq BLEU4 (generate's last line), sentences/s as generate logs
# them (model loading excluded).
set -euo pipefail
DATA=$(realpath "${1:?usage: evaluate.sh DATA_BIN SUBSET CKPT...}"); SUBSET=${2:?}; shift 2
CKPTS=() # absolute paths, each part of a diff.safetensors:ar.safetensors pair
for c in "$@"; do IFS=: read -ra parts <<< "$c"; abs=(); for p in "${parts[@]}"; do abs+=("$(realpath "$p")"); done; CKPTS+=("$(IFS=:; echo "${abs[*]}")"); done
[ -n "${REF:-}" ] && REF=$(realpath "$REF")
OUT=${OUT:-$(mktemp -d)}; mkdir -p "$OUT"; OUT=$(realpath "$OUT"); echo "outputs: $OUT" >&2
N=${N:-0}
SETTINGS=${SETTINGS:-$'--decoding-steps 20\n--decoding-steps 20 --length-beam-size 3 --noise-beam-size 2\n--decoding-steps 20 --length-beam-size 7 --noise-beam-size 3'}
cd "$(dirname "$0")/.."
. examples/lib/decode_score.sh
head=sacreBLEU; [ "${METRIC:-bleu}" = rouge ] && head=R-1/R-2/R-L
printf '| %-32s | %-64s | %9s | %6s | %8s |\n|---|---|---:|---:|---:|\n' checkpoint setting "${REF:+$head}" BLEU4 sent/s
i=0
while IFS= read -r setting; do
  for ckpt in "${CKPTS[@]}"; do
    i=$((i + 1))
    # shellcheck disable=SC2086  # a setting is a list of flags
    r=$(decode_score "$OUT/run$i" "$DATA" "$ckpt" "$SUBSET" "$N" "${REF:--}" $setting) || exit 1
    read -r score bleu sps <<< "$r"
    printf '| %-32s | %-64s | %9s | %6s | %8s |\n' "$(basename "${ckpt%%:*}")" "$setting" "${REF:+$score}" "$bleu" "$sps"
  done
done <<< "$SETTINGS"
