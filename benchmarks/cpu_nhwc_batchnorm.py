"""Training images/s of the CPU NHWC network with its BatchNorm on axis 1 between transposes
(network.NHWCBatchNormByTranspose, what it runs) against the same network with MXNet's
BatchNorm on axis 3 (what it ran before, which can segfault on AVX-512 CPUs), with the NCHW
network beside them.

Each network trains (forward, softmax cross-entropy, backward, plain Gluon SGD) on one fixed
synthetic batch, on the CPU, in one process. Rounds interleave the three in rotating order;
a ratio is the median of the per-round ratios, so that other load on the machine, which hits
neighbours alike, does not decide it. The axis-3 network runs at an image size whose last
stage is larger than 1x1 (64 px: 2x2), where it does not crash.

    .venv/bin/python benchmarks/cpu_nhwc_batchnorm.py [--depth 50] [--image-size 64] [--batch 16]
"""

import argparse
import os
import statistics
import time
from dataclasses import dataclass

import mxnet as mx
from mxnet import autograd, gluon
from mxnet.gluon import nn

from resnet_recipe.data.input_layout import input_shape
from resnet_recipe.model import network

CLASSES = 1000


@dataclass(frozen=True)
class AxisThreeLayout(network.Layout):
    """The CPU NHWC layout with MXNet's own BatchNorm on axis 3."""

    def batch_norm(self, **kwargs):
        return nn.BatchNorm(axis=3, **kwargs)


def trainer_of(args, layout):
    mx.random.seed(1)
    net = network.initialize(network.resnet(args.depth, "1.5", CLASSES, layout=layout), [mx.cpu()])
    net.hybridize(static_alloc=True, static_shape=True)
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
    trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.01, "momentum": 0.9})
    shape = input_shape(layout.name, args.batch, args.image_size)
    data = mx.nd.random.normal(shape=shape)
    label = mx.nd.array([index % CLASSES for index in range(args.batch)])

    def train(iterations):
        start = time.perf_counter()
        for _ in range(iterations):
            with autograd.record():
                loss = loss_fn(net(data), label)
            loss.backward()
            trainer.step(args.batch)
        mx.nd.waitall()
        return iterations * args.batch / (time.perf_counter() - start)

    return train


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depth", type=int, default=50)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--iterations", type=int, default=4, help="timed iterations per round")
    parser.add_argument("--rounds", type=int, default=6)
    args = parser.parse_args()
    # The axis-3 network is built and run first, before any NCHW network fills oneDNN's
    # primitive cache.
    loops = {
        "NHWC, BN axis 3 (before)": trainer_of(args, AxisThreeLayout("NHWC", by_transpose=True)),
        "NHWC, BN by transpose (now)": trainer_of(args, network.layout_on("NHWC", [mx.cpu()])),
        "NCHW": trainer_of(args, network.Layout("NCHW")),
    }
    names = list(loops)
    load_at_start = os.getloadavg()[0]
    for train in loops.values():
        train(2)  # warm-up: primitives, static memory
    rates = {name: [] for name in names}
    for round_index in range(args.rounds):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            rates[name].append(loops[name](args.iterations))

    print(
        f"ResNet-{args.depth} v1.5, float32, batch {args.batch}, {args.image_size} px, CPU, "
        f"{args.rounds} rotating rounds of {args.iterations} iterations; 1-minute load "
        f"average {load_at_start:.2f} at the start, {os.getloadavg()[0]:.2f} at the end"
    )
    for name in names:
        values = rates[name]
        print(
            f"  {name:28s} img/s min {min(values):7.1f}  median {statistics.median(values):7.1f}"
            f"  max {max(values):7.1f}"
        )
    before, now, nchw = (rates[name] for name in names)
    ratios = {
        "now / before": zip(now, before, strict=True),
        "now / NCHW": zip(now, nchw, strict=True),
    }
    for label, pairs in ratios.items():
        print(f"  {label}: {statistics.median(a / b for a, b in pairs):.3f}")


if __name__ == "__main__":
    main()
