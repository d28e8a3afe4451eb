# shellcheck shell=bash
# A throw-away single-node SLURM cluster for tests of slurm/, sourced by bash scripts.
#
# It runs its own munged (own key and socket), slurmctld and slurmd, all as root except munged,
# with every file (configuration, state, spool, logs, pid files) under one folder, on TCP ports
# that nothing else listens on, so it neither needs nor touches a system SLURM or munge
# installation (/etc/slurm, /etc/munge, /run/munge, /var/lib/slurm) and leaves nothing behind.
# Clients find it through SLURM_CONF, which minislurm_start exports.
#
#   source tests/slurm/minislurm.sh
#   minislurm_start "$(mktemp -d /tmp/lh-slurm.XXXXXX)"   # returns once the node is idle
#   sbatch ...
#   minislurm_stop                                        # stops only the daemons it started
#
# Needs root and the Debian packages slurm-wlm and munge. munged refuses a socket folder that
# is not reachable by everyone, so the folder must lie under a world-traversable path (/tmp).

MINISLURM_DIR=
MINISLURM_PIDS=()
MINISLURM_CTLD_UP=0

minislurm_log() { printf 'minislurm: %s\n' "$*" >&2; }

# Whether nothing listens on TCP port $1 of this machine.
minislurm_port_free() {
  ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# Prints two free consecutive ports (for slurmctld and slurmd), starting the search at $1.
minislurm_find_ports() {
  local p
  for ((p = $1; p < $1 + 200; p += 2)); do
    if minislurm_port_free "$p" && minislurm_port_free "$((p + 1))"; then
      echo "$p $((p + 1))"
      return 0
    fi
  done
  return 1
}

# Prints the ends of the daemon logs (after a failure); a daemon's standard error where its
# log file was never written.
minislurm_dump_logs() {
  local f
  for f in munge/munged.log slurmctld.log slurmd.log; do
    f=$MINISLURM_DIR/$f
    [ -s "$f" ] || f=${f%.log}.out
    [ -s "$f" ] || continue
    echo "----- $f (last 30 lines)" >&2
    tail -n 30 "$f" >&2
  done
}

# minislurm_start DIR: starts munged, slurmctld and slurmd with all their files under DIR (an
# existing, empty folder) and waits until the node is idle. Returns non-zero, with the daemons
# it did start still recorded for minislurm_stop, if anything fails.
minislurm_start() {
  MINISLURM_DIR=$1
  local d=$MINISLURM_DIR cmd ports ctld_port slurmd_port node host i
  for cmd in munged mungekey slurmctld slurmd sbatch squeue scontrol sinfo setpriv; do
    command -v "$cmd" >/dev/null || { minislurm_log "$cmd not found (apt-get install slurm-wlm munge)"; return 1; }
  done
  [ "$(id -u)" = 0 ] || { minislurm_log "must run as root"; return 1; }

  # munged, as the munge user, with its own key, socket, pid, seed and log files.
  chmod 755 "$d"
  mkdir -m 755 "$d/munge"
  mungekey --create --keyfile="$d/munge/munge.key" 2>/dev/null \
    || dd if=/dev/urandom of="$d/munge/munge.key" bs=1024 count=1 status=none
  chmod 600 "$d/munge/munge.key"
  chown -R munge:munge "$d/munge"
  setpriv --reuid=munge --regid=munge --clear-groups \
    munged --foreground --socket="$d/munge/munge.socket" --key-file="$d/munge/munge.key" \
    --log-file="$d/munge/munged.log" --pid-file="$d/munge/munged.pid" \
    --seed-file="$d/munge/munged.seed" >/dev/null 2>&1 &
  MINISLURM_PIDS+=($!)
  for ((i = 0; i < 100; i++)); do
    [ -S "$d/munge/munge.socket" ] && munge -n -S "$d/munge/munge.socket" 2>/dev/null \
      | unmunge -S "$d/munge/munge.socket" >/dev/null 2>&1 && break
    sleep 0.1
  done
  ((i < 100)) || { minislurm_log "munged did not start"; minislurm_dump_logs; return 1; }

  ports=$(minislurm_find_ports 16817) || { minislurm_log "no free TCP ports"; return 1; }
  read -r ctld_port slurmd_port <<<"$ports"
  host=$(hostname -s)
  # The node as slurmd sees it (CPUs, sockets, cores, threads, memory), addressed by loopback.
  node=$(slurmd -C | head -n 1)
  [[ $node == NodeName=* ]] || { minislurm_log "slurmd -C printed: $node"; return 1; }
  mkdir -p "$d/state" "$d/spool"
  cat >"$d/slurm.conf" <<EOF
ClusterName=minislurm
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$d/munge/munge.socket
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SwitchType=switch/none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MailProg=/bin/true
ReturnToService=2
KillWait=5
SchedulerParameters=batch_sched_delay=0
StateSaveLocation=$d/state
SlurmdSpoolDir=$d/spool
SlurmctldPidFile=$d/slurmctld.pid
SlurmdPidFile=$d/slurmd.pid
SlurmctldLogFile=$d/slurmctld.log
SlurmdLogFile=$d/slurmd.log
$node NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=test Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
  export SLURM_CONF=$d/slurm.conf

  slurmctld -D -i -f "$SLURM_CONF" >"$d/slurmctld.out" 2>&1 &
  MINISLURM_PIDS+=($!)
  for ((i = 0; i < 100; i++)); do
    scontrol ping 2>/dev/null | grep -q 'is UP' && break
    sleep 0.1
  done
  ((i < 100)) || { minislurm_log "slurmctld did not answer"; minislurm_dump_logs; return 1; }
  MINISLURM_CTLD_UP=1

  slurmd -D -f "$SLURM_CONF" >"$d/slurmd.out" 2>&1 &
  MINISLURM_PIDS+=($!)
  for ((i = 0; i < 200; i++)); do
    [ "$(sinfo -h -N -o %t 2>/dev/null)" = idle ] && return 0
    sleep 0.1
  done
  minislurm_log "the node did not become idle: $(sinfo -h -N -o '%N %t %E' 2>&1)"
  minislurm_dump_logs
  return 1
}

# minislurm_stop: cancels the jobs left and waits until they are gone (their slurmstepd
# processes are not children of slurmd), stops the daemons minislurm_start started, by PID,
# slurmd first, waits until they have exited, then removes the folder. Safe to call more than
# once and after a failed start.
minislurm_stop() {
  local pid i t
  if [ "$MINISLURM_CTLD_UP" = 1 ]; then
    scancel --quiet --partition=test 2>/dev/null || true
    for ((i = 0; i < 150; i++)); do
      [ -z "$(squeue -h 2>/dev/null)" ] && break
      sleep 0.1
    done
  fi
  MINISLURM_CTLD_UP=0
  for ((i = ${#MINISLURM_PIDS[@]} - 1; i >= 0; i--)); do
    pid=${MINISLURM_PIDS[i]}
    kill -TERM "$pid" 2>/dev/null || continue
    for ((t = 0; t < 100; t++)); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  MINISLURM_PIDS=()
  if [ -n "$MINISLURM_DIR" ] && [ -d "$MINISLURM_DIR" ]; then
    rm -rf -- "$MINISLURM_DIR"
  fi
  MINISLURM_DIR=
}
