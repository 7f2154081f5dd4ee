#!/usr/bin/env bash
# The paper's Table 2 in small: AR Transformer (b=1/5), CMLM (b=1/10), Diff-LM (b=1/10) and
# Difformer (b=1/10/20), each trained for the same cumulative time (--stop-time-hours), on the
# raw data-bin and, for the non-autoregressive models, on the AR teacher's distilled one.
# Prints one table (sacreBLEU on detokenized output, fairseq BLEU4, sentences/s); with
# TASK=summarization the models train on that task and the score is ROUGE-1/2/L F1.
#
#   bash examples/translation/table2.sh DATA_BIN REF_FILE [OUT]
#
# DATA_BIN from difformer-preprocess (joined dictionary, SentencePiece); REF_FILE: the raw target
# side of $SUBSET (default valid) for sacreBLEU. Every training resumes from its checkpoint_last,
# so the script can be stopped and rerun. Knobs (environment):
#   HOURS=1        training time per model          DIM=256 FFN=1024 LAYERS=3 HEADS=4
#   LATENT=128     latent (embedding) width of Diff-LM and Difformer (the official 128; an OUT
#                  trained with another width fails to resume: use a new OUT)
#   TEACHER_BEAM=1 beam of the distillation teacher  SUBSET=valid  N=0 (sentences, 0 = all)
#   TEACHER_FLAGS= more generation flags for the teacher, e.g. "--no-repeat-ngram-size 3": an
#                  undertrained teacher's loops ("CD CD CD ...", up to --max-len-b) otherwise
#                  become distilled targets (4% of debdesc-sum's at 1 hour)
#   DISTILL=1      0 skips distillation and the distilled rows
#   JOBS=1         non-autoregressive trainings run side by side (JOBS=2 THREADS=1 on 2 cores:
#                  every model then gets one core, so equal --stop-time-hours is equal compute)
#   THREADS=0      compute threads per training and decoding process (0 = backend default)
#   TASK=translation (or summarization)             MAXSRC=256 sources are cut to this many tokens
#                  (--truncate-source, kept in the checkpoints, so generation cuts them the same way)
#   MODELS="cmlm difflm difformer"  the non-autoregressive models to train and score (the AR
#                  Transformer always trains: it is the distillation teacher and the reranker)
# Rows marked AR choose among the b > 1 candidates with the AR model (teacher-forced mean
# log-prob: fairseq's external reranker, the official Difformer --ppl-mbr; its time is counted in
# sentences/s); CMLM's b = 10 is also shown with its own score (mask-predict's default).
# Recipe family (all models): Adam (0.9, 0.98), lr 1e-3, inverse_sqrt warmup 500, clip 1.0,
# dropout 0.1, label smoothing 0.1, --max-tokens 2048 --update-freq 2, shared embeddings.
set -euo pipefail
DATA=$(realpath "${1:?usage: table2.sh DATA_BIN REF_FILE [OUT]}")
REF=$(realpath "${2:?usage: table2.sh DATA_BIN REF_FILE [OUT]}")
OUT=$(realpath -m "${3:-runs/table2}")
HOURS=${HOURS:-1}; LATENT=${LATENT:-128}; DIM=${DIM:-256}; FFN=${FFN:-1024}; LAYERS=${LAYERS:-3}; HEADS=${HEADS:-4}
TEACHER_BEAM=${TEACHER_BEAM:-1}; SUBSET=${SUBSET:-valid}; N=${N:-0}; DISTILL=${DISTILL:-1}
TASK=${TASK:-translation}; MAXSRC=${MAXSRC:-256}; JOBS=${JOBS:-1}; THREADS=${THREADS:-0}
MODELS=${MODELS:-cmlm difflm difformer}
seen=" "
for m in $MODELS; do
  case $m in cmlm|difflm|difformer) ;; *) echo "MODELS: unknown model '$m' (cmlm, difflm, difformer)" >&2; exit 1;; esac
  [[ $seen == *" $m "* ]] && { echo "MODELS: '$m' twice" >&2; exit 1; }
  seen+="$m "
done
METRIC=bleu; [ "$TASK" = summarization ] && METRIC=rouge; export METRIC
# summaries are much shorter than their documents: tgt - src + 128 (the official length classes)
# falls below 0 for long documents, so the diffusion models predict the summary length itself
lenpred=(); [ "$TASK" = summarization ] && lenpred=(--no-pred-length-offset)
cd "$(dirname "$0")/../.."
mkdir -p "$OUT"
B=bin

common=(--optimizer adam --adam-betas '(0.9, 0.98)' --lr 1e-3 --lr-scheduler inverse_sqrt
  --warmup-updates 500 --clip-norm 1.0 --dropout 0.1 --label-smoothing 0.1
  --max-tokens 2048 --update-freq 2 --seed 1 --stop-time-hours "$HOURS" --max-update 0
  --max-source-positions "$MAXSRC" --truncate-source --max-target-positions 256
  --save-interval-updates 200 --keep-interval-updates 1 --disable-validation --log-format json --log-interval 50
  --threads "$THREADS")
layers=(--encoder-layers "$LAYERS" --decoder-layers "$LAYERS" --encoder-attention-heads "$HEADS"
  --decoder-attention-heads "$HEADS" --encoder-ffn-embed-dim "$FFN" --decoder-ffn-embed-dim "$FFN")
tdims=(--encoder-embed-dim "$DIM" --decoder-embed-dim "$DIM" --share-all-embeddings)

train() { # NAME DATA ARGS...
  local name=$1 data=$2; shift 2
  echo "== train $name ($HOURS h)" >&2
  node $B/difformer-train.js "$data" --task "$TASK" --save-dir "$OUT/$name" "${common[@]}" "${layers[@]}" "$@" \
    2>> "$OUT/$name.log" | tail -n 0
}
ar() { train "$1" "$2" --arch transformer_tiny "${tdims[@]}" --criterion label_smoothed_cross_entropy --weight-decay 0.0001; }
cmlm() { train "$1" "$2" --arch cmlm_tiny "${tdims[@]}" --criterion nat_loss --weight-decay 0.01; }
difflm() { train "$1" "$2" --arch diff_lm_tiny --model-dim "$DIM" --latent-dim "$LATENT" --criterion difformer --rounding-loss --label-smoothing 0 --weight-decay 0.01 "${lenpred[@]}"; }
# fairseq init, not the official BERT-style one: with BERT init and this short recipe the gettext
# Difformer never learned to read the source (README, "On a small budget")
difformer() { train "$1" "$2" --arch difformer_tiny --model-dim "$DIM" --latent-dim "$LATENT" --criterion difformer --weight-decay 0.01 --no-apply-bert-init "${lenpred[@]}"; }

. examples/lib/decode_score.sh
row() { # LABEL DATA CKPT FLAGS...
  local label=$1 data=$2 ckpt=$3; shift 3
  local score bleu sps
  local r
  r=$(decode_score "$OUT/gen.$(echo "$label" | tr -c 'A-Za-z0-9=\n' '_')" "$data" "$ckpt" "$SUBSET" "$N" "$REF" --threads "$THREADS" "$@") || exit 1
  read -r score bleu sps <<< "$r"
  printf '| %-34s | %14s | %8s | %8s |\n' "$label" "$score" "$bleu" "$sps" | tee -a "$OUT/table.md"
}

ar ar "$DATA"
# distill.log is written last: its presence means a finished distillation (else it resumes)
if [ "$DISTILL" = 1 ] && [ ! -e "$OUT/distilled/distill.log" ]; then
  echo "== distill the training set with the AR teacher (beam $TEACHER_BEAM${TEACHER_FLAGS:+ $TEACHER_FLAGS})" >&2
  # shellcheck disable=SC2086  # TEACHER_FLAGS is a list of flags
  node $B/difformer-distill.js "$DATA" --path "$OUT/ar/checkpoint_last.safetensors" --destdir "$OUT/distilled" \
    --beam "$TEACHER_BEAM" --batch-size 128 --log-format none ${TEACHER_FLAGS:-}
fi
sets=(raw); [ "$DISTILL" = 1 ] && sets+=(kd)
[[ $JOBS =~ ^[1-9][0-9]*$ ]] || { echo "JOBS must be a positive integer (got '$JOBS')" >&2; exit 1; }
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT # a failure or ^C stops the other trainings too
# each training leaves NAME.rc with its exit status: `wait PID` cannot be trusted for a job that
# ended hours before (bash may no longer know the pid: "not a child of this shell")
spawn() { # at most $JOBS trainings at once
  while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do sleep 5; done
  rm -f "$OUT/$2.rc"
  ( "$@"; echo $? > "$OUT/$2.rc" ) &
  pids+=($!)
}
names=()
for s in "${sets[@]}"; do
  d=$DATA; [ "$s" = kd ] && d=$OUT/distilled
  for m in $MODELS; do spawn "$m" "${m}_$s" "$d"; names+=("${m}_$s"); done
done
wait
for n in "${names[@]}"; do
  [ "$(cat "$OUT/$n.rc" 2>/dev/null)" = 0 ] || { echo "training $n failed (see $OUT/$n.log)" >&2; exit 1; }
done
pids=()

score=sacreBLEU; [ "$METRIC" = rouge ] && score=R-1/R-2/R-L
printf '| %-34s | %14s | %8s | %8s |\n|---|---:|---:|---:|\n' "model (b)" "$score" BLEU4 "sent/s" > "$OUT/table.md"
cat "$OUT/table.md"
AR=$OUT/ar/checkpoint_last.safetensors
row "Transformer (b=1)" "$DATA" "$AR" --beam 1
row "Transformer (b=5)" "$DATA" "$AR" --beam 5
for s in "${sets[@]}"; do
  for m in $MODELS; do
    c=$OUT/${m}_$s/checkpoint_last.safetensors
    case $m in
    cmlm)
      it=(--iter-decode-max-iter 10 --iter-decode-force-max-iter)
      row "CMLM $s (b=1)" "$DATA" "$c" "${it[@]}"
      row "CMLM $s (b=10, own score)" "$DATA" "$c" "${it[@]}" --iter-decode-with-beam 10
      row "CMLM $s (b=10, AR)" "$DATA" "$c:$AR" "${it[@]}" --iter-decode-with-beam 10 --iter-decode-with-external-reranker ;;
    difflm)
      cl=(--decoding-steps 20 --clamping --clamping-mode l2)
      row "Diff-LM $s (b=1)" "$DATA" "$c" "${cl[@]}"
      row "Diff-LM $s (b=10, 5x2, AR)" "$DATA" "$c:$AR" "${cl[@]}" --length-beam-size 5 --noise-beam-size 2 --candidate-selection ar-rerank ;;
    difformer)
      row "Difformer $s (b=1)" "$DATA" "$c" --decoding-steps 20
      row "Difformer $s (b=10, 5x2, AR)" "$DATA" "$c:$AR" --decoding-steps 20 --length-beam-size 5 --noise-beam-size 2 --candidate-selection ar-rerank
      row "Difformer $s (b=20, 5x4, AR)" "$DATA" "$c:$AR" --decoding-steps 20 --length-beam-size 5 --noise-beam-size 4 --candidate-selection ar-rerank ;;
    esac
  done
done
echo "table: $OUT/table.md"
