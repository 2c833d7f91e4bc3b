"""Packing throughput: pack_records against a raw copy and MXNet's im2rec.py --pass-through.

Generates ImageNet-size JPEGs (about 500x375) from the two photos scikit-learn ships
(random crops, flips, scales and JPEG qualities), lists them, then packs the same list in
one run: (a) a raw copy of the same bytes into one file, (b) MXNet's tools/im2rec.py
--pass-through with --num-thread 1 and with --num-thread W, (c) pack_records with its
image check with 1 and with W worker processes, and (d) pack_records with a full Pillow
decode of every image (W workers). Every method reads the files from a warm page cache and
writes new output files; each runs --repeats times, in turns, and the median counts.
Prints images/s, MB/s, whether our .rec/.idx equal im2rec.py's, and the ratios with their
goals. im2rec.py runs in a process of its own that has imported MXNet before it is timed,
so Python's and MXNet's start-up are not in its time; its index file is closed (flushed)
inside its timing, as its process exit would.

    .venv/bin/python benchmarks/pack_records.py [--images 3000] [--workers 2]
"""

import argparse
import contextlib
import importlib.util
import io
import logging
import multiprocessing
import os
import runpy
import shutil
import statistics
import sys
import tempfile
import time
import types
from typing import NamedTuple

import numpy as np
from PIL import Image
from sklearn.datasets import load_sample_images

from resnet_recipe.data.image_check import check_image
from resnet_recipe.data.listing import make_list, write_classes
from resnet_recipe.data.records import pack_records
from resnet_recipe.files.recordio import image_record

# Found without importing MXNet: only the im2rec.py process loads it (see Im2recProcess).
IM2REC = os.path.join(
    importlib.util.find_spec("mxnet").submodule_search_locations[0], "tools", "im2rec.py"
)
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
    """MXNet's tools/im2rec.py --pass-through on prefix.lst, run in the calling process
    (so the time is its packing, not Python's and MXNet's start-up; its workers are forked
    processes as when it runs on its own).

    With --num-thread 1 im2rec.py writes from its main module and never closes its
    MXIndexedRecordIO (its process exit would): it is closed here, so the last index lines
    are flushed before the files are compared and inside the time measured."""
    # im2rec.py imports cv2 at the top, but its --pass-through path never calls it.
    sys.modules.setdefault("cv2", types.ModuleType("cv2"))
    argv = sys.argv
    sys.argv = [IM2REC, "--pass-through", "--num-thread", str(threads), prefix, root]
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            namespace = runpy.run_path(IM2REC, run_name="__main__")
    finally:
        sys.argv = argv
    if "record" in namespace:
        namespace["record"].close()


def timed(action):
    """(wall seconds, CPU seconds of this process and its finished children) of a call;
    an action that measures itself (Im2recProcess) returns the pair."""
    start, cpu_start = time.perf_counter(), cpu_seconds()
    measured = action()
    if isinstance(measured, Measured):
        return measured
    return Measured(time.perf_counter() - start, cpu_seconds() - cpu_start)


class Measured(NamedTuple):
    wall: float
    cpu: float


class Im2recProcess:
    """A process of its own that runs im2rec.py on request and times it there.

    im2rec.py imports MXNet, and a process that has loaded MXNet forks slowly (MXNet's
    fork handlers stop and restart its engine threads, and the address space is large): in
    this process that would slow pack_records' workers, which run in a process without
    MXNet in the workflow."""

    def __init__(self):
        context = multiprocessing.get_context("spawn")
        self.connection, child = context.Pipe()
        self.process = context.Process(target=serve_im2rec, args=(child,))
        self.process.start()

    def action(self, prefix, root, threads):
        def run():
            self.connection.send((prefix, root, threads))
            return self.connection.recv()

        return run

    def close(self):
        self.connection.send(None)
        self.process.join()


def serve_im2rec(connection):
    import mxnet  # noqa: F401 - loaded before any run is timed

    # im2rec.py's workers are forked, as on Linux when it runs on its own (this process
    # was spawned, and would spawn them too).
    multiprocessing.set_start_method("fork", force=True)

    while (request := connection.recv()) is not None:
        start, cpu_start = time.perf_counter(), cpu_seconds()
        run_im2rec(*request)
        connection.send(Measured(time.perf_counter() - start, cpu_seconds() - cpu_start))


def cpu_seconds():
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


def measure(methods, repeats, images, megabytes):
    """Run every method (name, action, output files) once per round, `repeats` rounds (so a
    change of machine load touches all of them alike); print and return the median rate.
    The CPU time per image (all processes of a method) does not depend on other load of
    the machine: when a method's wall time is far above its CPU time / cores, the machine
    was busy with other work.

    Each run starts without its output files, as a workflow job does: overwriting a large
    file makes the file system flush it on close or rename, which would time the disk.
    """
    seconds = {name: [] for name, _, _ in methods}
    cpu = {name: [] for name, _, _ in methods}
    for _ in range(repeats):
        for name, action, outputs in methods:
            for path in outputs:
                if os.path.exists(path):
                    os.remove(path)
            wall, used = timed(action)
            seconds[name].append(wall)
            cpu[name].append(used)
    results = {}
    for name, _, _ in methods:
        median = statistics.median(seconds[name])
        cpu_per_image = statistics.median(cpu[name]) / images
        results[name] = images / median
        print(
            f"{name:44s} {median:7.3f} s {images / median:7.0f} images/s "
            f"{megabytes / median:7.1f} MB/s  CPU {cpu_per_image * 1e6:5.0f} us/image",
            flush=True,
        )
    return results


def check_cost(paths, repeats):
    """CPU microseconds per image of the image check alone (image_check.check_image on
    bytes already in memory), and of framing alone (recordio.image_record): the work
    pack_records does per image that im2rec.py --pass-through does not do in Python."""
    images = [open(path, "rb").read() for path in paths]
    costs = []
    for action in (
        lambda: [check_image(data) for data in images],
        lambda: [image_record(0.0, index, data) for index, data in enumerate(images)],
    ):
        times = []
        for _ in range(repeats):
            start = time.process_time()
            action()
            times.append(time.process_time() - start)
        costs.append(statistics.median(times) / len(images) * 1e6)
    return costs


def same_bytes(path_a, path_b):
    with open(path_a, "rb") as a, open(path_b, "rb") as b:
        return a.read() == b.read()


def same_records(prefix_a, prefix_b):
    return all(same_bytes(prefix_a + kind, prefix_b + kind) for kind in (".rec", ".idx"))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=3000)
    parser.add_argument("--workers", type=int, default=2, help="W: processes of (b), (c), (d)")
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


def prepare(args, workdir):
    """The image tree and its shuffled list; returns (split folder, list, image paths)."""
    split_dir = os.path.join(workdir, "train")
    lists = os.path.join(workdir, "lists")
    os.makedirs(lists, exist_ok=True)
    if not os.path.isdir(split_dir):
        print(f"generating {args.images} JPEGs in {split_dir}", flush=True)
        generate_images(split_dir, args.images)
    write_classes(split_dir, os.path.join(lists, "classes.tsv"))
    lst = os.path.join(lists, "bench.lst")
    make_list(split_dir, os.path.join(lists, "classes.tsv"), lst, shuffle_seed=0)
    return split_dir, lst, list_paths(lst, split_dir)


def run(args, workdir):
    split_dir, lst, paths = prepare(args, workdir)
    out = os.path.join(workdir, "out")
    os.makedirs(out, exist_ok=True)
    megabytes = sum(os.path.getsize(path) for path in paths) / 1e6
    images = len(paths)
    w = args.workers
    print(
        f"{images} images, {megabytes:.1f} MB (mean {megabytes / images * 1e3:.0f} KB), "
        f"W = {w} workers, {os.cpu_count()} CPUs, load average "
        f"{' '.join(f'{load:.2f}' for load in os.getloadavg())} at the start, "
        f"median of {args.repeats} runs",
        flush=True,
    )
    raw_copy(paths, os.path.join(out, "warm-cache.bin"))  # every method reads cached files
    os.remove(os.path.join(out, "warm-cache.bin"))
    copy_path = os.path.join(out, "raw.bin")

    im2rec_process = Im2recProcess()

    def im2rec(threads):
        prefix = os.path.join(out, f"im2rec{threads}")
        shutil.copyfile(lst, prefix + ".lst")
        action = im2rec_process.action(prefix, split_dir, threads)
        return action, [prefix + ".rec", prefix + ".idx"]

    def ours(workers, full_decode=False):
        prefix = os.path.join(out, f"ours{workers}{'-decode' if full_decode else ''}")
        outputs = [prefix + kind for kind in (".rec", ".idx", ".rejected.tsv")]
        action = lambda: pack_records(  # noqa: E731
            lst, split_dir, *outputs, workers, max_rejected_fraction=0.0, full_decode=full_decode
        )
        return action, outputs

    methods = [
        ("(a) raw copy", lambda: raw_copy(paths, copy_path), [copy_path]),
        ("(b1) im2rec.py --num-thread 1", *im2rec(1)),
        (f"(b{w}) im2rec.py --num-thread {w}", *im2rec(w)),
        ("(c1) pack_records, 1 worker", *ours(1)),
        (f"(c{w}) pack_records, {w} workers", *ours(w)),
        (f"(d{w}) pack_records --full-decode, {w} workers", *ours(w, full_decode=True)),
    ]
    try:
        rates = measure(methods, args.repeats, images, megabytes)
    finally:
        im2rec_process.close()
    print_comparison(out, w, *rates.values())
    check, framing = check_cost(paths, args.repeats)
    print(
        f"CPU per image of pack_records' image check alone: {check:.0f} us, framing alone: "
        f"{framing:.0f} us (in the CPU us/image of (c1) above; im2rec.py has neither)"
    )


def print_comparison(out, w, raw, im2rec_1, im2rec_w, ours_1, ours_w, decoded):
    """Whether the outputs are the same, and the ratios of the rates with their goals."""
    for name in ("ours1", f"ours{w}", f"ours{w}-decode", f"im2rec{w}"):
        same = same_records(os.path.join(out, "im2rec1"), os.path.join(out, name))
        print(f"{name}.rec/.idx byte-identical to im2rec.py --num-thread 1's: {same}")
    ratios = [
        (f"(c{w})/(a)  ours / raw copy", ours_w / raw, "goal >= 0.5"),
        (f"(c{w})/(b{w}) ours / im2rec.py, same process count", ours_w / im2rec_w, "goal >= 2"),
        ("(c1)/(b1) ours / im2rec.py, one process", ours_1 / im2rec_1, "goal >= 1"),
        (f"(c{w})/(c1) {w} workers / 1 worker", ours_w / ours_1, "goal >= 1.7 for 2 workers"),
        (f"(d{w})/(a)  full decode / raw copy", decoded / raw, ""),
        (f"(d{w})/(b{w}) full decode / im2rec.py", decoded / im2rec_w, ""),
    ]
    for name, ratio, goal in ratios:
        print(f"ratio {name:48s} {ratio:5.2f}  {goal}")


if __name__ == "__main__":
    main()
