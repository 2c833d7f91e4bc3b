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
  make-list   listing train: the package's make_list as the rule runs it, and the
              `resnet-recipe make-list` command (wall time and peak memory of the process)
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
from pack_records import Im2recProcess, measure  # noqa: E402

from resnet_recipe.data.records import pack_records  # noqa: E402

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
    val.mkdir(parents=True)
    rows = ["ImageId,PredictionString"]
    for index in range(IMAGENET_VAL):
        image = f"ILSVRC2012_val_{index + 1:08d}"
        os.link(sources[index % SOURCES], val / f"{image}.JPEG")
        rows.append(f"{image},{synset(index % CLASSES)} 0 0 10 10")
    (root / "LOC_val_solution.csv").write_text("\n".join(rows) + "\n")


def disk_megabytes(path):
    return int(
        subprocess.run(["du", "-sm", str(path)], capture_output=True, text=True).stdout.split()[0]
    )


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
        [sys.executable, "-c", script, *command],
        cwd=cwd,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    return float(out[-2]), float(out[-1])


def workflow_copy(workdir, imagenet):
    """A copy of the workflow whose config is config/config.yaml on the generated tree."""
    copy = copy_workflow(workdir / "workflow")
    config = yaml.safe_load((REPO / "config/config.yaml").read_text())
    config["data"].update(raw_dir=str(imagenet), val_labels=str(imagenet / "LOC_val_solution.csv"))
    write_config(copy / "imagenet.yaml", config)
    return copy


def start_times(copy, repeats):
    """Medians of: the baseline, a dry-run whose fingerprints are cached, a dry-run that
    scans the tree (no cache: the first start after a folder changed), and a no-op run
    asked for the lists once they are made."""
    snakemake = [SNAKEMAKE, "--configfile", "imagenet.yaml"]
    dry_run = [*snakemake, "-n", "--resources", "gpu=8"]
    lists = ["--cores", "2", "results/lists/train.lst", "results/lists/val.lst"]
    cache = copy / "results/raw_tree"
    times = {"baseline": timed_runs([SNAKEMAKE, "--version"], copy, repeats)}
    times["dry-run, first start (full scan)"] = timed_runs(
        dry_run, copy, repeats, before=lambda: shutil.rmtree(cache, ignore_errors=True)
    )
    times["dry-run"] = timed_runs(dry_run, copy, repeats)
    started = time.perf_counter()
    subprocess.run([*snakemake, *lists], cwd=copy, check=True, capture_output=True)
    times["lists made by the workflow (one run)"] = time.perf_counter() - started
    times["no-op"] = timed_runs([*snakemake, *lists], copy, repeats)
    return times


LISTING = (
    "import sys; from resnet_recipe.data.listing import make_list, write_classes; "
    "write_classes(sys.argv[1], sys.argv[3]); make_list(sys.argv[1], sys.argv[3], sys.argv[2], 0)"
)


def make_list_times(imagenet, out, repeats):
    """{how: (median wall seconds, largest peak memory MB)} of listing train: the package's
    make_list in a process of its own (what the make_list rule runs), and the
    `resnet-recipe make-list` command (its start-up included)."""
    args = [str(imagenet / "train"), str(out / "train.lst"), str(out / "classes.tsv")]
    commands = {
        "make_list (package, as the rule)": [sys.executable, "-c", LISTING, *args],
        "resnet-recipe make-list": [
            RESNET_RECIPE,
            "make-list",
            args[0],
            args[1],
            "--classes",
            args[2],
            "--write-classes",
            "--shuffle-seed",
            "0",
        ],
    }
    times = {}
    for how, command in commands.items():
        runs = [peak_memory_run(command, out) for _ in range(repeats)]
        times[how] = (
            statistics.median(seconds for seconds, _ in runs),
            max(peak for _, peak in runs),
        )
    return times


def packing_rates(imagenet, out, images, repeats):
    """images/s of pack_records and im2rec.py with 1 and 2 processes on the first `images`
    files of the shuffled train list (printed by pack_records.measure as they are made)."""
    lines = (out / "train.lst").read_text().splitlines(keepends=True)[:images]
    lst = out / "pack.lst"
    lst.write_text("".join(lines))
    root = str(imagenet / "train")
    megabytes = (
        sum(os.path.getsize(os.path.join(root, line.split("\t")[2].strip())) for line in lines)
        / 1e6
    )

    im2rec_process = Im2recProcess()

    def im2rec(threads):
        prefix = str(out / f"im2rec{threads}")
        shutil.copyfile(lst, prefix + ".lst")
        return im2rec_process.action(prefix, root, threads), [prefix + ".rec", prefix + ".idx"]

    def ours(workers):
        outputs = [str(out / f"ours{workers}{kind}") for kind in (".rec", ".idx", ".rejected.tsv")]
        return lambda: pack_records(
            lst, root, *outputs, workers, max_rejected_fraction=0.0
        ), outputs

    methods = [
        ("im2rec.py --num-thread 1", *im2rec(1)),
        ("im2rec.py --num-thread 2", *im2rec(2)),
        ("pack_records, 1 worker", *ours(1)),
        ("pack_records, 2 workers", *ours(2)),
    ]
    try:
        rates = measure(methods, repeats, len(lines), megabytes)
    finally:
        im2rec_process.close()
    return dict(zip(["im2rec1", "im2rec2", "ours1", "ours2"], rates.values(), strict=True))


def report(files, times, make_list, rates):
    baseline = times["baseline"]
    print(f"\n== {files:,} train files + {IMAGENET_VAL:,} val, load average {load()} ==")
    for name, seconds in times.items():
        extra = "" if name == "baseline" else f"  ({seconds - baseline:+.2f} s on the baseline)"
        print(f"  {name:40s} {seconds:6.2f} s{extra}")
    dry = times["dry-run"]
    print(f"  goal dry-run <= 3 s and <= baseline + 1.5 s: {dry <= 3 and dry - baseline <= 1.5}")
    for how, (seconds, peak) in make_list.items():
        print(f"  {how + ' of train':40s} {seconds:6.2f} s, peak memory {peak:.0f} MB")
    print(f"  packing ours/im2rec, 1 process:  {rates['ours1'] / rates['im2rec1']:.2f} (goal >= 1)")
    print(
        f"  packing ours/im2rec, 2 processes: {rates['ours2'] / rates['im2rec2']:.2f} (goal >= 2)"
    )
    print(f"  packing 2 workers / 1 worker:    {rates['ours2'] / rates['ours1']:.2f} (goal >= 1.7)")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, IMAGENET_TRAIN])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--pack-images", type=int, default=20_000)
    parser.add_argument("--workdir", help="build the tree here and keep it (default: temporary)")
    args = parser.parse_args()
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="imagenet-scale-"))
    print(f"{os.cpu_count()} CPUs, load average {load()}, tree in {workdir}", flush=True)
    try:
        imagenet = workdir / "imagenet"
        sources = sorted((workdir / "sources").glob("*.JPEG")) or write_sources(workdir / "sources")
        if not (imagenet / "val").is_dir():
            write_val(imagenet, sources)
        for files in sorted(args.sizes):
            started = time.perf_counter()
            grow_train(imagenet / "train", sources, files)
            print(
                f"\n{files:,} train files: tree made in {time.perf_counter() - started:.0f} s, "
                f"{disk_megabytes(workdir)} MB on disk; load average {load()}",
                flush=True,
            )
            copy = workflow_copy(workdir / f"run{files}", imagenet)
            times = start_times(copy, args.repeats)
            out = workdir / f"out{files}"
            out.mkdir(exist_ok=True)
            make_list = make_list_times(imagenet, out, args.repeats)
            rates = packing_rates(imagenet, out, min(args.pack_images, files), args.repeats)
            report(files, times, make_list, rates)
            shutil.rmtree(out)
    finally:
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
