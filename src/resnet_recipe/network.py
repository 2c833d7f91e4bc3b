"""ResNet v1 and v1.5 as a Gluon HybridBlock, and its checkpoints in MXNet's standard format.

Parameter names are fixed by the architecture, never by how many networks a process built:
`stem_conv_weight`, `stage2_block0_conv1_weight`, `stage2_block0_bn2_gamma`,
`stage2_block0_downsample_conv_weight`, `fc_weight`, ... Stages are numbered 1 to 4 (the
paper's conv2_x to conv5_x); blocks and the layers inside a block count from 0.
"""

import json
import numbers
import warnings

import mxnet as mx
from mxnet import gluon
from mxnet.gluon import nn

from resnet_recipe.atomic_files import atomic_open, atomic_path
from resnet_recipe.precision import cast_network, float32_parameters

VERSIONS = ("1", "1.5")
# Residual blocks per stage; 18 and 34 use basic blocks, the deeper ones bottlenecks.
BLOCKS_PER_STAGE = {
    18: (2, 2, 2, 2),
    34: (3, 4, 6, 3),
    50: (3, 4, 6, 3),
    101: (3, 4, 23, 3),
    152: (3, 8, 36, 3),
}
BOTTLENECK_DEPTHS = (50, 101, 152)
STAGE_WIDTHS = (64, 128, 256, 512)
BOTTLENECK_EXPANSION = 4
STEM_CHANNELS = 64
INPUT_NAME = "data"


def he_normal():
    """He et al. 2015 initialisation: Gaussian with variance 2 / fan_in (MSRA)."""
    return mx.init.Xavier(rnd_type="gaussian", factor_type="in", magnitude=2)


def conv_bn(channels, kernel, stride, in_channels, zero_gamma, index=""):
    """A bias-free convolution with 'same' padding and its BatchNorm, named conv<i>/bn<i>."""
    conv = nn.Conv2D(
        channels,
        kernel,
        strides=stride,
        padding=kernel // 2,
        use_bias=False,
        in_channels=in_channels,
        weight_initializer=he_normal(),
        prefix=f"conv{index}_",
    )
    bn = nn.BatchNorm(
        in_channels=channels,
        gamma_initializer="zeros" if zero_gamma else "ones",
        prefix=f"bn{index}_",
    )
    return conv, bn


def block_layers(depth, version, width, stride):
    """(channels, kernel, stride) of each convolution of one residual block's body.

    A bottleneck is 1x1 -> 3x3 -> 1x1 (x4 channels). Version 1 downsamples in the first
    1x1; version 1.5 in the 3x3, which sees every input pixel and is about 0.5% more
    accurate on ImageNet.
    """
    if depth not in BOTTLENECK_DEPTHS:
        return [(width, 3, stride), (width, 3, 1)]
    first_stride, middle_stride = (stride, 1) if version == "1" else (1, stride)
    return [
        (width, 1, first_stride),
        (width, 3, middle_stride),
        (width * BOTTLENECK_EXPANSION, 1, 1),
    ]


class ResidualBlock(nn.HybridBlock):
    """relu(body(x) + shortcut(x)); body is conv-BN-ReLU layers whose last one has no ReLU,
    the shortcut a strided 1x1 conv + BN where the shape changes, else the identity."""

    def __init__(self, layers, in_channels, stride, zero_init_last_gamma, prefix):
        super().__init__(prefix=prefix)
        out_channels = layers[-1][0]
        with self.name_scope():
            self.body = nn.HybridSequential(prefix="")
            channels_in = in_channels
            for index, (channels, kernel, layer_stride) in enumerate(layers):
                last = index == len(layers) - 1
                conv, bn = conv_bn(
                    channels,
                    kernel,
                    layer_stride,
                    channels_in,
                    last and zero_init_last_gamma,
                    index,
                )
                self.body.add(conv, bn)
                if not last:
                    self.body.add(nn.Activation("relu", prefix=f"relu{index}_"))
                channels_in = channels
            self.downsample = None
            if stride != 1 or in_channels != out_channels:
                self.downsample = nn.HybridSequential(prefix="downsample_")
                with self.downsample.name_scope():
                    self.downsample.add(*conv_bn(out_channels, 1, stride, in_channels, False))

    def hybrid_forward(self, F, x):
        shortcut = x if self.downsample is None else self.downsample(x)
        return F.Activation(
            F.elemwise_add(self.body(x), shortcut, name="add"), act_type="relu", name="relu"
        )


class ResNet(nn.HybridBlock):
    """ResNet for NCHW images: 7x7/2 conv stem and 3x3/2 max pool, four stages of residual
    blocks (the first block of stages 2-4 halves the resolution), global average pool and
    a dense layer to `classes` logits."""

    def __init__(self, depth, version, classes, zero_init_last_gamma):
        super().__init__(prefix="")
        self.depth = depth
        self.version = version
        self.classes = classes
        expansion = BOTTLENECK_EXPANSION if depth in BOTTLENECK_DEPTHS else 1
        with self.name_scope():
            self.features = nn.HybridSequential(prefix="")
            stem = nn.HybridSequential(prefix="stem_")
            with stem.name_scope():
                conv, bn = conv_bn(STEM_CHANNELS, 7, 2, 3, False)
                stem.add(conv, bn, nn.Activation("relu", prefix="relu_"))
                stem.add(nn.MaxPool2D(pool_size=3, strides=2, padding=1, prefix="pool_"))
            self.features.add(stem)
            channels = STEM_CHANNELS
            for stage, (blocks, width) in enumerate(
                zip(BLOCKS_PER_STAGE[depth], STAGE_WIDTHS, strict=True)
            ):
                layer = nn.HybridSequential(prefix=f"stage{stage + 1}_")
                with layer.name_scope():
                    for block in range(blocks):
                        stride = 2 if stage > 0 and block == 0 else 1
                        layers = block_layers(depth, version, width, stride)
                        layer.add(
                            ResidualBlock(
                                layers, channels, stride, zero_init_last_gamma, f"block{block}_"
                            )
                        )
                        channels = width * expansion
                self.features.add(layer)
            self.features.add(nn.GlobalAvgPool2D(prefix="pool_"))
            self.output = nn.Dense(
                classes, in_units=channels, weight_initializer=he_normal(), prefix="fc_"
            )

    def hybrid_forward(self, F, x):
        return self.output(self.features(x))


def resnet(depth=50, version="1.5", classes=1000, zero_init_last_gamma=False):
    """A ResNet of `depth` 18/34 (basic blocks) or 50/101/152 (bottlenecks), `version` "1" or
    "1.5", with `classes` outputs; zero_init_last_gamma starts the last BN of every residual
    block at gamma 0, so every residual branch starts at zero. Parameters are not yet allocated:
    call initialize()."""
    if depth not in BLOCKS_PER_STAGE:
        raise ValueError(f"network.depth must be one of {sorted(BLOCKS_PER_STAGE)}, not {depth!r}")
    if str(version) not in VERSIONS:
        raise ValueError(f"network.version must be one of {VERSIONS}, not {version!r}")
    if not isinstance(classes, numbers.Integral) or classes < 1:
        raise ValueError(f"the number of classes must be a positive integer, not {classes!r}")
    return ResNet(depth, str(version), int(classes), bool(zero_init_last_gamma))


def initialize(net, contexts):
    """Allocate and initialise the parameters on every context (data-parallel replicas);
    each parameter carries its own initialiser (He-normal weights, BN gamma 1 or 0, beta
    and biases 0). Returns the net."""
    net.initialize(ctx=list(contexts))
    return net


def build(network_settings, classes, contexts, dtype="float32"):
    """The configured network (settings.Network), initialised on every
    context, cast to `dtype` (BatchNorm stays float32) and hybridized: what training and the
    benchmarks run. MXNet's random seed, set before, decides the initial weights."""
    net = initialize(
        resnet(
            network_settings.depth,
            network_settings.version,
            classes,
            network_settings.zero_init_last_gamma,
        ),
        contexts,
    )
    cast_network(net, dtype)
    net.hybridize(static_alloc=True, static_shape=True)
    return net


def trainable_parameter_count(net):
    """Number of values the optimizer updates (BN running statistics excluded)."""
    total = 0
    for param in net.collect_params().values():
        if param.grad_req != "null":
            size = 1
            for dim in param.shape:
                size *= dim
            total += size
    return total


def checkpoint_paths(prefix, epoch):
    """The two files of a checkpoint, as mx.model.save_checkpoint names them."""
    return f"{prefix}-symbol.json", f"{prefix}-{epoch:04d}.params"


def inference_symbol(net):
    """The network's graph with input `data`, its variables free of dtype annotations.

    Gluon stamps each weight variable with the dtype the network had when it was traced.
    Without those stamps every type follows the input: float32 data gives a float32 graph,
    float16 data gives float16 convolutions and dense layer while BatchNorm keeps float32
    parameters, which is what a float16 network runs.
    """
    graph = json.loads(net(mx.sym.var(INPUT_NAME)).tojson())
    for node in graph["nodes"]:
        if node["op"] == "null":
            node.get("attrs", {}).pop("__dtype__", None)
    return mx.sym.load_json(json.dumps(graph))


def export_checkpoint(net, prefix, epoch, trainer=None):
    """Write `<prefix>-symbol.json` and `<prefix>-<epoch:04d>.params`, each atomically, in
    the format of mx.model.save_checkpoint; return their paths.

    Weights are saved in float32. With `trainer`, weights the optimizer keeps a float32
    master copy of (float16 training) are saved from that copy rather than from the rounded
    float16 weights. BN running statistics are averaged over the devices.
    """
    symbol = inference_symbol(net)
    arguments = set(symbol.list_arguments())
    auxiliaries = set(symbol.list_auxiliary_states())
    arrays = {}
    for name, array in float32_parameters(net, trainer).items():
        if name in arguments:
            arrays[f"arg:{name}"] = array
        elif name in auxiliaries:
            arrays[f"aux:{name}"] = array
        else:
            raise ValueError(f"parameter {name} is not part of the network's graph")
    symbol_path, params_path = checkpoint_paths(prefix, epoch)
    with atomic_path(params_path) as tmp:
        mx.nd.save(tmp, arrays)
    with atomic_open(symbol_path) as handle:
        handle.write(symbol.tojson())
    return symbol_path, params_path


def load_for_inference(prefix, epoch, contexts, dtype="float32"):
    """A SymbolBlock of a checkpoint on `contexts`, run in `dtype`: float16 casts weights
    and activations to float16 and keeps BatchNorm parameters in float32."""
    symbol_path, params_path = checkpoint_paths(prefix, epoch)
    with warnings.catch_warnings():
        # The exported graph leaves every type to its input (see inference_symbol), which
        # SymbolBlock reports as a warning; the types are fixed by the first batch.
        warnings.filterwarnings("ignore", "Cannot decide type", UserWarning)
        net = gluon.SymbolBlock.imports(symbol_path, [INPUT_NAME], params_path, ctx=list(contexts))
    if dtype != "float32":
        net.cast(dtype)  # SymbolBlock.cast puts BatchNorm parameters back to float32
    return net
