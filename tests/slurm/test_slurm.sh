#!/usr/bin/env bash
# Integration test of the sbatch templates of slurm/ on a real single-node SLURM: a throw-away
# munged, slurmctld and slurmd (minislurm.sh) with everything under one temporary folder,
# stopped and removed at the end whatever happens. Needs root and the Debian packages
# slurm-wlm and munge; without them it fails, it does not skip (CI installs them).
#
#   bash tests/slurm/test_slurm.sh LATENTHOOK SOURCE_DIR [CHECK [--] COMMAND...]
#
# 1. The main job: `sbatch --ntasks=2 slurm/latenthook.sbatch COMMAND...` (srun --mpi=pmix),
#    then CHECK, the name of a check_* function below, looks at its output. @OUT@ in COMMAND
#    stands for a fresh folder the job may write to. The default is the demo job,
#      check_demo -- run SOURCE_DIR/jobs/demo.yaml --output-dir @OUT@
#    whose results are checked against tests/golden/demo/expected.json; a single command:
#      check_twonn -- twonn --data SOURCE_DIR/jobs/data/digits.h5:/X
# 2. Stop and resume: slurm/latenthook-run.sbatch runs tests/slurm/quick.yaml on 2 tasks; once
#    a step is complete, SIGTERM goes to the batch shell as --signal=B:TERM@N sends it, and the
#    template passes it on to every rank as SIGUSR1. The job must end FAILED with exit code
#    75, and the same job submitted again must skip the completed steps and complete.
# 3. A nightly chain: slurm/submit-nightly.sh submits slurm/latenthook-array.sbatch over two
#    checkpoints (the same model twice; ranks started by mpirun) and, after it
#    (--dependency=afterok), slurm/latenthook-compare.sbatch, whose CKA of a layer between
#    the two must be 1.
set -euo pipefail

if [ $# -lt 2 ]; then
  echo "usage: $0 LATENTHOOK SOURCE_DIR [CHECK [--] COMMAND...]" >&2
  exit 2
fi
lh=$(realpath "$1")
src=$(realpath "$2")
shift 2
check=check_demo
command=(run "$src/jobs/demo.yaml" --output-dir @OUT@)
if [ $# -gt 0 ]; then
  check=$1
  shift
  if [ "${1:-}" = -- ]; then shift; fi
  command=("$@")
fi
here=$(cd "$(dirname "$0")" && pwd)
quick=$here/quick.yaml
deadline=$((SECONDS + 240))

# The jobs run as root (the daemons' SlurmUser), which mpirun refuses unless told.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# A SLURM of the machine (or an enclosing job) must not leak into ours.
while read -r var; do unset "$var"; done < <(compgen -e | grep -E '^(SLURM|SBATCH|SRUN|SALLOC)_' || true)

passes=0 failures=0
pass() { echo "ok:   $*"; passes=$((passes + 1)); }
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

# --- checks of the main job's result -----------------------------------------------------------
# check_NAME STDOUT OUTDIR: STDOUT is the job's standard output, OUTDIR the folder @OUT@ named.

# The first number `"KEY": number` of a JSON file.
json_number() {
  [ -f "$1" ] || return 0
  sed -n "s/^[[:space:]]*\"$2\":[[:space:]]*\\([-+0-9.eE]*\\).*/\\1/p" "$1" | head -n 1
}
# near VALUE EXPECTED TOLERANCE: |VALUE - EXPECTED| <= TOLERANCE.
near() {
  [ -n "$1" ] && awk -v v="$1" -v e="$2" -v t="$3" 'BEGIN { d = v - e; exit !(d <= t && -d <= t) }'
}

check_twonn() { # TwoNN of the digits, as in README.md: dimension 9.1681995585064922
  local d
  d=$(json_number "$1" dimension)
  if near "$d" 9.1681995585064922 1e-9; then pass "twonn dimension $d"; else fail "twonn dimension '$d', expected 9.1682"; fi
}

check_run() { # a completed `latenthook run`: summary.json written, every step run or skipped
  local ran skipped
  ran=$(json_number "$2/summary.json" steps_run)
  skipped=$(json_number "$2/summary.json" steps_skipped)
  if [ -n "$ran" ] && [ -n "$skipped" ] && ((ran + skipped > 0)); then
    pass "run: summary.json, $ran steps run, $skipped skipped"
  else
    fail "run: no summary.json or no steps in $2"
  fi
}

check_demo() { # the demo job: every step ran, figures drawn, TwoNN of the pixels as the reference
  local ran d want f ok=1
  ran=$(json_number "$2/summary.json" steps_run)
  # the first "dimension" of both files is the TwoNN dimension of the first layer, "input"
  d=$(json_number "$2/summary.json" dimension)
  want=$(json_number "$src/tests/golden/demo/expected.json" dimension)
  for f in cka information_imbalance intrinsic_dimension probe_accuracy; do
    [ -s "$2/plots/$f.png" ] || ok=0
  done
  if [ "$ran" = 27 ] && ((ok)) && near "$d" "$want" 1e-5; then
    pass "demo job: 27 steps, figures, TwoNN of the input $d (reference $want)"
  else
    fail "demo job: steps_run '$ran' (expected 27), figures $ok, TwoNN '$d' (reference '$want')"
  fi
}

# --- SLURM helpers -----------------------------------------------------------------------------
# wait_job ID SECONDS: polls until job ID (all tasks of an array) left the queue; on timeout
# cancels it and fails.
wait_job() {
  local id=$1 until=$((SECONDS + $2))
  ((until < deadline)) || until=$deadline
  while [ -n "$(squeue -h -j "$id" 2>/dev/null)" ]; do
    if ((SECONDS >= until)); then
      fail "job $id still queued after $2 s: $(squeue -h -j "$id" -o '%i %T %r' | tr '\n' ' ')"
      scancel "$id" 2>/dev/null || true
      return 1
    fi
    sleep 0.2
  done
}

# expect_job ID STATE EXIT: job ID (every task of an array) ended in STATE with ExitCode EXIT.
expect_job() {
  local line state code bad=0
  while read -r line; do
    state=$(tr ' ' '\n' <<<"$line" | sed -n 's/^JobState=//p')
    code=$(tr ' ' '\n' <<<"$line" | sed -n 's/^ExitCode=//p')
    if [ "$state" != "$2" ] || [ "$code" != "$3" ]; then
      fail "job $(tr ' ' '\n' <<<"$line" | sed -n 's/^JobId=//p'): JobState=$state ExitCode=$code, expected $2 $3"
      bad=1
    fi
  done < <(scontrol -o show job "$1")
  if ((bad == 0)); then pass "job $1: $2 $3"; fi
}

# Prints job logs, indented, into the test output (which CTest shows on failure).
show_log() {
  local f
  for f in "$@"; do
    [ -f "$f" ] || continue
    echo "  --- ${f#"$work"/}"
    sed 's/^/  | /' "$f"
  done
}

cleanup() {
  local status=$?
  trap - EXIT INT TERM
  if ((failures > 0 || status != 0)) && [ -n "${MINISLURM_DIR:-}" ]; then minislurm_dump_logs; fi
  cd /
  minislurm_stop
  if ((failures > 0)) && ((status == 0)); then status=1; fi
  if ((status != 0 && failures == 0)); then failures=1; fi
  echo "test_slurm.sh: $SECONDS s"
  echo "$passes passed, $failures failed"
  exit "$status"
}

# --- the cluster -------------------------------------------------------------------------------
# shellcheck source=tests/slurm/minislurm.sh
source "$here/minislurm.sh"
trap cleanup EXIT
trap 'exit 143' INT TERM
work=$(mktemp -d /tmp/lh-slurm.XXXXXX)
if ! minislurm_start "$work"; then
  fail "could not start SLURM (needs root and: apt-get install slurm-wlm munge)"
  exit 1
fi
pass "single-node SLURM up in $SECONDS s: $(sinfo -h -N -o '%N %c CPUs %t')"
cd "$work"

# --- 0. the blocks every template shares are identical -------------------------------------------
echo "--- part 0 at ${SECONDS} s"
block() { sed -n "/^# >>> $2/,/^# <<< $2/p" "$1"; }
for t in latenthook-run.sbatch latenthook-array.sbatch latenthook-compare.sbatch; do
  if [ "$(block "$src/slurm/$t" lh-common)" = "$(block "$src/slurm/latenthook.sbatch" lh-common)" ]; then
    pass "slurm/$t: lh-common block as in latenthook.sbatch"
  else
    fail "slurm/$t: lh-common block differs from latenthook.sbatch's"
  fi
done
for t in latenthook-compare.sbatch submit-nightly.sh; do
  if [ "$(block "$src/slurm/$t" lh-list)" = "$(block "$src/slurm/latenthook-array.sbatch" lh-list)" ]; then
    pass "slurm/$t: lh-list block as in latenthook-array.sbatch"
  else
    fail "slurm/$t: lh-list block differs from latenthook-array.sbatch's"
  fi
done

# --- 1. the main job -----------------------------------------------------------------------------
echo "--- part 1 at ${SECONDS} s"
mkdir "$work/main"
args=("${command[@]//@OUT@/$work/main}")
echo "main job: latenthook.sbatch ${args[*]}"
id=$(LATENTHOOK=$lh sbatch --parsable --ntasks=2 --output="$work/main-%j.out" \
  --error="$work/main-%j.err" "$src/slurm/latenthook.sbatch" "${args[@]}")
id=${id%%;*}
if wait_job "$id" 100; then
  show_log "$work/main-$id.out" "$work/main-$id.err"
  expect_job "$id" COMPLETED 0:0
  "$check" "$work/main-$id.out" "$work/main"
fi

# --- 2. stop before the time limit, resume -------------------------------------------------------
echo "--- part 2 at ${SECONDS} s"
# The quick job with a digit probe per layer (3 more steps, the longest, at the end).
submit_run() {
  LATENTHOOK=$lh sbatch --parsable --ntasks=2 --output="$work/%x-%j.out" \
    "$src/slurm/latenthook-run.sbatch" "$quick" "$work/run" \
    --set 'analyses.probe={num_classes: 10, max_iter: 20, seed: 0}'
}
id=$(submit_run)
id=${id%%;*}
log=$work/latenthook-run-$id.out
# Once the first step (the cache) is complete, with 9 steps to go.
until grep -q 'run: cache done' "$log" 2>/dev/null || ((SECONDS >= deadline)) \
  || [ -z "$(squeue -h -j "$id" 2>/dev/null)" ]; do
  sleep 0.1
done
# What --signal=B:TERM@N does at its time (the same delivery, the same log; checked by hand).
scancel --batch --signal=TERM "$id" || fail "job $id ended before the signal"
if wait_job "$id" 60; then
  show_log "$log"
  expect_job "$id" FAILED 75:0
  # "stopped by signal 10 before step 'twonn/input' (1 steps complete); run the same ..."
  complete=$(sed -n 's/.*stopped by signal 10 before step .* (\([0-9]*\) steps complete).*/\1/p' "$log")
  if grep -q 'stop requested: SIGUSR1 to every rank' "$log" && [ -n "$complete" ]; then
    pass "the batch shell passed SIGTERM on as SIGUSR1; the run stopped after $complete steps"
  else
    fail "no stop request, or no stop at a checkpoint, in the log"
  fi
  id=$(submit_run)
  id=${id%%;*}
  if wait_job "$id" 60; then
    show_log "$work/latenthook-run-$id.out"
    expect_job "$id" COMPLETED 0:0
    ran=$(json_number "$work/run/summary.json" steps_run)
    skipped=$(json_number "$work/run/summary.json" steps_skipped)
    if [ -n "$ran" ] && [ "$skipped" = "${complete:-x}" ] && ((skipped >= 1 && ran >= 1)); then
      pass "the resubmitted job resumed: $skipped steps skipped, $ran run"
    else
      fail "the resubmitted job did not resume after step ${complete:-?}: steps_run '$ran', steps_skipped '$skipped'"
    fi
  fi
fi

# --- 3. a nightly chain: job array over two checkpoints, then the comparison -------------------
echo "--- part 3 at ${SECONDS} s"
model=$src/jobs/models/digits-mlp/model.yaml
printf '# two checkpoints (the same model twice)\n%s a\n%s b\n' "$model" "$model" >"$work/ckpts.txt"
ids=$(LATENTHOOK=$lh LH_LAUNCHER=mpirun "$src/slurm/submit-nightly.sh" -l layers.2 \
  -s --ntasks=2 -s --overcommit -s --output="$work/%x-%j.out" \
  "$quick" "$work/ckpts.txt" "$work/nightly")
read -r array compare <<<"$ids"
if [ -z "${compare:-}" ]; then
  fail "submit-nightly.sh printed '$ids', expected two job IDs"
elif wait_job "$array" 60 && wait_job "$compare" 30; then
  show_log "$work"/latenthook-array-*.out "$work"/latenthook-compare-*.out
  expect_job "$array" COMPLETED 0:0
  for c in a b; do
    if grep -q "\"model\": \"$model\"" "$work/nightly/$c/summary.json" 2>/dev/null; then
      pass "array task for checkpoint $c: --set model=... into nightly/$c"
    else
      fail "nightly/$c/summary.json missing or without the checkpoint as model"
    fi
  done
  expect_job "$compare" COMPLETED 0:0
  cka=$(awk -F '\t' '$1 == "a" && $2 == "b" && $3 == "layers.2" { print $4 }' \
    "$work/nightly/compare/cka.tsv" 2>/dev/null || true)
  if near "$cka" 1 1e-9; then pass "comparison job after the array: CKA $cka"; else fail "comparison CKA '$cka', expected 1"; fi
fi
