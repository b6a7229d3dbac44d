#!/usr/bin/env bash
# A one-node Slurm cluster on this machine, then the default experiment as a 4-task job array
# and a merge job (`strata slurm --submit`); the merged files must equal `strata run`'s byte for
# byte. Installs Debian's slurm-wlm and munge if they are missing (needs root). Usage:
#   scripts/slurm-local.sh [path/to/strata]      (default: target/release/strata, built if missing)
set -euo pipefail
cd "$(dirname "$0")/.."
strata=${1:-target/release/strata}
if [ ! -x "$strata" ]; then
  cargo build --release --quiet
  strata=target/release/strata
fi
strata=$(realpath "$strata")

if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq slurm-wlm munge >/dev/null
fi

work=$(mktemp -d /tmp/strata-slurm.XXXXXX)
chmod 755 "$work"
host=$(hostname -s)
cpus=$(nproc)
mem=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 / 2 ))

# munge: a key, then the daemon.
mkdir -p /etc/munge /var/log/munge /var/lib/munge /run/munge
if [ ! -s /etc/munge/munge.key ]; then
  dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none
fi
chown -R munge:munge /etc/munge /var/log/munge /var/lib/munge /run/munge
chmod 700 /etc/munge /var/log/munge
chmod 400 /etc/munge/munge.key
pgrep -x munged >/dev/null || runuser -u munge -- munged

# Slurm: one node that is also the controller; state and logs under $work.
conf_dir=/etc/slurm
mkdir -p "$conf_dir" "$work/state" "$work/spool"
cat >"$conf_dir/slurm.conf" <<EOF
ClusterName=strata-local
SlurmctldHost=$host
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$work/state
SlurmdSpoolDir=$work/spool
SlurmctldLogFile=$work/slurmctld.log
SlurmdLogFile=$work/slurmd.log
SlurmctldPidFile=$work/slurmctld.pid
SlurmdPidFile=$work/slurmd.pid
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
NodeName=$host CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=local Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
printf "CgroupPlugin=cgroup/v1\nCgroupAutomount=no\n" >"$conf_dir/cgroup.conf"

pkill -x slurmctld 2>/dev/null || true
pkill -x slurmd 2>/dev/null || true
sleep 1
slurmctld -c -i
slurmd
for _ in $(seq 60); do
  if sinfo -h -o '%T' 2>/dev/null | grep -qE '^(idle|mixed|allocated)'; then break; fi
  scontrol update nodename="$host" state=resume >/dev/null 2>&1 || true
  sleep 1
done
sinfo

# The default experiment, whole and as a job array of 4 shards plus a merge.
"$strata" run default --quiet --out "$work/whole" >/dev/null
"$strata" slurm default --array 4 --out "$work/array" --submit
for _ in $(seq 300); do
  [ -z "$(squeue -h 2>/dev/null)" ] && break
  sleep 1
done
if [ -n "$(squeue -h)" ]; then
  echo "slurm-local: jobs still queued after 300 s" >&2
  squeue >&2
  exit 1
fi
status=0
for f in results.csv results.jsonl summary.md points.jsonl; do
  if ! cmp -s "$work/whole/$f" "$work/array/$f"; then
    echo "slurm-local: $f differs between strata run and the merged job array" >&2
    status=1
  fi
done
if [ $status -ne 0 ]; then
  tail -n 20 "$work"/array/logs/*.log "$work"/slurmctld.log >&2 || true
  exit 1
fi
echo "slurm-local: 4 array tasks and the merge job give the files of strata run, byte for byte ($work)"
pkill -x slurmctld || true
pkill -x slurmd || true
