"""onnxruntime inference of an exported model: parity with MXNet, and throughput.

    score_onnx(path, model_path=, run_dir=, ...)       parity JSON of a run's model.onnx
    bench_infer_onnxruntime(path, setup, batch_size=, ...) one onnxruntime inference point

Both results are written through results.write (contracts ONNX_PARITY and
BENCH_INFER_ENGINE), with their provenance like every result.

Parity: one pass of the validation pipeline that scores the run's MXNet checkpoint (float32,
on the CPU) and its model.onnx (onnxruntime's CPU provider) on the very same batches, so the
two engines see identical input tensors. onnxruntime's loss, top-1 and top-5 come from the
same evaluate() as MXNet scoring; for each real image (never the padding of a last batch)
it also counts whether both engines predict the same class, and keeps the largest absolute
difference between their logits. A difference above the tolerance fails the job.

Throughput: measured by the MXNet inference point's own code (throughput.time_inference,
see throughput's docstring) on a freshly initialised float32 NCHW network of the configured
settings, exported to ONNX: epochs of batches whose ends are not waited for, each epoch's
first batch left out, the harmonic mean after the warmup epochs; then a pass that times
each batch from asking the validation pipeline for it to its logits. An onnxruntime run()
returns only when its outputs are ready, so in the first measurement each batch ends
finished as well: there is no queue of unwaited work to overlap with the next batch's
loading, as MXNet's asynchronous engine has. The input tensor is copied from DALI's output
into numpy and the logits back into an NDArray on the way; both count in the timing, as
data loading does.
"""

import logging
import os
import tempfile
import time

import mxnet as mx
import numpy as np
import onnxruntime

from resnet_recipe.benchmarking import point_logs, throughput
from resnet_recipe.benchmarking.throughput import INFERENCE_WEIGHTS
from resnet_recipe.data import pipelines
from resnet_recipe.data.listing import read_classes
from resnet_recipe.deployment import onnx_export
from resnet_recipe.files.user_errors import UserError
from resnet_recipe.model import network
from resnet_recipe.scoring import evaluation
from resnet_recipe.workflow_support import results

log = logging.getLogger(__name__)

ENGINE = "onnxruntime"
PROVIDER = "CPUExecutionProvider"
# The settings of the input pipeline that the exported model's metadata must agree with.
CHECKED_INPUT = {
    "image_size": "image_size",
    "val_resize": "resize_shorter",
    "mean": "mean",
    "std": "std",
}


def open_session(model_path, threads):
    """An onnxruntime CPU session of model_path with `threads` intra-op threads."""
    if not os.path.isfile(model_path):
        raise UserError(f"{model_path}: ONNX model not found")
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return onnxruntime.InferenceSession(model_path, options, providers=[PROVIDER])


class OnnxruntimeForward:
    """A session called like the Gluon network: NDArray batch in, NDArray logits out (on the
    batch's context), so evaluate() and the benchmark's timed loop drive it unchanged."""

    def __init__(self, session):
        self.session = session

    def __call__(self, data):
        logits = self.session.run(
            [onnx_export.OUTPUT_NAME], {onnx_export.INPUT_NAME: data.asnumpy()}
        )[0]
        return mx.nd.array(logits, ctx=data.context)


class ComparedBatches:
    """One device's validation batches for evaluate(compared.forward, compared, classes):
    forward returns onnxruntime's logits, and runs MXNet on the same tensor to count, over
    each batch's real images, same predictions, MXNet's top-1/top-k hits and the largest
    absolute logit difference."""

    def __init__(self, batches, onnx_forward, mxnet_net, classes):
        self.batches = batches
        self.contexts = batches.contexts
        self.onnx_forward = onnx_forward
        self.mxnet_net = mxnet_net
        self.top_k = min(evaluation.TOP_K, classes)
        self.images = 0
        self.same_predictions = 0
        self.mxnet_hits = {1: 0, self.top_k: 0}
        self.max_difference = 0.0
        self.max_logit = 0.0
        self._batch = None

    def __len__(self):
        return len(self.batches)

    def __iter__(self):
        for device_batches in self.batches:
            self._batch = device_batches[0]
            yield device_batches

    def forward(self, data):
        onnx_logits = self.onnx_forward(data)
        mxnet_logits = self.mxnet_net(data)
        valid = self._batch.valid
        label = self._batch.label[:valid]
        for k in self.mxnet_hits:
            self.mxnet_hits[k] += int(
                evaluation.top_k_hits(mxnet_logits[:valid], label, k).asscalar()
            )
        onnx_values = onnx_logits.asnumpy()[:valid]
        mxnet_values = mxnet_logits.asnumpy()[:valid]
        same = onnx_values.argmax(axis=1) == mxnet_values.argmax(axis=1)
        self.same_predictions += int(same.sum())
        self.images += valid
        difference = float(np.abs(onnx_values - mxnet_values).max())
        self.max_difference = max(self.max_difference, difference)
        self.max_logit = max(self.max_logit, float(np.abs(mxnet_values).max()))
        return onnx_logits

    def summary(self, onnx_metrics):
        """The parity fields, given evaluate()'s metrics of the onnxruntime logits."""
        return {
            "images": self.images,
            "onnxruntime": {
                "top1": onnx_metrics["top1"],
                "top5": onnx_metrics[f"top{evaluation.TOP_K}"],
                "loss": onnx_metrics["loss"],
                "version": onnxruntime.__version__,
                "provider": PROVIDER,
            },
            "mxnet": {
                "top1": self.mxnet_hits[1] / self.images,
                "top5": self.mxnet_hits[self.top_k] / self.images,
                "dtype": "float32",
                "device": str(self.contexts[0]),
                "version": mx.__version__,
            },
            "same_prediction_fraction": self.same_predictions / self.images,
            "max_abs_logit_difference": self.max_difference,
            "max_abs_logit": self.max_logit,
        }


def checked_metadata(model_path, run_dir, epoch, pipeline_settings):
    """(metadata of model_path, the epoch scored), once the model is known to hold run_dir's
    checkpoint of `epoch` (None: the final one) and to take the pipeline's images."""
    metadata = onnx_export.read_metadata(model_path)
    epoch = evaluation.chosen_epoch(run_dir, epoch)
    if metadata.get("epoch") != epoch:
        raise UserError(
            f"{model_path} holds epoch {metadata.get('epoch')} of its run, {run_dir} is scored "
            f"at epoch {epoch}: export it again"
        )
    check_input_settings(model_path, metadata, pipeline_settings)
    return metadata, epoch


def check_input_settings(model_path, metadata, pipeline_settings):
    """The pipeline must prepare images as the model's metadata says it was trained on."""
    for setting, key in CHECKED_INPUT.items():
        value = getattr(pipeline_settings, setting)
        if np.any(np.asarray(metadata[key]) != np.asarray(value)):
            raise UserError(
                f"{model_path}: its metadata {key} is {metadata[key]}, but input.{setting} is "
                f"{value}: scoring would feed it differently prepared images"
            )


def score_onnx(
    result_path,
    *,
    model_path,
    run_dir,
    val_rec,
    val_idx,
    score_settings,
    pipeline_settings,
    onnx_settings,
    threads,
    run,
):
    """Parity of model_path (exported from run_dir's checkpoint of score_settings.epoch;
    None: the final one) with MXNet on the validation records in batches of score_settings'
    float32 batch size (both engines run float32), into result_path (see the module
    docstring). Fails when the
    largest logit difference is above onnx_settings.logit_tolerance. score_settings:
    settings.Score; pipeline_settings: settings.InputPipeline; onnx_settings: settings.Onnx."""
    metadata, epoch = checked_metadata(model_path, run_dir, score_settings.epoch, pipeline_settings)
    classes = len(metadata["class_labels"])
    prefix = os.path.join(run_dir, evaluation.MODEL_PREFIX)
    mxnet_net = network.load_for_inference(prefix, epoch, [mx.cpu()])
    mxnet_net.hybridize(static_alloc=True, static_shape=True)
    batch_size = score_settings.batch_size_of("float32")
    batches = pipelines.val_batches(
        val_rec,
        val_idx,
        [mx.cpu()],
        batch_per_device=batch_size,
        settings=pipeline_settings,
        num_classes=classes,
    )
    session = open_session(model_path, threads)
    compared = ComparedBatches(batches, OnnxruntimeForward(session), mxnet_net, classes)
    log.info(
        "%s vs MXNet: %d batches of %d, %d threads", model_path, len(batches), batch_size, threads
    )
    metrics = evaluation.evaluate(compared.forward, compared, classes)
    tolerance = onnx_settings.logit_tolerance
    result = {
        "run": run,
        "model": model_path,
        "checkpoint": {"prefix": prefix, "epoch": epoch},
        "batch_size": batch_size,
        "classes": classes,
        **compared.summary(metrics),
        "logit_tolerance": tolerance,
    }
    check_agreement(model_path, result)
    made_with = {
        "run": run,
        "epoch": epoch,
        "batch_size": batch_size,
        "pipeline": pipeline_settings.to_config(),
        "onnx": onnx_settings.to_config(),
    }
    return results.write(result_path, results.ONNX_PARITY, result, made_with)


def check_agreement(model_path, result):
    """Log how far the engines agree in a parity result; stop when their logits differ by
    more than its logit_tolerance."""
    difference, tolerance = result["max_abs_logit_difference"], result["logit_tolerance"]
    log.info(
        "%s: same prediction on %.4f of %d images, largest logit difference %.3g; top-1 "
        "onnxruntime %.4f, MXNet %.4f",
        *(model_path, result["same_prediction_fraction"], result["images"], difference),
        *(result["onnxruntime"]["top1"], result["mxnet"]["top1"]),
    )
    if difference > tolerance:
        raise UserError(
            f"{model_path}: onnxruntime's logits differ from MXNet's by up to "
            f"{difference:.3g}, above onnx.logit_tolerance {tolerance}"
        )


def initialised_model(network_settings, classes, pipeline_settings, threads):
    """OnnxruntimeForward of a freshly initialised network of network_settings, exported
    to ONNX like a trained run (throughput needs no trained weights)."""
    nchw = network_settings.replace(layout={"float32": onnx_export.LAYOUT})
    net = network.build(nchw, classes, [mx.cpu()])
    with tempfile.TemporaryDirectory(prefix="onnx-bench-") as folder:
        model_path = os.path.join(folder, "model.onnx")
        metadata = {"weights": INFERENCE_WEIGHTS}
        onnx_export.export_network(
            net, model_path, pipeline_settings=pipeline_settings, metadata=metadata
        )
        return OnnxruntimeForward(open_session(model_path, threads))


def bench_infer_onnxruntime(
    result_path, setup, *, batch_size, bench_settings, threads, clock=time.perf_counter
):
    """onnxruntime CPU inference throughput and per-batch latency of one batch size, in
    float32 NCHW, into result_path: the point of throughput.bench_infer, measured by its
    own throughput.time_inference, with the engine `onnxruntime`. setup: a
    throughput.BenchSetup of the validation split; bench_settings: settings.BenchInfer
    (its gpus is not used: onnxruntime runs on the CPU here)."""
    bench = bench_settings
    what = f"onnxruntime inference benchmark float32 b{batch_size}"
    input_settings, data = setup.input(bench.data)
    classes = len(read_classes(setup.classes_tsv))
    forward = initialised_model(setup.network, classes, input_settings, threads)
    stream = dict(batch_per_device=batch_size, settings=input_settings, num_classes=classes)
    log.info(
        "%s: %d epochs of %d batches (%d warmup epochs), then %d batches, %s data, %d threads",
        *(what, bench.epochs, bench.iterations, bench.warmup_epochs),
        *(bench.latency_iterations, input_settings.backend, threads),
    )
    numbers = throughput.time_inference(
        forward, setup.val_stream([mx.cpu()], stream), bench, batch_size, clock
    )
    recorded = setup.recorded(input_settings, data, "float32")
    recorded["layout"] = onnx_export.LAYOUT  # the exported graph's, whatever the config's
    recorded["versions"]["onnxruntime"] = onnxruntime.__version__
    result = {
        "kind": "infer",
        "engine": ENGINE,
        "provider": PROVIDER,
        "threads": threads,
        "dtype": "float32",
        "gpus": 0,
        "device": str(mx.cpu()),
        "batch_size": batch_size,
        "weights": INFERENCE_WEIGHTS,
        **numbers,
        **recorded,
    }
    made_with = {
        "point": {"engine": ENGINE, "batch_size": batch_size, "threads": threads},
        "bench": bench.to_config(),
        **setup.made_with(input_settings),
    }
    result = results.write(result_path, results.BENCH_INFER_ENGINE, result, made_with)
    point_logs.write_beside(result_path, result)
    throughput.log_inference_point(what, result)
    return result
