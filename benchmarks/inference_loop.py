"""Images/s of our inference benchmark loop against a bare MXNet forward loop.

Ours: the network as bench_infer builds it (network.build) and the loop it
times (timing.time_forward: synthetic batches from resnet_recipe.pipelines, every
batch waited for, so that each one has a latency). Bare: the same ResNet built with plain
Gluon calls, hybridized the same way, `net(x)` over one fixed array, waiting for every
output as any loop that reports per-batch latency must: the baseline of the goal. A second
bare loop waits once at the end only, the fastest a loop can be; its ratio is the price of
the per-batch synchronisation itself, which grows as batches get shorter. Same batch, dtype
(float32: MXNet has no float16 convolution on the CPU) and image size, on the CPU, in one
process. Rounds interleave the loops in alternating order; each ratio is the median of the
per-round ratios, so that other load on the machine, which hits neighbours alike, does not
decide it.

    .venv/bin/python benchmarks/inference_loop.py [--depth 50] [--image-size 112] [--batch 16]
"""

import argparse
import statistics
import tempfile
import time

import mxnet as mx
from pipeline_throughput import imagenet_sized_jpegs, write_rec

from resnet_recipe import network, pipelines, timing
from resnet_recipe.settings import InputPipeline, Network

CLASSES = 1000
DTYPE = "float32"


def ours(net, batches, batch):
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
    args = parser.parse_args()
    ctx = mx.cpu()
    net_settings = Network(depth=args.depth, version="1.5", zero_init_last_gamma=False)
    settings = InputPipeline(
        backend="synthetic", image_size=args.image_size, val_resize=args.image_size
    )

    mx.random.seed(0)
    our_net = network.build(net_settings, CLASSES, [ctx], DTYPE)
    bare_net = network.resnet(args.depth, "1.5", CLASSES)
    bare_net.initialize(ctx=ctx)
    bare_net.hybridize(static_alloc=True, static_shape=True)
    data = mx.nd.random.normal(shape=(args.batch, 3, args.image_size, args.image_size), ctx=ctx)

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
            iterations=args.iterations,
            num_classes=CLASSES,
        )
        for _ in range(args.warmup):
            our_net(next(iter(batches))[0].data).wait_to_read()
            bare_net(data).wait_to_read()
        loops = {
            "ours": lambda: ours(our_net, batches, args.batch),
            "bare_wait_each": lambda: bare(bare_net, data, args.iterations, wait_each=True),
            "bare": lambda: bare(bare_net, data, args.iterations, wait_each=False),
        }
        rates = {name: [] for name in loops}
        for round_index in range(args.rounds):
            order = list(loops) if round_index % 2 == 0 else list(reversed(loops))
            for name in order:
                rates[name].append(loops[name]())

    def ratio(baseline):
        return statistics.median(o / b for o, b in zip(rates["ours"], rates[baseline], strict=True))

    print(
        f"ResNet-{args.depth} v1.5, {DTYPE}, batch {args.batch}, {args.image_size} px, CPU, "
        f"{args.rounds} interleaved rounds of {args.iterations} batches"
    )
    for name, values in rates.items():
        spread = f"{min(values):.1f}-{max(values):.1f}"
        print(f"{name:>15}: median {statistics.median(values):.1f} images/s (range {spread})")
    print(f"ours / bare (waiting for every batch): {ratio('bare_wait_each'):.3f}  (goal >= 0.97)")
    print(f"ours / bare (one wait at the end, no latency): {ratio('bare'):.3f}")


if __name__ == "__main__":
    main()
