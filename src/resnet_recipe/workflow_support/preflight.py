"""The checks a config gets before any data or training job: device facts in, verdicts out.

gather_facts() reads this machine once (nvidia-smi, the installed MXNet build, free disk,
mounts, network interfaces); check() is a pure function of the config and those facts and
returns one line per problem, naming the setting and the fix, and the disk estimate.
"""

import dataclasses
import importlib.util
import os
import shutil
import socket
import subprocess
import sys

from resnet_recipe.files.user_errors import UserError
from resnet_recipe.workflow_support.devices import gpus_phrase, package_version
from resnet_recipe.workflow_support.run_matrix import planned_runs
from resnet_recipe.workflow_support.settings import Network, run_settings, section_of

# The newest compute capability each PyPI MXNet 1.9.1 GPU build has kernels for (and no
# PTX to compile for newer ones): its config/distribution/linux_cu102.cmake and
# linux_cu112.cmake list the architectures (docs/gpus.md); and the oldest Linux driver of
# its CUDA (CUDA 10.2's release notes: 440.33; CUDA 11.x runs on 450.80.02 and newer by
# CUDA's minor version compatibility).
MXNET_BUILDS = {
    "mxnet-cu102": {"cuda": "10.2", "max_capability": (7, 5), "min_driver": (440, 33)},
    "mxnet-cu112": {"cuda": "11.2", "max_capability": (8, 6), "min_driver": (450, 80, 2)},
}
HOPPER = (9, 0)
NGC_ADVICE = (
    "run in NVIDIA's NGC MXNet container 24.05 or 24.06 (MXNet 1.9.1 on CUDA 12.4), which "
    "supports it (docs/gpus.md)"
)
# Parameters of ResNet v1.5 with 1,000 classes, by depth (MXNet Gluon model zoo sizes).
RESNET_PARAMETERS = {18: 11.7e6, 34: 21.8e6, 50: 25.6e6, 101: 44.5e6, 152: 60.2e6}
# File systems that the nodes of a cluster can share.
SHARED_FILE_SYSTEMS = {"nfs", "nfs4", "lustre", "gpfs", "beegfs", "cephfs", "ceph", "fuse.sshfs"}
GB = 1e9


@dataclasses.dataclass(frozen=True)
class Facts:
    """What the checks need to know of the machine; tests give recorded ones."""

    gpus: tuple = ()  # (name, (major, minor) or None) of each visible GPU
    driver: str | None = None
    mxnet_build: str = "mxnet"  # the installed distribution: mxnet, mxnet-cu102, ...
    nccl: bool = False  # the MXNet build has NCCL
    dali_mxnet: bool = False  # DALI's MXNet plugin is installed
    free_bytes: int | None = None  # free space where the results go
    raw_bytes: int | None = None  # size of the raw tree (None: not found)
    results_fs: str | None = None  # file system type of the results folder
    interfaces: tuple = ()
    gpu_limit: int | None = None  # --resources gpu=N, when given
    submits: bool = False  # jobs run elsewhere (SLURM): this machine's GPUs do not count
    # Runs of several nodes whose workers sit on different machines: submitted jobs that ask
    # the cluster for several nodes. Locally, the launcher starts every worker here.
    spread_runs: tuple = ()


def check(config, facts):
    """(problems, notes): one line per problem naming the setting and the fix, and notes
    (the disk estimate) to print either way."""
    runs = {name: run_settings(config, name) for name in planned_runs(config)}
    backend = config.get("input", {}).get("backend", "dali-gpu")
    problems = gpu_problems(config, runs, facts) + build_problems(runs, facts, backend)
    problems += multi_node_problems(config, runs, facts)
    estimate = disk_estimate(config, runs, facts)
    parts = ", ".join(f"{name} ~{size / GB:.1f} GB" for name, size in estimate.items())
    notes = [f"disk estimate under results/: {parts}; total ~{sum(estimate.values()) / GB:.1f} GB"]
    problems += disk_problems(estimate, facts)
    return problems, notes


def gpus_asked(config, runs):
    """{setting: GPUs} of every job that asks for GPUs."""
    asked = {f"training.runs.{name}.gpus": run.gpus for name, run in runs.items()}
    points = config.get("benchmark", {}).get("train", {}).get("points", {})
    for dtype, point in points.items():
        for gpus in point.get("gpus", []):
            asked[f"benchmark.train.points.{dtype}.gpus ({gpus})"] = gpus
    asked["benchmark.infer.gpus"] = config.get("benchmark", {}).get("infer", {}).get("gpus", 0)
    return {setting: gpus for setting, gpus in asked.items() if gpus}


def gpu_problems(config, runs, facts):
    if facts.submits:
        return []
    have = len(facts.gpus)
    limit = have if facts.gpu_limit is None else min(have, facts.gpu_limit)
    where = "this machine has none" if not have else f"this machine has {gpus_phrase(have)}"
    if facts.gpu_limit is not None and facts.gpu_limit < have:
        where = f"--resources gpu={facts.gpu_limit} allows {gpus_phrase(facts.gpu_limit)}"
    return [
        f"{setting} is {gpus}, but {where}: lower it (0 runs on the CPU), run on a machine "
        f"with {gpus_phrase(gpus)}, or submit to SLURM (--profile profiles/slurm)"
        for setting, gpus in gpus_asked(config, runs).items()
        if gpus > limit
    ]


def build_problems(runs, facts, backend):
    """The MXNet build against the GPUs and driver; NCCL and DALI's plugin."""
    gpu_runs = [name for name, run in runs.items() if run.gpus]
    if not gpu_runs or not facts.gpus:
        problems = []
    elif facts.mxnet_build not in MXNET_BUILDS:
        problems = [
            f"{facts.mxnet_build} is MXNet's CPU build, but runs {', '.join(gpu_runs)} use "
            "GPUs: install a GPU build (make run MXNET=cu102 or MXNET=cu112, docs/gpus.md)"
        ]
    else:
        problems = capability_problems(facts) + driver_problems(facts)
    several = [name for name, run in runs.items() if run.gpus > 1]
    if several and facts.gpus and not facts.nccl:
        problems.append(
            f"runs {', '.join(several)} use several GPUs, but {facts.mxnet_build} has no "
            "NCCL: install a GPU build of MXNet with NCCL (mxnet-cu102, mxnet-cu112)"
        )
    if not facts.dali_mxnet and backend != "synthetic":
        problems.append(
            "input.backend needs DALI, but DALI's MXNet plugin (nvidia.dali.plugin.mxnet) is "
            "not installed: install nvidia-dali-cuda110==1.34.0 (make run)"
        )
    return problems


def capability_problems(facts):
    build = MXNET_BUILDS[facts.mxnet_build]
    top = build["max_capability"]
    problems = []
    for index, (name, capability) in enumerate(facts.gpus):
        if capability is None or capability <= top:
            continue
        fix = NGC_ADVICE if capability >= HOPPER else "install mxnet-cu112 (make run MXNET=cu112)"
        problems.append(
            f"GPU {index} ({name}) has compute capability {capability[0]}.{capability[1]}, "
            f"above the {top[0]}.{top[1]} that {facts.mxnet_build} 1.9.1 has kernels for: {fix}"
        )
    return problems


def driver_problems(facts):
    build = MXNET_BUILDS[facts.mxnet_build]
    if facts.driver is None:
        return []
    version = tuple(int(part) for part in facts.driver.split(".") if part.isdigit())
    if version >= build["min_driver"]:
        return []
    needed = ".".join(map(str, build["min_driver"]))
    return [
        f"the NVIDIA driver {facts.driver} is older than the {needed} that CUDA "
        f"{build['cuda']} ({facts.mxnet_build}) needs: update the driver"
    ]


def multi_node_problems(config, runs, facts):
    several = [name for name, run in runs.items() if run.nodes > 1]
    if not several:
        return []
    problems = []
    interface = config.get("distributed", {}).get("interface", "lo")
    spread = [name for name in several if name in facts.spread_runs]
    if interface not in facts.interfaces:
        problems.append(
            f"distributed.interface is {interface}, which this machine does not have "
            f"(it has {', '.join(facts.interfaces)}): set the cluster's internal interface"
        )
    elif spread and interface == "lo":
        problems.append(
            f"distributed.interface is lo, but runs {', '.join(spread)} have workers on "
            "different nodes, which lo cannot reach: set the cluster's internal interface"
        )
    if spread and facts.results_fs not in SHARED_FILE_SYSTEMS:
        problems.append(
            f"runs {', '.join(spread)} span nodes, but results/checkpoints is on a "
            f"{facts.results_fs} file system, which the nodes do not share: run from a "
            "working copy on a shared file system (NFS, Lustre, GPFS, ...)"
        )
    return problems


def disk_estimate(config, runs, facts):
    """Bytes the workflow writes under results/, by category: records (about the JPEGs'
    size), exports (every exported epoch of every run: training.export_every), states
    (two resumable states per run: parameters and momentum each)."""
    network = section_of(config, "network", Network)
    params = RESNET_PARAMETERS.get(network.depth, RESNET_PARAMETERS[50]) * 4  # float32
    exports = 0
    for run in runs.values():
        every = run.export_every
        # Every export_every-th epoch, and always the last one.
        exports += run.epochs // every + (run.epochs % every != 0) if every > 0 else 1
    return {
        "records": facts.raw_bytes or 0,
        "exports": exports * params,
        "states": len(runs) * 2 * 2 * params,
    }


def disk_problems(estimate, facts):
    needed = sum(estimate.values())
    if facts.free_bytes is None or needed <= facts.free_bytes:
        return []
    return [
        f"results/ needs about {needed / GB:.1f} GB but its file system has "
        f"{facts.free_bytes / GB:.1f} GB free: free space, point the working copy elsewhere, "
        "or export fewer epochs (training.export_every)"
    ]


def gather_facts(config, results_dir="results", gpu_limit=None, submits=False, spread_runs=()):
    """The Facts of this machine for `config`: cheap (no MXNet import, no CUDA)."""
    build = next(
        (name for name in ("mxnet-cu112", "mxnet-cu102") if package_version([name])), "mxnet"
    )
    existing = os.path.abspath(results_dir)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    return Facts(
        gpus=tuple(nvidia_smi_capabilities()),
        driver=next((driver for _, driver in nvidia_smi_drivers()), None),
        mxnet_build=build,
        # The PyPI GPU builds link NCCL in (USE_NCCL in their cmake configs); the CPU one not.
        nccl=build in MXNET_BUILDS,
        dali_mxnet=importlib.util.find_spec("nvidia.dali.plugin.mxnet") is not None
        if importlib.util.find_spec("nvidia.dali") is not None
        else False,
        free_bytes=shutil.disk_usage(existing).free,
        raw_bytes=None if config["data"].get("demo") else tree_bytes(config["data"]["raw_dir"]),
        results_fs=file_system_type(existing),
        interfaces=tuple(name for _, name in socket.if_nameindex()),
        gpu_limit=gpu_limit,
        submits=submits,
        spread_runs=tuple(spread_runs),
    )


def _nvidia_smi(fields):
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        listing = subprocess.run(
            ["nvidia-smi", f"--query-gpu={fields}", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [[field.strip() for field in line.split(",")] for line in listing.splitlines()]


def nvidia_smi_capabilities():
    """(name, (major, minor) or None) of each GPU nvidia-smi lists."""
    gpus = []
    for name, capability in _nvidia_smi("name,compute_cap"):
        major, _, minor = capability.partition(".")
        gpus.append((name, (int(major), int(minor)) if major.isdigit() else None))
    return gpus


def nvidia_smi_drivers():
    return [(name, driver) for name, driver in _nvidia_smi("name,driver_version")]


def tree_bytes(folder):
    """Total size of the files under `folder`; None when it does not exist."""
    if not os.path.isdir(folder):
        return None
    return sum(
        os.path.getsize(os.path.join(root, name))
        for root, _, names in os.walk(folder)
        for name in names
    )


def file_system_type(path):
    """The type (/proc/mounts) of the file system holding `path`: its longest mount point."""
    path, best = os.path.realpath(path), ("", None)
    try:
        with open("/proc/mounts") as mounts:
            for line in mounts:
                fields = line.split()
                point = fields[1].replace("\\040", " ")
                inside = path == point or path.startswith(point.rstrip("/") + "/")
                if inside and len(point) > len(best[0]):
                    best = (point, fields[2])
    except OSError:
        return None
    return best[1]


def preflight(config, results_dir="results", gpu_limit=None, submits=False, spread_runs=()):
    """(problems, notes) of `config` on this machine."""
    facts = gather_facts(config, results_dir, gpu_limit, submits, spread_runs)
    problems, notes = check(config, facts)
    if not config["data"].get("demo") and facts.raw_bytes is None:
        problems.insert(
            0,
            f"data.raw_dir {config['data']['raw_dir']} not found: point it at the folder "
            "holding train/ and val/",
        )
    return problems, notes


def read_checked_config(path):
    """The config file at `path`, checked against the schema the settings declare; a
    UserError naming the key of the first problem."""
    import jsonschema  # Snakemake's dependency, as its config validation
    import yaml

    from resnet_recipe.workflow_support.config_schema import schema
    from resnet_recipe.workflow_support.declaration import read_config_numbers

    try:
        with open(path) as handle:
            config = read_config_numbers(yaml.safe_load(handle) or {})
    except yaml.YAMLError as error:
        raise UserError(f"{path}: not valid YAML ({error})".replace("\n", " ")) from None
    error = jsonschema.exceptions.best_match(
        jsonschema.Draft202012Validator(schema()).iter_errors(config)
    )
    if error is not None:
        key = ".".join(map(str, error.absolute_path)) or "(top level)"
        raise UserError(f"{path}: {key}: {error.message}")
    return config


def add_command(stages):
    """The `resnet-recipe preflight` sub-command."""
    parser = stages.add_parser(
        "preflight",
        help="check a config against this machine before running it",
        description="GPUs, the MXNet build, NCCL, DALI, disk space and multi-node needs of "
        "the config's jobs; one line per problem naming the setting and the fix, status 2.",
    )
    parser.add_argument("--configfile", required=True, help="the workflow config to check")
    parser.add_argument("--results", default="results", help="where the results will go")
    parser.add_argument("--gpus", type=int, help="GPUs Snakemake may use (--resources gpu=N)")
    parser.add_argument(
        "--slurm",
        action="store_true",
        help="the jobs go to SLURM (--profile profiles/slurm): this machine's GPUs do not "
        "count, and runs of several nodes need a shared file system and network",
    )
    parser.set_defaults(run=_run_command)


def _run_command(args):
    config = read_checked_config(args.configfile)
    spread = (
        [name for name in planned_runs(config) if run_settings(config, name).nodes > 1]
        if args.slurm
        else []
    )
    problems, notes = preflight(config, args.results, args.gpus, args.slurm, spread)
    for line in notes:
        print(line)
    for line in problems:
        print(f"preflight: {line}", file=sys.stderr)
    if problems:
        raise UserError(f"{len(problems)} problem(s) with {args.configfile} on this machine")
    print(f"preflight: {args.configfile} passes")
    return 0
