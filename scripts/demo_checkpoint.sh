#!/usr/bin/env bash
# `make demo-checkpoint`: the whole learning loop on this CPU, each stage resumable (rerun to continue):
#   random-init demo model -> scripted demonstrations -> CoT annotations -> SFT -> held-out evaluation
#   (model in full and masked mode, beside the replay and no-op floors, with and without object jitter)
#   of its bf16 export, which then carries the evaluation summaries.
# Settings come from the environment (defaults below); docs/training.md "The demo checkpoint" explains them.
set -euo pipefail

OUT=${DEMO_DIR:-runs/demo}
SUITE=${DEMO_SUITE:-libero_spatial}
TASKS=${DEMO_TASKS:-}                           # comma-separated task ids, e.g. 0,4 (default: every task of the suite)
TRAIN_INITS=${DEMO_TRAIN_INITS:-0-39}          # init states the demonstrations start from
EPISODES_PER_TASK=${DEMO_EPISODES_PER_TASK:-20}
EVAL_FIRST_INIT=${DEMO_EVAL_FIRST_INIT:-40}     # held out: never demonstrated
EVAL_TRIALS=${DEMO_EVAL_TRIALS:-10}
JITTER=${DEMO_JITTER:-0.02}                     # metres, demonstrations and the jittered evaluation
ACTION_NOISE=${DEMO_ACTION_NOISE:-0}            # DART offsets on executed x/y/z commands (dtvla-collect-demos)
# Render size of the evaluation (upstream: 256, resized to the model's input). The demo model sees 112 px and was
# trained on 112 px renders, so 128 px keeps it close to its data at a third of the rendering cost; the blind floors
# never look at the images, so their results do not depend on it.
EVAL_CAMERA_SIZE=${DEMO_EVAL_CAMERA_SIZE:-128}
IMAGE_SIZE=${DEMO_IMAGE_SIZE:-112}             # the demo model's input size: no resize
WORKERS=${DEMO_WORKERS:-2}
SFT_CONFIG=${DEMO_SFT_CONFIG:-config/train/demo.yaml}
SFT_RANKS=${DEMO_SFT_RANKS:-1}                  # 2: two gloo processes of one thread (torchrun), global batch x2
read -r -a SFT_ARGS <<< "${DEMO_SFT_ARGS:-}"    # extra dtvla-train-sft overrides, e.g. "--max-steps 4000"
export OMP_WAIT_POLICY=PASSIVE                  # spinning OpenMP threads starve the loader: ~3x slower SFT here

stage() { echo "== demo-checkpoint: $*" >&2; }

collect_tasks=(); eval_tasks=()
if [ -n "$TASKS" ]; then
  collect_tasks=(--tasks "$TASKS")
  read -r -a ids <<< "${TASKS//,/ }"
  eval_tasks=(--tasks "${ids[@]}")
fi

# DEMO_INIT: start SFT from these weights instead of a random init, e.g. assets/demo_checkpoint to go on training
# the committed demo policy (a run is limited to what fits one sitting on this CPU; the optimizer starts afresh).
INIT=${DEMO_INIT:-$OUT/init}
if [ -z "${DEMO_INIT:-}" ] && [ ! -f "$OUT/init/config.json" ]; then
  stage "random-init demo model -> $OUT/init"
  dtvla-tiny-checkpoint "$OUT/init" --preset demo
fi

if [ ! -f "$OUT/demos/meta/info.json" ]; then
  stage "scripted demonstrations -> $OUT/demos"
  dtvla-collect-demos --suite "$SUITE" "${collect_tasks[@]}" --init-states "$TRAIN_INITS" \
    --episodes-per-task "$EPISODES_PER_TASK" \
    --image-size "$IMAGE_SIZE" --object-jitter-m "$JITTER" --action-noise "$ACTION_NOISE" --fast-render \
    --workers "$WORKERS" --out "$OUT/demos"
fi
# The replay floor replays recorded commands open-loop: with action noise those are not what ran, so the floor gets
# its own demonstrations without noise (3 attempts per task, fewer if fewer init states are given; replay takes the
# first that succeeded).
REPLAY_DEMOS="$OUT/demos"
if [ "$ACTION_NOISE" != 0 ]; then
  REPLAY_DEMOS="$OUT/replay-demos"
  if [ ! -f "$REPLAY_DEMOS/meta/info.json" ]; then
    stage "demonstrations without noise for the replay floor -> $REPLAY_DEMOS"
    attempts=$(python -c 'import sys; from dtvla_sim_bridge.sim.suites import INIT_STATES, parse_index_ranges
print(min(3, len(parse_index_ranges(sys.argv[1], INIT_STATES, "DEMO_TRAIN_INITS"))))' "$TRAIN_INITS")
    dtvla-collect-demos --suite "$SUITE" "${collect_tasks[@]}" --init-states "$TRAIN_INITS" \
      --episodes-per-task "$attempts" \
      --image-size "$IMAGE_SIZE" --object-jitter-m "$JITTER" --fast-render --workers "$WORKERS" --out "$REPLAY_DEMOS"
  fi
fi

if [ ! -f "$OUT/dataset/meta/info.json" ]; then
  stage "CoT annotations -> $OUT/dataset"
  # The scripted expert's rotation commands are mostly exactly 0, so the default IQR outlier rule would drop every
  # frame that rotates (18% of a 188-demo collection) and clip rotations at a tenth of their range: keep all frames.
  dtvla-annotate "$OUT/demos" "$OUT/dataset" --tokenizer "$INIT" --outlier-iqr-multiple 0
fi

sft=(--config "$SFT_CONFIG" --dataset "$OUT/dataset" --init-checkpoint "$INIT" --output-dir "$OUT/sft" "${SFT_ARGS[@]}")
# A trained checkpoint keeps its action normalisation: its actions are bins of its own norm stats.
if [ -n "${DEMO_INIT:-}" ] && [ -f "$INIT/norm_stats.json" ]; then sft+=(--norm-stats "$INIT/norm_stats.json"); fi
if [ "$SFT_RANKS" -gt 1 ]; then
  sft=(env OMP_NUM_THREADS=1 torchrun --standalone --nproc_per_node "$SFT_RANKS" -m dtvla_training.sft.train "${sft[@]}")
else
  sft=(dtvla-train-sft "${sft[@]}")
fi
if [ -f "$OUT/sft/checkpoints/latest" ]; then "${sft[@]}" --resume; else "${sft[@]}"; fi
step="$(cat "$OUT/sft/checkpoints/latest")"
stage "trained: $OUT/sft/checkpoints/$step"
# Evaluate what ships: the bf16 export (bf16 weights decode slightly differently from the fp32 training step).
checkpoint="$OUT/export-$step"
if [ ! -f "$checkpoint/config.json" ]; then
  dtvla-export-checkpoint "$OUT/sft/checkpoints/$step" "$checkpoint" --dtype bfloat16
fi

evaluate() {  # name, then dtvla-eval options
  local name=$1; shift
  stage "evaluation $name -> $OUT/eval/$name"
  dtvla-eval --suite "$SUITE" "${eval_tasks[@]}" --first-init-state "$EVAL_FIRST_INIT" --trials "$EVAL_TRIALS" \
    --workers "$WORKERS" --camera-size "$EVAL_CAMERA_SIZE" --no-progress --out "$OUT/eval/$name" "$@"
}
for jitter in 0 "$JITTER"; do
  tag=$([ "$jitter" = 0 ] && echo fixed || echo "jitter$jitter")
  evaluate "full-$tag" --checkpoint "$checkpoint" --mode full --object-jitter-m "$jitter"
  evaluate "masked-$tag" --checkpoint "$checkpoint" --mode masked --object-jitter-m "$jitter"
  evaluate "replay-$tag" --policy replay --replay-dataset "$REPLAY_DEMOS" --object-jitter-m "$jitter"
  evaluate "noop-$tag" --policy noop --object-jitter-m "$jitter"
done

python -m dtvla_training.demos.eval_report "$OUT/eval" --out "$OUT/eval/demo_eval.json"
cp "$OUT/eval/demo_eval.json" "$OUT/eval/demo_eval.md" "$checkpoint/"   # dtvla-sim's banner reads them
stage "done: $checkpoint (copy it to assets/demo_checkpoint to make it the default of make sim)"
