"""Images/s of onnxruntime (CPU) against MXNet (CPU) on the same network and batches.

Both engines run the inference benchmark's own loop (timing.time_forward: each batch
timed from asking the pipeline for it to its output being ready) over the same synthetic
batches: MXNet the network as bench_infer builds it (network.build, hybridized), onnxruntime
that very network exported by onnx_export.export_network and driven through
onnx_inference.OnnxruntimeForward, as bench_infer_onnx does. Rounds interleave the two in
alternating order; the ratio is the median of the per-round ratios, so that other load on
the machine, which hits neighbours alike, does not decide it.

    .venv/bin/python benchmarks/onnxruntime_inference.py [--depth 50] [--image-size 32] \
        [--batch 1 8 32] [--threads 2]
"""

import argparse
import os
import statistics
import tempfile

import mxnet as mx
from pipeline_throughput import imagenet_sized_jpegs, write_rec

from resnet_recipe import network, onnx_export, onnx_inference, pipelines, timing
from resnet_recipe.settings import InputPipeline, Network

CLASSES = 10


def images_per_s(forward, batches, batch):
    _seconds, total = timing.time_forward(forward, batches)
    return len(batches) * batch / total


def measure(batch, args, rec, idx, folder):
    """{engine: [images/s per round]} at one batch size."""
    settings = InputPipeline(
        backend="synthetic", image_size=args.image_size, val_resize=args.image_size
    )
    net_settings = Network(depth=args.depth)
    mx.random.seed(0)
    net = network.build(net_settings, CLASSES, [mx.cpu()])
    model_path = os.path.join(folder, f"b{batch}.onnx")
    onnx_export.export_network(net, model_path, pipeline_settings=settings, metadata={})
    engines = {
        "mxnet": net,
        "onnxruntime": onnx_inference.OnnxruntimeForward(
            onnx_inference.open_session(model_path, args.threads)
        ),
    }
    batches = pipelines.val_batches(
        rec,
        idx,
        [mx.cpu()],
        batch_per_device=batch,
        settings=settings,
        iterations=args.iterations,
        num_classes=CLASSES,
    )
    for forward in engines.values():
        for _ in range(args.warmup):
            forward(next(iter(batches))[0].data).wait_to_read()
    rates = {name: [] for name in engines}
    for round_index in range(args.rounds):
        order = list(engines) if round_index % 2 == 0 else list(reversed(engines))
        for name in order:
            rates[name].append(images_per_s(engines[name], batches, batch))
    return rates


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depth", type=int, default=50)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="onnxruntime's")
    parser.add_argument("--iterations", type=int, default=10, help="timed batches per round")
    parser.add_argument("--warmup", type=int, default=3, help="untimed batches per engine")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    print(
        f"ResNet-{args.depth} v1.5, float32, {args.image_size} px, CPU, {args.rounds} "
        f"interleaved rounds of {args.iterations} batches; MXNet OMP_NUM_THREADS="
        f"{os.environ.get('OMP_NUM_THREADS', 'unset')}, onnxruntime {args.threads} threads"
    )
    with tempfile.TemporaryDirectory() as folder:
        # The synthetic backend draws its tensors itself but wants a record file to exist.
        rec, idx = write_rec(imagenet_sized_jpegs(4), f"{folder}/placeholder")
        for batch in args.batch:
            rates = measure(batch, args, rec, idx, folder)
            ratio = statistics.median(
                o / m for o, m in zip(rates["onnxruntime"], rates["mxnet"], strict=True)
            )
            medians = {name: statistics.median(values) for name, values in rates.items()}
            print(
                f"batch {batch:>3}: mxnet {medians['mxnet']:.1f}, onnxruntime "
                f"{medians['onnxruntime']:.1f} images/s; onnxruntime / mxnet {ratio:.2f}"
            )


if __name__ == "__main__":
    main()
