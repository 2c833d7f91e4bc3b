"""The resumable training state without training: which settings its digest follows, what a
checkpoint restores, which epoch a resume starts from; the schema's training defaults."""

import mxnet as mx
from helpers.tiny import TINY_NETWORK, TINY_PIPELINE, TINY_SETTINGS

from resnet_recipe.model import network, recipe
from resnet_recipe.training import checkpoints, distributed, loop
from resnet_recipe.workflow_support.settings import InputPipeline, Network, TrainingRun


def test_the_resumable_state_ignores_speed_and_presentation_settings(tiny_data):
    indexes = (tiny_data["train_idx"], tiny_data["val_idx"])

    def digest(run=TINY_SETTINGS, pipeline=TINY_PIPELINE):
        return checkpoints.state_digest(run, TINY_NETWORK, pipeline, indexes, classes=3)

    faster = TINY_PIPELINE.replace(
        dali_threads=4, dali_val_threads=4, prefetch_queue_depth=3, nvjpeg_padding_mb=16
    )
    watched = TINY_SETTINGS.replace(
        log_interval=9, export_every=2, max_overflows_at_min_loss_scale=5
    )
    assert digest(pipeline=faster) == digest(run=watched) == digest()
    assert digest(pipeline=TINY_PIPELINE.replace(min_random_area=0.4)) != digest()
    assert digest(run=TINY_SETTINGS.replace(seed=2)) != digest()


def test_checkpoint_restores_momentum_schedule_and_each_devices_statistics(tmp_path):
    contexts = [mx.cpu(0), mx.cpu(1)]
    settings = TrainingRun(warmup_epochs=0)

    def build():
        mx.random.seed(3)
        net = network.initialize(network.resnet(18, "1.5", 3), contexts)
        trainer = recipe.make_trainer(net.collect_params(), settings, 4, 10, "float32")
        return net, trainer

    net, trainer = build()
    label = mx.nd.array([0, 1, 2, 0])
    loss = recipe.CrossEntropy(3)
    scaler = loop.precision.make_loss_scaler("dynamic", "float32")
    for iteration in range(3):
        # Each device sees other images, so its BN running statistics are its own.
        batches = [mx.nd.random.uniform(shape=(4, 3, 16, 16), ctx=c) for c in contexts]
        with mx.autograd.record():
            values = [loss(net(data), label.as_in_context(data.context)) for data in batches]
        mx.autograd.backward(values)
        recipe.update_parameters(trainer, iteration, 8, scaler)
    membership = distributed.Membership()
    rows = membership.statistics_of_every_device(net)
    checkpoints.save_position(str(tmp_path), (1, 0), net, trainer, {"note": "x"}, rows)

    restored_net, restored_trainer = build()
    state, saved_rows = checkpoints.load_latest(
        str(tmp_path), restored_net, restored_trainer, contexts
    )
    assert state == {"note": "x", "epoch": 1}
    states = trainer._updaters[0].states
    restored = restored_trainer._updaters[0].states
    assert states and states.keys() == restored.keys()
    for key in states:
        assert (states[key].asnumpy() == restored[key].asnumpy()).all()
    assert restored_trainer.optimizer.num_update == trainer.optimizer.num_update
    statistics = distributed.running_statistics(net)
    differing = [
        name for name, p in statistics.items() if (p.data(contexts[0]) != p.data(contexts[1])).sum()
    ]
    assert differing, "the devices' statistics should differ for this test to mean anything"
    # The parameters file holds the devices' average; each device gets its own back.
    distributed.restore_device_statistics(restored_net, saved_rows, first_row=0)
    for name, param in net.collect_params().items():
        other = restored_net.collect_params()[name]
        for context in contexts:
            assert (param.data(context).asnumpy() == other.data(context).asnumpy()).all(), name


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


def test_a_resume_loads_the_newest_of_the_kept_epochs(tmp_path):
    """Three epochs saved, the newest two kept: the resume loads epoch 3's weights,
    optimizer state and state dict, whatever order the folders are listed in."""
    contexts = [mx.cpu(0)]

    def build():
        net = mx.gluon.nn.Dense(2, in_units=3)
        net.initialize(mx.init.Zero(), ctx=contexts)
        trainer = mx.gluon.Trainer(net.collect_params(), "sgd", {"momentum": 0.9})
        return net, trainer

    net, trainer = build()
    saved = {}
    for epoch in (1, 2, 3):
        net.weight.set_data(mx.nd.full((2, 3), float(epoch)))
        checkpoints.save_position(
            str(tmp_path), (epoch, 0), net, trainer, {"trained": epoch}, mx.nd.zeros((1, 1)), keep=2
        )
        saved[epoch] = net.weight.data().asnumpy()
    assert sorted(path.name for path in tmp_path.iterdir()) == ["epoch-0002", "epoch-0003"]
    assert checkpoints.latest_position(str(tmp_path)) == (3, 0)

    restored_net, restored_trainer = build()
    state, _ = checkpoints.load_latest(str(tmp_path), restored_net, restored_trainer, contexts)
    assert state == {"trained": 3, "epoch": 3}
    assert (restored_net.weight.data().asnumpy() == saved[3]).all()
