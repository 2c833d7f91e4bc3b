"""Shared fixtures (factories and settings are in helpers/), and the order of the test
files. The tiers:

- unit: the package's functions in this process, no Snakemake and no process a test or a
  stage starts (the package's own queries of git, nvidia-smi and oneDNN aside); the whole
  tier in under two minutes on two cores (make check)
- stages: one stage's code on tiny data (training, scoring, export, benchmark points,
  packing with its worker processes) and checks in fresh interpreters
- workflow: Snakemake runs and plans, SLURM, multi-node, the linters and the suite itself
"""

from pathlib import Path

import pytest
from helpers.images import write_tiny_rec
from helpers.tiny import COLOUR_LABELS
from helpers.workflow_runs import copy_workflow

TESTS = Path(__file__).resolve().parent

# Test files of minutes (a SLURM cluster's status waits, whole workflow runs), longest
# first, collected before the rest, and the rest by tier, slowest tier first: with several
# test processes (make test), the others work through the rest meanwhile, and the last
# files to start are short ones.
LONG_FILES = ["workflow/test_slurm.py", "workflow/test_caching.py", "workflow/test_distributed.py"]
TIERS = ["workflow", "stages", "unit"]


def pytest_collection_modifyitems(items):
    def place(item):
        path = item.path.relative_to(TESTS).as_posix() if item.path.is_relative_to(TESTS) else ""
        if path in LONG_FILES:
            return LONG_FILES.index(path)
        tier = path.split("/")[0]
        return len(LONG_FILES) + (TIERS.index(tier) if tier in TIERS else len(TIERS))

    items.sort(key=place)


@pytest.fixture
def workflow_dir(tmp_path):
    """A private copy of the workflow, so tests never touch the repository's results."""
    return copy_workflow(tmp_path / "workflow-copy")


@pytest.fixture
def outside_slurm(monkeypatch):
    """No SLURM job and no CUDA_VISIBLE_DEVICES: the GPU allocator takes GPUs by lock files."""
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)


@pytest.fixture
def lock_dir(tmp_path):
    """A GPU allocator's lock folder, not yet made."""
    return tmp_path / "locks"


@pytest.fixture(scope="session")
def make_tiny_rec(tmp_path_factory):
    """Factory of small .rec/.idx pairs: make_tiny_rec(name, labels, noise=0, side=None)
    (helpers.images.write_tiny_rec). Each name is written once per session, so a pipeline
    still reading an earlier file is never cut off by a rewrite."""
    folder = tmp_path_factory.mktemp("tiny_rec")
    made = {}

    def make(name, labels, noise=0, side=None):
        if name not in made:
            made[name] = write_tiny_rec(folder, name, labels, noise, side)
        return made[name]

    return make


@pytest.fixture(scope="session")
def tiny_rec(make_tiny_rec):
    """30 solid-colour JPEGs of 20-60 px in 3 classes (label = index % 3)."""
    return make_tiny_rec("tiny", [index % 3 for index in range(30)])


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
