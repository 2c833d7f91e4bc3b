"""A private copy of the workflow, its configs, Snakemake runs in it and dry-run plans."""

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

from helpers import REPO

SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))
WORKFLOW_FILES = ["Snakefile", "workflow", "config", "profiles", "resources/reference"]


def copy_workflow(dest):
    """Copy what a workflow run needs (not results or data) into dest."""
    dest = Path(dest)
    for name in WORKFLOW_FILES:
        source = REPO / name
        target = dest / name
        if source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    return dest


def write_config(path, config):
    Path(path).write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def demo_config():
    return yaml.safe_load((REPO / "config" / "demo.yaml").read_text())


def tiny_demo_config():
    """The demo config with the least training and benchmarking that still runs every
    stage: one epoch, two-iteration benchmark epochs, one point per benchmark."""
    config = demo_config()
    config["training"]["defaults"].update(epochs=1, warmup_epochs=0, lr_steps=[])
    config["benchmark"]["train"].update(iterations=2, epochs=2, warmup_epochs=1)
    config["benchmark"]["train"]["points"] = {"float32": {"gpus": [0], "batch_sizes": [8]}}
    config["benchmark"]["infer"].update(
        iterations=3,
        epochs=2,
        warmup_epochs=1,
        latency_iterations=2,
        batch_sizes={"float32": [8]},
    )
    return config


def run_snakemake(workdir, *args, check=True, timeout=900, env=None):
    """Run Snakemake in workdir (profiles/default applies), with `env` added to this
    process's environment; return the finished process."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    process = subprocess.run(
        [SNAKEMAKE, *args],
        cwd=workdir,
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )
    if check and process.returncode != 0:
        raise AssertionError(
            f"snakemake {' '.join(args)} failed ({process.returncode}):\n"
            f"{process.stdout[-6000:]}\n{process.stderr[-6000:]}"
        )
    return process


class RunningSnakemake:
    """Snakemake started in workdir in a session of its own, whose process group takes
    signals as a terminal's foreground group does; its output goes to a file (a pipe
    nobody reads while it runs could fill and stall it)."""

    def __init__(self, workdir, *args, env=None):
        self.output_path = Path(workdir) / "snakemake-output.txt"
        with open(self.output_path, "w") as output:
            self.process = subprocess.Popen(
                [SNAKEMAKE, *args],
                cwd=workdir,
                start_new_session=True,
                stdout=output,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
            )

    def output(self):
        return self.output_path.read_text()

    def wait_until(self, ready, what, seconds=600):
        """Return once ready() is true; fail if Snakemake ends first or after `seconds`."""
        deadline = time.monotonic() + seconds
        while not ready():
            assert self.process.poll() is None, f"ended before {what}:\n{self.output()[-6000:]}"
            assert time.monotonic() < deadline, f"not {what} after {seconds} s"
            time.sleep(0.02)

    def signal(self, signum):
        """Send signum to Snakemake and its jobs (its process group)."""
        os.killpg(self.process.pid, signum)

    def finish(self, seconds=600):
        """Snakemake's exit status, once it has ended."""
        return self.process.wait(timeout=seconds)


def planned_jobs(workdir, *args):
    """{rule: count} of the jobs a dry-run of the workflow would run."""
    process = run_snakemake(workdir, "-n", "--quiet", "rules", *args)
    counts = {}
    in_table = False
    for line in process.stdout.splitlines():
        fields = line.split()
        if fields[:2] == ["job", "count"]:
            in_table = True
        elif in_table and len(fields) == 2 and fields[1].isdigit():
            if fields[0] != "total":
                counts[fields[0]] = int(fields[1])
        elif in_table and fields and not set("".join(fields)) <= {"-"}:
            in_table = False
    return counts
