#!/usr/bin/env bash
# The whole GPU check in one command, sized for one job of at most 10 minutes on one GPU:
#   1. the CUDA tests of the graph-captured update (tests/test_cuda_graphs.py: capture, replay without a
#      synchronisation, the same update as the eager one) and of updates begun before the env step, with
#      evaluations in a process of their own (tests/test_overlap.py: the same training as without either);
#   2. python -m sb3_gaara.benchmark --device cuda: update times (GAARASAC eager and CUDA graphs, SACAE, SB3's SAC),
#      environment steps per second on dmc-cheetah-run with rendering on the GPU;
#   3. scripts/gpu_speed_options.py (stage "options", not run by default): the fast path's update under
#      cudnn.benchmark and bfloat16 convolutions, a profile of the eager update, and end-to-end steps per second
#      in float32 and bfloat16, each with and without overlap_env_step, under the faster cudnn.benchmark setting,
#      which the study then uses (--cudnn-benchmark);
#   mps (before the study by default): starts NVIDIA's Multi-Process Service where the driver has it, so that the study's
#      runs, one process each, share the GPU's multiprocessors instead of taking turns; skipped, and stopped
#      again, if a CUDA process cannot start under it;
#   4. python -m sb3_gaara.study --preset gpu-10min, limited to the time left of the budget (with
#      --no-cuda-graphs --no-overlap-env-step --no-async-eval if step 1 failed, so that the study still runs);
#   campaign (stage "campaign", in place of "study"): python -m sb3_gaara.study --campaign planet100k --budget <time left>:
#      the next cells of the campaign not finished in docs/results/planet100k, as many at once as the speeds recorded
#      there allow, written as one bundle (OUT_DIR/planet100k-<job>.tar.gz) to merge at home with
#      python -m sb3_gaara.study.ledger merge BUNDLE (same fallback flags as the study).
# What a reader needs comes out small, in OUT_DIR: log.txt, tests.txt, benchmark.txt, benchmark.json, results.md,
# curves.csv and the task's PNG (the study's run directories stay in STUDY_DIR).
#
# Usage: scripts/gpu_check.sh OUT_DIR [BUDGET_SECONDS (540)]
# Environment: PYTHON (python3), STUDY_DIR (OUT_DIR/../gpu_study), STUDY_ARGS, BENCH_ARGS and OPTIONS_ARGS (extra flags),
#   BENCH_TIMEOUT and OPTIONS_TIMEOUT (240 s each),
#   STUDY_ARGS_NO_MPS (the study's flags instead of STUDY_ARGS where the mps stage ran and MPS did not start: fewer runs
#   when they must take turns),
#   STAGES ("tests bench mps study"; "tests options mps study" measures the settings instead of the full benchmark;
#   "tests mps campaign" extends the campaign's ledger), CAMPAIGN (planet100k) and CAMPAIGN_ARGS (extra flags). Tiny CPU rehearsal of the script (a minute or two):
#   STAGES="bench study" BENCH_ARGS="--device cpu --quick" STUDY_ARGS="--device cpu --tasks pixel_reach
#     --env-steps 400 --eval-every 200 --eval-episodes 2 --random-episodes 2" scripts/gpu_check.sh /tmp/check 300
set -uo pipefail
out=${1:?usage: scripts/gpu_check.sh OUT_DIR [BUDGET_SECONDS]}
budget=${2:-540}
python=${PYTHON:-python3}
stages=${STAGES:-tests bench mps study}
study_dir=${STUDY_DIR:-$out/../gpu_study}
export MUJOCO_GL=${MUJOCO_GL:-egl} PYTHONUNBUFFERED=1
start=$(date +%s)
mkdir -p "$out" "$study_dir"
log="$out/log.txt"
say() { echo "[gpu_check $(($(date +%s) - start)) s] $*" | tee -a "$log"; }

say "commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo ' (+ local changes)'), budget ${budget} s, stages: $stages"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | tee -a "$log"
$python -c "import torch, sys; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda, 'available', torch.cuda.is_available())" 2>&1 | tee -a "$log"

graphs_ok=1
cudnn_benchmark=0
mps=0
mps_tried=0
stop_mps() { [ $mps -eq 1 ] && echo quit | nvidia-cuda-mps-control >/dev/null 2>&1; mps=0; }
trap stop_mps EXIT  # at the end, and on any exit: a daemon left running would outlive the job
for stage in $stages; do
  case $stage in
    tests)
      say "CUDA tests"
      timeout 150 $python -m pytest -q -p no:cacheprovider tests/test_cuda_graphs.py tests/test_overlap.py >"$out/tests.txt" 2>&1
      status=$?
      tail -n 3 "$out/tests.txt" | tee -a "$log"
      if [ $status -ne 0 ]; then graphs_ok=0; say "CUDA tests failed (exit $status): the study runs without CUDA graphs"; fi
      ;;
    bench)
      say "benchmark"
      # shellcheck disable=SC2086
      timeout "${BENCH_TIMEOUT:-240}" $python -m sb3_gaara.benchmark --device cuda --json "$out/benchmark.json" ${BENCH_ARGS:-} >"$out/benchmark.txt" 2>&1
      say "benchmark exit $?"
      tail -n 40 "$out/benchmark.txt" >>"$log"
      ;;
    mps)
      mps_tried=1
      if ! command -v nvidia-cuda-mps-control >/dev/null 2>&1; then say "no nvidia-cuda-mps-control: runs take turns on the GPU"; continue; fi
      export CUDA_MPS_PIPE_DIRECTORY=/tmp/gpu_check_mps/pipe CUDA_MPS_LOG_DIRECTORY=/tmp/gpu_check_mps/log
      mkdir -p "$CUDA_MPS_PIPE_DIRECTORY" "$CUDA_MPS_LOG_DIRECTORY"
      if nvidia-cuda-mps-control -d >>"$log" 2>&1; then mps=1; fi
      if [ $mps -eq 1 ] && timeout 30 $python -c "import torch; print('MPS client ok', float(torch.ones(8, device='cuda').sum()))" >>"$log" 2>&1; then
        say "MPS started: the study's processes share the GPU"
      else
        say "MPS did not start a CUDA client: runs take turns on the GPU"
        tail -n 5 "$CUDA_MPS_LOG_DIRECTORY"/control.log >>"$log" 2>/dev/null
        stop_mps
        unset CUDA_MPS_PIPE_DIRECTORY CUDA_MPS_LOG_DIRECTORY
      fi
      ;;
    options)
      say "speed options"
      # shellcheck disable=SC2086
      timeout "${OPTIONS_TIMEOUT:-240}" $python scripts/gpu_speed_options.py --json "$out/options.json" --profile "$out/profile.txt" \
        --choice "$out/choice.env" ${OPTIONS_ARGS:-} >"$out/options.txt" 2>&1
      say "speed options exit $?"
      tail -n 12 "$out/options.txt" | tee -a "$log"
      if [ -f "$out/choice.env" ]; then . "$out/choice.env"; cudnn_benchmark=$CUDNN_BENCHMARK; rm -f "$out/choice.env"; fi
      ;;
    study)
      # What is left of the budget, less a margin for the report and for the workers to stop.
      left=$((budget - ($(date +%s) - start) - 45))
      if [ $left -lt 60 ]; then say "only ${left} s left: no study"; continue; fi
      extra=""
      [ $graphs_ok -eq 1 ] || extra="--no-cuda-graphs --no-overlap-env-step --no-async-eval"
      [ "$cudnn_benchmark" = 1 ] && extra="$extra --cudnn-benchmark"
      reference=""
      for candidate in shared/reference/drq_planet_bench.csv ../shared/reference/drq_planet_bench.csv .device/drq_planet_bench.csv; do
        [ -f "$candidate" ] && reference="--reference $candidate" && break
      done
      study_args=${STUDY_ARGS:-}
      [ "$mps_tried" = 1 ] && [ $mps -eq 0 ] && study_args=${STUDY_ARGS_NO_MPS:-$study_args}
      say "study, time limit ${left} s $extra $study_args"
      # shellcheck disable=SC2086
      $python -m sb3_gaara.study --preset gpu-10min --time-limit "$left" --out "$study_dir" $reference $extra $study_args \
        >"$out/study.txt" 2>&1
      say "study exit $?"
      tail -n 20 "$out/study.txt" >>"$log"
      cp "$study_dir"/results.md "$study_dir"/curves.csv "$out"/ 2>/dev/null
      cp "$study_dir"/*.png "$out"/ 2>/dev/null
      rm -f "$out/study.txt"  # its tail is in log.txt: at most 8 files come back from a GPU job
      ;;
    campaign)
      # The campaign keeps its own margin for its runs to stop and its bundle; this one covers the script's end.
      left=$((budget - ($(date +%s) - start) - 15))
      if [ $left -lt 60 ]; then say "only ${left} s left: no campaign"; continue; fi
      extra=""
      [ $graphs_ok -eq 1 ] || extra="--no-cuda-graphs --no-overlap-env-step --no-async-eval"
      [ "$cudnn_benchmark" = 1 ] && extra="$extra --cudnn-benchmark"
      say "campaign ${CAMPAIGN:-planet100k}, budget ${left} s $extra ${CAMPAIGN_ARGS:-}"
      # shellcheck disable=SC2086
      $python -m sb3_gaara.study --campaign "${CAMPAIGN:-planet100k}" --budget "$left" --out "$study_dir" --bundle "$out" \
        $extra ${CAMPAIGN_ARGS:-} >"$out/campaign.txt" 2>&1
      say "campaign exit $? (3: cells remain for the next job)"
      grep '^\[campaign\]' "$out/campaign.txt" >>"$log"
      tail -n 10 "$out/campaign.txt" >>"$log"
      rm -f "$out/campaign.txt"  # in log.txt: at most 8 files come back from a GPU job
      ;;
    *) say "unknown stage $stage" ;;
  esac
done
say "done"
