#!/usr/bin/env bash
# run_bench_knn.sh: runs the kNN/TwoNN benchmark (issue 3) and its FAISS peer, prints a table.
#
# Builds nothing: build first with `cmake --build --preset release --target lh_bench_knn`.
# For each OpenBLAS core (the one OpenBLAS detects, and SkylakeX where the CPU has avx512f or
# Haswell where it has only avx2: ENV_NOTES "OpenBLAS core detection"), each rank count and
# each (N, D), one mpiexec launch of lh_bench_knn (one shape per launch, so that the peak
# memory it reports belongs to that shape), OPENBLAS_NUM_THREADS=1; then faiss_twonn.py on
# the same shapes and core, one thread. Every record goes to $OUT (JSON lines), the full
# output to $OUT.log, and a table to stdout.
#
# Environment (all optional):
#   BUILD=build  NS="20000 50000"  DS="64 768"  RANKS="1 2"  INTRINSIC=16  SEED=42
#   CORES="default SkylakeX"  (default = whatever OpenBLAS detects: OPENBLAS_CORETYPE unset)
#   REPEAT=1  (launches per configuration; the table shows the fastest, and the spread)
#   FAISS=1   (0 skips the FAISS runs)   OUT=$BUILD/tests/bench/bench_knn_<date>.jsonl
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
BUILD=${BUILD:-$root/build}
BENCH=$BUILD/tests/bench/lh_bench_knn
NS=${NS:-"20000 50000"}
DS=${DS:-"64 768"}
RANKS=${RANKS:-"1 2"}
INTRINSIC=${INTRINSIC:-16}
SEED=${SEED:-42}
REPEAT=${REPEAT:-1}
FAISS=${FAISS:-1}
OUT=${OUT:-$BUILD/tests/bench/bench_knn_$(date +%Y%m%d_%H%M%S).jsonl}
PY=/usr/bin/python3

if [[ -z ${CORES:-} ]]; then
  CORES=default
  if grep -qw avx512f /proc/cpuinfo; then CORES="default SkylakeX"
  elif grep -qw avx2 /proc/cpuinfo; then CORES="default Haswell"; fi
fi
if [[ ! -x $BENCH ]]; then
  echo "run_bench_knn.sh: $BENCH not found; build it first:" >&2
  echo "  cmake --build --preset release --target lh_bench_knn" >&2
  exit 2
fi
if [[ $(id -u) == 0 ]]; then
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi
ncores=$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc) # nproc obeys OMP_NUM_THREADS
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1
: >"$OUT"
: >"$OUT.log"
echo "# $(date -Is) $(hostname) $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-)," \
  "$ncores cores; load before: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$OUT.log"

# Runs "$@" with OPENBLAS_CORETYPE set to $1 (or unset for "default"), tagging JSON records.
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
      echo "${line%\}}, \"core_requested\": \"$core\"}" >>"$OUT"
    fi
  done
  return "${PIPESTATUS[0]}"
}

status=0
for core in $CORES; do
  xcore=()
  [[ $core != default ]] && xcore=(-x OPENBLAS_CORETYPE)
  for P in $RANKS; do
    over=()
    ((P > ncores)) && over=(--oversubscribe)
    for N in $NS; do
      for D in $DS; do
        for ((rep = 1; rep <= REPEAT; rep++)); do
          echo "== core $core, $P rank(s), N $N, D $D (run $rep/$REPEAT)" | tee -a "$OUT.log" >&2
          with_core "$core" mpiexec -n "$P" "${over[@]}" -x OPENBLAS_NUM_THREADS "${xcore[@]}" \
            "$BENCH" --n "$N" --d "$D" --intrinsic "$INTRINSIC" --seed "$SEED" || status=1
        done
      done
    done
  done
  if [[ $FAISS == 1 ]]; then
    for N in $NS; do
      for D in $DS; do
        echo "== FAISS, core $core, N $N, D $D" | tee -a "$OUT.log" >&2
        with_core "$core" "$PY" "$here/faiss_twonn.py" --n "$N" --d "$D" \
          --intrinsic "$INTRINSIC" --seed "$SEED" || status=1
      done
    done
  fi
done
echo "# load after: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$OUT.log"

"$PY" - "$OUT" <<'EOF'
import json, sys
from collections import defaultdict

recs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
order = {}
for r in recs:  # cores in the order they ran
    order.setdefault(r["core_requested"], len(order))
sortkey = lambda k: (order[k[0]],) + k[1:]
lh = defaultdict(list)
fa = defaultdict(list)
for r in recs:
    key = (r["core_requested"], r["N"], r["D"])
    if r["bench"] == "knn":
        lh[key + (r["ranks"],)].append(r)
    else:
        fa[key].append(r)
MiB = 1 << 20
print(f"\nLatentHook (max over ranks; seconds; knn k=2 split into gemm, screen, other = wall - "
      f"gemm - screen,\n of which prep = ring.prepare, wait = ring.wait; mean = an exact "
      f"column mean timed alone;\n GF = GFLOP/s: (a) performed flops / (gemm+screen), (b) 2N^2D / "
      f"(gemm+screen); lim = SGEMM 256x2048xD tiles, sq = 2048^3, job)")
hdr = (f"{'core':>10} {'(detected)':>11} {'N':>6} {'D':>4} {'P':>1} {'twonn s':>8} {'knn s':>7} "
       f"{'gemm':>6} {'screen':>6} {'other':>6} {'prep':>5} {'wait':>5} {'mean':>5} {'(a)GF':>6} {'(b)GF':>6} {'limGF':>6} "
       f"{'(a)/lim':>7} {'sqGF':>6} {'RSS MiB':>7} {'in MiB':>6}  {'dimension':<20} {'=P1':>3} {'runs':>4}")
print(hdr)
for key in sorted(lh, key=sortkey):
    runs = lh[key]
    r = min(runs, key=lambda q: q["knn_s"])
    spread = max(q["knn_s"] for q in runs) / r["knn_s"] - 1 if len(runs) > 1 else 0.0
    p1 = lh.get(key[:3] + (1,))
    same = "-"
    if p1 and key[3] != 1:
        q = p1[0]
        same = "yes" if (repr(q["dimension"]) == repr(r["dimension"]) and
                         q["dist_sum"] == r["dist_sum"] and
                         q["index_sum"] == r["index_sum"]) else "NO"
    print(f"{key[0]:>10} {r['blas_core']:>11} {key[1]:>6} {key[2]:>4} {key[3]:>1} "
          f"{r['twonn_s']:8.2f} {r['knn_s']:7.2f} {r['knn_gemm_s']:6.2f} {r['knn_screen_s']:6.2f} "
          f"{r['knn_other_s']:6.2f} {r['knn_prepare_s']:5.2f} {r['knn_ring_wait_s']:5.2f} "
          f"{r['colmean_s']:5.2f} {r['gflops_performed']:6.1f} {r['gflops_allpairs']:6.1f} "
          f"{r['sgemm_tile_gflops']:6.1f} {r['ratio_to_tile_limit']:7.2f} "
          f"{r['sgemm_square_gflops']:6.1f} {r['peak_rss_bytes'] / MiB:7.1f} "
          f"{r['input_bytes_per_rank'] / MiB:6.1f}  {r['dimension']:<20.17g} {same:>3} "
          f"{len(runs):>2}{'' if len(runs) < 2 else f' +{100 * spread:.0f}%'}")
if fa:
    print(f"\nFAISS IndexFlatL2 k=3, 1 thread (all ordered pairs: 2N^2D flops)")
    print(f"{'core':>10} {'(detected)':>11} {'N':>6} {'D':>4} {'search s':>8} {'GF':>6} "
          f"{'vs LH twonn P1':>14} {'dimension':<20} {'rel. diff':>9} {'data':>5}")
    for key in sorted(fa, key=sortkey):
        r = min(fa[key], key=lambda q: q["search_s"])
        p1 = lh.get(key + (1,))
        ratio = f"{r['search_s'] / p1[0]['twonn_s']:.2f}x" if p1 else "-"
        rel = f"{abs(r['dimension'] / p1[0]['dimension'] - 1):.1e}" if p1 else "-"
        data = ("same" if r["data_hash"] == p1[0]["data_hash"] else "DIFF") if p1 else "-"
        print(f"{key[0]:>10} {r['blas_core']:>11} {key[1]:>6} {key[2]:>4} {r['search_s']:8.2f} "
              f"{r['gflops_allpairs']:6.1f} {ratio:>14} {r['dimension']:<20.17g} {rel:>9} {data:>5}")
print(f"\nrecords: {sys.argv[1]}  full output: {sys.argv[1]}.log")
EOF
exit $status
