"""float16 pieces, all reachable on the CPU: dtype check, casting, master weights, loss scaling."""

import json

import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd, gluon

from resnet_recipe.model import network, precision, recipe
from resnet_recipe.model.precision import LossScaler, next_loss_scale
from resnet_recipe.workflow_support.settings import TrainingRun

SETTINGS = TrainingRun(warmup_epochs=0, weight_decay=0.0)


def test_float16_on_cpu_stops_with_the_reason():
    with pytest.raises(ValueError, match="FP16 gemm on cpu not implemented") as error:
        precision.require_dtype_supported("float16", [mx.cpu(0), mx.cpu(1)])
    assert "float32" in str(error.value) and "GPU" in str(error.value)
    with pytest.raises(ValueError, match="cpu"):
        precision.require_dtype_supported("float16", [mx.gpu(0), mx.cpu(0)])
    with pytest.raises(ValueError, match="dtype"):
        precision.require_dtype_supported("bfloat16", [mx.gpu(0)])
    precision.require_dtype_supported("float16", [mx.gpu(0), mx.gpu(1)])
    precision.require_dtype_supported("float32", [mx.cpu(0)])


def test_mxnet_on_cpu_indeed_has_no_float16_convolution():
    data = mx.nd.ones((1, 3, 8, 8), dtype="float16")
    weight = mx.nd.ones((4, 3, 3, 3), dtype="float16")
    with pytest.raises(mx.base.MXNetError, match="FP16 gemm on cpu not implemented"):
        mx.nd.Convolution(data, weight, kernel=(3, 3), num_filter=4, no_bias=True).asnumpy()


def float16_resnet18(contexts=None):
    net = network.resnet(18, classes=5)
    network.initialize(net, contexts or [mx.cpu()])
    return precision.cast_network(net, "float16")


def test_float16_casts_conv_and_dense_and_keeps_batchnorm_in_float32():
    net = network.resnet(18, classes=5)
    planned = precision.parameter_dtypes(net, "float16")
    network.initialize(net, [mx.cpu()])
    precision.cast_network(net, "float16")
    actual = {name: np.dtype(p.data().dtype).name for name, p in net.collect_params().items()}
    assert actual == planned
    for name, dtype in actual.items():
        is_bn = name.rsplit("_", 1)[-1] in ("gamma", "beta") or "running" in name
        assert dtype == ("float32" if is_bn else "float16"), name
    assert actual["stem_bn_running_var"] == "float32"
    assert actual["stage1_block0_conv0_weight"] == "float16"
    assert (actual["fc_weight"], actual["fc_bias"]) == ("float16", "float16")
    assert set(precision.parameter_dtypes(net, "float32").values()) == {"float32"}


def one_update_of_every_parameter(net, trainer, contexts):
    """Gradients through float16 element-wise operations (which the CPU has) and one update."""
    params = [p for p in net.collect_params().values() if p.grad_req != "null"]
    with autograd.record():
        losses = [
            mx.nd.add_n(*[(p.data(ctx) * 0.01).astype("float32").sum() for p in params])
            for ctx in contexts
        ]
    autograd.backward(losses)
    assert recipe.update_parameters(trainer, 0, 2, LossScaler(scale=1.0, dynamic=False))


def test_multi_precision_sgd_keeps_float32_master_weights_and_momentum_for_float16():
    params = gluon.ParameterDict()
    half = params.get("conv_weight", shape=(3,), dtype="float16", init=mx.init.One())
    full = params.get("bn_gamma", shape=(3,), dtype="float32", init=mx.init.One())
    params.initialize(ctx=[mx.cpu()])
    trainer = recipe.make_trainer(params, SETTINGS, 256, 10, "float16")
    assert trainer.optimizer.multi_precision
    with autograd.record():
        # lr 0.1 x gradient 1e-3 moves 1.0 by 1e-4, below float16's resolution near 1.
        loss = (half.data().astype("float32") * 1e-3).sum() + (full.data() * 1e-3).sum()
    loss.backward()
    recipe.update_parameters(trainer, 0, 1, LossScaler(scale=1.0, dynamic=False))

    momentum, master = trainer._updaters[0].states[trainer._param2idx["conv_weight"]]
    assert (momentum.dtype, master.dtype) == (np.float32, np.float32)
    np.testing.assert_allclose(master.asnumpy(), 1 - 1e-4, rtol=1e-7)
    assert (half.data().asnumpy() == 1.0).all()  # the float16 copy cannot show the step
    assert precision.master_weight(trainer, half) is master
    full_state = trainer._updaters[0].states[trainer._param2idx["bn_gamma"]]
    assert isinstance(full_state, mx.nd.NDArray) and full_state.dtype == np.float32
    assert precision.master_weight(trainer, full) is None


def test_float16_export_holds_float32_master_weights(tmp_path):
    contexts = [mx.cpu(0), mx.cpu(1)]
    net = float16_resnet18(contexts)
    trainer = recipe.make_trainer(net.collect_params(), SETTINGS, 2, 10, "float16")
    one_update_of_every_parameter(net, trainer, contexts)
    prefix = str(tmp_path / "model")
    network.export_checkpoint(net, prefix, 1, trainer)

    _, arg_params, aux_params = mx.model.load_checkpoint(prefix, 1)
    assert {a.dtype for a in [*arg_params.values(), *aux_params.values()]} == {np.float32}
    conv = net.collect_params()["stem_conv_weight"]
    master = precision.master_weight(trainer, conv).asnumpy()
    np.testing.assert_array_equal(arg_params["stem_conv_weight"].asnumpy(), master)
    assert not np.array_equal(master, conv.data().asnumpy().astype("float32"))

    loaded = network.load_for_inference(prefix, 1, [mx.cpu()], dtype="float16")
    dtypes = {name: p.data().dtype for name, p in loaded.collect_params().items()}
    assert dtypes["stem_conv_weight"] == np.float16
    assert dtypes["stem_bn_gamma"] == np.float32
    assert dtypes["stem_bn_running_mean"] == np.float32


@pytest.mark.parametrize(
    ("scale", "clean", "finite", "expected"),
    [
        (1024.0, 5, False, (512.0, 0)),  # overflow: halve, restart the count
        (1.0, 5, False, (1.0, 0)),  # never below the minimum
        (1024.0, 5, True, (1024.0, 6)),
        (1024.0, 1999, True, (2048.0, 0)),  # the 2000th clean step in a row doubles
        (2.0**24, 1999, True, (2.0**24, 0)),  # never above the maximum
    ],
)
def test_loss_scale_decisions(scale, clean, finite, expected):
    assert next_loss_scale(scale, clean, finite, 2000, 1.0, 2.0**24) == expected


def test_dynamic_loss_scaler_runs_the_state_machine_and_round_trips_through_json():
    scaler = LossScaler(scale=8.0, growth_interval=3)
    for finite in [False, True, True, True, True, False, False, False, False]:
        scaler.update(finite)
    assert (scaler.scale, scaler.clean_steps, scaler.skipped_steps) == (1.0, 0, 5)
    # 8 -> 4 -> 2 -> 1 takes three overflows; the fourth is the first at the floor.
    assert scaler.overflows_at_min == 1
    scaler.update(False)
    assert (scaler.overflows_at_min, scaler.skipped_steps) == (2, 6)
    scaler.update(True)
    assert scaler.overflows_at_min == 0
    restored = LossScaler(growth_interval=3)
    restored.load_state_dict(json.loads(json.dumps(scaler.state_dict())))
    assert (
        restored.state_dict()
        == scaler.state_dict()
        == {
            "scale": 1.0,
            "dynamic": True,
            "clean_steps": 1,
            "skipped_steps": 6,
            "overflows_at_min": 0,
        }
    )
    with pytest.raises(ValueError, match="static"):
        LossScaler(dynamic=False).load_state_dict(scaler.state_dict())


def test_static_loss_scaler_never_moves():
    scaler = LossScaler(scale=128.0, dynamic=False)
    for finite in [False, True] * 3000:
        scaler.update(finite)
    assert (scaler.scale, scaler.skipped_steps) == (128.0, 0)


def test_loss_scaler_of_the_settings():
    # The original's float16: multi-precision SGD and no loss scale (fit.py L266-270 at
    # a8e1d1cd, with momentum added at L273-275, are its complete optimizer params).
    assert TrainingRun().loss_scale == "none"
    unscaled = precision.make_loss_scaler("none", "float16")
    assert (unscaled.scale, unscaled.dynamic) == (1.0, False)
    assert precision.make_loss_scaler("dynamic", "float16").state_dict()["dynamic"]
    assert precision.make_loss_scaler("dynamic", "float16").scale == 2.0**16
    static = precision.make_loss_scaler(128, "float16")
    assert (static.scale, static.dynamic) == (128.0, False)
    for setting in ("none", "dynamic", 128):
        fp32 = precision.make_loss_scaler(setting, "float32")
        assert (fp32.scale, fp32.dynamic) == (1.0, False)
    with pytest.raises(ValueError, match="training.loss_scale"):
        precision.make_loss_scaler("auto", "float16")


def params_with_gradients(dtypes):
    params = []
    for index, dtype in enumerate(dtypes):
        param = gluon.Parameter(f"p{index}", shape=(4,), dtype=dtype, init=mx.init.Zero())
        param.initialize(ctx=mx.cpu())
        param.grad()[:] = 1.0
        params.append(param)
    return params


@pytest.mark.parametrize(
    ("dtypes", "bad_index", "bad_value"),
    [
        (["float16", "float32"], None, None),
        (["float16", "float32"], 1, np.inf),  # a float32 array after a float16 one
        (["float16", "float32"], 0, np.nan),
        (["float16"] * 250 + ["float32"] * 250, 499, -np.inf),  # beyond one 200-array call
    ],
)
def test_gradient_overflow_check(dtypes, bad_index, bad_value):
    params = params_with_gradients(dtypes)
    if bad_index is not None:
        params[bad_index].grad()[2] = bad_value
    assert precision.gradients_are_finite(params) == (bad_index is None)


def test_gradient_overflow_check_syncs_with_the_host_once(monkeypatch):
    params = params_with_gradients(["float16", "float32"] * 300)
    reads = []
    original = mx.nd.NDArray.asnumpy

    def counted(array):
        reads.append(array.shape)
        return original(array)

    monkeypatch.setattr(mx.nd.NDArray, "asnumpy", counted)
    assert precision.gradients_are_finite(params)
    assert reads == [(1,)]


def test_overflow_on_one_device_skips_the_step_everywhere_and_halves_the_scale():
    contexts = [mx.cpu(0), mx.cpu(1)]
    params = gluon.ParameterDict()
    weight = params.get("w", shape=(2,), init=mx.init.One())
    params.initialize(ctx=contexts)
    trainer = recipe.make_trainer(params, SETTINGS, 2, 10, "float32")
    scaler = LossScaler(scale=1024.0)

    def backward():
        with autograd.record():
            losses = [(weight.data(ctx) * scaler.scale).sum() for ctx in contexts]
        autograd.backward(losses)

    backward()
    weight.list_grad()[1][0] = np.inf
    assert not recipe.update_parameters(trainer, 0, 2, scaler)
    assert all((data.asnumpy() == 1.0).all() for data in weight.list_data())
    assert (scaler.scale, scaler.skipped_steps) == (512.0, 1)

    backward()
    assert recipe.update_parameters(trainer, 1, 2, scaler)
    # lr 0.1 * 2/256, summed unscaled gradient 2 over a global batch of 2: one lr step.
    expected = 1.0 - 0.1 * 2 / 256
    for data in weight.list_data():
        np.testing.assert_allclose(data.asnumpy(), expected, rtol=1e-6)


def test_weights_are_finite_finds_one_non_finite_value_in_any_weight():
    net = mx.gluon.nn.HybridSequential()
    net.add(mx.gluon.nn.Dense(4, in_units=3), mx.gluon.nn.BatchNorm(in_channels=4))
    net.initialize(ctx=[mx.cpu(0), mx.cpu(1)])
    params = list(net.collect_params().values())
    assert precision.weights_are_finite(params)
    for bad in (float("nan"), float("inf")):
        weight = params[0].list_data()[0]
        weight[1, 2] = bad
        assert not precision.weights_are_finite(params)
        weight[1, 2] = 0.5
    # The BN running statistics are not trained weights: not looked at.
    running_mean = next(p for p in params if p.name.endswith("running_mean"))
    running_mean.list_data()[0][0] = float("nan")
    assert precision.weights_are_finite(params)
