"""Training images/s of our loop against a minimal bare MXNet Gluon loop, and the DALI CPU
training pipeline's images/s beside them.

Ours: training.TrainingLoop.step (forward, the recipe's loss, backward, the recipe's SGD
update with its per-iteration learning rate) over synthetic batches from
resnet_recipe.data.pipelines. Bare: the same ResNet built with plain Gluon calls and hybridized the
same way, gluon.loss.SoftmaxCrossEntropyLoss and a plain gluon.Trainer SGD (same momentum
and weight decay), trainer.step(batch), over one fixed array. Same batch, dtype (float32:
MXNet has no float16 convolution on the CPU) and image size, on the CPU, in one process.
Both loops are timed as bench_train times a training epoch (timing.time_epoch), with both
of its measures: the original benchmark.py's (the batch over the mean interval between
unwaited batch ends, the first batch of the round left out) and the wall time of the round
(first batch included, ended by mx.nd.waitall()). Rounds interleave the two loops in
alternating order; each ratio is the median of the per-round ratios, so that other load on
the machine, which hits neighbours alike, does not decide it.

The DALI figure is benchmarks/pipeline_throughput.py's measurement of the training pipeline
(ImageNet-sized JPEGs, 224 px crops, one CPU context): what the input side can feed.

    .venv/bin/python benchmarks/training_loop.py [--depth 50] [--image-size 64] [--batch 32]
"""

import argparse
import itertools
import statistics
import tempfile

import mxnet as mx
from mxnet import autograd, gluon
from pipeline_throughput import IMAGENET_INPUT, dali_images_per_s, imagenet_sized_jpegs, write_rec

from resnet_recipe.data import pipelines
from resnet_recipe.model import network
from resnet_recipe.scoring import timing
from resnet_recipe.training import loop as training
from resnet_recipe.workflow_support.settings import InputPipeline, Network, TrainingRun

CLASSES = 1000
DTYPE = "float32"
# bench_train's two measures of an epoch, as timing.time_epoch gives them.
MEASURES = ("batch ends", "wall")


def images_per_s(run, batches, batch):
    """{measure: images/s} of one pass of `run` over `batches` (timing.time_epoch)."""
    wall, per_batch = timing.time_epoch(run, batches)
    return {"batch ends": batch / per_batch, "wall": len(batches) * batch / wall}


def ours(loop, batches, first_iteration):
    iteration = itertools.count(first_iteration)
    return images_per_s(
        lambda device_batches: loop.step(device_batches, next(iteration)),
        batches,
        loop.global_batch,
    )


def bare_step(net, loss_fn, trainer, data, label):
    with autograd.record():
        loss = loss_fn(net(data), label)
    loss.backward()
    trainer.step(data.shape[0])


def bare(net, loss_fn, trainer, data, label, iterations):
    return images_per_s(
        lambda _: bare_step(net, loss_fn, trainer, data, label),
        [None] * iterations,
        data.shape[0],
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depth", type=int, default=50)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--iterations", type=int, default=6, help="timed iterations per round")
    parser.add_argument("--warmup", type=int, default=2, help="untimed iterations per loop")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--dali-threads", type=int, default=2)
    args = parser.parse_args()
    ctx = mx.cpu()
    net_settings = Network(depth=args.depth, version="1.5", zero_init_last_gamma=False)
    settings = TrainingRun(gpus=0, batch_per_device=args.batch, dtype=DTYPE, cpu_contexts=1)
    input_settings = InputPipeline(
        backend="synthetic", image_size=args.image_size, val_resize=args.image_size
    )

    # A notional ImageNet epoch for the learning-rate schedule, as bench_train uses.
    loop = training.TrainingLoop([ctx], CLASSES, 1_281_167, settings, net_settings)
    mx.random.seed(settings.seed)
    bare_net = network.resnet(args.depth, "1.5", CLASSES)
    bare_net.initialize(ctx=ctx)
    bare_net.hybridize(static_alloc=True, static_shape=True)
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
    loss_fn.hybridize(static_alloc=True, static_shape=True)
    trainer = gluon.Trainer(
        bare_net.collect_params(),
        "sgd",
        {
            "learning_rate": 0.01,
            "momentum": settings.momentum,
            "wd": settings.weight_decay,
        },
    )
    shape = (args.batch, 3, args.image_size, args.image_size)
    data = mx.nd.random.normal(shape=shape, ctx=ctx)
    label = mx.nd.array([index % CLASSES for index in range(args.batch)], ctx=ctx)

    with tempfile.TemporaryDirectory() as folder:
        jpegs = imagenet_sized_jpegs(256)
        rec, idx = write_rec(jpegs, f"{folder}/imagenet_sized")
        batches = pipelines.train_batches(
            rec,
            idx,
            [ctx],
            batch_per_device=args.batch,
            settings=input_settings,
            dtype=DTYPE,
            iterations=args.iterations,
            num_classes=CLASSES,
        )
        for iteration in range(args.warmup):
            loop.step(next(iter(batches)), iteration)
            bare_step(bare_net, loss_fn, trainer, data, label)
        mx.nd.waitall()
        iteration = args.warmup
        rates = {"ours": [], "bare": []}
        for round_index in range(args.rounds):
            order = ["ours", "bare"] if round_index % 2 == 0 else ["bare", "ours"]
            for name in order:
                if name == "ours":
                    rates["ours"].append(ours(loop, batches, iteration))
                    iteration += args.iterations
                else:
                    rates["bare"].append(
                        bare(bare_net, loss_fn, trainer, data, label, args.iterations)
                    )
        dali = dali_images_per_s(
            pipelines.train_batches,
            rec,
            idx,
            IMAGENET_INPUT.replace(dali_threads=args.dali_threads),
            args.batch,
            iterations=8,
        )

    print(
        f"ResNet-{args.depth} v1.5, {DTYPE}, batch {args.batch}, {args.image_size} px, CPU, "
        f"{args.rounds} interleaved rounds of {args.iterations} iterations"
    )
    for measure in MEASURES:
        for name, rounds in rates.items():
            values = [rates_of_round[measure] for rates_of_round in rounds]
            print(
                f"{measure:>10}: {name:>4} loop median {statistics.median(values):.1f} images/s "
                f"(range {min(values):.1f}-{max(values):.1f})"
            )
        ratio = statistics.median(
            o[measure] / b[measure] for o, b in zip(rates["ours"], rates["bare"], strict=True)
        )
        print(f"{measure:>10}: ours / bare {ratio:.3f}  (goal >= 0.97)")
    print(
        f"DALI CPU training pipeline alone (500x375 JPEGs -> 224 px, {args.dali_threads} "
        f"threads, batch {args.batch}): {dali:.1f} images/s"
    )


if __name__ == "__main__":
    main()
