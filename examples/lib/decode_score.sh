# Sourced by the example scripts: one decoding run, scored.
#
#   decode_score OUT_PREFIX DATA_BIN CKPT SUBSET N REF [generate flags...]
#
# Runs difformer-generate (N sentences of SUBSET, 0 = all; seed 7), writes OUT_PREFIX.txt (its
# output), .log (json log), .hyp (H- lines in corpus order), and prints one line
# "SACREBLEU BLEU4 SENTENCES_PER_S": sacreBLEU (13a) against the raw reference file REF ("-"
# or empty: not computed, printed as "-"), fairseq's BLEU4 from generate's last line, and
# generate's own sentences/s (model loading excluded).
# With METRIC=rouge in the environment the first field is ROUGE-1/2/L F1 (x100) instead.
# Expects the caller's working directory to be the repository root (bin/ holds the commands).
# A finished decoding is reused when the same call comes again with the same checkpoint files
# (size and time), so an interrupted table resumes instead of decoding every row again;
# DECODE_REUSE=0 decodes anew.
decode_score() {
  local out=$1 data=$2 ckpt=$3 subset=$4 n=$5 ref=$6
  shift 6
  local key part
  key=$(printf '%s\n' "$data" "$ckpt" "$subset" "$n" "$@")
  IFS=: read -ra part <<< "$ckpt"
  key+=$'\n'$(stat -c '%s %Y' "${part[@]}" 2>/dev/null || stat -f '%z %m' "${part[@]}") # GNU, or BSD/macOS
  if [ "${DECODE_REUSE:-1}" = 1 ] && [ -f "$out.args" ] && [ "$(cat "$out.args")" = "$key" ]; then
    echo "decode_score: reusing $out.txt (same call, same checkpoints)" >&2
  else
    rm -f "$out.args"
    node bin/difformer-generate.js "$data" --path "$ckpt" --gen-subset "$subset" --batch-size 100 \
      --max-sentences-to-generate "$n" --remove-bpe sentencepiece --seed 7 --log-format json "$@" \
      > "$out.txt" 2> "$out.log" || { echo "decode_score: generate failed, see $out.log" >&2; return 1; }
    printf '%s' "$key" > "$out.args"
  fi
  # the first N lines of REF are the reference: a skipped sentence would misalign them
  if grep -q 'skipped (longer than the model' "$out.log"; then
    echo "decode_score: generate skipped sentences (see $out.log); the reference would not line up" >&2; return 1
  fi
  { grep '^H-' "$out.txt" || true; } | sed 's/^H-//' | sort -n -k1,1 | cut -f3- > "$out.hyp"
  local score=- bleu sps
  if [ -n "$ref" ] && [ "$ref" != - ]; then
    if [ "$n" != 0 ]; then head -n "$n" "$ref" > "$out.ref"; ref=$out.ref; fi
    if [ "${METRIC:-bleu}" = rouge ]; then
      score=$(node bin/difformer-score.js --metric rouge -s "$out.hyp" -r "$ref" --log-format none | sed -E 's#.*/##' | paste -sd/) || return 1
    else
      score=$(node bin/difformer-score.js --sacrebleu -s "$out.hyp" -r "$ref" --log-format none | sed -E 's/^[^=]*= ([0-9.]+).*/\1/') || return 1
    fi
  fi
  bleu=$(tail -n 1 "$out.txt" | sed -nE 's/.*BLEU4 = ([0-9.]+).*/\1/p')
  # the json log line of generate (a --log-format in the flags would replace json: then "-")
  sps=$({ grep -o '"sentencesPerSecond":[0-9.e+-]*' "$out.log" || true; } | tail -n 1 | cut -d: -f2)
  [[ $sps =~ ^[0-9.e+-]+$ ]] && sps=$(printf '%.2f' "$sps")
  printf '%s %s %s\n' "${score:--}" "${bleu:--}" "${sps:--}"
}
