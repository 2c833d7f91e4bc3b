"""Workflow overhead: how long Snakemake takes to plan the full ImageNet matrix and to find
that a finished demo has nothing to do. Goal: <= 3 s each on 2 cores.

Measured in one run, each the median of --repeats:
  baseline   `snakemake --version` (interpreter and Snakemake start-up alone)
  dry-run    `snakemake -n --configfile config/config.yaml` with data.raw_dir pointed at a
             generated stand-in ImageNet tree (1000 train class folders, a flat val folder
             and its label CSV; empty files, the dry-run never reads them)
  no-op      `snakemake --cores 2` on a finished tiny demo (every output up to date)
the time of the full raw-tree fingerprint per 10,000 files, which a start pays only
after a folder of the tree changed (and `snakemake rescan_raw_tree` on request; see
imagenet_scale.py for start times at full ImageNet size), and the time of the code digests
of all stage scripts, which every start pays. With --baseline REV, the dry-run of the same
matrix by the workflow and package of git revision REV of this repository is timed too,
alternating with the current one, and the difference is printed.

    .venv/bin/python benchmarks/workflow_overhead.py [--images-per-class 10] [--baseline REV]
"""

import argparse
import io
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
from conftest import SNAKEMAKE, copy_workflow, run_snakemake, write_config  # noqa: E402
from test_caching import tiny_config  # noqa: E402

from resnet_recipe.data.demo_data import write_demo_tree  # noqa: E402
from resnet_recipe.data.listing import tree_fingerprint  # noqa: E402
from resnet_recipe.workflow_support.code_digest import code_digests  # noqa: E402

GOAL_SECONDS = 3.0


def timed(command, cwd, repeats):
    return timed_alternating(command, [cwd], repeats)[0]


def timed_alternating(command, folders, repeats):
    """Median wall time of `command` in each folder, the folders taking turns, so that a
    change of the machine's load falls on all of them alike."""
    times = [[] for _ in folders]
    for _ in range(repeats):
        for index, cwd in enumerate(folders):
            started = time.perf_counter()
            subprocess.run(command, cwd=cwd, check=True, capture_output=True)
            times[index].append(time.perf_counter() - started)
    return [statistics.median(values) for values in times]


def workflow_at(revision, dest):
    """The workflow files and package of git revision `revision` of this repository."""
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", revision, "--", "Snakefile", "workflow", "config"]
        + ["profiles", "resources/reference", "src"],
        check=True,
        capture_output=True,
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(dest, filter="data")
    return dest


def workflow_here(dest):
    """The workflow files and package of this checkout (the package copied too, so that
    both sides of a comparison import their own)."""
    copy_workflow(dest)
    shutil.copytree(REPO / "src", dest / "src", ignore=shutil.ignore_patterns("__pycache__"))
    return dest


def stand_in_imagenet(root, images_per_class):
    """1000 train class folders and a flat val folder with a label CSV, of empty files."""
    train, val = root / "train", root / "val"
    val.mkdir(parents=True)
    rows = ["ImageId,PredictionString"]
    for label in range(1000):
        synset = f"n{label:08d}"
        folder = train / synset
        folder.mkdir(parents=True)
        for index in range(images_per_class):
            (folder / f"{synset}_{index}.JPEG").touch()
        for index in range(max(1, images_per_class // 26)):
            image = f"ILSVRC2012_val_{label:05d}{index:03d}"
            (val / f"{image}.JPEG").touch()
            rows.append(f"{image},{synset} 0 0 10 10")
    (root / "LOC_val_solution.csv").write_text("\n".join(rows) + "\n")
    return sum(1 for _ in root.rglob("*.JPEG"))


def measure_dry_run(scratch, images_per_class, repeats, baseline_revision):
    """(jobs, stand-in files, dry-run seconds here, at the baseline revision or None)."""
    files = stand_in_imagenet(scratch / "imagenet", images_per_class)
    config = yaml.safe_load((REPO / "config/config.yaml").read_text())
    config["data"].update(
        raw_dir=str(scratch / "imagenet"),
        val_labels=str(scratch / "imagenet/LOC_val_solution.csv"),
    )
    folders = [workflow_here(scratch / "full")]
    if baseline_revision:
        folders.append(workflow_at(baseline_revision, scratch / "baseline"))
    for folder in folders:
        write_config(folder / "imagenet.yaml", config)
    dry_run = [SNAKEMAKE, "-n", "--configfile", "imagenet.yaml", "--resources", "gpu=8"]
    # One untimed dry-run in each folder: the first run also sets up .snakemake/.
    planned = [
        subprocess.run(dry_run, cwd=folder, check=True, capture_output=True, text=True)
        for folder in folders
    ]
    jobs = planned[0].stdout.split("total", 1)[1].split()[0]
    times = timed_alternating(dry_run, folders, repeats)
    return jobs, files, times[0], times[1] if baseline_revision else None


def measure_noop(scratch, repeats):
    demo = copy_workflow(scratch / "demo")
    write_demo_tree(demo / "raw")
    write_config(demo / "tiny.yaml", tiny_config())
    run_snakemake(demo, "--configfile", "tiny.yaml", "--cores", "2")
    return timed([SNAKEMAKE, "--configfile", "tiny.yaml", "--cores", "2"], demo, repeats)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images-per-class", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--baseline", metavar="REV", help="also time the dry-run at REV")
    parser.add_argument("--skip-noop", action="store_true", help="skip the finished demo")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        version = timed([SNAKEMAKE, "--version"], REPO, args.repeats)
        jobs, files, dry, dry_before = measure_dry_run(
            scratch, args.images_per_class, args.repeats, args.baseline
        )
        started = time.perf_counter()
        tree_fingerprint(scratch / "imagenet/train")
        per_10k = (time.perf_counter() - started) / (files / 10_000)
        scripts = sorted((REPO / "workflow/scripts").glob("*.py"))
        started = time.perf_counter()
        code_digests(scripts, REPO / "src")
        digest_seconds = time.perf_counter() - started
        noop = None if args.skip_noop else measure_noop(scratch, args.repeats)

    print(f"baseline  snakemake --version            {version:6.2f} s")
    print(
        f"dry-run   full config.yaml, {jobs} jobs, {files} stand-in files"
        f"  {dry:6.2f} s  ({dry / version:.1f}x baseline)  goal <= {GOAL_SECONDS:.0f} s"
    )
    if dry_before is not None:
        print(
            f"dry-run   the same at {args.baseline}: {dry_before:6.2f} s; "
            f"this checkout takes {dry - dry_before:+.2f} s ({dry / dry_before:.2f}x)"
        )
    if noop is not None:
        print(
            f"no-op     finished tiny demo             {noop:6.2f} s  "
            f"({noop / version:.1f}x baseline)  goal <= {GOAL_SECONDS:.0f} s"
        )
    print(
        f"raw-tree fingerprint: {per_10k * 1000:.0f} ms per 10,000 files "
        f"(full ImageNet, 1.33 M files: about {per_10k * 133:.1f} s per full scan)"
    )
    print(
        f"code digests of {len(scripts)} stage scripts: {digest_seconds * 1000:.0f} ms "
        "per workflow start"
    )


if __name__ == "__main__":
    main()
