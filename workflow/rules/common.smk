# Helpers shared by the rule files (config lookups, target lists, rerun triggers).
import functools
import os
import re
import sys

# The workflow runs the resnet_recipe package of this checkout, in this process and in
# every job (also in a conda environment made from workflow/envs/, which holds only the
# package's dependencies).
PACKAGE_DIR = os.path.join(workflow.basedir, "src")
sys.path.insert(0, PACKAGE_DIR)
os.environ.update(
    PYTHONPATH=os.pathsep.join(
        filter(None, [PACKAGE_DIR, os.environ.get("PYTHONPATH")])
    )
)

import resnet_recipe
from resnet_recipe.workflow_support.code_digest import code_digests
from resnet_recipe.data.listing import cached_tree_fingerprint, class_folders
from resnet_recipe.workflow_support.preflight import preflight
from snakemake.exceptions import WorkflowError
from resnet_recipe.workflow_support.declaration import (
    MEASURES_SPEED,
    rerun_triggers,
)
from resnet_recipe.workflow_support.run_matrix import planned_runs
from resnet_recipe.workflow_support.settings import (
    BENCH_POINT_SETTINGS,
    BenchInfer,
    BenchTrain,
    BenchTrainJobs,
    InputPipeline,
    Network,
    Onnx,
    Report,
    Score,
    TrainingRun,
    run_settings,
    section_of,
)

# The folder holding the resnet_recipe package that this process and every job import.
PACKAGE_ROOT = os.path.dirname(os.path.dirname(resnet_recipe.__file__))


def sorted_keys(value):
    """value with the keys of every dict in it sorted."""
    if isinstance(value, dict):
        return {key: sorted_keys(value[key]) for key in sorted(value)}
    if isinstance(value, list):
        return [sorted_keys(item) for item in value]
    return value


# Rules pass config sections as params, and Snakemake compares params as written, key
# order included: sorted, moving keys around in a config file reruns nothing.
_sorted_config = sorted_keys(dict(config))
config.clear()
config.update(_sorted_config)


def one_of(names):
    """A wildcard constraint that matches exactly one of `names`: each escaped, as a run
    name may hold a "." (fp16.8gpu must not match fp16x8gpu)."""
    return "|".join(map(re.escape, names)) or "no-names-configured"


RAW_DIR = config["data"]["raw_dir"]
SPLITS = ["train", "val"]
# Every run to train: training.runs, the points of training.sweeps, one per seed of each
# (workflow_support.run_matrix). Only each family's first seed is exported to ONNX: the
# other replicas are the same model trained again, there to measure the spread.
PLANNED_RUNS = planned_runs(config)
TRAIN_RUNS = list(PLANNED_RUNS)
EXPORTED_RUNS = [run.name for run in PLANNED_RUNS.values() if run.first_replica]


# A rule's params are its rerun triggers: the settings its stage reads that affect what the
# stage computes (or, for a benchmark, its speed), by what each setting's declaration says
# it affects (workflow_support.declaration). Settings that change only what a job logs, or
# only speed (for all but the benchmarks), are left out, so that changing them reruns
# nothing; the stage scripts read every setting from snakemake.config.


def get_run_settings(run):
    """The run's settings: training.defaults with the run's overrides (settings.run_settings)."""
    return run_settings(config, run)


def get_tracked_run_settings(run):
    """The run's settings that decide its results or the files it writes (rerun triggers)."""
    return rerun_triggers(get_run_settings(run))


def get_tracked(path, section, affects=None):
    """The settings of `section` in the config section at `path` that a stage's rerun
    depends on: what decides its results, or with MEASURES_SPEED a benchmark's."""
    settings = section_of(config, path, section)
    return (
        rerun_triggers(settings)
        if affects is None
        else rerun_triggers(settings, affects)
    )


def get_tracked_input_settings():
    """input settings that decide a trained model or a score (rerun triggers)."""
    return get_tracked("input", InputPipeline)


def get_bench_training_settings():
    """The training.defaults a training benchmark point runs, but what the point sets
    itself (settings.BENCH_POINT_SETTINGS) and what does not change its speed."""
    settings = get_tracked("training.defaults", TrainingRun, MEASURES_SPEED)
    return {k: v for k, v in settings.items() if k not in BENCH_POINT_SETTINGS}


def get_run_gpus(wildcards):
    return get_run_settings(wildcards.run).gpus


def get_run_nodes(wildcards):
    return get_run_settings(wildcards.run).nodes


def get_score_gpus(wildcards):
    """Scoring takes one GPU, or none when the run trained on the CPU."""
    return min(get_run_gpus(wildcards), 1)


def get_threads(gpus):
    """CPU threads of a job on `gpus` GPUs. On the CPU (0) every core, so that CPU jobs run
    one at a time and never skew each other's timings (Snakemake caps this at --cores);
    per GPU, the DALI threads of its pipeline plus one that drives the GPU."""
    if gpus == 0:
        return os.cpu_count()
    return gpus * (config["input"]["dali_threads"] + 1)


SCRIPTS_DIR = os.path.join(workflow.basedir, "workflow", "scripts")
# Digests of the text of the package modules each stage script imports, directly or through
# each other, computed once per start (each file parsed once).
CODE_DIGESTS = code_digests(
    [
        os.path.join(SCRIPTS_DIR, name)
        for name in sorted(os.listdir(SCRIPTS_DIR))
        if name.endswith(".py")
    ],
    PACKAGE_ROOT,
)


def get_code_digest(script):
    """The code digest of workflow/scripts/<script>: as a param, an edit to the code a stage
    runs reruns that stage, while a module no stage imports, or a touched file, reruns
    nothing."""
    return CODE_DIGESTS[os.path.join(SCRIPTS_DIR, script)]


def get_class_folders():
    """Class folder names of the raw train split: a new or renamed class reruns the
    label mapping. A demo tree is the output of a rule and tracked by Snakemake itself.
    """
    if config["data"]["demo"]:
        return "demo tree, tracked as a rule output"
    return class_folders(f"{RAW_DIR}/train")


def get_raw_tree_cache(split):
    """Where the fingerprint of a user-supplied raw split is kept between starts."""
    return f"results/raw_tree/{split}.json"


@functools.cache
def get_raw_fingerprint(split):
    """Digest of the paths, sizes and mtimes of the files under a user-supplied raw split,
    so that editing, adding or removing an image reruns that split's list and what
    follows. It is taken from get_raw_tree_cache(split) while no folder of the split has a
    new mtime (a stat per folder, not per file; see docs/caching.md, "The raw tree").
    Only the main Snakemake process computes it: it is a parameter of local rules alone,
    and a cluster job (another process) never asks for it."""
    if config["data"]["demo"]:
        return "demo tree, tracked as a rule output"
    if not workflow.is_main_process:
        return "not computed outside the main Snakemake process"
    return cached_tree_fingerprint(f"{RAW_DIR}/{split}", get_raw_tree_cache(split))


def get_bench_train_points():
    """(dtype, gpus, batch_per_device) of every configured training benchmark job."""
    points = section_of(config, "benchmark.train", BenchTrainJobs).points
    return [
        (dtype, gpus, batch_per_device)
        for dtype, point in points.items()
        for gpus in point.gpus
        for batch_per_device in point.batch_sizes
    ]


def get_bench_infer_points():
    """(dtype, batch) of every configured inference benchmark job."""
    sizes = config["benchmark"]["infer"]["batch_sizes"]
    return [(dtype, batch) for dtype, batches in sizes.items() for batch in batches]


def get_bench_train_results():
    return [
        f"results/bench_train/{dtype}/n{gpus}_b{batch_per_device}.json"
        for dtype, gpus, batch_per_device in get_bench_train_points()
    ]


def get_bench_infer_results():
    return [
        f"results/bench_infer/{dtype}/b{batch}.json"
        for dtype, batch in get_bench_infer_points()
    ]


def get_onnx_parity_results():
    return expand("results/onnx/{run}/parity.json", run=EXPORTED_RUNS)


def get_bench_infer_onnx_results():
    """onnxruntime inference points at benchmark.infer's float32 batch sizes, with
    onnx.benchmark."""
    if not config["onnx"]["benchmark"]:
        return []
    batches = config["benchmark"]["infer"]["batch_sizes"].get("float32", [])
    return [f"results/bench_infer_onnx/b{batch}.json" for batch in batches]


def get_score_results():
    return expand("results/score/{run}.json", run=TRAIN_RUNS)


def get_final_outputs():
    return [
        "results/report/report.md",
        "results/bench_summary/train.json",
        "results/bench_summary/infer.json",
        *expand("results/records/{split}.rec", split=SPLITS),
        *expand("results/onnx/{run}/model.onnx", run=EXPORTED_RUNS),
    ]


def check_before_jobs():
    """The preflight check of the config (docs/operations.md), before the first job runs:
    Snakemake calls it on start when it has jobs to run, never in a dry-run, and it is no
    rule, so it never makes a job rerun. Under an executor that submits jobs (SLURM) the
    GPUs of this machine do not count, nor when no job to run asks for GPUs; a run's
    workers sit on different machines only when its submitted job asks for several nodes
    (a profile may set the train job's nodes)."""
    gpu_limit = workflow.global_resources.get("gpu")
    jobs = list(workflow.dag.needrun_jobs())
    gpu_jobs = any(job.resources.get("gpu", 0) for job in jobs)
    spread_runs = [
        job.wildcards.run
        for job in jobs
        if not workflow.local_exec
        and job.rule.name == "train"
        and job.resources.get("nodes", 1) > 1
    ]
    problems, notes = preflight(
        config,
        "results",
        getattr(gpu_limit, "value", gpu_limit),
        submits=not workflow.local_exec or not gpu_jobs,
        spread_runs=spread_runs,
    )
    for line in notes + problems:
        print(f"preflight: {line}", file=sys.stderr)
    if problems:
        raise WorkflowError(
            f"preflight: {len(problems)} problem(s) with the config on this machine (above)"
        )


onstart:
    check_before_jobs()
