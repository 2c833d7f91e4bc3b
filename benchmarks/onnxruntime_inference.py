"""Images/s of onnxruntime (CPU) against MXNet (CPU) on the same network and batches.

Both engines are measured by the inference benchmark's own code (throughput.
time_inference: epochs of batches whose ends are not waited for, each epoch's first batch
left out, harmonic mean after the warmup epoch; then a pass waiting for every batch) over
the same synthetic batches: MXNet the network as bench_infer builds it (network.build,
hybridized), onnxruntime that very network exported by onnx_export.export_network and
driven through onnx_inference.OnnxruntimeForward, as bench_infer_onnx does. onnxruntime's
run() is synchronous, so its unwaited batches end finished; MXNet's engine overlaps them
with the next batch. Rounds interleave the two in alternating order; each ratio is the
median of the per-round ratios, so that other load on the machine, which hits neighbours
alike, does not decide it.

    .venv/bin/python benchmarks/onnxruntime_inference.py [--depth 50] [--image-size 32] \
        [--batch 1 8 32] [--threads 2]
"""

import argparse
import os
import statistics
import tempfile

import mxnet as mx
from pipeline_throughput import imagenet_sized_jpegs, write_rec

from resnet_recipe.benchmarking import throughput
from resnet_recipe.data import pipelines
from resnet_recipe.deployment import onnx_export, onnx_inference
from resnet_recipe.model import network
from resnet_recipe.workflow_support.settings import BenchInfer, InputPipeline, Network

CLASSES = 10
# The two numbers of an inference point that the ratios compare.
MEASURES = ("images_per_s", "latency_images_per_s")


def measure(batch, args, rec, idx, folder):
    """{engine: {measure: [value per round]}} at one batch size."""
    settings = InputPipeline(
        backend="synthetic", image_size=args.image_size, val_resize=args.image_size
    )
    mx.random.seed(0)
    net = network.build(Network(depth=args.depth), CLASSES, [mx.cpu()])
    model_path = os.path.join(folder, f"b{batch}.onnx")
    onnx_export.export_network(net, model_path, pipeline_settings=settings, metadata={})
    engines = {
        "mxnet": net,
        "onnxruntime": onnx_inference.OnnxruntimeForward(
            onnx_inference.open_session(model_path, args.threads)
        ),
    }
    bench = BenchInfer(
        data="synthetic",
        iterations=args.iterations,
        epochs=args.epochs,
        warmup_epochs=1,
        latency_iterations=args.iterations,
        gpus=0,
    )

    def batches_of(iterations):
        return pipelines.val_batches(
            rec,
            idx,
            [mx.cpu()],
            batch_per_device=batch,
            settings=settings,
            iterations=iterations,
            num_classes=CLASSES,
        )

    rates = {name: {measure: [] for measure in MEASURES} for name in engines}
    for round_index in range(args.rounds):
        order = list(engines) if round_index % 2 == 0 else list(reversed(engines))
        for name in order:
            point = throughput.time_inference(engines[name], batches_of, bench, batch)
            for measure in MEASURES:
                rates[name][measure].append(point[measure])
    return rates


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depth", type=int, default=50)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="onnxruntime's")
    parser.add_argument("--iterations", type=int, default=10, help="batches per epoch")
    parser.add_argument("--epochs", type=int, default=3, help="per round, the first warmup")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    print(
        f"ResNet-{args.depth} v1.5, float32, {args.image_size} px, CPU, {args.rounds} "
        f"interleaved rounds of {args.epochs} epochs of {args.iterations} batches and a "
        f"waited pass of {args.iterations}; MXNet OMP_NUM_THREADS="
        f"{os.environ.get('OMP_NUM_THREADS', 'unset')}, onnxruntime {args.threads} threads"
    )
    with tempfile.TemporaryDirectory() as folder:
        # The synthetic backend draws its tensors itself but wants a record file to exist.
        rec, idx = write_rec(imagenet_sized_jpegs(4), f"{folder}/placeholder")
        for batch in args.batch:
            rates = measure(batch, args, rec, idx, folder)
            for measure_name in MEASURES:
                onnx, mxnet = rates["onnxruntime"][measure_name], rates["mxnet"][measure_name]
                ratio = statistics.median(o / m for o, m in zip(onnx, mxnet, strict=True))
                print(
                    f"batch {batch:>3} {measure_name}: mxnet {statistics.median(mxnet):.1f}, "
                    f"onnxruntime {statistics.median(onnx):.1f}; onnxruntime / mxnet "
                    f"{ratio:.2f}"
                )


if __name__ == "__main__":
    main()
