"""Shared fixtures: a private copy of the workflow to run Snakemake in, and tiny data."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))
WORKFLOW_FILES = ["Snakefile", "workflow", "config", "profiles", "resources/reference"]


# Test files of minutes (a SLURM cluster's status waits, whole workflow runs), longest
# first, collected before the rest: with several test processes (make test), the others
# work through the rest meanwhile.
LONG_FILES = ["test_slurm.py", "test_caching.py", "test_distributed.py"]


def pytest_collection_modifyitems(items):
    def place(item):
        name = item.path.name
        return LONG_FILES.index(name) if name in LONG_FILES else len(LONG_FILES)

    items.sort(key=place)


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


@pytest.fixture
def workflow_dir(tmp_path):
    """A private copy of the workflow, so tests never touch the repository's results."""
    return copy_workflow(tmp_path / "workflow-copy")


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


@pytest.fixture(scope="session")
def make_tiny_rec(tmp_path_factory):
    """Factory of small .rec/.idx pairs: make_tiny_rec(name, labels, noise=0, side=None).

    Image i is a JPEG of 20 to 60 px a side (side x side if given) with label labels[i],
    filled with its label's colour (`.colours[label]`, RGB 0-255) plus uniform noise of
    +-noise per pixel, which makes crops and flips visible. Returns a namespace with rec,
    idx, labels, colours. Each name is written once per session, so a pipeline still
    reading an earlier file is never cut off by a rewrite.
    """
    # Imported here: mxnet takes seconds to import and most tests never need records.
    import io
    from types import SimpleNamespace

    import mxnet as mx
    import numpy as np
    from PIL import Image

    folder = tmp_path_factory.mktemp("tiny_rec")
    made = {}

    def make(name, labels, noise=0, side=None):
        if name in made:
            return made[name]
        rng = np.random.default_rng(len(labels) + noise)
        colours = {
            label: (40 + 80 * (label % 3), 200 - 70 * (label % 3), 60 + 50 * (label % 4))
            for label in set(labels)
        }
        rec, idx = str(folder / f"{name}.rec"), str(folder / f"{name}.idx")
        writer = mx.recordio.MXIndexedRecordIO(idx, rec, "w")
        for index, label in enumerate(labels):
            height, width = (side, side) if side else rng.integers(20, 61, size=2)
            pixels = np.full((height, width, 3), colours[label], dtype=np.int64)
            pixels += rng.integers(-noise, noise + 1, size=pixels.shape)
            jpeg = io.BytesIO()
            image = Image.fromarray(pixels.clip(0, 255).astype(np.uint8))
            image.save(jpeg, format="JPEG", quality=95)
            header = mx.recordio.IRHeader(0, float(label), index, 0)
            writer.write_idx(index, mx.recordio.pack(header, jpeg.getvalue()))
        writer.close()
        made[name] = SimpleNamespace(rec=rec, idx=idx, labels=list(labels), colours=colours)
        return made[name]

    return make


@pytest.fixture(scope="session")
def tiny_rec(make_tiny_rec):
    """30 solid-colour JPEGs of 20-60 px in 3 classes (label = index % 3)."""
    return make_tiny_rec("tiny", [index % 3 for index in range(30)])


def tiny_image_bytes(kind="jpeg", size=(40, 30), seed=0):
    """File bytes of a small smooth RGB picture (gradients and a disc, colours from seed)
    stored as kind: jpeg, progressive, png, cmyk (JPEG) or grayscale (JPEG)."""
    import io

    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    width, height = size
    y, x = np.mgrid[0:height, 0:width] / max(size)
    colours = rng.uniform(30, 225, size=(3, 3))
    pixels = colours[0] + (colours[1] - colours[0]) * x[..., None] + 20 * y[..., None]
    disc = (x - 0.4) ** 2 + (y - 0.3) ** 2 < 0.04
    pixels[disc] = colours[2]
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")
    out = io.BytesIO()
    if kind in ("jpeg", "progressive"):
        image.save(out, format="JPEG", quality=90, progressive=kind == "progressive")
    elif kind == "png":
        image.save(out, format="PNG")
    elif kind == "cmyk":
        image.convert("CMYK").save(out, format="JPEG", quality=90)
    elif kind == "grayscale":
        image.convert("L").save(out, format="JPEG", quality=90)
    else:
        raise ValueError(f"unknown kind {kind}")
    return out.getvalue()


# Labels of the three-colour records the training, scoring and benchmark tests train on.
COLOUR_LABELS = [index % 3 for index in range(48)]


@pytest.fixture(scope="session")
def tiny_data(make_tiny_rec, tmp_path_factory):
    """train() inputs of three solid colours: 48 training images and 19 validation images
    (an odd count, not a multiple of 8, so batches and workers' shards differ in size)."""
    train = make_tiny_rec("train_colours", COLOUR_LABELS, noise=8)
    val = make_tiny_rec("val_colours", COLOUR_LABELS[:19], noise=8)
    classes = tmp_path_factory.mktemp("classes") / "classes.tsv"
    classes.write_text("".join(f"{label}\tcolour{label}\n" for label in range(3)))
    return {
        "train_rec": train.rec,
        "train_idx": train.idx,
        "val_rec": val.rec,
        "val_idx": val.idx,
        "classes_tsv": str(classes),
    }
