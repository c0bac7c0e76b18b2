#!/usr/bin/env bash
# The paper preset (ViT-Tiny/14, 224 px, ~18M parameters) on the paced Push-T recipe, on one GPU, in
# a fixed wall-time budget: collect, time a training step, train for the steps that fit, evaluate on
# held-out pairs of a test file with another seed, probe, and time CEM solves. Everything it reports
# (JSON, markdown, the training log and card) is bundled after each stage into $OUT/results.tgz, so a
# run cut short still returns what it finished; the data and weights stay in $WORK.
#
#   OUT=runs/gpu bash benchmarks/gpu_paper_pusht.sh                        # on a CUDA machine
#   PRESET=tiny SIZE=32 EPISODES=6 TEST_EPISODES=4 TRAIN_SECONDS=20 \
#     EVAL_EPISODES=4 OUT=runs/gpu_smoke bash benchmarks/gpu_paper_pusht.sh  # a CPU smoke run
set -euo pipefail
export PYTHONUNBUFFERED=1
OUT=${OUT:?set OUT to the folder for the results}
WORK=${WORK:-/tmp/lewm_gpu}
PRESET=${PRESET:-paper}
SIZE=${SIZE:-224}
EPISODES=${EPISODES:-300}            # training episodes (seed 0: the first episodes of the CPU model's file)
TEST_EPISODES=${TEST_EPISODES:-100}  # test file, seed 1
WORKERS=${WORKERS:-14}
TRAIN_SECONDS=${TRAIN_SECONDS:-210}  # budget for the optimizer steps alone
EVAL_EPISODES=${EVAL_EPISODES:-50}
EVAL_SEEDS=${EVAL_SEEDS:-0}
BATCH=${BATCH:-128}
PROBE=${PROBE:-1}                    # 0 skips the probe and the CEM timing (short device budgets)
LR=${LR:-2e-4}                       # the paper's 5e-5 suits its ~100k steps; this run has a few thousand
PACED='{"max_speed": 7, "noise": 0.05, "detour": 0.03}'
lewm() { python -m lewm_agent "$@"; }
stamp() { echo "[$(date +%T)] $*"; }
RES="$WORK/results"
ship() { tar czf "$OUT/results.tgz.partial" -C "$RES" . && mv "$OUT/results.tgz.partial" "$OUT/results.tgz"; }

rm -rf "$WORK/model" "$WORK/train.h5" "$WORK/test.h5" "$RES"
mkdir -p "$OUT" "$RES"
stamp "collect: $EPISODES + $TEST_EPISODES episodes at $SIZE px; time a $PRESET training step"
lewm collect --env lewm/PushT-v0 --episodes "$EPISODES" --image-size "$SIZE" --out "$WORK/train.h5" \
  --workers "$WORKERS" --seed 0 --max-steps 600 --expert-kwargs "$PACED" --compression none --no-progress \
  > "$RES/collect_train.txt" 2>&1 &
pid_train=$!
lewm collect --env lewm/PushT-v0 --episodes "$TEST_EPISODES" --image-size "$SIZE" --out "$WORK/test.h5" \
  --workers 2 --seed 1 --max-steps 600 --expert-kwargs "$PACED" --compression none --no-progress \
  > "$RES/collect_test.txt" 2>&1 &
pid_test=$!
python benchmarks/train_speed.py --presets "$PRESET" --batch-size "$BATCH" --num-projections 1024 \
  --steps 10 --out "$RES/train_speed.json"
wait "$pid_train"
wait "$pid_test"
cat "$RES/collect_train.txt" "$RES/collect_test.txt"
nvidia-smi --query-gpu=name,memory.total --format=csv > "$RES/gpu.txt" 2>&1 || true
ship

# Steps that fit: the benchmark's step rate, with a third left for gathering batches and validating.
STEPS=$(python -c "import json; r = json.load(open('$RES/train_speed.json'))['results'][0]; \
print(max(100, int(r['samples_per_s'] / $BATCH * $TRAIN_SECONDS * 0.67)))")
stamp "train $PRESET for $STEPS steps"
lewm train --data "$WORK/train.h5" --out "$WORK/model" --preset "$PRESET" --model "{\"image_size\": $SIZE}" \
  --steps "$STEPS" --batch-size "$BATCH" --lr "$LR" --warmup-steps $((STEPS / 10 + 1)) --data-mode memory \
  --eval-interval $((STEPS / 4 + 1)) --ckpt-interval "$STEPS" --log-interval 25 --no-progress \
  --planner '{"num_iterations": 10, "cost": "min", "noise_beta": 2}'
cp "$WORK/model/README.md" "$RES/card.md"
cp "$WORK/model/log.jsonl" "$RES/log.jsonl"
ship

stamp "evaluate on $EVAL_EPISODES held-out pairs x seeds $EVAL_SEEDS"
lewm eval --checkpoint "$WORK/model" --data "$WORK/test.h5" --episodes "$EVAL_EPISODES" \
  --seeds $EVAL_SEEDS --out "$RES/eval"
ship
[ "$PROBE" = 1 ] || { stamp "done (probe and CEM timing skipped)"; exit 0; }
stamp "probe"
lewm probe --checkpoint "$WORK/model" --data "$WORK/test.h5" --out "$RES/probe"
ship
stamp "CEM solve time of the $PRESET preset"
python benchmarks/plan_speed.py --preset "$PRESET" --envs 1 50 --repeats 3 --out "$RES/plan_speed.json"
ship
stamp done
