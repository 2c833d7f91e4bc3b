"""The training loop on tiny data: outputs, multi-device, float16 on CPU, checkpoints."""

import json
import logging
import re

import mxnet as mx
import numpy
import pytest
from helpers.tiny import TINY_SETTINGS, tiny_job

from resnet_recipe.training import attempts, checkpoints, epochs, loop
from resnet_recipe.training import run as training


def run_training(tiny_data, tmp_path, **settings):
    job = tiny_job(tiny_data, tmp_path, TINY_SETTINGS.replace(**settings))
    training.train(job)
    return tmp_path / "run"


def read_metrics(out):
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_short_run_learns_and_writes_loadable_outputs(tiny_data, tmp_path):
    out = run_training(tiny_data, tmp_path)
    metrics = read_metrics(out)
    assert [m["epoch"] for m in metrics] == [1, 2, 3]
    assert metrics[-1]["train_loss"] < metrics[0]["train_loss"]
    assert metrics[-1]["val_top1"] > 0.9  # three solid colours are easy
    # float32 needs no loss scaling: no update is ever skipped for overflow.
    assert [m["skipped_steps"] for m in metrics] == [0, 0, 0]
    report = json.loads((out / "report.json").read_text())
    assert report["epochs"] == 3 and report["global_batch"] == 8
    assert report["val_top1"] == metrics[-1]["val_top1"]
    symbol, args, aux = mx.model.load_checkpoint(str(out / "model"), 3)
    assert "fc_weight" in args and args["fc_weight"].dtype == numpy.float32
    assert any(name.endswith("running_mean") for name in aux)


def test_two_cpu_contexts_share_the_global_batch(tiny_data, tmp_path):
    out = run_training(tiny_data, tmp_path, cpu_contexts=2, epochs=1, batch_per_device=4)
    report = json.loads((out / "report.json").read_text())
    assert report["devices"] == ["cpu(0)", "cpu(1)"]
    assert report["global_batch"] == 8
    assert len(read_metrics(out)) == 1


def test_float16_on_cpu_stops_at_once_with_a_clear_message(tiny_data, tmp_path):
    with pytest.raises(ValueError, match="float16 training needs GPUs"):
        run_training(tiny_data, tmp_path, dtype="float16")
    assert not (tmp_path / "run").exists()


def test_a_rerun_resumes_after_the_newest_checkpoint(tiny_data, tmp_path, monkeypatch, caplog):
    """Killed after epoch 2, with the states of epochs 1 and 2 kept: the rerun trains
    epoch 3 alone."""
    saved = []

    def recorded_save(state_dir, position, *args, **kwargs):
        original_save(state_dir, position, *args, **kwargs)
        saved.append(position[0])

    def crash_after_second_epoch(state_dir, position, *args, **kwargs):
        recorded_save(state_dir, position, *args, **kwargs)
        if position == (2, 0):
            raise KeyboardInterrupt("killed after epoch 2")

    original_save = checkpoints.save_position
    monkeypatch.setattr(checkpoints, "save_position", crash_after_second_epoch)
    with pytest.raises(KeyboardInterrupt):
        run_training(tiny_data, tmp_path)
    assert not (tmp_path / "run").exists()
    assert epochs_in_state(tmp_path) == saved == [1, 2]
    saved.clear()
    monkeypatch.setattr(checkpoints, "save_position", recorded_save)
    with caplog.at_level(logging.INFO, logger="resnet_recipe"):
        out = run_training(tiny_data, tmp_path)
    assert "resuming after epoch 2" in caplog.text
    assert saved == [3]
    assert [m["epoch"] for m in read_metrics(out)] == [1, 2, 3]


def test_a_changed_setting_starts_afresh(tiny_data, tmp_path, caplog):
    run_training(tiny_data, tmp_path, epochs=1)
    with caplog.at_level(logging.INFO, logger="resnet_recipe"):
        run_training(tiny_data, tmp_path, epochs=1, lr_per_256=0.8)
    assert "resuming" not in caplog.text
    assert len(list((tmp_path / "state").iterdir())) == 2  # one state folder per setting
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="resnet_recipe"):
        run_training(tiny_data, tmp_path, epochs=1, lr_per_256=0.8, log_interval=1)
    assert "resuming after epoch 1" in caplog.text  # the log interval changes no result


def epochs_in_state(tmp_path):
    """The epochs of the resumable state under state/ (one settings digest at most)."""
    state_dirs = list((tmp_path / "state").glob("*"))
    assert len(state_dirs) <= 1
    return [
        epoch
        for path in state_dirs
        for (epoch, iterations), _ in checkpoints._positions(str(path))
        if not iterations
    ]


def test_a_diverging_run_stops_in_its_first_epoch_and_writes_nothing(tiny_data, tmp_path):
    with pytest.raises(loop.TrainingDiverged) as stopped:
        run_training(tiny_data, tmp_path, lr_per_256=1e30, epochs=2)
    message = str(stopped.value)
    assert message.startswith("run tiny diverged in epoch 1/2: the ")
    assert "became inf or NaN in iterations 1 to 2 of 6 (global iterations from 0: 0 to 1)" in (
        message
    )
    assert "learning rate " in message
    assert "Most likely at fault: training.lr_per_256 (1e+30)" in message
    assert "no epoch finished" in message
    assert not (tmp_path / "run").exists()
    assert epochs_in_state(tmp_path) == []


def test_a_run_diverging_in_its_second_epoch_keeps_the_first(tiny_data, tmp_path):
    # A step "schedule" that multiplies the rate by 1e30 after epoch 1.
    with pytest.raises(loop.TrainingDiverged) as stopped:
        run_training(tiny_data, tmp_path, lr_steps=(1,), lr_factor=1e30)
    message = str(stopped.value)
    assert "diverged in epoch 2/3: the " in message
    # Found at a log line of epoch 2 (global iterations 6 to 11), as soon as the loss shows it.
    first = int(re.search(r"global iterations from 0: (\d+) to ", message).group(1))
    assert 6 <= first < 12
    assert "the resumable state of epoch 1 stays on disk" in message
    assert not (tmp_path / "run").exists()
    assert epochs_in_state(tmp_path) == [1]
    (state_dir,) = (tmp_path / "state").iterdir()
    assert checkpoints.exported_epochs(str(state_dir)) == [1]
    # The attempt is on record, for the report of a later attempt that finishes the run.
    (attempt,) = attempts.listed(str(state_dir))
    assert attempt["ended_how"] == f"failed: {message}"


def test_a_dynamic_loss_scale_stuck_at_its_floor_stops_the_run(tiny_data, tmp_path, monkeypatch):
    # float16 needs a GPU; the dynamic scaler's bookkeeping is the same in float32.
    monkeypatch.setattr(
        loop.precision, "make_loss_scaler", lambda *_: loop.precision.LossScaler(4.0)
    )
    with pytest.raises(loop.TrainingDiverged) as stopped:
        run_training(tiny_data, tmp_path, lr_per_256=1e30, max_overflows_at_min_loss_scale=2)
    message = str(stopped.value)
    assert "diverged in epoch 1/3: the gradients overflowed 2 steps in a row at the smallest" in (
        message
    )
    assert "training.lr_per_256" in message
    assert not (tmp_path / "run").exists()


def test_exports_every_n_epochs_and_the_last(tiny_data, tmp_path):
    out = run_training(tiny_data, tmp_path, export_every=2)
    names = sorted(path.name for path in out.iterdir())
    assert names == [
        "dllogger.json",
        "metrics.jsonl",
        "model-0002.params",
        "model-0003.params",
        "model-symbol.json",
        "report.json",
    ]
    for epoch in (2, 3):
        _, args, _ = mx.model.load_checkpoint(str(out / "model"), epoch)
        assert args["fc_weight"].dtype == numpy.float32
    # The run folder's files are the state's exports, linked, not copies.
    (state_dir,) = (tmp_path / "state").iterdir()
    exported = state_dir / "exports" / "epoch-0002" / "model-0002.params"
    assert (out / "model-0002.params").stat().st_ino == exported.stat().st_ino
    assert epochs.exported_after(3, TINY_SETTINGS.replace(export_every=0))
    assert not epochs.exported_after(2, TINY_SETTINGS.replace(export_every=0))
