"""Starting the roles of a run across several workers, and watching them.

MXNet's distributed kvstore (ps-lite over TCP) has three roles: one scheduler, parameter
servers and workers. They find each other through the DMLC_* variables: DMLC_ROLE
(scheduler, server, worker), DMLC_PS_ROOT_URI and DMLC_PS_ROOT_PORT (the scheduler's address
and port), DMLC_NUM_WORKER, DMLC_NUM_SERVER and DMLC_INTERFACE (the interface every role
binds to). ps-lite has no authentication: whoever reaches these ports can join or feed
gradients, so the roles bind to the interface the settings name (loopback by default),
never to all.

launch_training() is the train job's side. Without SLURM (launch_local) every role is a
process on this machine. Inside a SLURM job (launch_slurm) the scheduler runs beside the
job's script and `srun` starts one node agent per worker (`python -m resnet_recipe.training.launcher
node JOB`), which runs that node's server and worker. Either way the launcher streams every
role's output into its own log, and a role that fails, or workers that do not all reach
the scheduler within connect_timeout seconds, end the whole job: every process group is
killed and the error names the role with its last lines. A worker (`python -m
resnet_recipe.training.launcher worker JOB`) trains the job (loop.train_here), which joins the
kvstore (distributed.join).
"""

import collections
import contextlib
import ctypes
import fcntl
import logging
import math
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time

from resnet_recipe.files.user_errors import USER_ERROR_STATUS, UserError, one_line_errors
from resnet_recipe.training.distributed import READY_MARK
from resnet_recipe.training.interruption import STOP_SIGNALS, STOPPED_TO_RESUME, RunStopped
from resnet_recipe.training.job import TrainingJob
from resnet_recipe.workflow_support.progress import setup_logging

log = logging.getLogger(__name__)

# Lines of a role's output kept for the error message when it fails.
TAIL_LINES = 40
# What a node agent under srun prints, then exiting with status 0, when its worker stopped
# to be resumed (run_node says why not STOPPED_TO_RESUME).
NODE_STOPPED = "node stopped to be resumed: "
# Seconds the scheduler and servers get to stop after the last worker ended.
STOP_GRACE_SECONDS = 30
# Seconds between SIGTERM and SIGKILL of a process group.
KILL_GRACE_SECONDS = 5
SIOCGIFADDR = 0x8915  # ioctl: the IPv4 address of a network interface
PR_SET_PDEATHSIG = 1


def launch_training(job):
    """Run `job` (a TrainingJob) on its settings.nodes workers: locally, or over srun inside
    a SLURM job. Returns when every worker finished; raises RuntimeError when any role
    failed."""
    os.makedirs(job.state_root, exist_ok=True)
    job_path = os.path.join(job.state_root, "distributed-job.json")
    with open(job_path, "w") as handle:
        handle.write(job.to_json())
    workers, distributed_settings = job.settings.nodes, job.distributed_settings
    if os.environ.get("SLURM_JOB_ID"):
        launch_slurm(job_path, workers, distributed_settings)
    else:
        launch_local(job_path, workers, distributed_settings)


def interface_address(interface):
    """IPv4 address of the named network interface (`lo` -> 127.0.0.1)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            request = struct.pack("256s", interface.encode()[:15])
            answer = fcntl.ioctl(probe.fileno(), SIOCGIFADDR, request)
        except OSError as error:
            names = [name for _, name in socket.if_nameindex()]
            raise UserError(
                f"distributed.interface {interface!r} has no IPv4 address here ({error}); "
                f"this machine's interfaces: {names}"
            ) from None
    return socket.inet_ntoa(answer[20:24])


def free_port(address):
    """A TCP port free on `address` now (the scheduler binds it a moment later)."""
    with socket.socket() as probe:
        probe.bind((address, 0))
        return probe.getsockname()[1]


# Variables ps-lite would read before DMLC_INTERFACE or instead of the ports it picks
# (MXNet 1.9.1's ps-lite, src/van.cc Van::Start and src/zmq_van.h Bind): DMLC_NODE_HOST
# replaces the interface's address, PORT fixes the port of every server and worker, and
# DMLC_USE_KUBERNETES binds the scheduler to all interfaces. A role never inherits them.
OVERRIDING_VARIABLES = ("DMLC_NODE_HOST", "PORT", "DMLC_USE_KUBERNETES")


def role_environment(role, workers, address, port, interface):
    """The environment of one ps-lite role: this process's without OVERRIDING_VARIABLES,
    plus the DMLC_* variables."""
    inherited = {k: v for k, v in os.environ.items() if k not in OVERRIDING_VARIABLES}
    return {
        **inherited,
        "DMLC_ROLE": role,
        "DMLC_PS_ROOT_URI": address,
        "DMLC_PS_ROOT_PORT": str(port),
        "DMLC_NUM_WORKER": str(workers),
        "DMLC_NUM_SERVER": str(workers),
        "DMLC_INTERFACE": interface,
    }


def server_command(job_path):
    """Importing mxnet with DMLC_ROLE scheduler or server runs that role, then exits; the
    job file, an argument the role ignores, shows in `ps` which run the process serves."""
    return [sys.executable, "-c", "import mxnet", job_path]


def worker_command(job_path):
    return [sys.executable, "-m", "resnet_recipe.training.launcher", "worker", job_path]


def launch_local(job_path, workers, distributed_settings):
    """Scheduler, servers and workers as processes on this machine, on the named interface.
    The workers share this job's CPU threads (OMP_NUM_THREADS) evenly."""
    interface = distributed_settings.interface
    address = interface_address(interface)
    port = free_port(address)
    threads = int(os.environ.get("OMP_NUM_THREADS") or os.cpu_count())
    log.info(
        "starting a scheduler on %s:%d (%s), %d servers and %d workers on this machine",
        *(address, port, interface, workers, workers),
    )

    def env(role, **extra):
        return {**role_environment(role, workers, address, port, interface), **extra}

    roles = [("scheduler", server_command(job_path), env("scheduler", OMP_NUM_THREADS="1"))]
    roles += [(f"server {i}", server_command(job_path), env("server")) for i in range(workers)]
    per_worker = str(max(1, threads // workers))
    roles += [
        (f"worker {i}", worker_command(job_path), env("worker", OMP_NUM_THREADS=per_worker))
        for i in range(workers)
    ]
    supervise(roles, workers, distributed_settings.connect_timeout, f"{address}:{port}")


def launch_slurm(job_path, workers, distributed_settings):
    """Inside a SLURM allocation: the scheduler here, and through one `srun` step one node
    agent per worker, spread evenly over the allocation's nodes."""
    interface = distributed_settings.interface
    address = interface_address(interface)
    port = free_port(address)
    nodes = int(os.environ.get("SLURM_JOB_NUM_NODES", "1"))
    per_node = math.ceil(workers / nodes)
    srun = [
        "srun",
        f"--ntasks={workers}",
        f"--ntasks-per-node={per_node}",
        f"--nodes={min(nodes, workers)}",
        # One failed task ends the step at once instead of leaving the others waiting.
        "--kill-on-bad-exit=1",
        # The step shares the job's CPUs and memory with this script and the scheduler.
        "--overlap",
        "--mem=0",
        sys.executable,
        "-m",
        "resnet_recipe.training.launcher",
        "node",
        job_path,
    ]
    log.info(
        "SLURM job %s: scheduler on %s:%d (%s), %d workers over %d nodes: %s",
        *(os.environ["SLURM_JOB_ID"], address, port, interface, workers, nodes, " ".join(srun)),
    )
    environment = role_environment("scheduler", workers, address, port, interface)
    roles = [
        ("scheduler", server_command(job_path), environment),
        ("srun", srun, {**environment, "DMLC_ROLE": "node"}),
    ]
    supervise(roles, workers, distributed_settings.connect_timeout, f"{address}:{port}")


def run_node(job_path):
    """One node's share under srun: its server and its worker, on this node's address of
    DMLC_INTERFACE (the scheduler's variables came from the launcher)."""
    worker = {**os.environ, "DMLC_ROLE": "worker"}
    if os.environ.get("SLURM_CPUS_PER_TASK"):
        # The CPUs SLURM gave this task, not those of the job's first node.
        worker["OMP_NUM_THREADS"] = os.environ["SLURM_CPUS_PER_TASK"]
    roles = [
        ("server", server_command(job_path), {**os.environ, "DMLC_ROLE": "server"}),
        ("worker", worker_command(job_path), worker),
    ]
    # The launcher watches the connection deadline; here only failures matter.
    try:
        supervise(roles, 1, connect_timeout=None, scheduler=os.environ.get("DMLC_PS_ROOT_URI"))
    except RunStopped as stopped:
        # Status 0, not STOPPED_TO_RESUME: srun's --kill-on-bad-exit would end the other
        # nodes' tasks at a non-zero status while their workers still finish the same stop
        # (the first worker writing the state). The launcher reads this line instead.
        print(f"{NODE_STOPPED}{stopped}", flush=True)


class Role:
    """One started process (in a session of its own, so that its whole group can be
    killed), with a thread that logs its output lines and keeps the last ones."""

    def __init__(self, name, command, environment, on_line):
        self.name = name
        self.tail = collections.deque(maxlen=TAIL_LINES)
        self.said_stopped = False  # a node agent's NODE_STOPPED line came
        self.process = subprocess.Popen(
            command,
            env=environment,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        self.reader = threading.Thread(target=self._read, args=(on_line,), daemon=True)
        self.reader.start()

    def _read(self, on_line):
        for line in self.process.stdout:
            line = line.rstrip("\n")
            self.tail.append(line)
            self.said_stopped = self.said_stopped or line.startswith(NODE_STOPPED)
            log.info("[%s] %s", self.name, line)
            on_line(line)

    def stop(self):
        """SIGTERM to the process group, SIGKILL after a grace period."""
        for sig, wait in ((signal.SIGTERM, KILL_GRACE_SECONDS), (signal.SIGKILL, 10)):
            if self.process.poll() is not None:
                break
            try:
                os.killpg(self.process.pid, sig)
            except ProcessLookupError:
                break
            try:
                self.process.wait(wait)
            except subprocess.TimeoutExpired:
                continue
        self.reader.join(5)

    def failure(self, why):
        lines = "\n".join(self.tail) or "(no output)"
        return f"{self.name} {why}; its last lines:\n{lines}"


def _die_with_parent():
    """In the child before exec: get SIGKILL when the launcher dies, even by SIGKILL."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def _forward_stop(roles):
    """A signal handler that passes a stop signal on to the worker roles (the workers
    finish their iteration, save and exit with STOPPED_TO_RESUME; scheduler and servers
    end after them)."""

    def forward(signum, frame):
        log.info("%s: passed on to the workers", signal.Signals(signum).name)
        for role in roles:
            if _is_worker(role) and role.process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(role.process.pid, signum)

    return forward


def _is_worker(role):
    return role.name.startswith(("worker", "srun"))


def supervise(commands, workers, connect_timeout, scheduler):
    """Start the (name, command, environment) roles and wait until every worker role
    ended well. Raises RuntimeError when a role fails or when fewer than `workers` workers
    connected within connect_timeout seconds (None: no deadline), RunStopped when the
    workers stopped to be resumed: a stop signal to the launcher (STOP_SIGNALS) reaches the
    workers, which stop at the same iteration. Scheduler and servers stop by themselves
    once the workers finalized; any still running STOP_GRACE_SECONDS after the workers is
    stopped. Every process group still running is killed on the way out (and SIGKILL of
    the launcher reaches the roles through PR_SET_PDEATHSIG)."""
    connected = []
    lock = threading.Lock()

    def on_line(line):
        if READY_MARK in line:
            with lock:
                connected.append(line)

    roles = []
    previous = {sig: signal.signal(sig, _forward_stop(roles)) for sig in STOP_SIGNALS}
    try:
        roles.extend(Role(name, command, env, on_line) for name, command, env in commands)
        _wait(roles, workers, connected, connect_timeout, scheduler)
    finally:
        for role in roles:
            role.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _wait(roles, workers, connected, connect_timeout, scheduler):
    started = time.monotonic()
    finished_at = None
    worker_roles = [role for role in roles if _is_worker(role)]
    while True:
        for role in roles:
            code = role.process.poll()
            # A worker stopped to be resumed: the others stop at the same iteration.
            stopped = code == STOPPED_TO_RESUME and _is_worker(role)
            if code not in (None, 0) and not stopped:
                role.reader.join(5)
                if code == USER_ERROR_STATUS and role.tail:
                    # The role's last line is a user error's one line (one_line_errors).
                    raise UserError(f"{role.name}: {role.tail[-1]}")
                raise RuntimeError(role.failure(f"exited with status {code}"))
        ended = [role.process.poll() for role in worker_roles]
        if None not in ended:
            finished_at = finished_at or time.monotonic()
            others_ended = all(role.process.poll() is not None for role in roles)
            if not others_ended and time.monotonic() - finished_at > STOP_GRACE_SECONDS:
                log.warning("scheduler or servers still running after the workers: stopped")
                others_ended = True
            if others_ended:
                _end_of_workers(worker_roles, ended, workers)
                return
        waited = time.monotonic() - started
        if connect_timeout is not None and len(connected) < workers and waited > connect_timeout:
            raise UserError(
                f"only {len(connected)} of {workers} workers reached the scheduler at "
                f"{scheduler} within {connect_timeout} s (distributed.connect_timeout): "
                "check distributed.interface and that the nodes can reach that port"
            )
        time.sleep(0.2)


def _end_of_workers(worker_roles, codes, workers):
    """Every worker ended with 0 or STOPPED_TO_RESUME: RunStopped if any stopped (a
    worker's status says so, or under srun a node agent's NODE_STOPPED line)."""
    stopped = [
        role
        for role, code in zip(worker_roles, codes, strict=True)
        if code == STOPPED_TO_RESUME or role.said_stopped
    ]
    if not stopped:
        log.info("all %d workers finished", workers)
        return
    role = stopped[0]
    said = [line for line in role.tail if "stopped at epoch" in line]
    raise RunStopped(said[-1].split("INFO ", 1)[-1] if said else f"{role.name} stopped")


def run_worker(job_path):
    """Train the job of job_path in this worker process (DMLC_ROLE=worker)."""
    # Imported here, not at the top: the loop imports MXNet, and MXNet's import runs the
    # ps-lite role that DMLC_ROLE names, which the node agent (run_node) must not do.
    from resnet_recipe.training import loop

    with open(job_path) as handle:
        loop.train_here(TrainingJob.from_json(handle.read()))


def main(argv=None):
    kind, job_path = argv or sys.argv[1:]
    setup_logging()
    runs = {"worker": run_worker, "node": run_node}
    if kind not in runs:
        raise SystemExit(
            f"usage: python -m resnet_recipe.training.launcher worker|node JOB.json, not {kind}"
        )
    # A user error ends the role with one line and status 2, which supervise() passes on.
    with one_line_errors(kind):
        runs[kind](job_path)


if __name__ == "__main__":
    main()
