"""ResNet v1 and v1.5 as a Gluon HybridBlock, and its checkpoints in MXNet's standard format.

Parameter names are fixed by the architecture, never by how many networks a process built:
`stem_conv_weight`, `stage2_block0_conv1_weight`, `stage2_block0_bn2_gamma`,
`stage2_block0_downsample_conv_weight`, `fc_weight`, ... Stages are numbered 1 to 4 (the
paper's conv2_x to conv5_x); blocks and the layers inside a block count from 0.

Two layouts, as the original recipe had (resnet.py L51-93 at its first release): NCHW, and
NHWC as it trained float16, with the input padded to 4 channels (DALI's pad_output, the
4th channel zero; dali.py L112), NHWC convolutions (OHWI weights), BatchNorm on axis 3 and
NHWC pooling. A checkpoint is always written in NCHW with 3 input channels, whatever the
layout the network trained in, and either layout loads it.
"""

import json
import numbers
import warnings
from dataclasses import dataclass

import mxnet as mx
from mxnet import gluon
from mxnet.gluon import nn

from resnet_recipe.data.input_layout import IMAGE_CHANNELS, INPUT_CHANNELS
from resnet_recipe.files.atomic_files import atomic_open, atomic_path
from resnet_recipe.files.user_errors import UserError
from resnet_recipe.model.precision import cast_network, float32_parameters
from resnet_recipe.workflow_support.settings import LAYOUTS

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
STEM_WEIGHT = "stem_conv_weight"
# Axis order that turns an NCHW conv weight (OIHW) into NHWC's (OHWI), and back.
OIHW_TO_OHWI = (0, 2, 3, 1)
OHWI_TO_OIHW = (0, 3, 1, 2)


class NHWCConvByTranspose(nn.Conv2D):
    """An NHWC convolution (OHWI weights, NHWC data) computed as an NCHW one between
    transposes, for the CPU only: MXNet 1.9.1 has no NHWC convolution on the CPU. Its MKLDNN
    path takes every 4-d input as NCHW (SupportMKLDNNConv ignores the layout,
    src/operator/nn/mkldnn/mkldnn_convolution.cc L38-47) and fails to build the primitive;
    its own ConvolutionOp accepts NCW, NCHW and NCDHW only (convolution-inl.h L166-169).
    On a GPU the network uses MXNet's NHWC convolution itself (cuDNN)."""

    def hybrid_forward(self, F, x, weight, bias=None):
        kwargs = {**self._kwargs, "layout": "NCHW"}
        inputs = [F.transpose(x, axes=OHWI_TO_OIHW), F.transpose(weight, axes=OHWI_TO_OIHW)]
        if bias is not None:
            inputs.append(bias)
        output = F.Convolution(*inputs, name="fwd", **kwargs)
        return F.transpose(output, axes=OIHW_TO_OHWI)


class NHWCBatchNormByTranspose(nn.BatchNorm):
    """BatchNorm over axis 3 of NHWC data computed over axis 1 between transposes, for the
    CPU only: MXNet 1.9.1 can segfault in its oneDNN BatchNorm on any other axis.

    For axis != 1 MXNet reshapes the data to (N*H*W, C, 1, 1) views
    (src/operator/nn/mkldnn/mkldnn_batch_norm-inl.h L162-173) and asks the output view for
    memory in the primitive's dst format (L188); NDArray::CreateMKLDNNData returns nullptr
    for a view whose requested format is not the plain one (src/ndarray/ndarray.cc L726-732),
    and the nullptr is dereferenced (L248, `*out_mem`). The format is plain unless oneDNN's
    primitive cache (oneDNN 2.4.4, bundled) hands back a primitive built earlier for the
    same problem with another layout. That happens on CPUs where oneDNN picks its brgemm 1x1
    convolution (AVX-512 cores: Intel Sapphire/Emerald Rapids, AMD Zen 4), which writes
    channels-last ("acdb"); for 1x1 spatial (ResNet's last stage at 32 px) "acdb" and the
    plain "abcd" are one descriptor to oneDNN, which ignores the strides of size-1 dims. So
    an NCHW network (conv -> BN axis 1 on acdb data) followed by this NHWC one (BN axis 3 on
    a (2, 1, 1, 512) batch, reshaped to (2, 512, 1, 1)) crashes; AVX2 machines (blocked
    nChw8c outputs) and DNNL_PRIMITIVE_CACHE_CAPACITY=0 do not. Known family: apache/mxnet
    issues #19150 and #20858 (MKLDNN BatchNorm on views), introduced with axis != 1 support
    in pull request #18504. Axis 1 on 4-d data is never reshaped, so it is safe."""

    def hybrid_forward(self, F, x, gamma, beta, running_mean, running_var):
        kwargs = {**self._kwargs, "axis": 1}
        output = F.BatchNorm(
            F.transpose(x, axes=OHWI_TO_OIHW),
            gamma,
            beta,
            running_mean,
            running_var,
            name="fwd",
            **kwargs,
        )
        return F.transpose(output, axes=OIHW_TO_OHWI)


def he_normal():
    """He et al. 2015 initialisation: Gaussian with variance 2 / fan_in (MSRA)."""
    return mx.init.Xavier(rnd_type="gaussian", factor_type="in", magnitude=2)


@dataclass(frozen=True)
class Layout:
    """The layout a network is built in; by_transpose: NHWC convolutions computed by
    NHWCConvByTranspose (networks on the CPU)."""

    name: str = "NCHW"
    by_transpose: bool = False

    def conv(self, *args, **kwargs):
        if self.name == "NCHW":
            return nn.Conv2D(*args, **kwargs)
        conv_class = NHWCConvByTranspose if self.by_transpose else nn.Conv2D
        return conv_class(*args, layout="NHWC", **kwargs)

    def batch_norm(self, **kwargs):
        if self.name == "NCHW":
            return nn.BatchNorm(axis=1, **kwargs)
        bn_class = NHWCBatchNormByTranspose if self.by_transpose else nn.BatchNorm
        return bn_class(axis=3, **kwargs)


def conv_bn(channels, kernel, stride, in_channels, zero_gamma, layout, index=""):
    """A bias-free convolution with 'same' padding and its BatchNorm (over the channel axis
    of `layout`, a Layout), named conv<i>/bn<i>."""
    conv = layout.conv(
        channels,
        kernel,
        strides=stride,
        padding=kernel // 2,
        use_bias=False,
        in_channels=in_channels,
        weight_initializer=he_normal(),
        prefix=f"conv{index}_",
    )
    bn = layout.batch_norm(
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

    def __init__(self, layers, in_channels, stride, zero_init_last_gamma, layout, prefix):
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
                    layout,
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
                    self.downsample.add(
                        *conv_bn(out_channels, 1, stride, in_channels, False, layout)
                    )

    def hybrid_forward(self, F, x):
        shortcut = x if self.downsample is None else self.downsample(x)
        return F.Activation(
            F.elemwise_add(self.body(x), shortcut, name="add"), act_type="relu", name="relu"
        )


class ResNet(nn.HybridBlock):
    """ResNet for images in `layout` (a Layout): 7x7/2 conv stem and 3x3/2 max pool, four
    stages of residual blocks (the first block of stages 2-4 halves the resolution), global
    average pool and a dense layer to `classes` logits."""

    def __init__(self, depth, version, classes, zero_init_last_gamma, layout):
        super().__init__(prefix="")
        self.depth = depth
        self.version = version
        self.classes = classes
        self.layout = layout
        expansion = BOTTLENECK_EXPANSION if depth in BOTTLENECK_DEPTHS else 1
        with self.name_scope():
            self.features = nn.HybridSequential(prefix="")
            stem = nn.HybridSequential(prefix="stem_")
            with stem.name_scope():
                conv, bn = conv_bn(STEM_CHANNELS, 7, 2, INPUT_CHANNELS[layout.name], False, layout)
                stem.add(conv, bn, nn.Activation("relu", prefix="relu_"))
                stem.add(
                    nn.MaxPool2D(
                        pool_size=3, strides=2, padding=1, layout=layout.name, prefix="pool_"
                    )
                )
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
                                *(layers, channels, stride, zero_init_last_gamma, layout),
                                f"block{block}_",
                            )
                        )
                        channels = width * expansion
                self.features.add(layer)
            self.features.add(nn.GlobalAvgPool2D(layout=layout.name, prefix="pool_"))
            self.output = nn.Dense(
                classes, in_units=channels, weight_initializer=he_normal(), prefix="fc_"
            )

    def hybrid_forward(self, F, x):
        return self.output(self.features(x))


def resnet(depth=50, version="1.5", classes=1000, zero_init_last_gamma=False, layout=None):
    """A ResNet of `depth` 18/34 (basic blocks) or 50/101/152 (bottlenecks), `version` "1" or
    "1.5", with `classes` outputs, in `layout` (a Layout; None: NCHW); zero_init_last_gamma
    starts the last BN of every residual block at gamma 0, so every residual branch starts
    at zero. Parameters are not yet allocated: call initialize()."""
    if depth not in BLOCKS_PER_STAGE:
        raise UserError(f"network.depth must be one of {sorted(BLOCKS_PER_STAGE)}, not {depth!r}")
    if str(version) not in VERSIONS:
        raise UserError(f"network.version must be one of {VERSIONS}, not {version!r}")
    if not isinstance(classes, numbers.Integral) or classes < 1:
        raise UserError(f"the number of classes must be a positive integer, not {classes!r}")
    layout = layout or Layout()
    if layout.name not in LAYOUTS:
        raise UserError(f"network.layout must be one of {LAYOUTS}, not {layout.name!r}")
    return ResNet(depth, str(version), int(classes), bool(zero_init_last_gamma), layout)


def initialize(net, contexts):
    """Allocate and initialise the parameters on every context (data-parallel replicas);
    each parameter carries its own initialiser (He-normal weights, BN gamma 1 or 0, beta
    and biases 0). Returns the net."""
    net.initialize(ctx=list(contexts))
    return net


def layout_on(name, contexts):
    """The Layout `name` for a network on `contexts`: NHWC convolutions by transpose on the
    CPU, where MXNet has none (NHWCConvByTranspose)."""
    on_cpu = any(context.device_type == "cpu" for context in contexts)
    return Layout(name, by_transpose=name == "NHWC" and on_cpu)


def build(network_settings, classes, contexts, dtype="float32"):
    """The configured network (settings.Network) in its layout for `dtype`, initialised on
    every context, cast to `dtype` (BatchNorm stays float32) and hybridized: what training
    and the benchmarks run. MXNet's random seed, set before, decides the initial weights."""
    layout = layout_on(network_settings.layout_for(dtype), contexts)
    net = initialize(
        resnet(
            network_settings.depth,
            network_settings.version,
            classes,
            network_settings.zero_init_last_gamma,
            layout,
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


def arrays_in_layout(arrays, source, target):
    """Parameter arrays {name: NDArray} of a network in layout `source` as a network in
    `target` holds them: conv weights (the 4-d arrays) OIHW in NCHW and OHWI in NHWC, the stem's
    weights for 3 input channels in NCHW and for 4 in NHWC. The 4th input channel of NHWC
    is DALI's zero padding, so its weights never reach an output: leaving them out (and
    filling them with zeros) changes nothing the network computes."""
    if source == target:
        return dict(arrays)
    converted = {}
    for name, array in arrays.items():
        if array.ndim == 4 and target == "NCHW":
            array = array.transpose(OHWI_TO_OIHW)
            if name.endswith(STEM_WEIGHT):
                array = array[:, :IMAGE_CHANNELS]
        elif array.ndim == 4:
            if name.endswith(STEM_WEIGHT):
                padding = INPUT_CHANNELS["NHWC"] - array.shape[1]
                zeros = mx.nd.zeros((array.shape[0], padding, *array.shape[2:]), dtype=array.dtype)
                array = mx.nd.concat(array, zeros.as_in_context(array.context), dim=1)
            array = array.transpose(OIHW_TO_OHWI)
        converted[name] = array
    return converted


def export_checkpoint(net, prefix, epoch, trainer=None):
    """Write `<prefix>-symbol.json` and `<prefix>-<epoch:04d>.params`, each atomically, in
    the format of mx.model.save_checkpoint; return their paths.

    The checkpoint is the NCHW network with float32 weights whatever `net` runs in: the
    graph is its NCHW twin's and the weights are converted (arrays_in_layout), so the files
    do not depend on the layout, and any tool that reads MXNet checkpoints (load_checkpoint,
    the ONNX export) sees the usual ResNet. With `trainer`, weights the optimizer keeps a
    float32 master copy of (float16 training) are saved from that copy rather than from the
    rounded float16 weights. BN running statistics are averaged over the devices.
    """
    # A fresh NCHW twin gives the graph: the same text for either layout, and for a network
    # that has run or not (a run network's graph numbers its BN statistics differently).
    symbol = inference_symbol(resnet(net.depth, net.version, net.classes))
    arguments = set(symbol.list_arguments())
    auxiliaries = set(symbol.list_auxiliary_states())
    arrays = {}
    parameters = arrays_in_layout(float32_parameters(net, trainer), net.layout.name, "NCHW")
    for name, array in parameters.items():
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


def load_for_inference(prefix, epoch, contexts, dtype="float32", network_settings=None):
    """A network of a checkpoint on `contexts`, run in `dtype`: float16 casts weights and
    activations to float16 and keeps BatchNorm parameters in float32.

    network_settings None: the checkpoint's own graph (NCHW) as a SymbolBlock. Else the
    network of those settings (settings.Network) in its layout for `dtype`, with the
    checkpoint's weights converted to that layout (arrays_in_layout); its number of
    classes is the checkpoint's.
    """
    symbol_path, params_path = checkpoint_paths(prefix, epoch)
    if network_settings is not None:
        return _rebuilt_for_inference(params_path, contexts, dtype, network_settings)
    with warnings.catch_warnings():
        # The exported graph leaves every type to its input (see inference_symbol), which
        # SymbolBlock reports as a warning; the types are fixed by the first batch.
        warnings.filterwarnings("ignore", "Cannot decide type", UserWarning)
        net = gluon.SymbolBlock.imports(symbol_path, [INPUT_NAME], params_path, ctx=list(contexts))
    if dtype != "float32":
        net.cast(dtype)  # SymbolBlock.cast puts BatchNorm parameters back to float32
    return net


def _rebuilt_for_inference(params_path, contexts, dtype, network_settings):
    saved = {name.split(":", 1)[1]: array for name, array in mx.nd.load(params_path).items()}
    if "fc_weight" not in saved:
        raise UserError(f"{params_path}: no fc_weight, not a checkpoint of this ResNet")
    layout = layout_on(network_settings.layout_for(dtype), contexts)
    net = resnet(
        network_settings.depth, network_settings.version, saved["fc_weight"].shape[0], False, layout
    )
    params = net.collect_params()
    differing = sorted(set(params.keys()) ^ set(saved))
    if differing:
        raise UserError(f"{params_path}: parameters not those of the network: {differing[:5]}")
    initialize(net, contexts)
    for name, array in arrays_in_layout(saved, "NCHW", layout.name).items():
        params[name].set_data(array)
    cast_network(net, dtype)
    return net
