#!/usr/bin/env bash
# CUDA checks of the run layer: every method family trains a few dozen steps on the GPU with bf16 autocast
# through `breastssl train`, then predicts from its run folder; then 2-process DDP through torchrun.
# Then the data path at paper size (issue 18): batched augmentation on the GPU (bench_data_scale.py, target
# >= 2,000 slices/s) and one KD step at 896x640, batch 32, bf16, channels-last, fed by the DataLoader with loader vs
# device augmentation, with the GPU's busy share (bench_kd_step.py); their tables are printed after the checks.
# One line per check: "PASS <check> (<s> s)" or "FAIL <check> (<s> s): <last log line>"; logs in $OUT_DIR.
# Usage: bash scripts/cuda_check.sh [OUT_DIR]   (needs a CUDA GPU; the package installed, e.g. scripts/setup.sh)
#
# DDP: with 2+ GPUs the two ranks use NCCL, one GPU each. NCCL refuses two ranks on one GPU ("Duplicate GPU
# detected"), so on a single GPU the two ranks share it through gloo (engine/distributed.py picks the backend),
# and NCCL itself is exercised by a 2-rank all-reduce only when a second GPU exists.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT_DIR="${1:-${OUT:-/tmp}/cuda_check}"
mkdir -p "$OUT_DIR"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
STEPS="${CUDA_CHECK_STEPS:-40}"
GPUS=$(python -c "import torch; print(torch.cuda.device_count())")
echo "cuda_check: $(python -c 'import torch; print(torch.__version__, torch.cuda.get_device_name(0) if torch.cuda.is_available() else "NO CUDA")'), $GPUS GPU(s), $STEPS steps"
[ "$GPUS" -ge 1 ] || { echo "FAIL no CUDA device"; exit 1; }
FAILED=0

check() {  # check NAME COMMAND...
  local name="$1"; shift
  local log="$OUT_DIR/$name.log" t0=$SECONDS
  if "$@" >"$log" 2>&1; then
    echo "PASS $name ($((SECONDS - t0)) s)"
  else
    echo "FAIL $name ($((SECONDS - t0)) s): $(grep -v '^\s*$' "$log" | tail -n 1)"
    FAILED=$((FAILED + 1))
  fi
}

D="$OUT_DIR/data"
check synth breastssl synth dbt --out "$D/dbt" --n 8 --seed 0 --format npy --overwrite
check synth_mammo breastssl synth mammo --out "$D/mammo" --n 16 --seed 0 --format npy --overwrite
check synth_us breastssl synth us --out "$D/us" --n 60 --seed 0 --format npy --overwrite
check label_reports breastssl label-reports "$D/mammo/manifest.csv" --out "$D/mammo/labels.csv" --model tfidf

GPU=(--set train.device=cuda --set train.amp=bf16 --set "train.steps=$STEPS" --set train.progress=false)
R="$OUT_DIR/runs"
check dbt_supervised breastssl train -c configs/dbt_selectivekd_demo.yaml "${GPU[@]}" \
  --set "data.manifest=$D/dbt/manifest.csv" --set "train.out_dir=$R/dbt_teacher"
check dbt_selective_kd breastssl train -c configs/dbt_selectivekd_demo.yaml "${GPU[@]}" \
  --set "data.manifest=$D/dbt/manifest.csv" --set strategy.name=selective_kd \
  --set "strategy.teacher_checkpoint=$R/dbt_teacher" --set "train.out_dir=$R/dbt_student"
check mammo_self_training breastssl train -c configs/mammo_self_training_run_demo.yaml "${GPU[@]}" \
  --set "data.manifest=$D/mammo/manifest.csv" --set "data.labels=$D/mammo/labels.csv" --set "train.out_dir=$R/mammo"
check us_mean_teacher breastssl train -c configs/us_mean_teacher_run_demo.yaml "${GPU[@]}" \
  --set "data.manifest=$D/us/manifest.csv" --set "train.out_dir=$R/us"
check comoto_teacher breastssl train -c configs/comoto_run_teacher_demo.yaml "${GPU[@]}" \
  --set "data.mammo_manifest=$D/mammo/manifest.csv" --set "data.dbt_manifest=$D/dbt/manifest.csv" \
  --set "train.out_dir=$R/comoto_teacher"
check comoto_lskd breastssl train -c configs/comoto_run_student_demo.yaml "${GPU[@]}" \
  --set "data.mammo_manifest=$D/mammo/manifest.csv" --set "data.dbt_manifest=$D/dbt/manifest.csv" \
  --set "data.teacher_run=$R/comoto_teacher" --set "train.out_dir=$R/comoto_student"
for run in dbt_student mammo us comoto_student; do
  check "predict_$run" breastssl predict --run "$R/$run" --device cuda --out "$OUT_DIR/pred_$run" --overwrite \
    "$( [ "$run" = mammo ] && echo "$D/mammo" || { [ "$run" = us ] && echo "$D/us" || echo "$D/dbt/manifest.csv"; }; )"
done

# DDP: the DBT student with 2 ranks (NCCL with 2 GPUs, gloo on one shared GPU), then the same with bf16
export OMP_NUM_THREADS=2
check ddp_2proc torchrun --standalone --nproc_per_node=2 -m breastssl.cli train -c configs/dbt_selectivekd_demo.yaml \
  "${GPU[@]}" --set "data.manifest=$D/dbt/manifest.csv" --set "train.out_dir=$R/ddp"
if [ "$GPUS" -ge 2 ]; then
  check nccl_allreduce torchrun --standalone --nproc_per_node=2 --no-python python -c "import os, torch, torch.distributed as d; \
d.init_process_group('nccl'); r=int(os.environ['RANK']); torch.cuda.set_device(r); t=torch.ones(1, device='cuda')*(r+1); \
d.all_reduce(t); assert t.item()==3.0; d.destroy_process_group()"
else
  echo "SKIP nccl_allreduce: one GPU (NCCL cannot place two ranks on one device; the DDP check above used gloo)"
fi
# the data path at paper size (issue 18): the figures for the README
check aug_cuda python benchmarks/bench_data_scale.py --quick --json "$OUT_DIR/bench_data_scale.json"
check kd_step_896 python benchmarks/bench_kd_step.py --size 896 640 --batch 32 --steps 20 \
  --json "$OUT_DIR/bench_kd_step.json"
for name in aug_cuda kd_step_896; do
  echo "--- $name"; grep -v '^\s*$' "$OUT_DIR/$name.log" | tail -n 8
done
echo "cuda_check: $FAILED failed"
exit "$FAILED"
