"""Settings of the stages around training, declared as workflow_support.settings declares
the training ones (workflow_support.declaration); settings re-exports them.

    Data            data
    Score           score
    BenchTrain      benchmark.train, but its points (BenchTrainJobs)
    BenchInfer      benchmark.infer, but its batch sizes (BenchInferJobs)
    Onnx            onnx
    Report          report
    Distributed     distributed
    Devices         devices

The benchmark sections and their jobs are separate classes because a benchmark result
records its section's settings, while each job has its point from its wildcards.
"""

from dataclasses import dataclass

from resnet_recipe.files.user_errors import UserError
from resnet_recipe.workflow_support.declaration import (
    JOBS,
    PLACEMENT,
    REQUIRED,
    RESULT,
    SPEED,
    Section,
    setting,
)

# Training and inference precisions, in the order the report and the tables show them.
DTYPES = ("float16", "float32")
# The keys of a mapping by dtype whose keys the config may leave out.
DTYPE_KEY = "^float(16|32)$"


@dataclass(frozen=True)
class Data(Section):
    """Raw images, list files and RecordIO packing (the config's `data` section)."""

    raw_dir: str = setting(
        REQUIRED,
        "Folder with train/ and val/ in ImageNet layout, one sub-folder per class (images"
        " may sit in nested folders; they belong to their top-level class folder).",
        original="the original's README: ImageNet in this layout, packed with im2rec",
        affects=RESULT,
    )
    val_labels: str | None = setting(
        None,
        "Label CSV for a flat val/ folder: Kaggle's LOC_val_solution.csv"
        " (ImageId,PredictionString) or a filename,synset CSV; null when val/ has class"
        " folders.",
        original="not in the original, which expected val/ in class folders",
        affects=RESULT,
    )
    class_names: str | None = setting(
        None,
        "Synset-to-name file (ImageNet's LOC_synset_mapping.txt or synset_words.txt) that"
        " adds a human name per class to classes.tsv; null for none.",
        original="not in the original",
        affects=RESULT,
    )
    list_seed: int = setting(
        0,
        "Seed of the shuffle of train.lst (val.lst is sorted).",
        original="not in the original, which left packing to im2rec",
        affects=RESULT,
        minimum=0,
    )
    pack_threads: int = setting(
        4,
        "Worker processes of a packing job (the cores it takes, capped by --cores); each"
        " packs a contiguous slice of the list, and the outputs are byte-identical for any"
        " number. One per core is fastest while the images are in the page cache; more keep"
        " more reads in flight on a slow disk.",
        original="not in the original, which left packing to im2rec",
        affects=SPEED,
        minimum=1,
    )
    max_rejected_fraction: float = setting(
        0.001,
        "Packing a split fails when more than this fraction of its files cannot be packed;"
        " they are listed in {split}.rejected.tsv.",
        original="not in the original, which left packing to im2rec",
        affects=RESULT,
        minimum=0,
        maximum=1,
    )
    demo: bool = setting(
        False,
        "Write the demo tree (scikit-learn digits as RGB JPEGs) into raw_dir before anything else.",
        original="not in the original",
        affects=RESULT,
    )


@dataclass(frozen=True)
class Score(Section):
    """Scoring of every trained run on the validation split (the config's `score`)."""

    epoch: int | None = setting(
        None,
        "Checkpoint epoch to score, one whose model-NNNN.params is in the run's folder"
        " (training.export_every decides which are); null scores the final one.",
        original="not in the original's examples, which score one given checkpoint",
        affects=RESULT,
        minimum=1,
    )
    batch_size: dict[str, int] = setting(
        {"float16": 128, "float32": 64},
        "Images per batch when scoring, by the run's dtype.",
        original="examples/SCORE_FP16.sh L19 (-b 128), examples/SCORE_FP32.sh L19 (-b 64)",
        affects=RESULT,
        minimum=1,
        keys=DTYPES,
        keys_required=True,
        key_description="Scoring batch of a {key} run.",
    )

    def batch_size_of(self, dtype):
        """The scoring batch of a run trained in `dtype`."""
        if dtype not in self.batch_size:
            raise UserError(f"score.batch_size has no entry for {dtype} (it has {self.batch_size})")
        return self.batch_size[dtype]


@dataclass(frozen=True)
class BenchTrain(Section):
    """Training throughput (data plus compute), as the original benchmark.py -i 100 -e 12
    -w 4 with its --num-examples per precision reports it."""

    data: str = setting(
        "dali",
        "dali reads train.rec through the training pipeline; synthetic feeds random tensors.",
        original="benchmark.py (DALI)",
        affects=RESULT,
        choices=("dali", "synthetic"),
    )
    iterations: int = setting(
        100,
        "Iterations per benchmark epoch; the validation pass after each epoch runs as many"
        " batches, its first left out.",
        original="benchmark.py -i 100",
        affects=RESULT,
        minimum=2,
    )
    epochs: int = setting(
        12, "Benchmark epochs.", original="benchmark.py -e 12", affects=RESULT, minimum=1
    )
    warmup_epochs: int = setting(
        4,
        "Leading epochs left out of the mean.",
        original="benchmark.py -w 4",
        affects=RESULT,
        minimum=0,
    )
    num_examples: dict[str, int] = setting(
        {"float16": 25600, "float32": 12800},
        "Images in the notional epoch per dtype.",
        original="benchmark.py --num-examples",
        affects=RESULT,
        minimum=1,
        keys=DTYPES,
        key_description="Images per notional epoch in {key}.",
    )


@dataclass(frozen=True)
class BenchTrainPoints(Section):
    """The training benchmark points of one dtype: every (gpus, batch) pair is one job."""

    gpus: tuple[int, ...] = setting(
        REQUIRED,
        "GPU counts (0 runs on the CPU).",
        original="benchmark.py's published training table: 1, 4 and 8 GPUs",
        affects=JOBS,
        minimum=0,
    )
    batch_sizes: tuple[int, ...] = setting(
        REQUIRED,
        "Per-GPU batch sizes (each a batch_per_device of the point's run).",
        original="benchmark.py's published training table: 208 (float16), 96 (float32)",
        affects=JOBS,
        minimum=1,
    )


@dataclass(frozen=True)
class BenchTrainJobs(Section):
    """The jobs of benchmark.train."""

    points: dict[str, BenchTrainPoints] = setting(
        {
            "float16": BenchTrainPoints(gpus=(1, 4, 8), batch_sizes=(208,)),
            "float32": BenchTrainPoints(gpus=(1, 4, 8), batch_sizes=(96,)),
        },
        "GPU counts and per-GPU batch sizes per dtype; every combination is one job.",
        original="benchmark.py's defaults for its published training table",
        affects=JOBS,
        key_pattern=DTYPE_KEY,
    )


@dataclass(frozen=True)
class BenchInfer(Section):
    """Inference throughput and latency on one device per batch size: the original
    benchmark.py --only-inference -i 200 -e 12 -w 4 of its published inference table
    (README L207-208), then a pass of latency_iterations waited batches."""

    data: str = setting(
        "dali",
        "dali reads val.rec through the evaluation pipeline; synthetic feeds random tensors.",
        original="benchmark.py (DALI)",
        affects=RESULT,
        choices=("dali", "synthetic"),
    )
    iterations: int = setting(
        200,
        "Batches per throughput epoch, none waited for; the first of each epoch is left out.",
        original="benchmark.py -i 200",
        affects=RESULT,
        minimum=2,
    )
    epochs: int = setting(
        12, "Throughput epochs.", original="benchmark.py -e 12", affects=RESULT, minimum=1
    )
    warmup_epochs: int = setting(
        4,
        "Leading throughput epochs left out of the harmonic mean.",
        original="benchmark.py -w 4",
        affects=RESULT,
        minimum=0,
    )
    latency_iterations: int = setting(
        100,
        "Batches of the latency pass after the throughput epochs, each waited for.",
        original="not in the original, which timed unwaited batches only",
        affects=RESULT,
        minimum=1,
    )
    gpus: int = setting(
        1,
        "1 measures one GPU, 0 the CPU.",
        original="benchmark.py --only-inference on one GPU (README L207-208)",
        affects=RESULT,
        minimum=0,
        maximum=1,
    )


@dataclass(frozen=True)
class BenchInferJobs(Section):
    """The jobs of benchmark.infer."""

    batch_sizes: dict[str, tuple[int, ...]] = setting(
        {
            "float16": (1, 2, 4, 8, 16, 32, 64, 96, 128, 192, 208),
            "float32": (1, 2, 4, 8, 16, 32, 64, 96),
        },
        "Batch sizes per dtype; every one is one job.",
        original="the batch sizes of the original's published inference table",
        affects=JOBS,
        minimum=1,
        key_pattern=DTYPE_KEY,
    )


@dataclass(frozen=True)
class Onnx(Section):
    """ONNX export of every trained run, its parity with MXNet in onnxruntime, and
    onnxruntime's inference benchmark (no counterpart in the original, which exports
    nothing)."""

    logit_tolerance: float = setting(
        0.001,
        "Largest absolute difference allowed between onnxruntime's and MXNet's logits of a"
        " validation image; above it the parity job fails.",
        original="not in the original, which exports nothing",
        affects=RESULT,
        exclusive_minimum=0,
    )
    benchmark: bool = setting(
        True,
        "Also measure onnxruntime's CPU inference throughput at the float32 batch sizes of"
        " benchmark.infer (results/bench_infer_onnx/b{batch}.json).",
        original="not in the original, which exports nothing",
        affects=JOBS,
    )


@dataclass(frozen=True)
class Report(Section):
    """The aggregated report (the config's `report` section)."""

    target_top1: float = setting(
        75.9,
        "Validation top-1 (percent) a run is timed to: the report and compare give the first"
        " epoch at which each run (and the mean of each family of seeds) reached it, and the"
        " training wall time to the end of that epoch.",
        original="not in the original; the default is MLPerf Training's quality target for"
        " ResNet-50 v1.5 on ImageNet (75.90% top-1)",
        affects=RESULT,
        minimum=0,
        maximum=100,
    )


@dataclass(frozen=True)
class Distributed(Section):
    """How the scheduler, parameter servers and workers of a run with nodes above 1 find
    each other (ps-lite over TCP, without authentication)."""

    interface: str = setting(
        "lo",
        "Network interface (DMLC_INTERFACE) every role binds to and announces; lo keeps a"
        " local run on this machine, a cluster needs the interface of its internal network"
        " (e.g. ib0, eth1). Never one facing networks outside the cluster.",
        original="the original ran on one node",
        affects=PLACEMENT,
    )
    connect_timeout: float = setting(
        300,
        "Seconds the workers get to reach the scheduler before the job fails, naming the"
        " scheduler's address.",
        original="the original ran on one node",
        affects=PLACEMENT,
        exclusive_minimum=0,
    )


@dataclass(frozen=True)
class Devices(Section):
    """Local GPU assignment."""

    lock_dir: str = setting(
        "/tmp/resnet-recipe-gpu-locks",
        "Folder of the per-GPU lock files that keep concurrent local jobs on disjoint GPUs;"
        " made sticky and writable by all (1777) if missing. Users who share GPUs set the"
        " same folder on the machine's local disk (docs/gpus.md).",
        original="not in the original, which ran one job per machine",
        affects=PLACEMENT,
    )
