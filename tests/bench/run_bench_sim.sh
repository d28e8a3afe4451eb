#!/usr/bin/env bash
# run_bench_sim.sh: runs the similarity benchmark (issue 4) and its DADApy stand-in, prints a
# table.
#
# Builds nothing: build first with `cmake --build --preset release --target lh_bench_sim`.
# Stages (SIMS): linear CKA on the Gram path (cka), on the ScaLAPACK path (scalapack), the
# information imbalance (ii), and the peer comparison (peer: LatentHook and dadapy_ii.py at the
# same small shape). One mpiexec launch per configuration (so that the peak memory it reports
# belongs to it), OPENBLAS_NUM_THREADS=1. Before each CKA launch the script checks that the
# job's estimated memory fits MemAvailable and otherwise lowers N (and says so). Every record
# goes to $OUT (JSON lines), the full output to $OUT.log, and a table to stdout.
#
# Environment (all optional):
#   BUILD=build  SIMS="cka scalapack ii peer"  RANKS="1 2"  INTRINSIC=16  SEED=42
#   CKA_N=1000000 CKA_D=768    SCA_N=20000 SCA_D=16384 SCA_RANKS="2"
#   II_NS="50000" II_DS="64 768"    PEER_N=8000 PEER_D=64 PEER_REPS=5 PEER_RANKS="1 2"
#   CORES="default"  (default = whatever OpenBLAS detects: OPENBLAS_CORETYPE unset; add e.g.
#                     SkylakeX or Haswell to compare forced cores)
#   REPEAT=1  (launches per configuration; the table shows the fastest, and the spread)
#   OUT=$BUILD/tests/bench/bench_sim_<date>.jsonl
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
BUILD=${BUILD:-$root/build}
BENCH=$BUILD/tests/bench/lh_bench_sim
SIMS=${SIMS:-"cka scalapack ii peer"}
RANKS=${RANKS:-"1 2"}
INTRINSIC=${INTRINSIC:-16}
SEED=${SEED:-42}
CKA_N=${CKA_N:-1000000}
CKA_D=${CKA_D:-768}
SCA_N=${SCA_N:-20000}
SCA_D=${SCA_D:-16384}
SCA_RANKS=${SCA_RANKS:-2}
II_NS=${II_NS:-50000}
II_DS=${II_DS:-"64 768"}
PEER_N=${PEER_N:-8000}
PEER_D=${PEER_D:-64}
PEER_REPS=${PEER_REPS:-5}
PEER_RANKS=${PEER_RANKS:-"1 2"}
CORES=${CORES:-default}
REPEAT=${REPEAT:-1}
OUT=${OUT:-$BUILD/tests/bench/bench_sim_$(date +%Y%m%d_%H%M%S).jsonl}
PY=/usr/bin/python3

if [[ ! -x $BENCH ]]; then
  echo "run_bench_sim.sh: $BENCH not found; build it first:" >&2
  echo "  cmake --build --preset release --target lh_bench_sim" >&2
  exit 2
fi
if [[ $(id -u) == 0 ]]; then
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi
ncores=$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc) # nproc obeys OMP_NUM_THREADS
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1
: >"$OUT"
: >"$OUT.log"
log() { echo "$*" | tee -a "$OUT.log" >&2; }
echo "# $(date -Is) $(hostname) $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-)," \
  "$ncores cores, $(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo);" \
  "load before: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$OUT.log"

# Runs "$@" with OPENBLAS_CORETYPE set to $1 (or unset for "default"), tagging JSON records
# with the requested core and any extra "key": value pairs in $TAG.
TAG=""
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
      echo "${line%\}}, \"core_requested\": \"$core\"$TAG}" >>"$OUT"
    fi
  done
  return "${PIPESTATUS[0]}"
}

# Memory the whole job needs (bytes, estimated), for the configurations that come near the
# machine's: CKA's Gram path holds the two float32 inputs (8 N D) and small buffers. The ScaLAPACK path adds block-cyclic copies, staging copies and pdgemr2d/PBLAS
# buffers: its peak RSS measured here (N 4000 and 8000, D 4096, 2 ranks) grows by about
# 70 N D bytes over the inputs (nine float64 copies of one matrix), so 80 N D + 8 D^2.
need_bytes() { # sim N D
  case $1 in
    cka) echo $((8 * $2 * $3)) ;;
    scalapack) echo $((80 * $2 * $3 + 8 * $3 * $3)) ;;
  esac
}
avail_bytes() { echo $(($(awk '/MemAvailable/ {print $2}' /proc/meminfo) * 1024)); }
SLACK=$((1536 * 1024 * 1024)) # MPI, OpenBLAS, the page cache the OS will not give back

# The largest N (multiple of $4, at least $4) whose job fits in the available memory.
fit_n() { # sim N D step
  local n=$2 avail
  avail=$(($(avail_bytes) - SLACK))
  while (($(need_bytes "$1" "$n" "$3") > avail && n > $4)); do
    n=$(((n - 1) / $4 * $4))
  done
  echo "$n"
}

status=0
launch() { # core P args...
  local core=$1 P=$2
  shift 2
  local over=() xcore=()
  ((P > ncores)) && over=(--oversubscribe)
  [[ $core != default ]] && xcore=(-x OPENBLAS_CORETYPE)
  with_core "$core" mpiexec -n "$P" "${over[@]}" -x OPENBLAS_NUM_THREADS -x OMP_NUM_THREADS \
    "${xcore[@]}" "$BENCH" --intrinsic "$INTRINSIC" --seed "$SEED" "$@" || status=1
}

for core in $CORES; do
  for sim in $SIMS; do
    case $sim in
      cka | scalapack)
        if [[ $sim == cka ]]; then N0=$CKA_N D=$CKA_D ranks=$RANKS step=250000
        else N0=$SCA_N D=$SCA_D ranks=$SCA_RANKS step=2048; fi
        for P in $ranks; do
          for ((rep = 1; rep <= REPEAT; rep++)); do
            N=$(fit_n "$sim" "$N0" "$D" "$step")
            TAG=""
            if ((N != N0)); then
              log "!! $sim: N $N0 needs ~$(($(need_bytes "$sim" "$N0" "$D") >> 30)) GiB, " \
                "$(($(avail_bytes) >> 30)) GiB available: running N $N instead"
              TAG=", \"n_requested\": $N0"
            fi
            log "== $sim, core $core, $P rank(s), N $N, D $D (run $rep/$REPEAT)"
            launch "$core" "$P" --bench "$sim" --n "$N" --d "$D"
          done
        done
        ;;
      ii)
        TAG=""
        for P in $RANKS; do
          for N in $II_NS; do
            for D in $II_DS; do
              for ((rep = 1; rep <= REPEAT; rep++)); do
                log "== ii, core $core, $P rank(s), N $N, D $D (run $rep/$REPEAT)"
                launch "$core" "$P" --bench ii --n "$N" --d "$D"
              done
            done
          done
        done
        ;;
      peer)
        TAG=", \"peer_shape\": true"
        for P in $PEER_RANKS; do
          for ((rep = 1; rep <= REPEAT; rep++)); do
            log "== ii (peer shape), core $core, $P rank(s), N $PEER_N, D $PEER_D (run $rep/$REPEAT)"
            launch "$core" "$P" --bench ii --n "$PEER_N" --d "$PEER_D" --reps "$PEER_REPS"
          done
        done
        for ((rep = 1; rep <= REPEAT; rep++)); do
          log "== DADApy stand-in, core $core, N $PEER_N, D $PEER_D (run $rep/$REPEAT)"
          with_core "$core" "$PY" "$here/dadapy_ii.py" --n "$PEER_N" --d "$PEER_D" \
            --intrinsic "$INTRINSIC" --seed "$SEED" || status=1
        done
        TAG=""
        ;;
      *) echo "run_bench_sim.sh: unknown stage $sim (cka, scalapack, ii, peer)" >&2; exit 2 ;;
    esac
  done
done
echo "# load after: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$OUT.log"

"$PY" - "$OUT" <<'EOF'
import json, sys
from collections import defaultdict

recs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
GiB, MiB = 1 << 30, 1 << 20
groups = defaultdict(list)
for r in recs:
    key = (r["bench"], r["core_requested"], r["N"], r["D"], r.get("ranks", 1),
           r.get("peer_shape", False))
    groups[key].append(r)
fastest = {k: min(v, key=lambda q: q["wall_s"]) for k, v in groups.items()}


def runs(k):
    v = groups[k]
    if len(v) < 2:
        return f"{len(v):>2}"
    return f"{len(v):>2} +{100 * (max(q['wall_s'] for q in v) / fastest[k]['wall_s'] - 1):.0f}%"


def same_as_p1(k, fields):
    """'yes' if the 1-rank run printed the same values bit for bit, else the largest
    relative difference."""
    p1 = fastest.get(k[:4] + (1,) + k[5:])
    if not p1 or k[4] == 1:
        return "-"
    r = fastest[k]
    if all(repr(p1[f]) == repr(r[f]) for f in fields):
        return "yes"
    return f"{max(abs(r[f] / p1[f] - 1) for f in fields):.0e}"


def show(bench, title, hdr, row):
    keys = sorted(k for k in fastest if k[0] == bench)
    if not keys:
        return
    print(f"\n{title}\n{hdr}")
    for k in keys:
        print(row(k, fastest[k]) + f" {runs(k)}")


show("cka", "Linear CKA, Gram path (seconds, max over ranks; limit = the same 2 DSYRK + DGEMM "
     "alone, float64, same shapes)",
     f"{'core':>8} {'(detected)':>11} {'N':>8} {'D':>5} {'P':>1} {'wall s':>7} {'GF':>6} "
     f"{'dsyrkGF':>7} {'dgemmGF':>7} {'limit s':>7} {'lim/wall':>8} {'means s':>7} "
     f"{'RSS GiB':>7} {'in GiB':>6}  {'CKA':<20} {'=P1':>5} {'runs':>4}",
     lambda k, r: f"{k[1]:>8} {r['blas_core']:>11} {k[2]:>8} {k[3]:>5} {k[4]:>1} "
     f"{r['wall_s']:7.2f} {r['gflops']:6.1f} {r['dsyrk_gflops']:7.1f} {r['dgemm_gflops']:7.1f} "
     f"{r['limit_s']:7.2f} {r['ratio']:8.3f} {r['colmean_s']:7.2f} "
     f"{r['peak_rss_bytes'] / GiB:7.2f} {r['input_bytes_per_rank'] / GiB:6.2f}  "
     f"{r['value']:<20.17g} {same_as_p1(k, ['value']):>5}"
     + (f" (N {r['n_requested']} did not fit)" if "n_requested" in r else ""))
show("scalapack", "Linear CKA, ScaLAPACK path (PBLAS = 2 PDSYRK + PDGEMM timed alone on the "
     "same block-cyclic operands; local = DGEMM 4096^3, every rank at once)",
     f"{'core':>8} {'(detected)':>11} {'N':>8} {'D':>5} {'P':>1} {'grid':>4} {'wall s':>7} "
     f"{'GF':>6} {'PBLAS s':>7} {'syrkGF':>6} {'pdgemmGF':>8} {'localGF':>7} {'pdgemm/loc':>10} "
     f"{'conv s':>6} {'RSS GiB':>7}  {'CKA':<20} {'=P1':>5} {'runs':>4}",
     lambda k, r: f"{k[1]:>8} {r['blas_core']:>11} {k[2]:>8} {k[3]:>5} {k[4]:>1} {r['grid']:>4} "
     f"{r['wall_s']:7.2f} {r['gflops']:6.1f} {r['pblas_s']:7.2f} {r['pdsyrk_gflops']:6.1f} "
     f"{r['pdgemm_gflops']:8.1f} {r['dgemm_square_gflops']:7.1f} {r['pdgemm_ratio']:10.3f} "
     f"{r['to_bcmat_s']:6.2f} {r['peak_rss_bytes'] / GiB:7.2f}  {r['value']:<20.17g} "
     f"{same_as_p1(k, ['value']):>5}"
     + (f" (N {r['n_requested']} did not fit)" if "n_requested" in r else ""))
show("ii", "Information imbalance p = 2, k = 1 (seconds, max over ranks; limit = 3 x 2 N^2 D "
     "flops at the SGEMM rate of 256 x 2048 x D tiles; perfGF = SGEMM flops performed / "
     "(gemm + screen))",
     f"{'core':>8} {'(detected)':>11} {'N':>8} {'D':>5} {'P':>1} {'wall s':>7} {'gemm':>6} "
     f"{'screen':>6} {'prep':>5} {'wait':>5} {'other':>5} {'perfGF':>6} {'tileGF':>6} "
     f"{'limit s':>7} {'lim/wall':>8} {'RSS MiB':>7} {'in MiB':>6}  {'A->B':<20} {'=P1':>5} "
     f"{'runs':>4}",
     lambda k, r: f"{k[1]:>8} {r['blas_core']:>11} {k[2]:>8} {k[3]:>5} {k[4]:>1} "
     f"{r['wall_s']:7.3f} {r['gemm_s']:6.2f} {r['screen_s']:6.2f} {r['prepare_s']:5.2f} "
     f"{r['ring_wait_s']:5.2f} {r['other_s']:5.2f} {r['gflops_performed']:6.1f} "
     f"{r['sgemm_tile_gflops']:6.1f} {r['limit_s']:7.3f} {r['ratio']:8.3f} "
     f"{r['peak_rss_bytes'] / MiB:7.1f} {r['input_bytes_per_rank'] / MiB:6.1f}  "
     f"{r['a_to_b']:<20.17g} {same_as_p1(k, ['a_to_b', 'b_to_a']):>5}")
peers = sorted(k for k in fastest if k[0] == "dadapy_ii")
if peers:
    print("\nPeer: DADApy's exact information imbalance, NumPy/scikit-learn stand-in (NOT DADApy "
          "itself), 1 thread, against LatentHook on the same data")
    print(f"{'core':>8} {'(detected)':>11} {'N':>8} {'D':>5} {'stand-in s':>10} {'lists':>6} "
          f"{'ranks':>6} {'LH P=1 s':>8} {'LH P=2 s':>8} {'P=1 x':>6} {'P=2 x':>6} "
          f"{'same sums':>9} {'data':>5} {'runs':>4}")
    for k in peers:
        r = fastest[k]
        lh = {P: fastest.get(("ii", k[1], k[2], k[3], P, True)) for P in (1, 2)}
        col = lambda P: f"{lh[P]['wall_s']:8.3f}" if lh[P] else f"{'-':>8}"
        ratio = lambda P: f"{r['wall_s'] / lh[P]['wall_s']:5.0f}x" if lh[P] else f"{'-':>6}"
        ref = lh[2] or lh[1]
        same = data = "-"
        if ref:
            same = "yes" if (ref["sum_a_to_b"], ref["sum_b_to_a"]) == (r["sum_a_to_b"], r["sum_b_to_a"]) else "NO"
            data = "same" if (ref["hash_a"], ref["hash_b"]) == (r["hash_a"], r["hash_b"]) else "DIFF"
        print(f"{k[1]:>8} {r['blas_core']:>11} {k[2]:>8} {k[3]:>5} {r['wall_s']:10.2f} "
              f"{r['neighbours_s']:6.2f} {r['ranks_s']:6.2f} {col(1)} {col(2)} {ratio(1)} "
              f"{ratio(2)} {same:>9} {data:>5} {runs(k)}")
print(f"\nrecords: {sys.argv[1]}  full output: {sys.argv[1]}.log")
EOF
exit $status
