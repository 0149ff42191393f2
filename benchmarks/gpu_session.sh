#!/usr/bin/env bash
# Every GPU measurement of the paper-scale work, one part a call (no argument: speed, quality and precision;
# see benchmarks/README.md):
#   bash benchmarks/gpu_session.sh tests     # tests/test_gpu.py: every modality's micro pipeline with device cuda
#   bash benchmarks/gpu_session.sh speed     # device rates, every preset's step times, the old code's, a profile
#   bash benchmarks/gpu_session.sh quality   # 3000-step Stage-1 runs of the CelebA and ShapeNet presets' LoEs
#   bash benchmarks/gpu_session.sh precision # 1000 steps at fp32 / tf32 / bf16, and the 5000-sample protocol
#   bash benchmarks/gpu_session.sh compile   # the CelebA and ShapeNet steps eager and compiled (fit_loe.compile),
#                                            # and 1000 CelebA-size steps of fp32 eager beside tf32 and bf16 compiled
#   bash benchmarks/gpu_session.sh autotune  # the CelebA step compiled as the pipeline does beside Inductor's
#                                            # max-autotune (matmuls with fused sin/cos epilogues), and its profile
#   bash benchmarks/gpu_session.sh fused     # the fused Triton kernels' errors against float64 (fused_check.py),
#                                            # the CelebA and ShapeNet steps eager / compiled / with the kernels
#                                            # (fit_loe.kernel triton), their profile, and 1000 CelebA-size steps
#                                            # of each: test PSNR against the fp32 eager path; fused-speed and
#                                            # fused-quality run its two halves (two calls of a short lease)
# VARIANTS, CPRESETS and QUALITY (precision:compile pairs) narrow the `compile` run; VARIANTS the `autotune` one;
# FVARIANTS, FQUALITY (kernel:precision pairs) and FN (e.g. "--train 500 --test 100") the `fused` one.
# Results land in $RESULTS (default benchmarks/results/gpu). TINY=1 runs the same path at toy sizes (CPU check).
# OLD=dir times another checkout's pipeline/ beside this one; INCEPTION=file.pt uses that TorchScript Inception.
set -uo pipefail
# A command that fails (its own exit status, through tee, or a background measurement's) is counted, and the
# script exits 1 saying how many, after the rest have run.
FAILED=0
trap 'FAILED=$((FAILED + 1))' ERR
PIDS=()                           # background measurements, each waited on by its pid (jobs -p forgets finished ones)
waitall() { local p; for p in "${PIDS[@]}"; do wait "$p" || FAILED=$((FAILED + 1)); done; PIDS=(); }
cd "$(dirname "$0")/.."
RESULTS=${RESULTS:-benchmarks/results/gpu}
mkdir -p "$RESULTS"
export PYTHONUNBUFFERED=1
B=benchmarks
AVARIANTS=${VARIANTS:-}             # the user's VARIANTS, before each size sets its own default
if [ "${TINY:-0}" = 1 ]; then
  STEPS=20; PSTEPS=10; TIMED=1; PROTO=16; N="--train 32 --test 8"; NS="--train 16 --test 4"
  SMALL="--set loe.experts=8 --set loe.width=16 --set loe.latent_dim=8 --set fit_loe.batch_size=4 --set export_latents.batch_size=8"
  PRESETS="params.yaml"; MAIN=params.yaml; VARIANTS=${VARIANTS:-"fp32 fp32+compile"}; PROF=fp32+compile
  CPRESETS=params.yaml; AVARIANTS=${AVARIANTS:-"fp32+compile fp32+autotune"}; APROF=fp32+autotune
  # The kernels run under Triton's interpreter on a CPU: toy sizes only.
  export TRITON_INTERPRET=1
  TOY="$RESULTS/toy_params.yaml"
  python -c "import yaml; p = yaml.safe_load(open('params.yaml')); p['loe'].update(layers=3, experts=4, width=16,
latent_dim=4); p['fit_loe'].update(batch_size=2, points_per_step=64); p['hcdm'].update(hidden=32, blocks=2)
yaml.safe_dump(p, open('$TOY', 'w'), sort_keys=False)"
  FPRESETS="$TOY"; FVARIANTS=${FVARIANTS:-"fp32 fp32+triton"}; FPROF=fp32+triton
  FQUALITY="torch:fp32 triton:fp32"; FSMALL="$SMALL --set fit_loe.points_per_step=64"; FSTEPS=4
  FCHECK="--batch 2 --points 64"
else
  STEPS=3000; PSTEPS=1000; TIMED=10; PROTO=5000; N="--train 1500 --test 100"; NS="--train 1000 --test 100"; SMALL=""
  PRESETS="params.yaml pipeline/presets/shapes32.yaml pipeline/presets/celebahq64.yaml pipeline/presets/shapenet64.yaml"
  MAIN=pipeline/presets/celebahq64.yaml; VARIANTS=${VARIANTS:-"fp32 tf32 tf32+compile bf16+compile"}
  PROF=tf32+compile; CPRESETS=${CPRESETS:-"$MAIN pipeline/presets/shapenet64.yaml"}
  AVARIANTS=${AVARIANTS:-"tf32+compile tf32+autotune"}; APROF=tf32+autotune
  FPRESETS="$MAIN pipeline/presets/shapenet64.yaml"; FVARIANTS=${FVARIANTS:-"fp32 tf32 tf32+compile fp32+triton tf32+triton"}
  FPROF=tf32+triton; FQUALITY=${FQUALITY:-"torch:fp32 triton:fp32 triton:tf32"}; FSMALL=""; FSTEPS=$PSTEPS
  FCHECK="--batch 4"
fi
INC=${INCEPTION:+--inception $INCEPTION}
LR="--set fit_loe.lr=0.0003"      # the short-schedule outer lr (measured on CPU: faster than 1e-4, stable)

case "${1:-all}" in
tests)
  python -m pytest -q -n 0 -rs tests/test_gpu.py 2>&1 | tee "$RESULTS/tests_gpu.log" ;;
speed|all)
  python $B/speed.py --presets $PRESETS --steps $TIMED --profile "$(basename $MAIN .yaml):tf32" \
    --out "$RESULTS/speed.json" 2>&1 | tee "$RESULTS/speed.log"
  if [ -n "${OLD:-}" ]; then
    python $B/speed.py --code "$OLD" --presets $MAIN --precisions fp32 tf32 --steps $TIMED \
      --out "$RESULTS/speed_old.json" 2>&1 | tee "$RESULTS/speed_old.log"
  fi ;;&
quality|all)
  python $B/preset_quality.py pipeline/presets/celebahq64.yaml --steps $STEPS $N $LR $SMALL \
    --set fit_loe.precision=tf32 --limit ${LIMIT:-900} --out "$RESULTS/faces64" > "$RESULTS/faces64.log" 2>&1 &
    PIDS+=($!)
  python $B/preset_quality.py pipeline/presets/shapenet64.yaml --steps $STEPS $NS $LR $SMALL \
    --set fit_loe.precision=tf32 --limit ${LIMIT:-900} --out "$RESULTS/shapes64" > "$RESULTS/shapes64.log" 2>&1 &
    PIDS+=($!)
  waitall; tail -n 3 "$RESULTS"/faces64.log "$RESULTS"/shapes64.log ;;&
precision|all)
  for p in fp32 tf32 bf16; do
    python $B/preset_quality.py pipeline/presets/celebahq64.yaml --steps $PSTEPS --warmup 50 $N $LR $SMALL \
      --set fit_loe.precision=$p --limit ${LIMIT:-900} --out "$RESULTS/precision_$p" > "$RESULTS/precision_$p.log" 2>&1 &
      PIDS+=($!)
  done
  python $B/speed.py --presets $MAIN --precisions fp32 --steps 1 --protocol $PROTO $INC \
    --protocol-preset $MAIN --out "$RESULTS/protocol.json" > "$RESULTS/protocol.log" 2>&1
  waitall; tail -n 2 "$RESULTS"/precision_*.log; grep '^protocol' "$RESULTS/protocol.log" ;;
compile)
  # The profile is of the first of CPRESETS (MAIN unless another is listed first).
  first=${CPRESETS%% *}
  timeout ${SPEED_LIMIT:-900} python $B/speed.py --presets $CPRESETS --precisions $VARIANTS --steps $TIMED \
    --profile "$(basename $first .yaml):$PROF" --out "$RESULTS/speed_compile.json" 2>&1 | tee "$RESULTS/speed_compile.log"
  for v in ${QUALITY:-fp32:false tf32:true bf16:true}; do
    python $B/preset_quality.py $MAIN --steps $PSTEPS --warmup 50 $N $LR $SMALL --set fit_loe.precision=${v%:*} \
      --set fit_loe.compile=${v#*:} --limit ${LIMIT:-900} --out "$RESULTS/compile_${v%:*}_${v#*:}" \
      > "$RESULTS/compile_${v%:*}_${v#*:}.log" 2>&1 &
      PIDS+=($!)
  done
  waitall; tail -n 4 "$RESULTS"/compile_*.log ;;
fused|fused-speed)
  for p in $FPRESETS; do             # the numbers first: each kernel's error against float64 at the preset's sizes
    python $B/fused_check.py $p $FCHECK --out "$RESULTS/fused_check_$(basename $p .yaml).json" 2>&1 \
      | tee -a "$RESULTS/fused_check.log"
  done
  timeout ${SPEED_LIMIT:-900} python $B/speed.py --presets $FPRESETS --precisions $FVARIANTS --steps $TIMED \
    --profile "$(basename ${FPRESETS%% *} .yaml):$FPROF" --out "$RESULTS/speed_fused.json" 2>&1 \
    | tee "$RESULTS/speed_fused.log" ;;&
fused|fused-quality)
  for v in $FQUALITY; do             # kernel:precision, each 1000 steps; the goal: within 0.2 dB of torch:fp32
    python $B/preset_quality.py $MAIN --steps $FSTEPS --warmup 50 ${FN:-$N} $LR $FSMALL --set fit_loe.kernel=${v%:*} \
      --set fit_loe.precision=${v#*:} --set fit_loe.compile=false --limit ${LIMIT:-900} \
      --out "$RESULTS/fused_${v%:*}_${v#*:}" \
      > "$RESULTS/fused_${v%:*}_${v#*:}.log" 2>&1 &
      PIDS+=($!)
  done
  waitall; tail -n 4 "$RESULTS"/fused_*_*.log ;;
autotune)
  timeout ${SPEED_LIMIT:-540} python $B/speed.py --presets $MAIN --precisions $AVARIANTS --steps $TIMED \
    --profile "$(basename $MAIN .yaml):$APROF" --out "$RESULTS/speed_autotune.json" 2>&1 | tee "$RESULTS/speed_autotune.log" ;;
esac
if [ "$FAILED" -gt 0 ]; then
  echo "gpu_session.sh: $FAILED command(s) or measurement(s) failed; see the logs in $RESULTS" >&2
  exit 1
fi
