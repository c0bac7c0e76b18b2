#!/usr/bin/env bash
# Planning and training speed beside the public reference on one GPU, as the README's GPU rows
# report them: CEM solves eager at fp32 and bf16 for 1 env; our whole-solve CUDA graphs against
# the reference's predictor under torch.compile (reduce-overhead); ours alone for 1 and 50 envs,
# eager and graphed; a training step of the paper model. Each stage writes its JSON and log under
# $OUT as it finishes, so a run cut short still returns what it did. Needs the bench extra.
# (The reference solves envs one at a time, so its time for 50 envs is 50 of its 1-env solves.)
#
#   OUT=results/gpu bash benchmarks/gpu_speed.sh
set -uo pipefail
export PYTHONUNBUFFERED=1
OUT=${OUT:?set OUT to the folder for the results}
PRESET=${PRESET:-paper}
REPEATS=${REPEATS:-5}
STAGES=${STAGES:-"eager graphed alone train"}
mkdir -p "$OUT"
here=$(dirname "$0")
stamp() { echo "[$(date +%T)] $*"; }
plan() {  # plan NAME ARGS...: one plan_speed run, its table in NAME.log and its JSON in NAME.json
  local name=$1; shift
  stamp "plan_speed $name"
  python "$here/plan_speed.py" --preset "$PRESET" --repeats "$REPEATS" --out "$OUT/$name.json" "$@" 2>&1 \
    | tee "$OUT/$name.log"
}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv >"$OUT/gpu.txt" 2>&1
for stage in $STAGES; do
  case $stage in
    eager) plan plan_eager --against reference --envs 1 --precisions fp32 bf16 ;;
    graphed) plan plan_graphed --against reference --envs 1 --precisions fp32 bf16 --compile cudagraph ;;
    alone) for c in "" "--compile cudagraph"; do plan "plan_ours_bf16${c:+_graphed}" --envs 1 50 --precision bf16 $c; done ;;
    train) stamp train_speed
           python "$here/train_speed.py" --presets "$PRESET" --against reference --steps 10 --warmup 3 \
             --out "$OUT/train.json" 2>&1 | tee "$OUT/train.log" ;;
  esac
done
stamp done
