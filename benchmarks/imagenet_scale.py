"""The workflow at ImageNet scale: start-up, listing and packing on a generated tree.

Generates an ImageNet-layout tree: 1,000 train class folders whose files are hard links to
1,000 small real JPEGs (crops of the photos scikit-learn ships), and a flat val folder of
50,000 files with its LOC_val_solution.csv; a few tens of MB of disk however many files,
all removed at the end (unless --workdir is given). Then, at each train size (--sizes,
default 100,000 and the full 1,281,167), prints, each the median of --repeats runs:

  baseline    `snakemake --version`: interpreter and Snakemake start-up alone
  dry-run     `snakemake -n` of config/config.yaml (the full matrix) on the tree, with the
              raw-tree fingerprint cached (every start after the first); the first start
              after a tree change (a full scan) is shown beside it
  no-op       `snakemake` asked for both lists when they are up to date
  make-list   `resnet-recipe make-list` of train (wall time and peak memory of the process)
  packing     images/s of pack_records and of im2rec.py --pass-through, 1 and 2 processes,
              on the first --pack-images files of the shuffled train list

Goals (issue 11): dry-run <= 3 s at 1.28 M files and at most 1.5 s above the baseline;
packing >= 2x im2rec.py with the same process count, 1 worker >= 1x im2rec.py in one
process, 2 workers >= 1.7x 1 worker. Timings depend on what else runs on the machine: the
load average is printed at the start and at the end of each part.

    .venv/bin/python benchmarks/imagenet_scale.py [--sizes 100000 1281167] [--repeats 3]
"""

import argparse
import io
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml
from PIL import Image
from sklearn.datasets import load_sample_images

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "benchmarks"))
from conftest import SNAKEMAKE, copy_workflow, write_config  # noqa: E402
from pack_records import measure, run_im2rec  # noqa: E402

from resnet_recipe.records import pack_records  # noqa: E402

IMAGENET_TRAIN = 1_281_167
IMAGENET_VAL = 50_000
CLASSES = 1000
SOURCES = 1000
RESNET_RECIPE = str(Path(sys.executable).with_name("resnet-recipe"))


def synset(label):
    return f"n{label:08d}"


def write_sources(folder, count=SOURCES, seed=0):
    """count small JPEGs (about 160x120, a few KB): random crops of the sample photos."""
    folder.mkdir(parents=True)
    photos = load_sample_images().images
    rng = np.random.default_rng(seed)
    for index in range(count):
        photo = photos[index % len(photos)]
        top, left = rng.integers(0, 300), rng.integers(0, 400)
        crop = Image.fromarray(photo[top : top + 120, left : left + 160])
        out = io.BytesIO()
        crop.save(out, format="JPEG", quality=int(rng.integers(80, 95)))
        (folder / f"{index:04d}.JPEG").write_bytes(out.getvalue())
    return sorted(folder.iterdir())


def grow_train(train, sources, files):
    """Hard-link files into the class folders until train holds `files` of them, spread
    evenly over the classes (file i of class c is source (c + i) % SOURCES)."""
    for label in range(CLASSES):
        folder = train / synset(label)
        folder.mkdir(parents=True, exist_ok=True)
        wanted = files // CLASSES + (label < files % CLASSES)
        for index in range(len(os.listdir(folder)), wanted):
            os.link(sources[(label + index) % SOURCES], folder / f"{synset(label)}_{index}.JPEG")


def write_val(root, sources):
    val = root / "val"
    val.mkdir()
    rows = ["ImageId,PredictionString"]
    for index in range(IMAGENET_VAL):
        image = f"ILSVRC2012_val_{index + 1:08d}"
        os.link(sources[index % SOURCES], val / f"{image}.JPEG")
        rows.append(f"{image},{synset(index % CLASSES)} 0 0 10 10")
    (root / "LOC_val_solution.csv").write_text("\n".join(rows) + "\n")


def disk_megabytes(path):
    return int(subprocess.run(["du", "-sm", str(path)], capture_output=True, text=True).stdout.split()[0])


def load():
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def timed_runs(command, cwd, repeats, before=None):
    """Median wall time of a command; before() runs ahead of each (not timed)."""
    times = []
    for _ in range(repeats):
        if before:
            before()
        started = time.perf_counter()
        subprocess.run(command, cwd=cwd, check=True, capture_output=True)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def peak_memory_run(command, cwd):
    """(wall seconds, peak resident MB) of a command run in a child process alone."""
    script = (
        "import resource, subprocess, sys, time; s = time.perf_counter(); "
        "subprocess.run(sys.argv[1:], check=True); "
        "print(time.perf_counter() - s, "
        "resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)"
    )
    out = subprocess.run(
        [sys.executable, "-c", script, *command], cwd=cwd, check=True, capture_output=True, text=True
    ).stdout.split()
    return float(out[-2]), float(out[-1])
