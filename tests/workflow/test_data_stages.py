"""The data rules run by Snakemake: demo tree -> lists -> records, a user tree with a flat
val folder and Kaggle labels, and a packing failure whose reason reaches the user."""

from helpers.images import tiny_image_bytes
from helpers.workflow_runs import demo_config, run_snakemake, write_config

RECORDS = ["results/records/train.rec", "results/records/val.rec"]


def lines(path):
    return path.read_text().splitlines()


def test_demo_data_stages(workflow_dir):
    run_snakemake(workflow_dir, "--cores", "2", *RECORDS)
    results = workflow_dir / "results"
    assert len(lines(results / "lists" / "classes.tsv")) == 10
    for split, count in (("train", 1438), ("val", 359)):
        assert len(lines(results / "lists" / f"{split}.lst")) == count
        assert len(lines(results / "records" / f"{split}.idx")) == count
        assert lines(results / "records" / f"{split}.rejected.tsv") == ["path\treason"]
        log = (workflow_dir / "logs" / "records" / f"{split}.log").read_text()
        assert "images/s" in log and "MB/s" in log and "re-encoded" in log
    # The val list is sorted, the train list shuffled.
    val_paths = [line.split("\t")[2] for line in lines(results / "lists" / "val.lst")]
    train_paths = [line.split("\t")[2] for line in lines(results / "lists" / "train.lst")]
    assert val_paths == sorted(val_paths) and train_paths != sorted(train_paths)
    # Nothing left to do: the outputs are complete and the plan is stable.
    again = run_snakemake(workflow_dir, "--cores", "2", "-n", *RECORDS)
    assert "Nothing to be done" in again.stdout + again.stderr


def user_tree(root):
    """Three train classes, a flat val folder labelled by a Kaggle CSV, one broken file."""
    for label, synset in enumerate(["n01", "n02", "n03"]):
        for number in range(2):
            path = root / "train" / synset / f"{synset}_{number}.JPEG"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(tiny_image_bytes("jpeg", seed=10 * label + number))
    (root / "val").mkdir()
    rows = ["ImageId,PredictionString"]
    for number, synset in enumerate(["n03", "n01", "n02"]):
        (root / "val" / f"val_{number}.JPEG").write_bytes(tiny_image_bytes("jpeg", seed=number))
        rows.append(f"val_{number},{synset} 1 2 3 4")
    (root / "val" / "val_3.JPEG").write_bytes(tiny_image_bytes("jpeg")[:-100])
    rows.append("val_3,n01 1 2 3 4")
    (root / "LOC_val_solution.csv").write_text("\n".join(rows) + "\n")
    return root


def user_config(workflow_dir, max_rejected_fraction):
    raw = user_tree(workflow_dir / "raw")
    config = demo_config()
    config["data"].update(
        raw_dir=str(raw),
        val_labels=str(raw / "LOC_val_solution.csv"),
        max_rejected_fraction=max_rejected_fraction,
        demo=False,
    )
    return str(write_config(workflow_dir / "user.yaml", config))


def test_flat_val_with_kaggle_labels(workflow_dir):
    config = user_config(workflow_dir, max_rejected_fraction=0.5)
    run_snakemake(workflow_dir, RECORDS[1], "--cores", "2", "--configfile", config)
    results = workflow_dir / "results"
    assert lines(results / "lists" / "val.lst") == [
        "0\t2\tval_0.JPEG",
        "1\t0\tval_1.JPEG",
        "2\t1\tval_2.JPEG",
        "3\t0\tval_3.JPEG",
    ]
    rejected = lines(results / "records" / "val.rejected.tsv")
    assert rejected[0] == "path\treason" and rejected[1].startswith("val_3.JPEG\ttruncated JPEG")
    assert len(lines(results / "records" / "val.idx")) == 3


def test_too_many_rejected_stops_the_run_with_the_reason(workflow_dir):
    config = user_config(workflow_dir, max_rejected_fraction=0.0)
    process = run_snakemake(
        workflow_dir, RECORDS[1], "--cores", "2", "--configfile", config, check=False
    )
    assert process.returncode != 0
    output = process.stdout + process.stderr
    assert "1 of the 4 images" in output and "max_rejected_fraction=0" in output
    assert "val_3.JPEG (truncated JPEG" in output
    log = (workflow_dir / "logs" / "records" / "val.log").read_text()
    # A user error: the job's log ends with its one line, and no traceback anywhere.
    last = log.splitlines()[-1]
    assert "ERROR" in last and "1 of the 4 images" in last and "val_3.JPEG (truncated JPEG" in last
    assert "Traceback" not in log + output
    assert not (workflow_dir / "results" / "records" / "val.rec").exists()
