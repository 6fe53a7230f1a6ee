#!/usr/bin/env bash
# The test harness's SLURM: a real single-node cluster (Debian 12, slurm-wlm 22.05) as plain root
# processes (no systemd), all state and logs under $BASE; stopped by pid files (down.sh).
# From ../shared/notes/slurm-single-node.md, which was checked on this kind of machine.
#   AUTH=munge|none   (default munge; auth/none needs no munged, 22.05 only)
#   ACCOUNTING=0|1    (default 1: MariaDB + slurmdbd, so sacct works)
set -euo pipefail
BASE=${BASE:-/tmp/slurm}
AUTH=${AUTH:-munge}
ACCOUNTING=${ACCOUNTING:-1}
H=$(hostname)
export SLURM_CONF=$BASE/slurm.conf

pkgs="slurmctld slurmd slurm-client"
[ "$AUTH" = munge ] && pkgs="$pkgs munge"
[ "$ACCOUNTING" = 1 ] && pkgs="$pkgs slurmdbd mariadb-server"
if ! dpkg -s $pkgs >/dev/null 2>&1; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $pkgs >/dev/null
fi

mkdir -p $BASE/{state,spool,log}

if [ "$AUTH" = munge ]; then
  AUTHLINES="AuthType=auth/munge
CredType=cred/munge"
  # Debian's postinst creates /etc/munge/munge.key; make one if missing
  [ -s /etc/munge/munge.key ] || { mungekey --create --force 2>/dev/null || dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none; chown munge:munge /etc/munge/munge.key; chmod 400 /etc/munge/munge.key; }
  mkdir -p /run/munge && chown munge:munge /run/munge
  [ -s /run/munge/munged.pid ] && kill -0 "$(cat /run/munge/munged.pid)" 2>/dev/null \
    || runuser -u munge -- /usr/sbin/munged     # daemonizes; pid in /run/munge/munged.pid
  munge -n | unmunge >/dev/null                  # sanity check
else
  AUTHLINES="AuthType=auth/none
CredType=cred/none"
fi

if [ "$ACCOUNTING" = 1 ]; then
  mkdir -p $BASE/mysql $BASE/dbrun && chown mysql:mysql $BASE/mysql $BASE/dbrun
  [ -d $BASE/mysql/mysql ] || mariadb-install-db --user=mysql --datadir=$BASE/mysql \
       --auth-root-authentication-method=socket >$BASE/log/mariadb-install.log 2>&1
  setsid nohup mariadbd --user=mysql --datadir=$BASE/mysql \
       --socket=$BASE/dbrun/mysql.sock --pid-file=$BASE/dbrun/mariadb.pid \
       --bind-address=127.0.0.1 --port=${DB_PORT:-3306} --innodb-lock-wait-timeout=900 \
       --innodb-buffer-pool-size=256M --log-error=$BASE/dbrun/mariadb.err \
       </dev/null >/dev/null 2>&1 &
  for i in $(seq 1 120); do [ -S $BASE/dbrun/mysql.sock ] && break; sleep 0.25; done
  mariadb --socket=$BASE/dbrun/mysql.sock -e "
    CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'slurmpw';
    CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY 'slurmpw';
    GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
    GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';"
  cat > $BASE/slurmdbd.conf <<EOF
$(echo "$AUTHLINES" | head -1)
DbdHost=localhost
SlurmUser=root
LogFile=$BASE/log/slurmdbd.log
PidFile=$BASE/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=${DB_PORT:-3306}
StorageUser=slurm
StoragePass=slurmpw
StorageLoc=slurm_acct_db
EOF
  chmod 600 $BASE/slurmdbd.conf   # slurmdbd refuses a world-readable config
  slurmdbd                        # finds slurmdbd.conf next to $SLURM_CONF
  for i in $(seq 1 60); do (exec 3<>/dev/tcp/127.0.0.1/6819) 2>/dev/null && break; sleep 0.25; done
  ACCTLINES="AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=30"
else
  ACCTLINES="AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/filetxt
JobCompLoc=$BASE/log/jobcomp.log"
fi

cat > $SLURM_CONF <<EOF
ClusterName=ci
SlurmctldHost=$H
SlurmUser=root
$AUTHLINES
StateSaveLocation=$BASE/state
SlurmdSpoolDir=$BASE/spool
SlurmctldPidFile=$BASE/slurmctld.pid
SlurmdPidFile=$BASE/slurmd.pid
SlurmctldLogFile=$BASE/log/slurmctld.log
SlurmdLogFile=$BASE/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
DependencyParameters=kill_invalid_depend
MpiDefault=none
MailProg=/bin/true
ReturnToService=2
$ACCTLINES
NodeName=$H CPUs=$(nproc) Sockets=1 CoresPerSocket=$(nproc) ThreadsPerCore=1 RealMemory=$(( $(free -m | awk '/^Mem:/ {print $2}') * 9 / 10 )) State=UNKNOWN
PartitionName=debug Nodes=$H Default=YES MaxTime=INFINITE State=UP
EOF

slurmctld      # daemonizes
slurmd         # daemonizes
for i in $(seq 1 60); do
  [ "$(sinfo -h -o %T 2>/dev/null)" = idle ] && break; sleep 0.5
done
sinfo
[ "$(sinfo -h -o %T 2>/dev/null)" = idle ] || { echo "the node did not become idle; see $BASE/log/" >&2; exit 1; }
echo "export SLURM_CONF=$SLURM_CONF"
