#!/bin/bash
# Submits a nightly pipeline as two dependent SLURM jobs: latenthook-array.sbatch, one array
# task per checkpoint of a list, then latenthook-compare.sbatch, which SLURM starts only when
# every array task has succeeded (--dependency=afterok) and cancels if one fails.
#
#   slurm/submit-nightly.sh [-l LAYER]... [-m MAX] [-s SBATCH_OPTION]... \
#                           JOB.yaml CKPTS.txt OUTROOT [run options]
#
#   -l LAYER          compare this layer (a module name under /cache) between consecutive
#                     checkpoints; without -l no comparison job is submitted
#   -m MAX            run at most MAX array tasks at once
#   -s SBATCH_OPTION  an sbatch option for both jobs, e.g. -s --partition=gpu -s --time=08:00:00
#
# Prints the two job IDs (the comparison's empty without -l) on one line. A task stopped at
# its time limit ends with exit code 75, which cancels the comparison: run the same command
# again, and the finished checkpoints are skipped in seconds while the others resume.
# Submit from the folder the relative paths are relative to (the jobs start there).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

# >>> lh-list: the same in latenthook-array.sbatch, latenthook-compare.sbatch, submit-nightly.sh
# lh_list_read LIST: reads a checkpoint list into the arrays lh_paths and lh_names. One
# checkpoint per line, `PATH [NAME]`; blank lines and lines starting with '#' are skipped.
# NAME names the checkpoint's output folder; it defaults to the last component of PATH
# without a .yaml or .safetensors suffix, with characters other than letters, digits, '.',
# '-' and '_' replaced by '_'. Fails, with a message, on a duplicate or unusable name.
lh_list_read() {
  local path name i
  lh_paths=() lh_names=()
  [ -r "$1" ] || { echo "cannot read the checkpoint list '$1'" >&2; return 1; }
  while read -r path name _ || [ -n "$path" ]; do
    case $path in '' | '#'*) continue ;; esac
    if [ -z "$name" ]; then
      name=${path%/}
      name=${name##*/}
      name=${name%.yaml}
      name=${name%.safetensors}
    fi
    name=${name//[^A-Za-z0-9._-]/_}
    case $name in '' | . | ..)
      echo "$1: no usable folder name for '$path': give one after the path" >&2; return 1 ;;
    esac
    for i in "${!lh_names[@]}"; do
      if [ "${lh_names[i]}" = "$name" ]; then
        echo "$1: '${lh_paths[i]}' and '$path' both name the folder '$name': give names after the paths" >&2
        return 1
      fi
    done
    lh_paths+=("$path")
    lh_names+=("$name")
  done <"$1"
  [ ${#lh_paths[@]} -gt 0 ] || { echo "$1: no checkpoints" >&2; return 1; }
}
# <<< lh-list

usage() {
  echo "usage: $0 [-l LAYER]... [-m MAX] [-s SBATCH_OPTION]... JOB.yaml CKPTS.txt OUTROOT [run options]" >&2
  exit 2
}
layers=() sbatch_opts=() max=
while getopts l:m:s: opt; do
  case $opt in
    l) layers+=("$OPTARG") ;;
    m) max=$OPTARG ;;
    s) sbatch_opts+=("$OPTARG") ;;
    *) usage ;;
  esac
done
shift $((OPTIND - 1))
[ $# -ge 3 ] || usage
job=$1 list=$2 outroot=$3
shift 3
lh_list_read "$list" || exit 2
n=${#lh_paths[@]}

# --parsable prints "ID" or "ID;CLUSTER".
array=$(sbatch --parsable --array="0-$((n - 1))${max:+%$max}" "${sbatch_opts[@]}" \
  "$here/latenthook-array.sbatch" "$job" "$list" "$outroot" "$@")
array=${array%%;*}
echo "array job $array: $n checkpoints of $list -> $outroot/{$(IFS=,; echo "${lh_names[*]}")}" >&2
compare=
if [ ${#layers[@]} -gt 0 ] && [ "$n" -gt 1 ]; then
  compare=$(sbatch --parsable --dependency="afterok:$array" --kill-on-invalid-dep=yes \
    "${sbatch_opts[@]}" "$here/latenthook-compare.sbatch" "$list" "$outroot" "${layers[@]}")
  compare=${compare%%;*}
  echo "comparison job $compare: after every task of $array has succeeded -> $outroot/compare/cka.tsv" >&2
fi
echo "$array $compare"
