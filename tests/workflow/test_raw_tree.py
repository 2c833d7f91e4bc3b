"""What a start of the workflow notices in a user-supplied raw tree, read off dry-run plans.

The demo tree is copied in as a user's raw folder and packed once for the module; each test
edits it and reads which jobs a dry-run plans. The edits docs/caching.md ("The raw tree")
says a start detects, are detected; an image rewritten in place is detected
after `snakemake rescan_raw_tree`; a cluster job never scans the tree.
"""

import json
import shutil

import pytest
from helpers.workflow_runs import (
    copy_workflow,
    planned_jobs,
    run_snakemake,
    tiny_demo_config,
    write_config,
)

from resnet_recipe.data.demo_data import write_demo_tree

RECORDS = ["results/records/train.rec", "results/records/val.rec"]
ONE_SPLIT = {"make_list": 1, "pack_records": 1}
NEW_LABELS = {"make_classes": 1, "make_list": 2, "pack_records": 2}


@pytest.fixture(scope="module")
def packed(tmp_path_factory):
    """A workflow copy with a user-supplied raw tree whose lists and records are made."""
    workdir = copy_workflow(tmp_path_factory.mktemp("raw-tree") / "workflow")
    write_demo_tree(workdir / "raw")
    config = tiny_demo_config()
    config["data"].update(raw_dir="raw", demo=False)
    write_config(workdir / "user.yaml", config)
    run_snakemake(workdir, "--configfile", "user.yaml", "--cores", "2", *RECORDS)
    assert plan(workdir) == {}
    return workdir


@pytest.fixture
def workdir(packed, tmp_path):
    """A copy of the packed workflow (mtimes kept) for one test to edit."""
    copy = tmp_path / "workflow"
    shutil.copytree(packed, copy, symlinks=True)
    # The cache names the tree's absolute path: this start scans the copied tree in full.
    assert plan(copy) == {}
    return copy


def plan(workdir):
    # --cores ends --configfile's list of files: what follows are targets.
    return planned_jobs(workdir, "--configfile", "user.yaml", "--cores", "1", *RECORDS)


def an_image(workdir, split="train", folder="digit7"):
    return sorted((workdir / "raw" / split / folder).glob("*.JPEG"))[0]


def other_image_bytes(workdir):
    return an_image(workdir, folder="digit3").read_bytes()


def test_an_added_image_reruns_its_split(workdir):
    (workdir / "raw/train/digit7/added.JPEG").write_bytes(other_image_bytes(workdir))
    assert plan(workdir) == ONE_SPLIT


def test_a_removed_image_reruns_its_split(workdir):
    an_image(workdir, split="val").unlink()
    assert plan(workdir) == ONE_SPLIT


def test_a_renamed_image_reruns_its_split(workdir):
    image = an_image(workdir)
    image.rename(image.with_name("renamed.JPEG"))
    assert plan(workdir) == ONE_SPLIT


def test_an_image_moved_to_another_class_reruns_its_split(workdir):
    image = an_image(workdir)
    image.rename(workdir / "raw/train/digit1" / image.name)
    assert plan(workdir) == ONE_SPLIT


def test_an_image_replaced_by_a_rename_reruns_its_split(workdir):
    """What `mv new.JPEG old.JPEG` and tools that save atomically do."""
    image = an_image(workdir)
    replacement = image.with_name("replacement.tmp")
    replacement.write_bytes(other_image_bytes(workdir))
    replacement.replace(image)
    assert plan(workdir) == ONE_SPLIT


def test_images_in_nested_folders_are_watched(workdir):
    nested = workdir / "raw/train/digit7/batch2"
    nested.mkdir()
    (nested / "a.JPEG").write_bytes(other_image_bytes(workdir))
    assert plan(workdir) == ONE_SPLIT
    run_snakemake(workdir, "--configfile", "user.yaml", "--cores", "2", *RECORDS)
    assert plan(workdir) == {}
    (nested / "b.JPEG").write_bytes(other_image_bytes(workdir))  # only batch2's mtime changes
    assert plan(workdir) == ONE_SPLIT


def test_a_new_or_renamed_class_folder_relabels_both_splits(workdir):
    (workdir / "raw/train/digit7").rename(workdir / "raw/train/digit7b")
    assert plan(workdir) == NEW_LABELS


def test_an_edit_undone_reruns_nothing(workdir):
    """The fingerprint is of the files, not of the folders' mtimes."""
    added = workdir / "raw/train/digit7/added.JPEG"
    added.write_bytes(other_image_bytes(workdir))
    assert plan(workdir) == ONE_SPLIT
    added.unlink()
    assert plan(workdir) == {}


def test_an_image_rewritten_in_place_is_found_by_the_rescan(workdir):
    image = an_image(workdir)
    with open(image, "r+b") as handle:  # same name, same folder: no folder mtime changes
        handle.truncate(0)
        handle.write(other_image_bytes(workdir))
    assert plan(workdir) == {}
    run_snakemake(workdir, "--configfile", "user.yaml", "--cores", "1", "rescan_raw_tree")
    assert plan(workdir) == ONE_SPLIT
    log = (workdir / "logs/raw_tree/rescan.log").read_text()
    assert "scanned raw/train" in log and "scanned raw/val" in log


def test_a_start_scans_files_only_when_a_folder_changed(workdir):
    """The cached fingerprint is reused while the folders are as they were."""
    cache = workdir / "results/raw_tree/train.json"
    stale = json.loads(cache.read_text())
    before = cache.stat().st_mtime_ns
    assert plan(workdir) == {}
    assert cache.stat().st_mtime_ns == before
    (workdir / "raw/train/digit7/added.JPEG").write_bytes(other_image_bytes(workdir))
    assert plan(workdir) == ONE_SPLIT
    fresh = json.loads(cache.read_text())
    assert fresh["folders"] != stale["folders"]
    assert fresh["fingerprint"] != stale["fingerprint"]


def run_as_cluster_job(workdir, rule, job):
    """Run one job the way an executor plugin starts it on a cluster node: Snakemake in
    remote mode, told the job and the rule."""
    run_snakemake(
        workdir,
        "--configfile",
        "user.yaml",
        "--mode",
        "remote",
        "--target-jobs",
        job,
        "--allowed-rules",
        rule,
        "--cores",
        "1",
        "--force",
    )


def test_a_cluster_job_does_not_scan_the_tree(workdir):
    """Neither a packing job nor (were it sent to a cluster) a listing job scans the raw
    tree or reads its cache in a process other than the main one."""
    cache = workdir / "results/raw_tree"
    shutil.rmtree(cache)
    packed = sorted(workdir.glob("results/records/train.*"))
    assert len(packed) >= 2  # .rec and .idx at least
    for path in packed:
        path.unlink()
    (workdir / "results/lists/val.lst").unlink()
    run_as_cluster_job(workdir, "pack_records", "pack_records:split=train")
    run_as_cluster_job(workdir, "make_list", "make_list:split=val")
    assert (workdir / "results/records/train.rec").is_file()
    assert (workdir / "results/lists/val.lst").is_file()
    assert not cache.exists()
