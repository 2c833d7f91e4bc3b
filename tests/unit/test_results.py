"""Result files as contracts: a writer refuses a result that lacks a field, a reader names
the file and every missing field (results.py stays light: stages/test_light_imports.py)."""

import json

import pytest

from resnet_recipe.files.user_errors import UserError
from resnet_recipe.workflow_support import results
from resnet_recipe.workflow_support.provenance import settings_digest

SCORE = {
    "run": "r",
    "dtype": "float32",
    "top1": 0.5,
    "top5": 0.9,
    "loss": 1.2,
    "images_per_s": 100.0,
    "latency_ms": {"mean": 3.0},
}


def test_written_result_reads_back(tmp_path):
    path = tmp_path / "score" / "r.json"
    results.write(str(path), results.SCORE, SCORE, {"batch_size": 8})
    found = results.read(str(path), results.SCORE)
    assert found.pop("provenance")["settings_digest"] == settings_digest({"batch_size": 8})
    assert found == SCORE


def test_writer_refuses_a_result_that_breaks_its_contract(tmp_path):
    path = tmp_path / "r.json"
    with pytest.raises(ValueError, match=r"missing field\(s\) loss, latency_ms.mean \(score"):
        lacking = {k: v for k, v in SCORE.items() if k not in ("loss", "latency_ms")}
        results.write(str(path), results.SCORE, lacking, {})
    assert not path.exists()


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda r: r.pop("top1"), r"r.json: missing field\(s\) top1 \(score result\)"),
        (lambda r: r["latency_ms"].pop("mean"), r"missing field\(s\) latency_ms.mean"),
        (lambda r: r.update(top5=95.0), r"top5 = 95.0 is not a fraction in \[0, 1\]"),
        (lambda r: r.update(dtype="float8"), "dtype 'float8' is not one of float16, float32"),
    ],
    ids=["missing", "missing-nested", "percent", "dtype"],
)
def test_reader_names_the_file_and_what_is_wrong(tmp_path, edit, message):
    result = json.loads(json.dumps(SCORE))
    edit(result)
    path = tmp_path / "r.json"
    path.write_text(json.dumps(result))
    with pytest.raises(ValueError, match=message):
        results.read(str(path), results.SCORE)


def test_benchmark_point_of_the_other_kind_is_refused(tmp_path):
    path = tmp_path / "p.json"
    path.write_text(json.dumps({"kind": "infer"}))
    with pytest.raises(ValueError, match="p.json: field kind is 'infer', expected 'train'"):
        results.read(str(path), results.BENCH_POINTS["train"])


def test_missing_and_broken_files_are_named(tmp_path):
    with pytest.raises(UserError, match="nowhere.json: training run report not found"):
        results.read(str(tmp_path / "nowhere.json"), results.RUN_REPORT)
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    with pytest.raises(ValueError, match="broken.json: not valid JSON"):
        results.read(str(broken), results.RUN_REPORT)
    broken.write_text("[1]")
    with pytest.raises(ValueError, match="broken.json: expected a JSON object, found list"):
        results.read(str(broken), results.RUN_REPORT)


def test_metrics_lines_are_checked_one_by_one(tmp_path):
    line = {name: 0.5 for name in results.RUN_METRICS.fields} | {"epoch": 1}
    path = tmp_path / "metrics.jsonl"
    results.write_metrics(str(path), [line, {**line, "epoch": 2}])
    assert [m["epoch"] for m in results.read_metrics(str(path))] == [1, 2]
    with open(path, "a") as handle:
        handle.write(json.dumps({"epoch": 3}) + "\n")
    with pytest.raises(ValueError, match=r"metrics.jsonl:3: missing field\(s\) train_loss"):
        results.read_metrics(str(path))
    with pytest.raises(ValueError, match=r"m.jsonl:2 \(being written\): missing"):
        results.write_metrics(str(tmp_path / "m.jsonl"), [line, {"epoch": 2}])


def test_benchmark_summary_round_trip(tmp_path):
    entry = {"model": "resnet50", "ngpus": [1], "bs": [8], "metric_keys": [], "metrics": {}}
    path = str(tmp_path / "train.json")
    results.write_bench_summary(path, {"float32": entry})
    found = results.read_bench_summary(path)
    covered = {"dtype": "float32", **{k: entry[k] for k in ("model", "ngpus", "bs", "metric_keys")}}
    assert found["float32"].pop("provenance")["settings_digest"] == settings_digest(covered)
    assert found == {"float32": entry}
    with pytest.raises(ValueError, match=r"\[float16\] \(being written\): missing field\(s\) bs"):
        lacking = {k: v for k, v in entry.items() if k != "bs"}
        results.write_bench_summary(path, {"float16": lacking})
