"""ONNX export: a trained run as one float32 NCHW `model.onnx` for onnxruntime, TensorRT and
Triton, with the input it expects written into the model's metadata.

    export_run(path, run_dir=..., epoch=None, classes_tsv=...)   a training run's checkpoint
    export_network(net, path, pipeline_settings=, metadata=)     any Gluon ResNet of network.py
                                                                 (settings.InputPipeline)
    read_metadata(path)                                          the metadata back, decoded

Whatever dtype and layout a run trained in, its checkpoint holds the float32 NCHW weights
(network.export_checkpoint), so the export loads them into the float32 NCHW network of the
run's network settings and exports that graph: MXNet's exporter takes NCHW convolution and
BatchNorm on axis 1 only and no float16 graph. A network in memory, in any layout and
dtype, is exported through its float32 NCHW twin in the same way.

The graph has one input, `data` (float32, batch x 3 x size x size, any batch size), and one
output, `logits` (float32, batch x classes, before any softmax). Its weights are constant
initializers only, never graph inputs: onnxruntime folds constants only then (it warns about
every weight otherwise), and a serving stack sees the one input there is.
"""

import json
import logging
import os
import tempfile

import mxnet as mx
import numpy as np
import onnx

from resnet_recipe.data.listing import read_classes
from resnet_recipe.files.atomic_files import atomic_path
from resnet_recipe.files.user_errors import UserError
from resnet_recipe.model import network
from resnet_recipe.model.precision import float32_parameters
from resnet_recipe.scoring import evaluation
from resnet_recipe.workflow_support.settings import InputPipeline, Network

log = logging.getLogger(__name__)

INPUT_NAME = network.INPUT_NAME
OUTPUT_NAME = "logits"
BATCH_DIMENSION = "batch"
LAYOUT = "NCHW"
# Metadata values are strings; these keys hold JSON (lists and numbers), the rest text.
JSON_METADATA = ("image_size", "resize_shorter", "mean", "std", "class_labels", "epoch")
REQUIRED_METADATA = ("input_name", "output_name", "layout", "image_size", "mean", "std")
PREPROCESSING = (
    "decode to RGB, resize the shorter side to resize_shorter, center-crop image_size x "
    "image_size, subtract mean and divide by std per channel (0-255 pixel values), "
    "channels first (NCHW)"
)


def export_run(model_path, *, run_dir, epoch, classes_tsv):
    """Export a training run's checkpoint of `epoch` (the config's score.epoch; None: the
    final one) to model_path, with the run's input settings and the class labels of
    classes_tsv in the metadata. Returns the metadata."""
    report = evaluation.read_run_report(run_dir)
    where = os.path.join(run_dir, "report.json")
    network_settings = Network.from_config(report["network"], f"{where}: network")
    pipeline_settings = InputPipeline.from_config(report["pipeline"], f"{where}: pipeline")
    epoch = evaluation.chosen_epoch(run_dir, epoch)
    labels = class_labels(classes_tsv, report["classes"])
    # A checkpoint holds the float32 NCHW network whatever the run trained in
    # (network.export_checkpoint): loaded as that, with every weight checked by name.
    net = network.load_for_inference(
        os.path.join(run_dir, evaluation.MODEL_PREFIX),
        epoch,
        [mx.cpu()],
        "float32",
        network_settings.replace(layout={"float32": LAYOUT}),
    )
    metadata = {
        "run": report["run"],
        "epoch": epoch,
        "trained_dtype": report["dtype"],
        "trained_layout": network_settings.layout_for(report["dtype"]),
        "network": network_settings.model_name,
        "class_labels": labels,
    }
    return export_network(net, model_path, pipeline_settings=pipeline_settings, metadata=metadata)


def class_labels(classes_tsv, classes):
    """The synsets of classes_tsv in label order, checked against the network's outputs."""
    by_synset = read_classes(classes_tsv)
    if len(by_synset) != classes:
        raise UserError(
            f"{classes_tsv} lists {len(by_synset)} classes, the trained network has {classes}"
        )
    return sorted(by_synset, key=by_synset.get)


def float32_nchw(net):
    """The float32 NCHW twin, on the CPU, of a Gluon ResNet of network.py in any layout and
    dtype: its weights in float32 (BatchNorm statistics averaged over its devices) and in
    NCHW order, the stem without NHWC's 4th (zero padding) input channel."""
    twin = network.initialize(
        network.resnet(net.depth, net.version, net.classes, layout=network.Layout(LAYOUT)),
        [mx.cpu()],
    )
    arrays = network.arrays_in_layout(float32_parameters(net), net.layout.name, LAYOUT)
    for name, param in twin.collect_params().items():
        param.set_data(arrays[name])
    return twin


def export_network(net, model_path, *, pipeline_settings, metadata):
    """Export an initialised Gluon ResNet of network.py, in any layout and dtype, as its
    float32 NCHW twin (float32_nchw) to model_path, atomically, with `metadata` (values:
    text or JSON-able) and the input that the validation pipeline of pipeline_settings
    (settings.InputPipeline) prepares added to it. Returns the metadata as written,
    decoded."""
    image_size = pipeline_settings.image_size
    net = float32_nchw(net)
    symbol = network.inference_symbol(net)
    params = {name: param.data() for name, param in net.collect_params().items()}
    shape = (1, 3, image_size, image_size)
    with tempfile.TemporaryDirectory(prefix="onnx-export-") as folder:
        raw_path = os.path.join(folder, "exported.onnx")
        mx.onnx.export_model(
            symbol,
            params,
            in_shapes=[shape],
            in_types=[np.float32],
            onnx_file_path=raw_path,
            dynamic=True,
            dynamic_input_shapes=[(None, *shape[1:])],
        )
        model = onnx.load(raw_path)
    servable_graph(model.graph, net.classes)
    full = {
        **metadata,
        "input_name": INPUT_NAME,
        "output_name": OUTPUT_NAME,
        "layout": LAYOUT,
        "image_size": image_size,
        "resize_shorter": pipeline_settings.val_resize,
        "mean": list(pipeline_settings.mean),
        "std": list(pipeline_settings.std),
        "dtype": "float32",
        "channel_order": "RGB",
        "preprocessing": PREPROCESSING,
        "output": "logits, one per class in the order of class_labels; softmax not applied",
    }
    onnx.helper.set_model_props(model, {key: encode(key, value) for key, value in full.items()})
    model.producer_name = "resnet_recipe"
    model.doc_string = f"{full.get('network', 'ResNet')} classifier exported from MXNet"
    onnx.checker.check_model(model)
    with atomic_path(model_path) as tmp:
        onnx.save(model, tmp)
    log.info(
        "%s: ONNX opset %d, input %s %s, %d bytes",
        model_path,
        model.opset_import[0].version,
        INPUT_NAME,
        ["batch", *shape[1:]],
        os.path.getsize(model_path),
    )
    return read_metadata(model_path)


def servable_graph(graph, classes):
    """Make the exporter's graph take only `data` and give `logits` (batch x classes), its
    batch dimension named.

    MXNet's exporter also lists every weight as a graph input with a default value, which
    keeps onnxruntime from folding constants and shows serving stacks hundreds of inputs.
    """
    weights = {initializer.name for initializer in graph.initializer}
    inputs = [value for value in graph.input if value.name not in weights]
    if [value.name for value in inputs] != [INPUT_NAME] or len(graph.output) != 1:
        raise ValueError(
            f"the exported graph has inputs {[v.name for v in inputs]} and outputs "
            f"{[v.name for v in graph.output]}, expected {INPUT_NAME} and one output"
        )
    del graph.input[:]
    graph.input.extend(inputs)
    exported_output = graph.output[0].name
    for node in graph.node:
        for index, name in enumerate(node.output):
            if name == exported_output:
                node.output[index] = OUTPUT_NAME
    graph.output[0].name = OUTPUT_NAME
    graph.input[0].type.tensor_type.shape.dim[0].dim_param = BATCH_DIMENSION
    # The exporter leaves the output's shape unknown; serving stacks read it from here.
    shape = graph.output[0].type.tensor_type.shape
    del shape.dim[:]
    shape.dim.add().dim_param = BATCH_DIMENSION
    shape.dim.add().dim_value = classes


def encode(key, value):
    return json.dumps(value) if key in JSON_METADATA else str(value)


def read_metadata(model_path):
    """The metadata of an exported model, JSON values decoded; a clear error naming the file
    when it is not one of ours."""
    try:
        model = onnx.load(model_path, load_external_data=False)
    except FileNotFoundError:
        raise UserError(f"{model_path}: ONNX model not found") from None
    except Exception as error:  # onnx raises protobuf's DecodeError for a damaged file
        raise UserError(f"{model_path}: not a readable ONNX model ({error})") from None
    metadata = {prop.key: prop.value for prop in model.metadata_props}
    missing = [key for key in REQUIRED_METADATA if key not in metadata]
    if missing:
        raise UserError(f"{model_path}: the ONNX metadata lacks {missing}")
    return {
        key: json.loads(value) if key in JSON_METADATA else value for key, value in metadata.items()
    }
