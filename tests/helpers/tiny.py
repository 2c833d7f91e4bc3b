"""The tiny network, input pipeline and run settings the training, scoring, export and
benchmark tests share; a tiny trained run and scoring of it."""

import json
from types import SimpleNamespace

from resnet_recipe.training.job import TrainingJob
from resnet_recipe.workflow_support.settings import BenchInfer, InputPipeline, Network, TrainingRun

TINY_NETWORK = Network(depth=18, version="1.5", zero_init_last_gamma=True)
NHWC_NETWORK = TINY_NETWORK.replace(layout={"float16": "NHWC", "float32": "NHWC"})
TINY_PIPELINE = InputPipeline(
    backend="dali-cpu",
    image_size=16,
    val_resize=18,
    min_random_area=0.5,
    dali_threads=1,
    dali_val_threads=1,
)
TINY_SETTINGS = TrainingRun(
    gpus=0,
    batch_per_device=8,
    dtype="float32",
    epochs=3,
    lr_per_256=1.6,
    warmup_epochs=1,
    lr_steps=(2,),
    log_interval=2,
)


def tiny_job(tiny_data, folder, settings=TINY_SETTINGS, **job):
    """A TrainingJob on the tiny data (the tiny_data fixture's paths) with its state,
    outputs and locks under folder; `job` overrides other fields."""
    fields = dict(
        out_dir=str(folder / "run"),
        state_root=str(folder / "state"),
        settings=settings,
        network_settings=TINY_NETWORK,
        pipeline_settings=TINY_PIPELINE,
        lock_dir=str(folder / "locks"),
        run="tiny",
    )
    return TrainingJob(**tiny_data, **{**fields, **job})


# Labels of the three-colour records the training, scoring and benchmark tests train on.
COLOUR_LABELS = [index % 3 for index in range(48)]
VAL_IMAGES = 19  # not a multiple of any batch size scored here but 19

# An inference benchmark point small enough for a test, and the keys of its result.
INFER_BENCH = BenchInfer(
    data="dali", iterations=4, epochs=3, warmup_epochs=1, latency_iterations=5, gpus=0
)
INFER_KEYS = {
    "kind",
    "dtype",
    "gpus",
    "device",
    "batch_size",
    "data",
    "input_backend",
    "image_size",
    "layout",
    "weights",
    "iterations",
    "epochs",
    "warmup_epochs",
    "throughput_method",
    "epoch_batch_seconds",
    "epoch_images_per_s",
    "images_per_s",
    "latency_method",
    "latency_iterations",
    "latency_images_per_s",
    "latency_ms",
    "machine_load",
    "network",
    "machine",
    "versions",
    "provenance",
}


def train_tiny_run(make_tiny_rec, tmp_path_factory, network_settings):
    """A 2-epoch run on three noisy colours, validated on VAL_IMAGES images drowned in
    noise: many are misclassified, so equal accuracies are not equal by being perfect (a
    constant guess still gets a third right)."""
    from resnet_recipe.training import run as training
    from resnet_recipe.training.job import TrainingJob

    train = make_tiny_rec("train_colours", COLOUR_LABELS, noise=8)
    val = make_tiny_rec("val_noisy_colours", COLOUR_LABELS[:VAL_IMAGES], noise=250)
    folder = tmp_path_factory.mktemp("scored_run")
    classes = folder / "classes.tsv"
    classes.write_text("".join(f"{label}\tcolour{label}\n" for label in range(3)))
    run_dir = folder / "run"
    training.train(
        TrainingJob(
            train_rec=train.rec,
            train_idx=train.idx,
            val_rec=val.rec,
            val_idx=val.idx,
            classes_tsv=str(classes),
            out_dir=str(run_dir),
            state_root=str(folder / "state"),
            settings=TINY_SETTINGS.replace(epochs=2),
            network_settings=network_settings,
            pipeline_settings=TINY_PIPELINE,
            lock_dir=str(folder / "locks"),
            run="tiny",
        )
    )
    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return SimpleNamespace(
        run_dir=run_dir, val=val, metrics=metrics, last=metrics[-1], lock_dir=folder / "locks"
    )


def score(trained_run, path, **overrides):
    """evaluation.score_checkpoint of a train_tiny_run's last epoch into path."""
    from resnet_recipe.scoring import evaluation

    arguments = {
        "prefix": str(trained_run.run_dir / "model"),
        "epoch": 2,
        "val_rec": trained_run.val.rec,
        "val_idx": trained_run.val.idx,
        "dtype": "float32",
        "gpus": 0,
        "batch_size": 8,
        "pipeline_settings": TINY_PIPELINE,
        "lock_dir": str(trained_run.lock_dir),
        "run": "tiny",
        **overrides,
    }
    return evaluation.score_checkpoint(str(path), **arguments)
