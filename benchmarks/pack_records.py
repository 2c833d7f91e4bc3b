"""Packing throughput: pack_records against a raw copy and MXNet's im2rec.py --pass-through.

Generates ImageNet-size JPEGs (about 500x375) from the two photos scikit-learn ships
(random crops, flips, scales and JPEG qualities), lists them, then packs the same list in
one run: (a) a raw copy of the same bytes into one file, (b) MXNet's tools/im2rec.py
--pass-through with the same thread count, (c) pack_records with its image check, and
(d) pack_records with a full Pillow decode of every image. Every method reads the files
from a warm page cache and writes new output files; each runs --repeats times, in turns,
and the median counts. Prints images/s, MB/s and the ratios of (c) and (d) to (a) and (b).
im2rec.py runs in this process, so Python's and MXNet's start-up are not in its time.

    .venv/bin/python benchmarks/pack_records.py [--images 3000] [--threads 2]
"""

import argparse
import contextlib
import io
import logging
import os
import runpy
import shutil
import statistics
import sys
import tempfile
import time
import types

import mxnet
import numpy as np
from PIL import Image
from sklearn.datasets import load_sample_images

from resnet_recipe.listing import make_list, write_classes
from resnet_recipe.records import pack_records

IM2REC = os.path.join(os.path.dirname(mxnet.__file__), "tools", "im2rec.py")
CLASSES = 10
# ImageNet's common shapes: mostly 500 wide, landscape 4:3 and 3:2, some portrait.
SHAPES = [(500, 375), (500, 333), (375, 500), (500, 500)]
SHAPE_WEIGHTS = [0.6, 0.2, 0.15, 0.05]


def generate_images(split_dir, count, seed=0):
    """count JPEGs in CLASSES class folders: random crops of the sample photos, scaled to an
    ImageNet shape, half of them flipped, at JPEG quality 85 to 97."""
    photos = load_sample_images().images
    rng = np.random.default_rng(seed)
    for index in range(count):
        photo = photos[index % len(photos)]
        width, height = SHAPES[rng.choice(len(SHAPES), p=SHAPE_WEIGHTS)]
        scale = rng.uniform(0.6, 1.0) * min(photo.shape[0] / height, photo.shape[1] / width)
        crop_h, crop_w = int(height * scale), int(width * scale)
        top = rng.integers(0, photo.shape[0] - crop_h + 1)
        left = rng.integers(0, photo.shape[1] - crop_w + 1)
        image = Image.fromarray(photo[top : top + crop_h, left : left + crop_w])
        if rng.random() < 0.5:
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        image = image.resize((width, height), Image.Resampling.LANCZOS)
        folder = os.path.join(split_dir, f"class{index % CLASSES}")
        os.makedirs(folder, exist_ok=True)
        out = io.BytesIO()
        image.save(out, format="JPEG", quality=int(rng.integers(85, 98)))
        with open(os.path.join(folder, f"image{index:06d}.JPEG"), "wb") as handle:
            handle.write(out.getvalue())


def list_paths(lst_path, root):
    with open(lst_path) as lines:
        return [os.path.join(root, line.rstrip("\n").split("\t")[2]) for line in lines]


def raw_copy(paths, out_path):
    """The floor: read every file and append its bytes to one file, nothing else."""
    with open(out_path, "wb") as out:
        for path in paths:
            with open(path, "rb") as handle:
                out.write(handle.read())


def run_im2rec(prefix, root, threads):
    """MXNet's tools/im2rec.py --pass-through on prefix.lst, run in this process (so the
    time is its packing, not Python's and MXNet's start-up; its workers are forked
    processes as when it runs on its own)."""
    # im2rec.py imports cv2 at the top, but its --pass-through path never calls it.
    sys.modules.setdefault("cv2", types.ModuleType("cv2"))
    argv = sys.argv
    sys.argv = [IM2REC, "--pass-through", "--num-thread", str(threads), prefix, root]
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            runpy.run_path(IM2REC, run_name="__main__")
    finally:
        sys.argv = argv


def timed(action):
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def measure(methods, repeats, images, megabytes):
    """Run every method (name, action, output files) once per round, `repeats` rounds (so a
    change of machine load touches all of them alike); print and return the median rate.

    Each run starts without its output files, as a workflow job does: overwriting a large
    file makes the file system flush it on close or rename, which would time the disk.
    """
    seconds = {name: [] for name, _, _ in methods}
    for _ in range(repeats):
        for name, action, outputs in methods:
            for path in outputs:
                if os.path.exists(path):
                    os.remove(path)
            seconds[name].append(timed(action))
    results = {}
    for name, _, _ in methods:
        median = statistics.median(seconds[name])
        results[name] = images / median
        print(
            f"{name:36s} {median:7.3f} s {images / median:9.0f} images/s "
            f"{megabytes / median:7.1f} MB/s",
            flush=True,
        )
    return results


def same_bytes(path_a, path_b):
    with open(path_a, "rb") as a, open(path_b, "rb") as b:
        return a.read() == b.read()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=3000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workdir", help="keep the images and outputs here (default: temporary)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    workdir = args.workdir or tempfile.mkdtemp(prefix="pack-bench-")
    try:
        run(args, workdir)
    finally:
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)


def run(args, workdir):
    split_dir = os.path.join(workdir, "train")
    lists = os.path.join(workdir, "lists")
    out = os.path.join(workdir, "out")
    os.makedirs(lists, exist_ok=True)
    os.makedirs(out, exist_ok=True)
    if not os.path.isdir(split_dir):
        print(f"generating {args.images} JPEGs in {split_dir}", flush=True)
        generate_images(split_dir, args.images)
    write_classes(split_dir, os.path.join(lists, "classes.tsv"))
    lst = os.path.join(lists, "bench.lst")
    make_list(split_dir, os.path.join(lists, "classes.tsv"), lst, shuffle_seed=0)
    paths = list_paths(lst, split_dir)
    megabytes = sum(os.path.getsize(path) for path in paths) / 1e6
    images = len(paths)
    print(
        f"{images} images, {megabytes:.1f} MB (mean {megabytes / images * 1e3:.0f} KB), "
        f"{args.threads} threads, {os.cpu_count()} CPUs, median of {args.repeats} runs",
        flush=True,
    )
    raw_copy(paths, os.path.join(out, "warm-cache.bin"))  # every method reads cached files
    os.remove(os.path.join(out, "warm-cache.bin"))

    prefix = os.path.join(out, "im2rec")
    shutil.copyfile(lst, prefix + ".lst")
    copy_path = os.path.join(out, "raw.bin")
    ours = {kind: os.path.join(out, f"ours.{kind}") for kind in ("rec", "idx", "rejected.tsv")}

    def pack(full_decode):
        return lambda: pack_records(
            lst,
            split_dir,
            ours["rec"],
            ours["idx"],
            ours["rejected.tsv"],
            threads=args.threads,
            max_rejected_fraction=0.0,
            full_decode=full_decode,
        )

    rates = measure(
        [
            ("(a) raw copy", lambda: raw_copy(paths, copy_path), [copy_path]),
            (
                "(b) im2rec.py --pass-through",
                lambda: run_im2rec(prefix, split_dir, args.threads),
                [prefix + ".rec", prefix + ".idx"],
            ),
            ("(c) pack_records (stream check)", pack(False), list(ours.values())),
            ("(d) pack_records (full decode)", pack(True), list(ours.values())),
        ],
        args.repeats,
        images,
        megabytes,
    )
    raw, im2rec, checked, decoded = rates.values()
    identical = same_bytes(prefix + ".rec", ours["rec"]) and same_bytes(
        prefix + ".idx", ours["idx"]
    )
    print(f"our .rec and .idx byte-identical to im2rec.py's: {identical}")
    print(f"ratio (c)/(a) ours / raw copy:  {checked / raw:.2f}  (goal >= 0.5)")
    print(f"ratio (c)/(b) ours / im2rec.py: {checked / im2rec:.2f}  (goal >= 2)")
    print(f"ratio (d)/(a) full decode / raw copy:  {decoded / raw:.2f}")
    print(f"ratio (d)/(b) full decode / im2rec.py: {decoded / im2rec:.2f}")


if __name__ == "__main__":
    main()
