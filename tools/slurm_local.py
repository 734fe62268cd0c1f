"""A real single-node Slurm on this machine, loopback only, for testing the SLURM profile (docs/cluster.md).

    python tools/slurm_local.py start DIR [--ctld-port 16817] [--slurmd-port 16818]
    python tools/slurm_local.py stop DIR
    python tools/slurm_local.py status DIR

``start`` runs munged (its own key and socket under DIR), slurmctld and slurmd (state, spool, pid and
log files under DIR, non-default ports, 127.0.0.1 only), waits until ``sinfo`` shows the node idle and
prints a JSON line: the partition, the node's CPUs and memory, DIR. ``stop`` ends exactly the daemons
``start`` started (by their pid files) and restores /etc/slurm/slurm.conf.

Needs root and Debian's ``slurm-wlm`` and ``munge`` (``apt-get install slurm-wlm munge``). The config
goes to /etc/slurm/slurm.conf, the default path, because jobs started by the executor plugin do not
see a ``SLURM_CONF`` variable; a slurm.conf already there is kept in DIR and put back by ``stop``
(``start`` refuses while another Slurm it started is running). Recipe: ../shared/ASSETS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

SYSTEM_CONF = Path("/etc/slurm/slurm.conf")
MARK = "# written by neuronaudit tools/slurm_local.py"
PARTITION = "debug"
DAEMONS = ("slurmd", "slurmctld", "munged")  # stop order


def _need(*programs: str) -> None:
    missing = [p for p in programs if shutil.which(p) is None and not Path(f"/usr/sbin/{p}").exists()]
    if missing:
        raise SystemExit(
            f"slurm_local: {', '.join(missing)} not found; install them: apt-get install slurm-wlm munge"
        )
    if os.geteuid() != 0:
        raise SystemExit("slurm_local: the daemons need root (SlurmUser=root); run as root")


def _exe(name: str) -> str:
    return shutil.which(name) or f"/usr/sbin/{name}"


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def memory_mb() -> int:
    """Memory Slurm may hand out: 80% of the machine's (slurmd drains a node that claims more than it has)."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(int(line.split()[1]) / 1024 * 0.8)
    raise RuntimeError("no MemTotal in /proc/meminfo")


def slurm_conf(root: Path, host: str, cpus: int, mem: int, ctld_port: int, slurmd_port: int) -> str:
    return f"""{MARK} (state in {root})
ClusterName=neuronaudit-local
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={root}/munge/munge.socket
SlurmUser=root
SlurmdUser=root
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MpiDefault=none
ReturnToService=2
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
MinJobAge=60
KillWait=5
Waittime=0
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2
NodeName={host} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={mem} State=UNKNOWN
PartitionName={PARTITION} Nodes={host} Default=YES MaxTime=INFINITE State=UP
"""


def _pid(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _alive(pid: int | None) -> bool:
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _pidfile(root: Path, daemon: str) -> Path:
    return root / ("munge/munged.pid" if daemon == "munged" else f"{daemon}.pid")


def _sinfo_state(env: dict) -> str:
    out = subprocess.run(["sinfo", "-h", "-N", "-o", "%t"], capture_output=True, text=True, env=env, timeout=20)
    return out.stdout.strip() if out.returncode == 0 else f"error: {out.stderr.strip()}"


def start(root: Path, ctld_port: int = 16817, slurmd_port: int = 16818, timeout: float = 60.0) -> dict:
    _need("munged", "slurmctld", "slurmd", "sinfo", "sbatch", "squeue")
    root = root.resolve()
    if SYSTEM_CONF.exists() and MARK in SYSTEM_CONF.read_text():
        running = re.search(r"\(state in (.+)\)", SYSTEM_CONF.read_text())
        other = Path(running.group(1)) if running else None
        if other is not None and other != root and any(status(other).values()):
            raise SystemExit(f"slurm_local: a Slurm started in {other} is running; stop it first")
    for port in (ctld_port, slurmd_port):
        if not _port_free(port):
            raise SystemExit(f"slurm_local: port {port} on 127.0.0.1 is taken; pass --ctld-port/--slurmd-port")
    for sub in ("munge", "state", "spool"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    os.chmod(root / "munge", 0o700)
    key = root / "munge" / "munge.key"
    if not key.exists():
        key.write_bytes(os.urandom(1024))
    os.chmod(key, 0o400)
    munge = root / "munge"
    subprocess.run(
        [_exe("munged"), "--force", f"--socket={munge}/munge.socket", f"--key-file={key}",
         f"--pid-file={munge}/munged.pid", f"--log-file={munge}/munged.log", f"--seed-file={munge}/munged.seed"],
        check=True, capture_output=True, text=True,
    )
    host = socket.gethostname().split(".")[0]
    cpus = os.cpu_count() or 1
    mem = memory_mb()
    if SYSTEM_CONF.exists() and MARK not in SYSTEM_CONF.read_text():
        shutil.copy2(SYSTEM_CONF, root / "slurm.conf.saved")
    SYSTEM_CONF.parent.mkdir(parents=True, exist_ok=True)
    conf = slurm_conf(root, host, cpus, mem, ctld_port, slurmd_port)
    SYSTEM_CONF.write_text(conf)
    (root / "slurm.conf").write_text(conf)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    for daemon, args in (("slurmctld", ["-c", "-i"]), ("slurmd", [])):
        proc = subprocess.run([_exe(daemon), *args], capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            stop(root)
            raise SystemExit(f"slurm_local: {daemon} failed to start ({proc.stderr.strip()}); see {root}/{daemon}.log")
    deadline = time.monotonic() + timeout
    state = ""
    while time.monotonic() < deadline:
        state = _sinfo_state(env)
        if state == "idle":
            break
        if state in ("drain", "down", "drng") or state.startswith("down"):
            subprocess.run(["scontrol", "update", f"nodename={host}", "state=resume"], capture_output=True, env=env)
        time.sleep(1)
    else:
        log = (root / "slurmd.log").read_text()[-2000:] if (root / "slurmd.log").exists() else ""
        stop(root)
        raise SystemExit(f"slurm_local: node not idle after {timeout:.0f} s (sinfo: {state!r}); slurmd.log:\n{log}")
    info = {"dir": str(root), "partition": PARTITION, "node": host, "cpus": cpus, "mem_mb": mem,
            "ctld_port": ctld_port, "slurmd_port": slurmd_port}
    (root / "info.json").write_text(json.dumps(info) + "\n")
    return info


def stop(root: Path, timeout: float = 20.0) -> list[str]:
    """End the daemons started by ``start`` in ``root`` (by their pid files); restore slurm.conf."""
    root = root.resolve()
    stopped = []
    for daemon in DAEMONS:
        pid = _pid(_pidfile(root, daemon))
        if not _alive(pid):
            continue
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
        stopped.append(f"{daemon} ({pid})")
    if SYSTEM_CONF.exists() and f"(state in {root})" in SYSTEM_CONF.read_text():
        saved = root / "slurm.conf.saved"
        if saved.exists():
            shutil.move(saved, SYSTEM_CONF)
        else:
            SYSTEM_CONF.unlink()
    return stopped


def status(root: Path) -> dict:
    root = root.resolve()
    return {d: _alive(_pid(_pidfile(root, d))) for d in DAEMONS}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("action", choices=("start", "stop", "status"))
    ap.add_argument("dir", type=Path, help="folder for the daemons' key, state, spool, pid and log files")
    ap.add_argument("--ctld-port", type=int, default=16817)
    ap.add_argument("--slurmd-port", type=int, default=16818)
    args = ap.parse_args(argv)
    if args.action == "start":
        print(json.dumps(start(args.dir, args.ctld_port, args.slurmd_port)))
    elif args.action == "stop":
        print(json.dumps({"stopped": stop(args.dir)}))
    else:
        print(json.dumps(status(args.dir)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
