"""The training loop on tiny data: outputs, multi-device, float16 on CPU, checkpoints."""

import json
import logging

import mxnet as mx
import numpy
import pytest

from resnet_recipe.model import network, recipe
from resnet_recipe.training import checkpoints, loop
from resnet_recipe.training import run as training
from resnet_recipe.training.job import TrainingJob
from resnet_recipe.workflow_support.settings import InputPipeline, Network, TrainingRun

TINY_NETWORK = Network(depth=18, version="1.5", zero_init_last_gamma=True)
TINY_PIPELINE = InputPipeline(
    backend="dali-cpu",
    image_size=16,
    val_resize=18,
    min_random_area=0.5,
    dali_threads=1,
    dali_val_threads=1,
)
TINY_SETTINGS = TrainingRun(
    gpus=0,
    batch_per_device=8,
    dtype="float32",
    epochs=3,
    lr_per_256=1.6,
    warmup_epochs=1,
    lr_steps=(2,),
    log_interval=2,
)


def run_training(tiny_data, tmp_path, **settings):
    out = tmp_path / "run"
    training.train(
        TrainingJob(
            **tiny_data,
            out_dir=str(out),
            state_root=str(tmp_path / "state"),
            settings=TINY_SETTINGS.replace(**settings),
            network_settings=TINY_NETWORK,
            pipeline_settings=TINY_PIPELINE,
            lock_dir=str(tmp_path / "locks"),
            run="tiny",
        )
    )
    return out


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
    def crash_after_first_epoch(state_dir, epoch, *args, **kwargs):
        original_save(state_dir, epoch, *args, **kwargs)
        if epoch == 1:
            raise KeyboardInterrupt("killed after epoch 1")

    original_save = checkpoints.save_epoch
    monkeypatch.setattr(checkpoints, "save_epoch", crash_after_first_epoch)
    with pytest.raises(KeyboardInterrupt):
        run_training(tiny_data, tmp_path)
    assert not (tmp_path / "run").exists()
    monkeypatch.setattr(checkpoints, "save_epoch", original_save)
    with caplog.at_level(logging.INFO, logger="resnet_recipe"):
        out = run_training(tiny_data, tmp_path)
    assert "resuming after epoch 1" in caplog.text
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


def test_the_resumable_state_ignores_speed_and_presentation_settings(tiny_data):
    indexes = (tiny_data["train_idx"], tiny_data["val_idx"])

    def digest(run=TINY_SETTINGS, pipeline=TINY_PIPELINE):
        return loop.state_digest(run, TINY_NETWORK, pipeline, indexes, classes=3)

    faster = TINY_PIPELINE.replace(
        dali_threads=4, dali_val_threads=4, prefetch_queue_depth=3, nvjpeg_padding_mb=16
    )
    watched = TINY_SETTINGS.replace(
        log_interval=9, export_every=2, max_overflows_at_min_loss_scale=5
    )
    assert digest(pipeline=faster) == digest(run=watched) == digest()
    assert digest(pipeline=TINY_PIPELINE.replace(min_random_area=0.4)) != digest()
    assert digest(run=TINY_SETTINGS.replace(seed=2)) != digest()


def test_checkpoint_restores_momentum_and_schedule(tmp_path):
    contexts = [mx.cpu(0)]
    settings = TrainingRun(warmup_epochs=0)

    def build():
        mx.random.seed(3)
        net = network.initialize(network.resnet(18, "1.5", 3), contexts)
        trainer = recipe.make_trainer(net.collect_params(), settings, 4, 10, "float32")
        return net, trainer

    net, trainer = build()
    data = mx.nd.random.uniform(shape=(4, 3, 16, 16))
    label = mx.nd.array([0, 1, 2, 0])
    loss = recipe.CrossEntropy(3)
    scaler = loop.precision.make_loss_scaler("dynamic", "float32")
    for iteration in range(3):
        with mx.autograd.record():
            value = loss(net(data), label)
        value.backward()
        recipe.update_parameters(trainer, iteration, 4, scaler)
    checkpoints.save_epoch(str(tmp_path), 1, net, trainer, {"note": "x"})

    restored_net, restored_trainer = build()
    state = checkpoints.load_latest(str(tmp_path), restored_net, restored_trainer, contexts)
    assert state == {"note": "x", "epoch": 1}
    states = trainer._updaters[0].states
    restored = restored_trainer._updaters[0].states
    assert states.keys() == restored.keys()
    for key in states:
        assert (states[key].asnumpy() == restored[key].asnumpy()).all()
    for name, param in net.collect_params().items():
        other = restored_net.collect_params()[name]
        assert (param.data().asnumpy() == other.data().asnumpy()).all()
    assert restored_trainer.optimizer.num_update == trainer.optimizer.num_update


def test_schema_defaults_are_the_recipe(tmp_path):
    import yaml
    from helpers import REPO

    schema = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text())
    training_defaults = {
        key: value["default"]
        for key, value in schema["properties"]["training"]["properties"]["defaults"][
            "properties"
        ].items()
    }
    assert training_defaults == TrainingRun().to_config()

    def defaults(section):
        properties = schema["properties"][section]["properties"]
        return {key: value["default"] for key, value in properties.items()}

    assert defaults("input") == InputPipeline().to_config()
    assert defaults("network") == Network().to_config()


def epochs_in_state(tmp_path):
    """The epochs of the resumable state under state/ (one settings digest at most)."""
    state_dirs = list((tmp_path / "state").glob("*"))
    assert len(state_dirs) <= 1
    return [epoch for path in state_dirs for epoch, _ in checkpoints._epochs(str(path))]


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
    assert (
        "diverged in epoch 2/3: the " in message and "(global iterations from 0: 6 to " in message
    )
    assert "the resumable state of epoch 1 stays on disk" in message
    assert not (tmp_path / "run").exists()
    assert epochs_in_state(tmp_path) == [1]
    (state_dir,) = (tmp_path / "state").iterdir()
    assert checkpoints.exported_epochs(str(state_dir)) == [1]


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
    assert loop.exported_after(3, TINY_SETTINGS.replace(export_every=0))
    assert not loop.exported_after(2, TINY_SETTINGS.replace(export_every=0))
