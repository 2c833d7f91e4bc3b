"""Scoring on tiny data: the same numbers as the training's own validation, padding never
counted, the result file, float16 on the CPU, the command line."""

import json

import mxnet as mx
import numpy
import pytest
from helpers.dllogger_lines import read_checked, read_steps
from helpers.tiny import (
    COLOUR_LABELS,
    NHWC_NETWORK,
    TINY_NETWORK,
    TINY_PIPELINE,
    TINY_SETTINGS,
    VAL_IMAGES,
    score,
)

from resnet_recipe import cli
from resnet_recipe.data import pipelines
from resnet_recipe.files.user_errors import UserError
from resnet_recipe.scoring import evaluation
from resnet_recipe.workflow_support.settings import Score

SCORE_KEYS = {
    "run",
    "checkpoint",
    "dtype",
    "layout",
    "device",
    "images",
    "batch_size",
    "classes",
    "top1",
    "top5",
    "loss",
    "images_per_s",
    "latency_ms",
    "provenance",
}
LATENCY_KEYS = {"mean", "p50", "p90", "p95", "p99", "max"}


def test_scoring_a_run_repeats_its_last_validation(trained_run, tmp_path):
    path = tmp_path / "score" / "tiny.json"
    returned = evaluation.score_run(
        str(path),
        run_dir=str(trained_run.run_dir),
        val_rec=trained_run.val.rec,
        val_idx=trained_run.val.idx,
        score_settings=Score(epoch=None, batch_size={"float16": 8, "float32": 8}),
        pipeline_settings=TINY_PIPELINE,
        lock_dir=str(trained_run.lock_dir),
        run="tiny",
    )
    result = json.loads(path.read_text())
    assert result == returned
    assert set(result) == SCORE_KEYS
    assert set(result["latency_ms"]) == LATENCY_KEYS
    assert result["checkpoint"] == {"prefix": str(trained_run.run_dir / "model"), "epoch": 2}
    assert (result["run"], result["dtype"], result["device"]) == ("tiny", "float32", "cpu(0)")
    assert result["layout"] == "NCHW"
    assert (result["images"], result["batch_size"], result["classes"]) == (VAL_IMAGES, 8, 3)
    # The exported checkpoint scores exactly what the training validated after epoch 2.
    assert result["top1"] == trained_run.last["val_top1"]
    assert result["top5"] == trained_run.last["val_top5"]
    assert result["loss"] == pytest.approx(trained_run.last["val_loss"], rel=1e-4)
    assert 0 < result["top1"] < 1
    latency = result["latency_ms"]
    assert 0 < latency["p50"] <= latency["p90"] <= latency["p95"] <= latency["p99"]
    assert latency["p99"] <= latency["max"] and result["images_per_s"] > 0
    # Its DLLogger log beside it: the recipe's val mode lines of one pass, and the summary.
    logs, units = read_checked(tmp_path / "score" / "tiny.dllogger.json")
    assert units["val.latency_50"] == {"unit": "s"} and len(logs) == 2
    steps = read_steps(tmp_path / "score" / "tiny.dllogger.json")
    assert list(steps) == [(0,), ()] and steps[(0,)] == steps[()]
    data = steps[(0,)][0]
    assert (data["val.accuracy"], data["val.top_k_accuracy_5"]) == (result["top1"], result["top5"])
    assert data["val.latency_avg"] == pytest.approx(latency["mean"] / 1000)
    assert data["val.latency_100"] == pytest.approx(latency["max"] / 1000)
    assert data["val.ips"] == pytest.approx(8 / data["val.latency_avg"])


@pytest.mark.parametrize("run_name", ["trained_run", "nhwc_trained_run"])
def test_a_run_trained_in_one_layout_scores_the_same_in_either(request, tmp_path, run_name):
    trained = request.getfixturevalue(run_name)
    trained_in = "NHWC" if run_name == "nhwc_trained_run" else "NCHW"
    # The training's own validation after epoch 2, in the layout it trained in ...
    scored = evaluation.score_run(
        str(tmp_path / "run.json"),
        run_dir=str(trained.run_dir),
        val_rec=trained.val.rec,
        val_idx=trained.val.idx,
        score_settings=Score(epoch=None, batch_size={"float16": 8, "float32": 8}),
        pipeline_settings=TINY_PIPELINE,
        lock_dir=str(trained.lock_dir),
        run="tiny",
    )
    assert scored["layout"] == trained_in
    assert scored["top1"] == trained.last["val_top1"]
    assert scored["loss"] == pytest.approx(trained.last["val_loss"], rel=1e-4)
    # ... is what the checkpoint scores in both layouts, and as its own (NCHW) graph.
    for network_settings in (TINY_NETWORK, NHWC_NETWORK, None):
        other = score(trained, tmp_path / "other.json", network_settings=network_settings)
        assert other["layout"] == ("NHWC" if network_settings is NHWC_NETWORK else "NCHW")
        assert (other["top1"], other["top5"]) == (scored["top1"], scored["top5"])
        assert other["loss"] == pytest.approx(scored["loss"], rel=1e-4)
    assert 0 < scored["top1"] < 1


@pytest.mark.parametrize("batch_size", [5, 8])
def test_padding_of_the_last_batch_is_not_counted(trained_run, tmp_path, batch_size):
    # 19 images in one batch of 19 has no padding; batches of 5 and 8 pad the last batch
    # with copies of the last image, which would shift loss and accuracy if counted.
    whole = score(trained_run, tmp_path / "whole.json", batch_size=VAL_IMAGES)
    padded = score(trained_run, tmp_path / "padded.json", batch_size=batch_size)
    assert padded["images"] == whole["images"] == VAL_IMAGES
    assert padded["top1"] == whole["top1"] and padded["top5"] == whole["top5"]
    assert padded["loss"] == pytest.approx(whole["loss"], rel=1e-4)


def test_the_final_or_the_chosen_epoch_is_scored(tmp_path):
    for name in ("model-symbol.json", "model-0003.params", "model-0012.params", "notes.txt"):
        (tmp_path / name).write_text("")
    assert evaluation.chosen_epoch(str(tmp_path), None) == 12
    assert evaluation.chosen_epoch(str(tmp_path), 3) == 3
    with pytest.raises(UserError, match=r"score.epoch is 5, .* epochs \[3, 12\]"):
        evaluation.chosen_epoch(str(tmp_path), 5)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UserError, match="no model-NNNN.params"):
        evaluation.chosen_epoch(str(empty), None)


def test_a_non_final_exported_epoch_is_scored(trained_run, tmp_path):
    # The original saved model-NNNN.params every epoch (fit.py L139 at a8e1d1cd, save-period
    # 1) and SCORE_*.sh take <prefix> <epoch>: training exports every epoch by default.
    assert TINY_SETTINGS.export_every == 1
    path = tmp_path / "epoch1.json"
    result = evaluation.score_run(
        str(path),
        run_dir=str(trained_run.run_dir),
        val_rec=trained_run.val.rec,
        val_idx=trained_run.val.idx,
        score_settings=Score(epoch=1, batch_size={"float16": 8, "float32": 8}),
        pipeline_settings=TINY_PIPELINE,
        lock_dir=str(trained_run.lock_dir),
        run="tiny",
    )
    assert result["checkpoint"]["epoch"] == 1
    # Epoch 1's export scores exactly what the training validated after epoch 1.
    first = trained_run.metrics[0]
    assert (result["top1"], result["top5"]) == (first["val_top1"], first["val_top5"])
    assert result["loss"] == pytest.approx(first["val_loss"], rel=1e-4)
    assert result["loss"] != pytest.approx(trained_run.last["val_loss"], rel=1e-4)


def test_scoring_batch_defaults_are_the_original_score_scripts():
    # original: examples/SCORE_FP16.sh L19 (-b 128), examples/SCORE_FP32.sh L19 (-b 64).
    assert Score().batch_size_of("float16") == 128
    assert Score().batch_size_of("float32") == 64


def test_a_missing_epoch_names_the_file(trained_run, tmp_path):
    with pytest.raises(UserError, match="model-0003.params not found"):
        score(trained_run, tmp_path / "score.json", epoch=3)


def test_float16_scoring_on_the_cpu_stops_with_the_reason(trained_run, tmp_path):
    with pytest.raises(ValueError, match="scoring .* epoch 2: float16 .* needs GPUs"):
        score(trained_run, tmp_path / "score.json", dtype="float16")
    assert not (tmp_path / "score.json").exists()


def test_command_line_scores_any_prefix_and_epoch(trained_run, tmp_path):
    out = tmp_path / "cli.json"
    code = cli.main(
        [
            "score",
            "--prefix",
            str(trained_run.run_dir / "model"),
            "--epoch",
            "2",
            "--val-rec",
            trained_run.val.rec,
            "--out",
            str(out),
            "--batch-size",
            "8",
            "--lock-dir",
            str(trained_run.lock_dir),
            *("--backend", "dali-cpu", "--image-size", "16", "--val-resize", "18"),
            *("--dali-threads", "1"),
        ]
    )
    result = json.loads(out.read_text())
    assert code == 0 and result["run"] == "run"  # the prefix's folder
    assert result["top1"] == trained_run.last["val_top1"]


def test_validation_counts_every_image_once_without_padding(trained_run):
    """19 images over two devices in batches of 4: shards of 9 and 10 images, three
    batches each, the last ones padded. A network that ranks the ten classes the same way
    for every image makes every number known in advance: top-1 holds the 7 images of
    class 0, top-5 (classes 0, 2, 3, 4, 5) the 13 of classes 0 and 2, and the loss is the
    mean over the 19 labels, never over the padding."""
    contexts = [mx.cpu(0), mx.cpu(1)]
    val = pipelines.val_batches(
        str(trained_run.val.rec),
        str(trained_run.val.idx),
        contexts,
        batch_per_device=4,
        settings=TINY_PIPELINE,
    )
    scores = numpy.array([10, -1, 9, 8, 7, 6, 5, 4, 3, 2], dtype=numpy.float32)
    seen = []

    def ranking_net(data):
        seen.append((str(data.context), data.shape[0]))
        return mx.nd.array(numpy.tile(scores, (data.shape[0], 1)), ctx=data.context)

    metrics = evaluation.evaluate(ranking_net, val, classes=10)
    # Every batch goes through the network once, on its own device, at its full size.
    assert sorted(seen) == [("cpu(0)", 4)] * 3 + [("cpu(1)", 4)] * 3
    assert metrics["top1"] == pytest.approx(7 / 19)
    assert metrics["top5"] == pytest.approx(13 / 19)
    log_softmax = scores - numpy.log(numpy.exp(scores).sum())
    expected_loss = -numpy.mean([log_softmax[label] for label in COLOUR_LABELS[:VAL_IMAGES]])
    assert metrics["loss"] == pytest.approx(expected_loss, rel=1e-5)
