"""Workflow overhead: how long Snakemake takes to plan the full ImageNet matrix and to find
that a finished demo has nothing to do. Goal: <= 3 s each on 2 cores.

Measured in one run, each the median of --repeats:
  baseline   `snakemake --version` (interpreter and Snakemake start-up alone)
  dry-run    `snakemake -n --configfile config/config.yaml` with data.raw_dir pointed at a
             generated stand-in ImageNet tree (1000 train class folders, a flat val folder
             and its label CSV; empty files, the dry-run never reads them)
  no-op      `snakemake --cores 2` on a finished tiny demo (every output up to date)
and the time of the full raw-tree fingerprint per 10,000 files, which a start pays only
after a folder of the tree changed (and `snakemake rescan_raw_tree` on request); see
imagenet_scale.py for start times at full ImageNet size.

    .venv/bin/python benchmarks/workflow_overhead.py [--images-per-class 10]
"""

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
from conftest import SNAKEMAKE, copy_workflow, run_snakemake, write_config  # noqa: E402
from test_caching import tiny_config  # noqa: E402

from resnet_recipe.demo_data import write_demo_tree  # noqa: E402
from resnet_recipe.listing import tree_fingerprint  # noqa: E402

GOAL_SECONDS = 3.0


def timed(command, cwd, repeats):
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        subprocess.run(command, cwd=cwd, check=True, capture_output=True)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


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


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images-per-class", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        baseline = timed([SNAKEMAKE, "--version"], REPO, args.repeats)

        full = copy_workflow(scratch / "full")
        files = stand_in_imagenet(scratch / "imagenet", args.images_per_class)
        config = yaml.safe_load((REPO / "config/config.yaml").read_text())
        config["data"].update(
            raw_dir=str(scratch / "imagenet"),
            val_labels=str(scratch / "imagenet/LOC_val_solution.csv"),
        )
        write_config(full / "imagenet.yaml", config)
        dry_run = [SNAKEMAKE, "-n", "--configfile", "imagenet.yaml", "--resources", "gpu=8"]
        planned = subprocess.run(dry_run, cwd=full, check=True, capture_output=True, text=True)
        jobs = planned.stdout.split("total", 1)[1].split()[0]
        dry = timed(dry_run, full, args.repeats)
        started = time.perf_counter()
        tree_fingerprint(scratch / "imagenet/train")
        per_10k = (time.perf_counter() - started) / (files / 10_000)

        demo = copy_workflow(scratch / "demo")
        write_demo_tree(demo / "raw")
        write_config(demo / "tiny.yaml", tiny_config())
        run_snakemake(demo, "--configfile", "tiny.yaml", "--cores", "2")
        noop = timed([SNAKEMAKE, "--configfile", "tiny.yaml", "--cores", "2"], demo, args.repeats)

    print(f"baseline  snakemake --version            {baseline:6.2f} s")
    print(
        f"dry-run   full config.yaml, {jobs} jobs, {files} stand-in files"
        f"  {dry:6.2f} s  ({dry / baseline:.1f}x baseline)  goal <= {GOAL_SECONDS:.0f} s"
    )
    print(
        f"no-op     finished tiny demo             {noop:6.2f} s  "
        f"({noop / baseline:.1f}x baseline)  goal <= {GOAL_SECONDS:.0f} s"
    )
    print(
        f"raw-tree fingerprint: {per_10k * 1000:.0f} ms per 10,000 files "
        f"(full ImageNet, 1.33 M files: about {per_10k * 133:.1f} s per full scan)"
    )


if __name__ == "__main__":
    main()
