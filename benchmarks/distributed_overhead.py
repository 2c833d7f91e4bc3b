"""Training images/s through MXNet's distributed kvstore (2 workers x 1 CPU context,
launched on loopback by resnet_recipe.training.launcher) against one process over 2 CPU contexts
(kvstore `device`), at the same global batch, on the same records.

Both run training.train on the same synthetic-input run (the `synthetic` backend: fixed
random tensors on each device, so JPEG decoding does not mask the kvstore); the rate of
an epoch is its training images over its training seconds (metrics.jsonl images_per_s,
validation excluded), the first epoch of each run left out (graph building, connection).
Rounds alternate the order of the two set-ups; the ratio printed is the median of the
per-round ratios, so load on the machine that hits neighbours alike does not decide it.
On one machine the two workers share its cores, as the two contexts of the single process
do: the ratio is the cost of ps-lite's pushes and pulls over loopback and of the second
process, not of a network.

    .venv/bin/python benchmarks/distributed_overhead.py [--depth 18] [--image-size 64]
"""

import argparse
import json
import statistics
import tempfile
from pathlib import Path

from pipeline_throughput import imagenet_sized_jpegs, write_rec

from resnet_recipe.training import run as training
from resnet_recipe.training.job import TrainingJob
from resnet_recipe.workflow_support.settings import Distributed, InputPipeline, Network, TrainingRun


def epoch_rates(out):
    lines = (Path(out) / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line)["images_per_s"] for line in lines][1:]


def run(folder, records, settings, network, pipeline):
    out = Path(folder) / "run"
    training.train(
        TrainingJob(
            train_rec=records + ".rec",
            train_idx=records + ".idx",
            val_rec=records + ".rec",
            val_idx=records + ".idx",
            classes_tsv=records + ".classes.tsv",
            out_dir=str(out),
            state_root=str(Path(folder) / "state"),
            settings=settings,
            network_settings=network,
            pipeline_settings=pipeline,
            lock_dir=str(Path(folder) / "locks"),
            run="overhead",
            distributed_settings=Distributed(interface="lo"),
        )
    )
    return statistics.median(epoch_rates(out))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depth", type=int, default=18)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--batch", type=int, default=16, help="images per device")
    parser.add_argument("--iterations", type=int, default=8, help="iterations per epoch")
    parser.add_argument("--epochs", type=int, default=4, help="epochs per run, the first unused")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()

    network = Network(depth=args.depth)
    pipeline = InputPipeline(
        backend="synthetic", image_size=args.image_size, val_resize=args.image_size
    )
    base = TrainingRun(
        gpus=0,
        batch_per_device=args.batch,
        dtype="float32",
        epochs=args.epochs,
        warmup_epochs=0,
        lr_steps=(),
        log_interval=args.iterations,
    )
    setups = {
        "1 worker x 2 contexts": base.replace(cpu_contexts=2, nodes=1),
        "2 workers x 1 context": base.replace(cpu_contexts=1, nodes=2),
    }
    with tempfile.TemporaryDirectory() as folder:
        records = str(Path(folder) / "train")
        # The synthetic backend only counts the records: an epoch is records // global batch.
        write_rec(imagenet_sized_jpegs(args.iterations * 2 * args.batch), records)
        Path(records + ".classes.tsv").write_text("".join(f"{i}\tc{i}\n" for i in range(10)))
        ratios = []
        for round_number in range(args.rounds):
            names = list(setups) if round_number % 2 == 0 else list(reversed(setups))
            rates = {}
            for name in names:
                where = Path(folder) / f"round{round_number}" / name.replace(" ", "_")
                rates[name] = run(where, records, setups[name], network, pipeline)
                print(f"round {round_number + 1}: {name}: {rates[name]:.1f} images/s")
            ratios.append(rates["2 workers x 1 context"] / rates["1 worker x 2 contexts"])
    print(
        f"ResNet-{args.depth}, {args.image_size} px, global batch {2 * args.batch}, float32, CPU: "
        f"distributed kvstore / single process images/s = {statistics.median(ratios):.2f} "
        f"(per round: {', '.join(f'{r:.2f}' for r in ratios)})"
    )


if __name__ == "__main__":
    main()
