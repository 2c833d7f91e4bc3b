"""The recipe: learning rate schedule, SGD trainer over several devices, loss."""

import math

import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd, gluon

from resnet_recipe.model import network, recipe
from resnet_recipe.model.precision import LossScaler
from resnet_recipe.workflow_support.settings import TrainingRun

# The original recipe's training settings.
RECIPE = TrainingRun()
# The original recipe on a DGX-1: 8 GPUs x 208 images, ImageNet's 1,281,167 training images.
GLOBAL_BATCH = 8 * 208
ITERATIONS_PER_EPOCH = math.ceil(1_281_167 / GLOBAL_BATCH)  # 770
BASE_LR = 0.65  # 0.1 * 1664 / 256
WARMUP = 5 * ITERATIONS_PER_EPOCH  # 3850 iterations

# (global iteration, learning rate): iteration e * 770 is the first of epoch e (0-based).
STEP_SCHEDULE = [
    (0, BASE_LR / WARMUP),
    (1, 2 * BASE_LR / WARMUP),
    (WARMUP - 2, BASE_LR * (WARMUP - 1) / WARMUP),
    (WARMUP - 1, BASE_LR),  # the last warmup iteration reaches the full rate
    (WARMUP, BASE_LR),
    (30 * 770 - 1, 0.65),
    (30 * 770, 0.065),
    (60 * 770 - 1, 0.065),
    (60 * 770, 0.0065),
    (80 * 770 - 1, 0.0065),
    (80 * 770, 0.00065),
    (90 * 770 - 1, 0.00065),
]
CONTEXTS = [mx.cpu(0), mx.cpu(1)]
STATIC = {"scale": 1.0, "dynamic": False}


def recipe_lr(iteration, settings=RECIPE, iterations_per_epoch=ITERATIONS_PER_EPOCH):
    schedule = recipe.LearningRate.of_run(settings, GLOBAL_BATCH, iterations_per_epoch)
    return recipe.learning_rate(iteration, schedule)


@pytest.mark.parametrize(("iteration", "expected"), STEP_SCHEDULE)
def test_learning_rate_of_the_original_recipe_for_8_gpus_of_208(iteration, expected):
    assert recipe.scaled_learning_rate(0.1, GLOBAL_BATCH) == pytest.approx(BASE_LR, rel=1e-15)
    assert recipe_lr(iteration) == pytest.approx(expected, rel=1e-12)


def test_step_schedule_is_mxnets_multifactor_scheduler_with_linear_warmup_from_0():
    per_epoch = 7
    mxnet_scheduler = mx.lr_scheduler.MultiFactorScheduler(
        step=[30 * per_epoch, 60 * per_epoch, 80 * per_epoch],
        factor=0.1,
        base_lr=BASE_LR,
        warmup_steps=5 * per_epoch,
        warmup_begin_lr=0,
        warmup_mode="linear",
    )
    for iteration in range(90 * per_epoch):
        # The optimizer hands MXNet's scheduler its update count, iteration + 1.
        expected = mxnet_scheduler(iteration + 1)
        assert recipe_lr(iteration, iterations_per_epoch=per_epoch) == pytest.approx(expected)


# (warmup_epochs, iterations per epoch, warmup iterations): the product rounded to the
# nearest whole iteration, never floored (0.29 * 100 is 28.999999999999996 in floating point).
FRACTIONAL_WARMUPS = [(0.3, 6, 2), (0.29, 100, 29), (0.66, 10, 7)]


@pytest.mark.parametrize(("warmup_epochs", "per_epoch", "warmup"), FRACTIONAL_WARMUPS)
def test_a_fractional_warmup_lasts_the_nearest_whole_number_of_iterations(
    warmup_epochs, per_epoch, warmup
):
    """MXNet's scheduler takes warmup_steps as a whole number (LRScheduler asserts an int);
    the original computed it as iterations per epoch x whole warmup epochs. A fractional
    warmup_epochs (the schema allows one) warms up for the nearest whole number of
    iterations, and the schedule is then MXNet's with that warmup_steps."""
    assert recipe.warmup_iterations(warmup_epochs, per_epoch) == warmup
    schedule = recipe.LearningRate(
        base_lr=BASE_LR,
        iterations_per_epoch=per_epoch,
        warmup_epochs=warmup_epochs,
        kind="step",
        steps=(2,),
        factor=0.1,
        epochs=3,
    )
    mxnet_scheduler = mx.lr_scheduler.MultiFactorScheduler(
        step=[2 * per_epoch],
        factor=0.1,
        base_lr=BASE_LR,
        warmup_steps=warmup,
        warmup_begin_lr=0,
        warmup_mode="linear",
    )
    lrs = [recipe.learning_rate(iteration, schedule) for iteration in range(3 * per_epoch)]
    assert lrs == [pytest.approx(mxnet_scheduler(update)) for update in range(1, len(lrs) + 1)]
    assert lrs[warmup - 2] < BASE_LR
    assert lrs[warmup - 1] == BASE_LR  # the last warmup iteration reaches the full rate


def test_cosine_schedule_decays_from_the_end_of_warmup_to_0_like_mxnets():
    per_epoch = 8  # 680 iterations after warmup: the middle one is an iteration
    settings = RECIPE.replace(lr_schedule="cosine")
    mxnet_scheduler = mx.lr_scheduler.CosineScheduler(
        max_update=90 * per_epoch,
        base_lr=BASE_LR,
        final_lr=0,
        warmup_steps=5 * per_epoch,
        warmup_begin_lr=0,
    )
    lrs = [recipe_lr(i, settings, per_epoch) for i in range(90 * per_epoch)]
    for iteration, lr in enumerate(lrs):
        assert lr == pytest.approx(mxnet_scheduler(iteration + 1), abs=1e-15)
    warmup = 5 * per_epoch
    assert lrs[0] == pytest.approx(BASE_LR / warmup)
    assert lrs[warmup - 1] == pytest.approx(BASE_LR)
    middle = warmup - 1 + (90 * per_epoch - warmup) // 2
    assert lrs[middle] == pytest.approx(BASE_LR / 2)
    assert lrs[-1] == 0.0
    assert all(a >= b for a, b in zip(lrs[warmup - 1 :], lrs[warmup:], strict=False))


def one_weight(settings, contexts=CONTEXTS, iterations_per_epoch=ITERATIONS_PER_EPOCH):
    """A single weight w on `contexts` and the recipe's trainer for it."""
    params = gluon.ParameterDict()
    weight = params.get("w", shape=(1,), init=mx.init.Zero())
    params.initialize(ctx=contexts)
    trainer = recipe.make_trainer(
        params, settings, GLOBAL_BATCH, iterations_per_epoch, "float32", kvstore="device"
    )
    return weight, trainer


def backward_constant_gradient(weight, contexts=CONTEXTS):
    """Gradient GLOBAL_BATCH / devices on every device: summed it is GLOBAL_BATCH."""
    with autograd.record():
        losses = [(weight.data(ctx) * (GLOBAL_BATCH / len(contexts))).sum() for ctx in contexts]
    autograd.backward(losses)


def applied_learning_rate(weight, trainer, iteration):
    """The learning rate one update really used: with no momentum or weight decay and a
    gradient whose sum divided by the global batch is 1, the weight moves by -lr."""
    weight.set_data(mx.nd.zeros((1,)))
    backward_constant_gradient(weight)
    assert recipe.update_parameters(trainer, iteration, GLOBAL_BATCH, LossScaler(**STATIC))
    values = [weight.data(ctx).asscalar() for ctx in CONTEXTS]
    assert values[0] == values[1]
    return -float(values[0])


PLAIN_SGD = RECIPE.replace(momentum=0.0, weight_decay=0.0)


def test_trainer_on_two_cpu_contexts_applies_the_schedule_at_any_global_iteration():
    weight, trainer = one_weight(PLAIN_SGD)
    for iteration, expected in STEP_SCHEDULE:
        assert applied_learning_rate(weight, trainer, iteration) == pytest.approx(
            expected, rel=1e-6
        )
        assert trainer.learning_rate == pytest.approx(expected, rel=1e-12)


def test_two_devices_advance_the_schedule_once_per_iteration():
    weight, trainer = one_weight(PLAIN_SGD, iterations_per_epoch=2)
    for iteration in range(12):  # warmup is 10 iterations here
        expected = recipe_lr(iteration, PLAIN_SGD, iterations_per_epoch=2)
        assert applied_learning_rate(weight, trainer, iteration) == pytest.approx(expected)
    assert trainer.optimizer.num_update == 12


def test_resumed_trainer_continues_schedule_and_momentum(tmp_path):
    def run(weight, trainer, iterations):
        for iteration in iterations:
            backward_constant_gradient(weight)
            recipe.update_parameters(trainer, iteration, GLOBAL_BATCH, LossScaler(**STATIC))

    weight, trainer = one_weight(RECIPE, iterations_per_epoch=3)
    run(weight, trainer, range(5))
    trainer.save_states(str(tmp_path / "trainer.states"))
    resumed_weight, resumed = one_weight(RECIPE, iterations_per_epoch=3)
    resumed_weight.set_data(weight.data())
    resumed.load_states(str(tmp_path / "trainer.states"))
    run(weight, trainer, range(5, 9))
    run(resumed_weight, resumed, range(5, 9))
    assert resumed_weight.data().asscalar() == weight.data().asscalar()
    assert resumed.learning_rate == recipe_lr(8, RECIPE, iterations_per_epoch=3)


def test_fresh_trainer_started_at_a_later_epoch_uses_that_epochs_rate():
    weight, trainer = one_weight(PLAIN_SGD)
    assert applied_learning_rate(weight, trainer, 30 * 770) == pytest.approx(0.065, rel=1e-6)


def test_an_update_without_set_iteration_is_an_error():
    weight, trainer = one_weight(PLAIN_SGD)
    backward_constant_gradient(weight)
    with pytest.raises(RuntimeError, match="set_iteration"):
        trainer.step(GLOBAL_BATCH)
    backward_constant_gradient(weight)
    recipe.set_iteration(trainer, 0)
    trainer.step(GLOBAL_BATCH)
    backward_constant_gradient(weight)
    with pytest.raises(RuntimeError, match="set_iteration"):
        trainer.step(GLOBAL_BATCH)  # still iteration 0


def test_bad_schedule_settings_are_errors():
    with pytest.raises(ValueError, match="training.lr_schedule"):
        one_weight(RECIPE.replace(lr_schedule="linear"))
    with pytest.raises(ValueError, match="training.lr_steps"):
        one_weight(RECIPE.replace(lr_steps=(60, 30)))
    # A setting of the wrong type stops where the settings are built, named.
    with pytest.raises(ValueError, match=r"training.defaults.momentum: expected a number"):
        TrainingRun.from_config({"momentum": "high"}, "training.defaults")


@pytest.fixture(scope="module")
def resnet50_params():
    net = network.resnet(50, "1.5", classes=1000)
    network.initialize(net, [mx.cpu()])
    return net.collect_params()


def decayed_and_not(params, rule):
    """(names with wd 1e-4, trainable names with wd 0) as the trainer's optimizer sees them."""
    trainer = recipe.make_trainer(
        params, RECIPE.replace(weight_decay_on=rule, weight_decay=1e-4), 256, 10, "float32"
    )
    names = sorted(params.keys())  # the Trainer numbers parameters in this order
    wds = dict(zip(names, trainer.optimizer._get_wds(list(range(len(names)))), strict=True))
    assert set(wds.values()) <= {0.0, 1e-4}
    trainable = {name for name, param in params.items() if param.grad_req != "null"}
    decayed = {name for name in trainable if wds[name] == 1e-4}
    return decayed, trainable - decayed


def test_default_weight_decay_is_the_originals_name_rule_on_resnet50(resnet50_params):
    # original: fit.py L437 at a8e1d1cd passes optimizer="sgd" to Module.fit, whose
    # optimizer decays only names ending in _weight or _gamma (MXNet 1.9.1 optimizer.py
    # L388-397); resnet.py sets no wd_mult.
    assert RECIPE.weight_decay_on == "weights_and_bn_gamma"
    decayed, exempt = decayed_and_not(resnet50_params, RECIPE.weight_decay_on)
    # 53 convolutions + the dense layer, and the gamma of all 53 BatchNorms.
    assert len(decayed) == 54 + 53
    assert {n for n in decayed if n.endswith("_weight")} == {
        n for n in resnet50_params.keys() if n.endswith("_weight")
    }
    assert len({n for n in decayed if n.endswith("_gamma")}) == 53
    # Every BN beta and the dense bias are not decayed; nothing else is trainable.
    assert len(exempt) == 53 + 1
    assert exempt == {n for n in resnet50_params.keys() if n.endswith(("_beta", "_bias"))}
    assert "fc_bias" in exempt and "stem_bn_beta" in exempt

    # MXNet's own rule, given the same names as Module gives it, agrees name by name.
    names = sorted(resnet50_params.keys())
    original = mx.optimizer.SGD(wd=1e-4, param_idx2name=dict(enumerate(names)))
    assert {n for n in names if original.wd_mult.get(n, 1.0) == 1.0} - {
        n for n in names if resnet50_params[n].grad_req == "null"
    } == decayed


@pytest.mark.parametrize(
    "rule, decayed_endings",
    [("all", ("_weight", "_gamma", "_beta", "_bias")), ("weights_only", ("_weight",))],
)
def test_the_other_weight_decay_rules_decay_what_they_say(resnet50_params, rule, decayed_endings):
    decayed, exempt = decayed_and_not(resnet50_params, rule)
    assert all(name.endswith(decayed_endings) for name in decayed)
    assert not any(name.endswith(decayed_endings) for name in exempt)
    assert len(decayed) == {"all": 161, "weights_only": 54}[rule]


def test_an_unknown_weight_decay_rule_is_an_error(resnet50_params):
    with pytest.raises(ValueError, match="training.weight_decay_on must be one of"):
        recipe.set_weight_decay_rule(resnet50_params, "bn_too")


def smoothed_cross_entropy(logits, labels, eps):
    classes = logits.shape[1]
    log_p = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    target = np.full(logits.shape, eps / classes)
    target[np.arange(len(labels)), labels] += 1 - eps
    return -(target * log_p).sum(axis=1)


def test_label_smoothing_is_cross_entropy_against_a_smoothed_one_hot():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(6, 5)).astype("float32")
    labels = np.array([0, 1, 2, 3, 4, 1])
    loss = recipe.CrossEntropy(classes=5, label_smoothing=0.1)
    loss.hybridize()
    got = loss(mx.nd.array(logits), mx.nd.array(labels.reshape(-1, 1))).asnumpy()
    np.testing.assert_allclose(got, smoothed_cross_entropy(logits, labels, 0.1), rtol=1e-5)

    one_hot = mx.nd.one_hot(mx.nd.array(labels), 5, on_value=0.92, off_value=0.02)
    gluon_loss = gluon.loss.SoftmaxCrossEntropyLoss(sparse_label=False)
    np.testing.assert_allclose(got, gluon_loss(mx.nd.array(logits), one_hot).asnumpy(), rtol=1e-6)

    plain = recipe.CrossEntropy(classes=5)(mx.nd.array(logits), mx.nd.array(labels)).asnumpy()
    np.testing.assert_allclose(plain, smoothed_cross_entropy(logits, labels, 0.0), rtol=1e-5)
    with pytest.raises(ValueError, match="training.label_smoothing"):
        recipe.CrossEntropy(classes=5, label_smoothing=1.0)


def test_loss_of_float16_logits_is_computed_in_float32():
    logits = mx.nd.array([[30000.0, 0.0, -30000.0]], dtype="float16")
    loss = recipe.CrossEntropy(classes=3, label_smoothing=0.1)(logits, mx.nd.array([2]))
    assert loss.dtype == np.float32
    assert np.isfinite(loss.asnumpy()).all()


def test_a_few_sgd_steps_on_two_cpu_contexts_lower_the_loss():
    mx.random.seed(3)
    net = network.resnet(18, classes=4, zero_init_last_gamma=True)
    network.initialize(net, CONTEXTS)
    net.hybridize(static_alloc=True, static_shape=True)
    settings = RECIPE.replace(lr_per_256=0.8, warmup_epochs=0, lr_steps=(), epochs=1)
    trainer = recipe.make_trainer(net.collect_params(), settings, 16, 10, "float32")
    loss_fn = recipe.CrossEntropy(classes=4)
    scaler = LossScaler(scale=2.0**10)  # dynamic: scaled losses and the overflow check run too
    rng = np.random.default_rng(0)
    images = [mx.nd.array(rng.normal(size=(8, 3, 32, 32)), ctx=ctx) for ctx in CONTEXTS]
    labels = [mx.nd.array(rng.integers(0, 4, size=8), ctx=ctx) for ctx in CONTEXTS]
    mean_losses = []
    for iteration in range(8):
        with autograd.record():
            losses = [loss_fn(net(x), y) for x, y in zip(images, labels, strict=True)]
            scaled = [loss * scaler.scale for loss in losses]
        autograd.backward(scaled)
        assert recipe.update_parameters(trainer, iteration, 16, scaler)
        mean_losses.append(np.mean([loss.asnumpy().mean() for loss in losses]))
    assert mean_losses[-1] < 0.5 * mean_losses[0]
