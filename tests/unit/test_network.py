"""The ResNet network: architecture, initialisation and checkpoints in MXNet's format."""

import json
import math

import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd, gluon

from resnet_recipe.data.input_layout import input_shape
from resnet_recipe.model import network

TINY = (2, 3, 32, 32)


def tiny_batch(seed=0):
    return mx.nd.array(np.random.default_rng(seed).normal(size=TINY).astype("float32"))


def initialized(depth=18, contexts=None, **options):
    mx.random.seed(7)
    return network.initialize(network.resnet(depth, **options), contexts or [mx.cpu()])


def move_bn_statistics(net, x):
    """A training step without update: MXNet moves BN running statistics in backward()."""
    with autograd.record():
        loss = net(x).sum()
    loss.backward()


def test_resnet50_for_1000_classes_has_25557032_trainable_parameters():
    net = network.resnet(50, classes=1000)
    assert network.trainable_parameter_count(net) == 25_557_032


def test_parameter_names_are_stable_and_readable():
    first = list(network.resnet(50).collect_params().keys())
    second = list(network.resnet(50).collect_params().keys())
    assert first == second
    for name in [
        "stem_conv_weight",
        "stem_bn_gamma",
        "stage1_block0_conv0_weight",
        "stage2_block0_conv1_weight",
        "stage2_block0_downsample_conv_weight",
        "stage4_block2_bn2_running_var",
        "fc_weight",
        "fc_bias",
    ]:
        assert name in first


@pytest.fixture(scope="module")
def exported_resnet50_graphs(tmp_path_factory):
    """{version: nodes by name} of the exported symbol JSON of ResNet-50 v1 and v1.5."""
    graphs = {}
    for version in network.VERSIONS:
        prefix = str(tmp_path_factory.mktemp("export") / "model")
        net = network.initialize(network.resnet(50, version=version, classes=10), [mx.cpu()])
        symbol_path, _ = network.export_checkpoint(net, prefix, 0)
        with open(symbol_path) as handle:
            nodes = json.load(handle)["nodes"]
        graphs[version] = {node["name"]: node for node in nodes}
    return graphs


@pytest.mark.parametrize(
    ("version", "stride_1x1", "stride_3x3"),
    [("1.5", "(1, 1)", "(2, 2)"), ("1", "(2, 2)", "(1, 1)")],
)
def test_exported_symbol_places_the_downsampling_stride_by_version(
    exported_resnet50_graphs, version, stride_1x1, stride_3x3
):
    nodes = exported_resnet50_graphs[version]
    for stage in (2, 3, 4):
        first_1x1 = nodes[f"stage{stage}_block0_conv0_fwd"]["attrs"]
        middle_3x3 = nodes[f"stage{stage}_block0_conv1_fwd"]["attrs"]
        shortcut = nodes[f"stage{stage}_block0_downsample_conv_fwd"]["attrs"]
        assert (first_1x1["kernel"], first_1x1["stride"]) == ("(1, 1)", stride_1x1)
        assert (middle_3x3["kernel"], middle_3x3["stride"]) == ("(3, 3)", stride_3x3)
        assert shortcut["stride"] == "(2, 2)"
    # Stage 1 follows the max pool and keeps the resolution in every version.
    for layer in ("conv0", "conv1", "downsample_conv"):
        assert nodes[f"stage1_block0_{layer}_fwd"]["attrs"]["stride"] == "(1, 1)"


@pytest.mark.parametrize("depth", [18, 34, 101, 152])
def test_every_depth_builds_and_runs_a_forward_pass(depth):
    net = initialized(depth, classes=7)
    out = net(tiny_batch())
    assert out.shape == (TINY[0], 7)
    assert np.isfinite(out.asnumpy()).all()
    body = "conv1" if depth < 50 else "conv2"
    assert f"stage4_block0_{body}_weight" in net.collect_params().keys()


def test_bad_architecture_settings_name_the_config_key():
    with pytest.raises(ValueError, match="network.depth"):
        network.resnet(20)
    with pytest.raises(ValueError, match="network.version"):
        network.resnet(50, version="2")


@pytest.mark.parametrize(("depth", "last_bn"), [(18, "bn1"), (50, "bn2")])
def test_zero_init_last_gamma_zeroes_the_last_bn_of_every_residual_block(depth, last_bn):
    params = initialized(depth, zero_init_last_gamma=True).collect_params()
    gammas = {name: p.data().asnumpy() for name, p in params.items() if name.endswith("gamma")}
    zeroed = {name for name in gammas if name.endswith(f"_{last_bn}_gamma")}
    blocks = sum(network.BLOCKS_PER_STAGE[depth])
    assert len(zeroed) == blocks
    for name, gamma in gammas.items():
        assert (gamma == (0.0 if name in zeroed else 1.0)).all(), name

    default = initialized(depth).collect_params()
    default_gammas = {name: p for name, p in default.items() if name.endswith("gamma")}
    assert len(default_gammas) == len(gammas)
    for name, p in default_gammas.items():
        assert (p.data().asnumpy() == 1.0).all(), name


def test_weights_are_he_normal_and_bn_beta_and_biases_zero():
    params = initialized(18).collect_params()
    conv = params["stage4_block0_conv1_weight"].data().asnumpy()  # 512 x 512 x 3 x 3
    fan_in = 512 * 3 * 3
    assert abs(conv.mean()) < 1e-3
    assert conv.std() == pytest.approx(math.sqrt(2 / fan_in), rel=0.02)
    fc = params["fc_weight"].data().asnumpy()
    assert fc.std() == pytest.approx(math.sqrt(2 / 512), rel=0.05)
    assert (params["fc_bias"].data().asnumpy() == 0).all()
    assert (params["stem_bn_beta"].data().asnumpy() == 0).all()


# The exported graph leaves types to the input, which SymbolBlock.imports warns about.
@pytest.mark.filterwarnings("ignore:Cannot decide type:UserWarning")
def test_checkpoint_loads_with_load_checkpoint_and_symbolblock_with_equal_outputs(tmp_path):
    net = initialized(18, classes=5)
    move_bn_statistics(net, tiny_batch(1))
    x = tiny_batch(2)
    expected = net(x).asnumpy()
    prefix = str(tmp_path / "model")
    symbol_path, params_path = network.export_checkpoint(net, prefix, 12)
    assert (symbol_path, params_path) == (f"{prefix}-symbol.json", f"{prefix}-0012.params")

    symbol, arg_params, aux_params = mx.model.load_checkpoint(prefix, 12)
    assert symbol.list_arguments()[0] == "data"
    assert np.abs(aux_params["stem_bn_running_mean"].asnumpy()).sum() > 0
    assert {a.dtype for a in [*arg_params.values(), *aux_params.values()]} == {np.float32}
    module = mx.mod.Module(symbol, data_names=["data"], label_names=None, context=mx.cpu())
    module.bind(data_shapes=[("data", TINY)], for_training=False)
    module.set_params(arg_params, aux_params)
    module.forward(mx.io.DataBatch([x]), is_train=False)

    imported = gluon.SymbolBlock.imports(symbol_path, ["data"], params_path, ctx=mx.cpu())
    loaded = network.load_for_inference(prefix, 12, [mx.cpu()])
    for outputs in (module.get_outputs()[0], imported(x), loaded(x)):
        np.testing.assert_allclose(outputs.asnumpy(), expected, rtol=1e-5, atol=1e-6)


def test_export_averages_bn_statistics_over_devices(tmp_path):
    contexts = [mx.cpu(0), mx.cpu(1)]
    net = initialized(18, contexts=contexts, classes=5)
    for ctx, seed in zip(contexts, (1, 2), strict=True):
        move_bn_statistics(net, tiny_batch(seed).as_in_context(ctx))
    prefix = str(tmp_path / "model")
    network.export_checkpoint(net, prefix, 1)
    _, arg_params, aux_params = mx.model.load_checkpoint(prefix, 1)
    params = net.collect_params()
    mean_0, mean_1 = (a.asnumpy() for a in params["stem_bn_running_mean"].list_data())
    assert not np.allclose(mean_0, mean_1)
    np.testing.assert_allclose(
        aux_params["stem_bn_running_mean"].asnumpy(), (mean_0 + mean_1) / 2, rtol=1e-6
    )
    np.testing.assert_array_equal(
        arg_params["stem_conv_weight"].asnumpy(), params["stem_conv_weight"].data().asnumpy()
    )


def test_exported_symbol_takes_the_dtype_of_its_input():
    net = initialized(18, classes=5)
    net(tiny_batch())  # a float32 trace stamps float32 on every weight variable
    net.cast("float16")
    symbol = network.inference_symbol(net)
    for dtype in ("float16", "float32"):
        arg_types, _, aux_types = symbol.infer_type(data=dtype)
        types = dict(zip(symbol.list_arguments(), arg_types, strict=True))
        types.update(zip(symbol.list_auxiliary_states(), aux_types, strict=True))
        assert types["stem_conv_weight"] == np.dtype(dtype)
        assert types["fc_weight"] == np.dtype(dtype)
        assert types["stem_bn_gamma"] == np.float32
        assert types["stage1_block0_bn0_running_var"] == np.float32


# ---------------------------------------------------------------- layouts

NHWC_ON_CPU = network.layout_on("NHWC", [mx.cpu()])
# Parity tolerances in float32, as fractions of the largest output magnitude. Inference
# (BN with running statistics): 1e-5; the layouts pool in another order. Training mode (BN
# with batch statistics, through other oneDNN kernels: the NCHW network's BN reads its
# convolution's blocked or channels-last output, the NHWC one's the plain output of a
# transpose; their rounding differences grow over ResNet-50's 53 BN layers): 1e-4, on
# 64 px batches of 4 so that the last stage normalises 16 values per channel (with the 2
# of a 32 px batch of 2 the variance is ill-conditioned and the kernels differ by 1e-3).
PARITY_RTOL = 1e-5
TRAINING_PARITY_RTOL = 1e-4


def as_nhwc(batch):
    """An NCHW batch as the NHWC network takes it: channels last, a 4th channel of zeros."""
    nhwc = batch.transpose((0, 2, 3, 1))
    return mx.nd.concat(nhwc, mx.nd.zeros((*nhwc.shape[:3], 1), ctx=batch.context), dim=3)


def same_weights_in(layout, source, depth, **options):
    """A network in `layout` holding the weights of `source` (another layout's network)."""
    mx.random.seed(11)
    net = network.initialize(network.resnet(depth, layout=layout, **options), [mx.cpu()])
    arrays = {name: p.data() for name, p in source.collect_params().items()}
    converted = network.arrays_in_layout(arrays, source.layout.name, layout.name)
    for name, param in net.collect_params().items():
        param.set_data(converted[name])
    return net


def assert_parity(nhwc_output, nchw_output, rtol=PARITY_RTOL):
    nchw_output = nchw_output.asnumpy()
    scale = np.abs(nchw_output).max()
    np.testing.assert_allclose(nhwc_output.asnumpy(), nchw_output, rtol=rtol, atol=rtol * scale)


@pytest.mark.parametrize(("depth", "version"), [(18, "1.5"), (50, "1.5"), (50, "1")])
def test_nhwc_and_nchw_give_the_same_outputs_for_the_same_weights(depth, version):
    nchw = initialized(depth, version=version, classes=5)
    move_bn_statistics(nchw, tiny_batch(1))
    nhwc = same_weights_in(NHWC_ON_CPU, nchw, depth, version=version, classes=5)
    assert nhwc.collect_params()["stem_conv_weight"].shape == (64, 7, 7, 4)
    x = tiny_batch(2)
    assert_parity(nhwc(as_nhwc(x)), nchw(x))  # inference: BN running statistics
    x = mx.nd.array(np.random.default_rng(2).normal(size=(4, 3, 64, 64)).astype("float32"))
    with autograd.record():  # training: BN batch statistics (axis 3 against axis 1)
        nhwc_output, nchw_output = nhwc(as_nhwc(x)), nchw(x)
    assert_parity(nhwc_output, nchw_output, TRAINING_PARITY_RTOL)


def test_the_gpu_nhwc_graph_uses_nhwc_convolution_bn_axis_3_and_nhwc_pooling():
    # The GPU network (MXNet's own NHWC convolution, which has no CPU kernel) cannot run
    # here; its graph is checked: ops, attributes, and every shape MXNet infers for it.
    gpu_graph = network.resnet(50, classes=5, layout=network.Layout("NHWC")).forward(
        mx.sym.var("data")
    )
    nodes = json.loads(gpu_graph.tojson())["nodes"]
    ops = {node["op"] for node in nodes}
    assert "transpose" not in ops
    for node in nodes:
        attrs = node.get("attrs", {})
        if node["op"] in ("Convolution", "Pooling"):
            assert attrs["layout"] == "NHWC", node["name"]
        if node["op"] == "BatchNorm":
            assert attrs["axis"] == "3", node["name"]
    arg_shapes, out_shapes, _ = gpu_graph.infer_shape(data=(2, 224, 224, 4))
    shapes = dict(zip(gpu_graph.list_arguments(), arg_shapes, strict=True))
    cpu_net = network.resnet(50, classes=5, layout=NHWC_ON_CPU)
    for name, param in cpu_net.collect_params().items():
        if name in shapes:
            assert shapes[name] == param.shape, name
    assert shapes["stem_conv_weight"] == (64, 7, 7, 4)
    assert out_shapes == [(2, 5)]


def sgd_steps(net, batches, make_input):
    trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.1, "momentum": 0.9})
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
    for x, label in batches:
        with autograd.record():
            loss = loss_fn(net(make_input(x)), label)
        loss.backward()
        trainer.step(x.shape[0])


@pytest.mark.filterwarnings("ignore:Cannot decide type:UserWarning")
@pytest.mark.parametrize("trained_in", ["NCHW", "NHWC"])
def test_a_model_trained_in_one_layout_exports_the_same_checkpoint_and_scores_in_either(
    tmp_path, trained_in
):
    from resnet_recipe.workflow_support.settings import Network

    rng = np.random.default_rng(3)
    batches = [
        (mx.nd.array(rng.normal(size=TINY).astype("float32")), mx.nd.array([0, 1]))
        for _ in range(3)
    ]
    mx.random.seed(5)
    layout = network.layout_on(trained_in, [mx.cpu()])
    net = network.initialize(network.resnet(18, classes=5, layout=layout), [mx.cpu()])
    net.hybridize()
    sgd_steps(net, batches, as_nhwc if trained_in == "NHWC" else (lambda x: x))
    x = tiny_batch(4)
    trained_output = net(as_nhwc(x) if trained_in == "NHWC" else x)
    prefix = str(tmp_path / "model")
    network.export_checkpoint(net, prefix, 3)

    # The checkpoint is the NCHW network whatever the layout: 3 input channels, OIHW.
    symbol, arg_params, _ = mx.model.load_checkpoint(prefix, 3)
    assert arg_params["stem_conv_weight"].shape == (64, 3, 7, 7)
    reference = initialized(18, classes=5)
    assert symbol.tojson() == network.inference_symbol(reference).tojson()
    # Scored in either layout, it gives the trained network's outputs.
    settings = Network(depth=18, version="1.5")
    for scored_in in ("NCHW", "NHWC"):
        loaded = network.load_for_inference(
            prefix, 3, [mx.cpu()], network_settings=settings.replace(layout={"float32": scored_in})
        )
        assert_parity(loaded(as_nhwc(x) if scored_in == "NHWC" else x), trained_output)
    assert_parity(network.load_for_inference(prefix, 3, [mx.cpu()])(x), trained_output)


def test_the_exported_checkpoint_does_not_depend_on_the_layout(tmp_path):
    nchw = initialized(18, classes=5)
    move_bn_statistics(nchw, tiny_batch(1))
    nhwc = same_weights_in(NHWC_ON_CPU, nchw, 18, classes=5)
    files = {}
    for name, net in (("nchw", nchw), ("nhwc", nhwc)):
        files[name] = network.export_checkpoint(net, str(tmp_path / name / "model"), 1)
    (nchw_symbol, nchw_params), (nhwc_symbol, nhwc_params) = files["nchw"], files["nhwc"]
    with open(nchw_symbol) as a, open(nhwc_symbol) as b:
        assert a.read() == b.read()
    saved_nchw, saved_nhwc = mx.nd.load(nchw_params), mx.nd.load(nhwc_params)
    assert sorted(saved_nchw) == sorted(saved_nhwc)
    for name, array in saved_nchw.items():
        assert array.shape == saved_nhwc[name].shape and array.dtype == np.float32
        np.testing.assert_array_equal(array.asnumpy(), saved_nhwc[name].asnumpy())


def test_input_shape_per_layout():
    assert input_shape("NCHW", 8, 224) == (8, 3, 224, 224)
    assert input_shape("NHWC", 8, 224) == (8, 224, 224, 4)
    assert network.layout_on("NHWC", [mx.cpu()]).by_transpose
    assert not network.layout_on("NHWC", [mx.gpu(0)]).by_transpose
    assert not network.layout_on("NCHW", [mx.cpu()]).by_transpose


def test_the_cpu_nhwc_graph_runs_batchnorm_on_axis_1_only():
    # MXNet 1.9.1's oneDNN BatchNorm on another axis can segfault on AVX-512 CPUs
    # (NHWCBatchNormByTranspose); the CPU network must never ask for it.
    graph = network.resnet(50, classes=5, layout=NHWC_ON_CPU).forward(mx.sym.var("data"))
    batch_norms = [n for n in json.loads(graph.tojson())["nodes"] if n["op"] == "BatchNorm"]
    assert len(batch_norms) == 53
    assert {node["attrs"]["axis"] for node in batch_norms} == {"1"}
