"""Images/s of our inference benchmark loops against bare MXNet forward loops.

Ours: the network as bench_infer builds it (network.build) and its two loops, over
synthetic batches from resnet_recipe.data.pipelines: the throughput loop
(timing.time_batch_ends: batches not waited for, the first of each epoch left out, one wait
closing the epoch, as the original benchmark.py measured) and the latency loop
(timing.time_forward: every batch waited for). Bare: the same ResNet built with plain Gluon
calls, hybridized the same way, `net(x)` over one fixed array; one bare loop waits once at
the end only (the baseline of the throughput loop), the other waits for every output (the
baseline of the latency loop). Same batch, dtype (float32: MXNet has no float16
convolution on the CPU), image size and layout, on the CPU, in one process. Rounds
interleave the loops in alternating order; each ratio is the median of the per-round
ratios, so that other load on the machine, which hits neighbours alike, does not decide it.

    .venv/bin/python benchmarks/inference_loop.py [--depth 50] [--image-size 112] [--batch 16]
"""

import argparse
import statistics
import tempfile
import time

import mxnet as mx
from pipeline_throughput import imagenet_sized_jpegs, write_rec

from resnet_recipe.benchmarking import throughput
from resnet_recipe.data import pipelines
from resnet_recipe.data.input_layout import input_shape
from resnet_recipe.model import network
from resnet_recipe.scoring import timing
from resnet_recipe.workflow_support.settings import LAYOUTS, InputPipeline, Network

CLASSES = 1000
DTYPE = "float32"


def ours_unwaited(net, batches, batch):
    (seconds_per_batch,) = timing.time_batch_ends(throughput.run_forward(net), batches, 1)
    return batch / seconds_per_batch


def ours_waited(net, batches, batch):
    _seconds, total = timing.time_forward(net, batches)
    return len(batches) * batch / total


def bare(net, data, iterations, wait_each):
    start = time.perf_counter()
    for _ in range(iterations):
        output = net(data)
        if wait_each:
            output.wait_to_read()
    mx.nd.waitall()
    return iterations * data.shape[0] / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depth", type=int, default=50)
    parser.add_argument("--image-size", type=int, default=112)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--iterations", type=int, default=10, help="timed batches per round")
    parser.add_argument("--warmup", type=int, default=3, help="untimed batches per loop")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--layout", default="NCHW", choices=LAYOUTS)
    args = parser.parse_args()
    ctx = mx.cpu()
    net_settings = Network(depth=args.depth, layout={DTYPE: args.layout})
    settings = InputPipeline(
        backend="synthetic", image_size=args.image_size, val_resize=args.image_size
    )

    mx.random.seed(0)
    our_net = network.build(net_settings, CLASSES, [ctx], DTYPE)
    layout = network.layout_on(args.layout, [ctx])
    bare_net = network.resnet(args.depth, "1.5", CLASSES, layout=layout)
    bare_net.initialize(ctx=ctx)
    bare_net.hybridize(static_alloc=True, static_shape=True)
    shape = input_shape(args.layout, args.batch, args.image_size)
    data = mx.nd.random.normal(shape=shape, ctx=ctx)

    with tempfile.TemporaryDirectory() as folder:
        # The synthetic backend draws its tensors itself but wants a record file to exist.
        rec, idx = write_rec(imagenet_sized_jpegs(4), f"{folder}/placeholder")
        batches = pipelines.val_batches(
            rec,
            idx,
            [ctx],
            batch_per_device=args.batch,
            settings=settings,
            dtype=DTYPE,
            layout=args.layout,
            iterations=args.iterations,
            num_classes=CLASSES,
        )
        for _ in range(args.warmup):
            our_net(next(iter(batches))[0].data).wait_to_read()
            bare_net(data).wait_to_read()
        loops = {
            "ours_unwaited": lambda: ours_unwaited(our_net, batches, args.batch),
            "bare_unwaited": lambda: bare(bare_net, data, args.iterations, wait_each=False),
            "ours_waited": lambda: ours_waited(our_net, batches, args.batch),
            "bare_waited": lambda: bare(bare_net, data, args.iterations, wait_each=True),
        }
        rates = {name: [] for name in loops}
        for round_index in range(args.rounds):
            order = list(loops) if round_index % 2 == 0 else list(reversed(loops))
            for name in order:
                rates[name].append(loops[name]())

    def ratio(ours, baseline):
        pairs = zip(rates[ours], rates[baseline], strict=True)
        return statistics.median(o / b for o, b in pairs)

    print(
        f"ResNet-{args.depth} v1.5, {DTYPE}, {args.layout}, batch {args.batch}, "
        f"{args.image_size} px, CPU, {args.rounds} interleaved rounds of {args.iterations} batches"
    )
    for name, values in rates.items():
        spread = f"{min(values):.1f}-{max(values):.1f}"
        print(f"{name:>15}: median {statistics.median(values):.1f} images/s (range {spread})")
    print(
        "throughput (unwaited, first batch left out) / bare unwaited: "
        f"{ratio('ours_unwaited', 'bare_unwaited'):.3f}"
    )
    print(
        "latency loop (every batch waited) / bare waited: "
        f"{ratio('ours_waited', 'bare_waited'):.3f}  (goal >= 0.97)"
    )
    print(
        "bare waited / bare unwaited (the price of waiting for every batch): "
        f"{ratio('bare_waited', 'bare_unwaited'):.3f}"
    )


if __name__ == "__main__":
    main()
