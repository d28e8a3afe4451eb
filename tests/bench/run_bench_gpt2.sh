#!/usr/bin/env bash
# run_bench_gpt2.sh: GPT-2-small forward throughput (issue 5, point 7), LatentHook against
# PyTorch on the same machine, weights and tokens; prints a table.
#
# Builds nothing: build first with `cmake --build <build> --target lh_bench_gpt2`.
# 1. Writes the random GPT-2-small model directory once ($MODEL, ~500 MB, never committed;
#    torch_gpt2.py write), reusing it while its torch_gpt2.json records the same seed.
# 2. For each OpenBLAS core (the one OpenBLAS detects, and SkylakeX where the CPU has avx512f
#    or Haswell where it has only avx2: ENV_NOTES "OpenBLAS core detection"): torch_gpt2.py
#    time at each of TORCH_THREADS (OPENBLAS_NUM_THREADS = torch threads) and each of
#    TORCH_MALLOC ("default": glibc as it comes; "tuned": MALLOC_MMAP_THRESHOLD_ = 32 MiB, the
#    most glibc allows, and MALLOC_TRIM_THRESHOLD_ = 16 GiB, so that glibc keeps PyTorch's
#    freed activations instead of unmapping them and page-faulting them back in on every
#    forward), the first run also writing the reference checksums of batches
#    0 .. max(RANKS)-1; then one mpiexec launch of
#    lh_bench_gpt2 per rank count (OPENBLAS_NUM_THREADS=1 per rank, each rank its own batch),
#    validated against that reference, with every module hooked (--hook-all) on HOOK_RANKS.
# Every record goes to $OUT (JSON lines), the full output to $OUT.log, and a table to stdout.
#
# Environment (all optional):
#   BUILD=build  MODEL=/tmp/lh_gpt2_small  MODEL_SEED=3  BATCH=8  TOKENS=128  SEED=1  REPS=3
#   RANKS="1 2"  TORCH_THREADS="1 2"  TORCH_MALLOC="default tuned"  HOOK_RANKS="1"
#   CORES="default SkylakeX"  (default = whatever OpenBLAS detects: OPENBLAS_CORETYPE unset)
#   TORCH=1  (0 skips PyTorch; then no reference unless REF names an existing file)
#   REF=$OUT.ref   OUT=$BUILD/tests/bench/bench_gpt2_<date>.jsonl
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
BUILD=${BUILD:-$root/build}
BENCH=$BUILD/tests/bench/lh_bench_gpt2
MODEL=${MODEL:-/tmp/lh_gpt2_small}
MODEL_SEED=${MODEL_SEED:-3}
BATCH=${BATCH:-8}
TOKENS=${TOKENS:-128}
SEED=${SEED:-1}
REPS=${REPS:-3}
RANKS=${RANKS:-"1 2"}
TORCH_THREADS=${TORCH_THREADS:-"1 2"}
TORCH_MALLOC=${TORCH_MALLOC:-"default tuned"}
HOOK_RANKS=${HOOK_RANKS:-"1"}
TORCH=${TORCH:-1}
OUT=${OUT:-$BUILD/tests/bench/bench_gpt2_$(date +%Y%m%d_%H%M%S).jsonl}
REF=${REF:-$OUT.ref}
PY=/usr/bin/python3

if [[ -z ${CORES:-} ]]; then
  CORES=default
  if grep -qw avx512f /proc/cpuinfo; then CORES="default SkylakeX"
  elif grep -qw avx2 /proc/cpuinfo; then CORES="default Haswell"; fi
fi
if [[ ! -x $BENCH ]]; then
  echo "run_bench_gpt2.sh: $BENCH not found; build it first:" >&2
  echo "  cmake --build $BUILD --target lh_bench_gpt2" >&2
  exit 2
fi
if [[ $(id -u) == 0 ]]; then
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi
ncores=$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc) # nproc obeys OMP_NUM_THREADS
maxP=1
for P in $RANKS; do ((P > maxP)) && maxP=$P; done
mkdir -p "$(dirname "$OUT")"
: >"$OUT"
: >"$OUT.log"

# 1. The model directory, cached on its recorded seed.
cached=$("$PY" -c 'import json, sys
try:
    print(json.load(open(sys.argv[1] + "/torch_gpt2.json"))["seed"])
except Exception:
    print("none")' "$MODEL")
if [[ $cached != "$MODEL_SEED" || ! -f $MODEL/model.safetensors ]]; then
  echo "== writing $MODEL (seed $MODEL_SEED)" | tee -a "$OUT.log" >&2
  "$PY" "$here/torch_gpt2.py" write "$MODEL" --seed "$MODEL_SEED" 2>&1 | tee -a "$OUT.log" >&2
else
  echo "== reusing $MODEL (seed $MODEL_SEED)" | tee -a "$OUT.log" >&2
fi

echo "# $(date -Is) $(hostname) $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-)," \
  "$ncores cores; load before: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$OUT.log"

# Runs "$@" with OPENBLAS_CORETYPE set to $1 (or unset for "default"), tagging JSON records
# with the requested core and the load average at the end of the run.
with_core() {
  local core=$1
  shift
  local line
  if [[ $core == default ]]; then
    env -u OPENBLAS_CORETYPE "$@"
  else
    env OPENBLAS_CORETYPE="$core" "$@"
  fi 2>&1 | while IFS= read -r line; do
    echo "$line" >>"$OUT.log"
    if [[ $line == '{'* ]]; then
      echo "${line%\}}, \"core_requested\": \"$core\", \"load1\": $(cut -d' ' -f1 /proc/loadavg)}" >>"$OUT"
    fi
  done
  return "${PIPESTATUS[0]}"
}

status=0
refargs=()
[[ $TORCH != 1 && -f $REF ]] && refargs=(--ref "$REF")
for core in $CORES; do
  xcore=()
  [[ $core != default ]] && xcore=(-x OPENBLAS_CORETYPE)
  if [[ $TORCH == 1 ]]; then
    for th in $TORCH_THREADS; do
      for ma in $TORCH_MALLOC; do
        mkref=()
        if [[ ${#refargs[@]} == 0 ]]; then mkref=(--ref-out "$REF" --ref-batches "$maxP"); fi
        menv=(-u MALLOC_MMAP_THRESHOLD_ -u MALLOC_TRIM_THRESHOLD_)
        [[ $ma == tuned ]] && menv=(MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=17179869184)
        echo "== PyTorch, core $core, $th thread(s), malloc $ma" | tee -a "$OUT.log" >&2
        if with_core "$core" env "${menv[@]}" "$PY" "$here/torch_gpt2.py" time "$MODEL" \
          --batch "$BATCH" --tokens "$TOKENS" --seed "$SEED" --reps "$REPS" --threads "$th" \
          "${mkref[@]}"; then
          [[ -f $REF ]] && refargs=(--ref "$REF")
        else
          status=1
        fi
      done
    done
  fi
  for P in $RANKS; do
    over=()
    ((P > ncores)) && over=(--oversubscribe)
    hook=()
    [[ " $HOOK_RANKS " == *" $P "* ]] && hook=(--hook-all)
    echo "== LatentHook, core $core, $P rank(s)" | tee -a "$OUT.log" >&2
    with_core "$core" env OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 \
      mpiexec -n "$P" "${over[@]}" -x OPENBLAS_NUM_THREADS -x OMP_NUM_THREADS "${xcore[@]}" \
      "$BENCH" --model "$MODEL" --batch "$BATCH" --tokens "$TOKENS" --seed "$SEED" \
      --reps "$REPS" "${refargs[@]}" "${hook[@]}" || status=1
  done
done
echo "# load after: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$OUT.log"

"$PY" - "$OUT" <<'EOF'
import json, sys

recs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
order = {}
for r in recs:  # cores in the order they ran
    order.setdefault(r["core_requested"], len(order))
def tuned(r):
    return "MALLOC_MMAP_THRESHOLD_" in r.get("malloc_env", {})
torch = {(r["core_requested"], r["threads"], tuned(r)): r for r in recs
         if r["bench"] == "torch_gpt2"}
MiB = 1 << 20
B, T = (recs[0]["B"], recs[0]["T"]) if recs else ("?", "?")
print(f"\nGPT-2 small forward, float32, batch {B} x {T} tokens per rank or process; tokens/s of "
      f"the job = P B T / mean time\n(max over ranks); GF = GFLOP/s counting the full T x T "
      f"attention; gemm = the forward's sgemm calls replayed alone,\ngemm% = their share of the "
      f"forward; hook = no-op fwd hook on every module, change in mean time; vs torch (vs +M) = "
      f"tokens/s\nover PyTorch's at the same thread / rank count and core (with glibc malloc "
      f"tuned: torch+M); load = 1-min load\naverage at the end of the run")
print(f"{'core':>9} {'(detected)':>10} {'impl':>10} {'par':>9} {'tokens/s':>8} {'(best)':>7} "
      f"{'GF':>6} {'fwd s':>7} {'gemm s':>7} {'gemm%':>6} {'gemmGF':>6} {'hook':>7} "
      f"{'RSS MiB':>7} {'vs torch':>8} {'vs +M':>6} {'load':>5}  check")
for r in sorted(recs, key=lambda q: (order[q["core_requested"]], q["bench"] != "torch_gpt2",
                                     q.get("threads", q.get("ranks")), tuned(q))):
    core = r["core_requested"]
    if r["bench"] == "torch_gpt2":
        par = f"{r['threads']} thread"
        impl = f"torch{'+M' if tuned(r) else ''} {r['torch'][:4]}"
        gemm = f"{'-':>7} {'-':>6} {'-':>6}"
        hook, vs, vsm = "-", "-", "-"
        check = "finite" if r["finite"] else "NOT FINITE"
    else:
        par, impl = f"{r['ranks']} rank", "LatentHook"
        gemm = (f"{r['gemm_s_mean']:7.3f} {100 * r['gemm_share']:5.1f}% {r['gemm_gflops']:6.1f}"
                if r["gemm_calls"] else f"{'-':>7} {'-':>6} {'-':>6}")
        hook = (f"{100 * (r['hooked_s_mean'] / r['paired_plain_s_mean'] - 1):+6.2f}%"
                if r["hooked"] else "-")
        t, tm = torch.get((core, r["ranks"], False)), torch.get((core, r["ranks"], True))
        vs = f"{r['tokens_per_s'] / t['tokens_per_s']:.2f}x" if t else "-"
        vsm = f"{r['tokens_per_s'] / tm['tokens_per_s']:.2f}x" if tm else "-"
        check = (f"= torch ({r['ref_batches_checked']}/{r['ranks']}, "
                 f"{max(r['dev_sum'], r['dev_sumsq'], r['dev_values']):.0e})"
                 if r["ref_batches_checked"] else "finite")
    print(f"{core:>9} {r['blas_core']:>10} {impl:>10} {par:>9} {r['tokens_per_s']:8.1f} "
          f"{r['tokens_per_s_best']:7.1f} {r['gflops']:6.1f} {r['forward_s_mean']:7.3f} {gemm} "
          f"{hook:>7} {r['peak_rss_bytes'] / MiB:7.0f} {vs:>8} {vsm:>6} {r['load1']:5.2f}  {check}")
print(f"\nrecords: {sys.argv[1]}  full output: {sys.argv[1]}.log")
EOF
exit $status
