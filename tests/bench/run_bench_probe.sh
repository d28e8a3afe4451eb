#!/usr/bin/env bash
# run_bench_probe.sh: the logistic probe benchmark (issue 7, point 6) and its scikit-learn peer.
#
# Builds nothing: build first with `cmake --build --preset release --target lh_bench_probe`.
# Stages: lh_bench_probe at N (default 10^6) x 768 on each rank count of RANKS; then the peer
# comparison at PEER_N (default 2*10^5: scikit-learn at 10^6 takes too long on this machine)
# for LatentHook on 1 rank and sklearn_probe.py on one thread. OPENBLAS_NUM_THREADS=1 per rank.
# Records go to $OUT (JSON lines), the full output to $OUT.log.
#
# Environment (all optional): BUILD=build N=1000000 D=768 C=10 L2=1e-4 TOL=1e-6 RANKS="1 2"
#   PEER_N=200000 SK_TOL=1e-4 SK_DTYPE=float64 STAGES="scale peer" CORE= (unset: detected)
#   OUT=$BUILD/tests/bench/bench_probe_<date>.jsonl
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
BUILD=${BUILD:-$root/build}
BENCH=$BUILD/tests/bench/lh_bench_probe
N=${N:-1000000}
D=${D:-768}
C=${C:-10}
L2=${L2:-1e-4}
TOL=${TOL:-1e-6}
RANKS=${RANKS:-"1 2"}
PEER_N=${PEER_N:-200000}
SK_TOL=${SK_TOL:-1e-4}
SK_DTYPE=${SK_DTYPE:-float64}
STAGES=${STAGES:-"scale peer"}
OUT=${OUT:-$BUILD/tests/bench/bench_probe_$(date +%Y%m%d_%H%M%S).jsonl}
PY=/usr/bin/python3

if [[ ! -x $BENCH ]]; then
  echo "run_bench_probe.sh: $BENCH not found; build it first:" >&2
  echo "  cmake --build --preset release --target lh_bench_probe" >&2
  exit 2
fi
if [[ $(id -u) == 0 ]]; then
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1
# the core OpenBLAS detects (the environment may force one; CORE=Haswell etc. to compare)
if [[ -n ${CORE:-} ]]; then export OPENBLAS_CORETYPE=$CORE; else unset OPENBLAS_CORETYPE; fi
: >"$OUT"
: >"$OUT.log"
echo "# $(date -Is) $(hostname) $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-), load: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$OUT.log"

run_lh() { # ranks n
  mpiexec --oversubscribe -n "$1" "$BENCH" --n "$2" --d "$D" --classes "$C" --l2 "$L2" --tol "$TOL" \
    | tee -a "$OUT.log" | grep '^{' >>"$OUT" || echo "lh_bench_probe failed (ranks $1, N $2)" | tee -a "$OUT.log"
}

for stage in $STAGES; do
  case $stage in
    scale) for p in $RANKS; do run_lh "$p" "$N"; done ;;
    peer)
      run_lh 1 "$PEER_N"
      $PY "$here/sklearn_probe.py" --n "$PEER_N" --d "$D" --classes "$C" --l2 "$L2" --tol "$SK_TOL" \
        --dtype "$SK_DTYPE" | tee -a "$OUT.log" >>"$OUT"
      ;;
  esac
done

$PY - "$OUT" <<'PYEOF'
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
print(f"{'who':10} {'N':>8} {'P':>2} {'fit s':>8} {'iter':>5} {'grad s':>7} {'GEMM%':>6} {'objective':>20} {'acc':>7} {'RSS MiB':>8}")
for r in recs:
    who = "sklearn" if r["bench"] == "probe_sklearn" else "latenthook"
    print(f"{who:10} {r['N']:>8} {r.get('ranks', 1):>2} {r['fit_s']:>8.2f} {r['iterations']:>5} "
          f"{r.get('grad_s', float('nan')):>7.3f} {100 * r.get('gemm_share', float('nan')):>6.1f} "
          f"{r['objective']:>20.14g} {r['accuracy']:>7.4f} {r['peak_rss_bytes'] / 2**20:>8.0f}")
PYEOF
echo "records: $OUT"
