"""Settings: one frozen dataclass per section of the config, every setting declared once in
it (workflow_support.declaration), built once where a stage starts (its stage script, or
the command line) and read by name everywhere after.

    TrainingRun    training.defaults with one run's overrides (training.runs.NAME)
    Network        network
    InputPipeline  input
    Score          score
    BenchTrain     benchmark.train, without its points (BenchTrainJobs)
    BenchInfer     benchmark.infer, without its batch sizes (BenchInferJobs)
    Onnx           onnx
    Report         report
    Distributed    distributed
    Data           data
    Devices        devices

    run = run_settings(config, "cpu_fp32")   # the one merge of defaults and a run
    run.batch_per_device

The defaults are the original recipe's (NVIDIA's ResNet50 v1.5 for MXNet, first release,
DeepLearningExamples commit a8e1d1cd, MxNet/Classification/RN50v1.5/) wherever it had one;
each declaration names its file and line, or says why it departs. The config schema
(workflow/schemas/config.schema.yaml) and the key tables of config/README.md are generated
from these declarations (workflow_support.config_schema).
from_config stops at a value of the wrong type or an unknown key with a message that names
the option (`training.runs.x.lr_per_256`).

This module imports neither MXNet nor DALI: the command line, the Snakefile and the report
read it.
"""

import dataclasses
from dataclasses import dataclass

from resnet_recipe.files.user_errors import UserError
from resnet_recipe.workflow_support.declaration import (
    EXPORTS,
    JOBS,
    LOGGING,
    RESULT,
    SPEED,
    Section,
    convert,
    number_from_text,
    read_config_numbers,
    setting,
)
from resnet_recipe.workflow_support.run_matrix import planned_runs
from resnet_recipe.workflow_support.stage_settings import (
    DTYPES,
    BenchInfer,
    BenchInferJobs,
    BenchTrain,
    BenchTrainJobs,
    BenchTrainPoints,
    Data,
    Devices,
    Distributed,
    Onnx,
    Report,
    Score,
)

__all__ = [
    "DTYPES",
    "BenchInfer",
    "BenchInferJobs",
    "BenchTrain",
    "BenchTrainJobs",
    "BenchTrainPoints",
    "Data",
    "Devices",
    "Distributed",
    "Onnx",
    "Report",
    "Score",
    "Section",
    "convert",
    "number_from_text",
    "read_config_numbers",
    "run_settings",
    "section_of",
]

# Image layouts of the network and its input: channels second (NCHW) or last (NHWC).
LAYOUTS = ("NCHW", "NHWC")
# training.weight_decay_on: which parameters SGD decays, by the parameter's name (see its
# declaration).
WEIGHT_DECAY_RULES = ("weights_and_bn_gamma", "all", "weights_only")
# training.loss_scale: "none" (float16 with float32 master weights and nothing else, as
# the original), "dynamic", or a number (a static scale).
LOSS_SCALES = ("none", "dynamic")
# What a training benchmark point sets itself; the rest of its run comes from the config's
# training.defaults (benchmarking.throughput.bench_train).
BENCH_POINT_SETTINGS = ("gpus", "batch_per_device", "dtype", "cpu_contexts", "nodes")


def run_settings(config, run):
    """The settings of training run `run` of a config mapping: training.defaults with the
    overrides of the run (or sweep point) and, for a replica, its seed (run_matrix), checked
    and converted. The one place a run's settings are merged (stage scripts, common.smk)."""
    runs = planned_runs(config)
    if run not in runs:
        raise UserError(f"training.runs has no run {run!r} (it has {sorted(runs)})")
    return TrainingRun.from_config(runs[run].settings, runs[run].option)


def section_of(config, path, section):
    """The settings `section` declares in the config section at dotted `path`, checked and
    converted. A config section may hold the settings of more than one class
    (benchmark.train: BenchTrain and BenchTrainJobs); the others' keys are left to them."""
    mapping = config
    for key in path.split("."):
        mapping = mapping.get(key) or {}
    names = {item.name for item in dataclasses.fields(section)}
    return section.from_config({k: v for k, v in mapping.items() if k in names}, path)


@dataclass(frozen=True)
class TrainingRun(Section):
    """One training run (the config's training.defaults with the run's overrides)."""

    gpus: int = setting(
        8,
        "GPUs of the run, data parallel in one process; 0 trains on the CPU.",
        original="runner L23 (-n 8)",
        affects=RESULT,
        minimum=0,
    )
    batch_per_device: int = setting(
        208,
        "Images per device per iteration; the global batch is this times the device count.",
        original="runner L25 (-b 208)",
        affects=RESULT,
        minimum=1,
    )
    dtype: str = setting(
        "float16",
        "float16 (GPU only: fp32 master weights, BN in fp32, loss scaling as loss_scale says)"
        " or float32.",
        original="runner L37 (--dtype float16)",
        affects=RESULT,
        choices=DTYPES,
    )
    epochs: int = setting(
        90, "Training epochs.", original="runner L27-28 (-e 90)", affects=RESULT, minimum=1
    )
    lr_per_256: float = setting(
        0.1,
        "Learning rate per 256 images, scaled linearly with the global batch.",
        original="runner L29-30, L48 (lr x global batch / 256)",
        affects=RESULT,
        exclusive_minimum=0,
    )
    warmup_epochs: float = setting(
        5,
        "Epochs of linear learning-rate warmup from 0, updated every iteration.",
        original="runner L66 (--warmup-epochs 5), fit.py L78-80",
        affects=RESULT,
        minimum=0,
    )
    lr_schedule: str = setting(
        "step",
        "step multiplies the rate by lr_factor after each epoch in lr_steps; cosine decays"
        " it to 0.",
        original="fit.py L61-80 (MultiFactorScheduler); cosine is not in the original",
        affects=RESULT,
        choices=("step", "cosine"),
    )
    lr_steps: tuple[int, ...] = setting(
        (30, 60, 80),
        "Epochs after which a step schedule multiplies the learning rate by lr_factor.",
        original="runner L60 (--lr-step-epochs 30,60,80)",
        affects=RESULT,
        minimum=1,
    )
    lr_factor: float = setting(
        0.1,
        "Multiplier of the learning rate at each step of a step schedule.",
        original="fit.py L121",
        affects=RESULT,
        exclusive_minimum=0,
    )
    momentum: float = setting(
        0.9, "SGD momentum.", original="fit.py L129-130", affects=RESULT, minimum=0, maximum=1
    )
    weight_decay: float = setting(
        0.0001, "L2 weight decay.", original="fit.py L131-132", affects=RESULT, minimum=0
    )
    weight_decay_on: str = setting(
        "weights_and_bn_gamma",
        "Parameters SGD decays, by name. weights_and_bn_gamma: names ending in _weight or"
        " _gamma (convolution and dense weights and BN gamma, not BN beta or biases);"
        " all: every parameter (NVIDIA's later Gluon versions); weights_only: convolution"
        " and dense weights alone.",
        original="MXNet 1.x's name rule (Optimizer.set_wd_mult, MXNet 1.9.1 optimizer.py"
        " L388-397), which the original's Module optimizer went through (fit.py L437;"
        " resnet.py sets no wd_mult)",
        affects=RESULT,
        choices=WEIGHT_DECAY_RULES,
    )
    label_smoothing: float = setting(
        0.0,
        "Label smoothing epsilon.",
        original="resnet.py L298 (plain SoftmaxOutput: none)",
        affects=RESULT,
        minimum=0,
        maximum=1,
    )
    loss_scale: float | str = setting(
        "none",
        "float16 loss scaling. none trains with float32 master weights and no scale; a"
        " number is a static scale; dynamic halves it on overflow (skipping that step) and"
        " doubles it after 2000 clean steps. float32 never scales.",
        original="fit.py L266-270, L273-275, the complete optimizer params: multi_precision"
        " SGD with momentum, no loss scaling of any kind",
        affects=RESULT,
        choices=LOSS_SCALES,
        exclusive_minimum=0,
    )
    max_overflows_at_min_loss_scale: int = setting(
        100,
        "With a dynamic loss scale, training stops as diverged after this many steps in a"
        " row overflow at the smallest scale (1).",
        original="not in the original, which had no loss scaling",
        affects=LOGGING,
        minimum=1,
    )
    seed: int = setting(
        1,
        "Seed of parameter init, data order and augmentation.",
        original="departs: the original set no global seed (data.py L80, --seed default"
        " None) and seeded each DALI pipeline with 12 + device id (dali.py L46, L80); a fixed"
        " seed makes runs repeatable",
        affects=RESULT,
        minimum=0,
    )
    seeds: tuple[int, ...] = setting(
        (),
        "Seeds of the run's replicas: one training and scoring job per seed, named"
        " RUN.seedN, each with seed N; empty (or one seed) trains one run under the run's"
        " own name. seeds at a level (training.defaults, a run, a sweep) overrides the seed"
        " of the levels below, and seed there drops their seeds; a run or sweep that sets"
        " both is an error (in training.defaults, seeds wins).",
        original="not in the original, which trained one run per configuration",
        affects=JOBS,
        minimum=0,
    )
    log_interval: int = setting(
        20,
        "Batches between two progress lines in the log; the loss and the finiteness of the"
        " gradients are checked there too.",
        original="runner L67 (--disp-batches 20)",
        affects=LOGGING,
        minimum=1,
    )
    state_every_minutes: float = setting(
        30,
        "Minutes of training after which the resumable state of the position inside an"
        " epoch is written at the next iteration (besides every epoch's end and every stop"
        " signal): at most this much work is lost to a kill without warning; 0: never.",
        original="not in the original, which saved every epoch only",
        affects=LOGGING,
        minimum=0,
    )
    stop_before_job_end_minutes: float = setting(
        10,
        "Inside a SLURM job: training stops this many minutes before the job's time limit,"
        " writes the state of its position and requeues the job (`scontrol requeue`), which"
        " starts again under the same job id and resumes there; 0: never (the job runs into"
        " its limit). It must cover the rest of a validation pass, up to log_interval"
        " iterations (a run over several nodes checks there) and a state write.",
        original="not in the original, which ran in one job",
        affects=LOGGING,
        minimum=0,
    )
    max_requeues: int = setting(
        20,
        "Most restarts of a run's SLURM job (its SLURM_RESTART_COUNT, which counts"
        " preemptions too) after which a stop before the job's end no longer requeues it:"
        " the job ends with status 75, the workflow fails, and running it again resumes.",
        original="not in the original, which ran in one job",
        affects=LOGGING,
        minimum=0,
    )
    export_every: int = setting(
        1,
        "Export model-NNNN.params into the run folder after every epoch divisible by this"
        " and after the last; 0 exports the last epoch only.",
        original="fit.py L139 (--save-period 1) with mx.callback.do_checkpoint"
        " (fit.py L97-101): every epoch",
        affects=EXPORTS,
        minimum=0,
    )
    cpu_contexts: int = setting(
        1,
        "CPU contexts standing in for devices when gpus is 0 (tests of the multi-device path).",
        original="not in the original, which trained on GPUs only",
        affects=RESULT,
        minimum=1,
    )
    nodes: int = setting(
        1,
        "Workers of the run, one per node under SLURM, each driving its node's gpus (or"
        " cpu_contexts) through the same loop; above 1 their gradients meet in MXNet's"
        " distributed kvstore (dist_sync, dist_sync_device on GPUs), and the global batch"
        " and the learning rate count every worker's devices.",
        original="the original ran on one node",
        affects=RESULT,
        minimum=1,
    )


@dataclass(frozen=True)
class Network(Section):
    """The ResNet model (the config's `network` section)."""

    depth: int = setting(
        50,
        "ResNet depth.",
        original="ResNet-50, the recipe's network (resnet.py)",
        affects=RESULT,
        choices=(18, 34, 50, 101, 152),
    )
    version: str = setting(
        "1.5",
        '"1.5" puts the stride 2 of downsampling bottlenecks in the 3x3 conv, "1" in the'
        " first 1x1.",
        original="v1.5, the recipe's network (resnet.py)",
        affects=RESULT,
        choices=("1", "1.5"),
    )
    zero_init_last_gamma: bool = setting(
        False,
        "Initialise the last BN gamma of every residual block to zero.",
        original="off in the original",
        affects=RESULT,
    )
    layout: dict[str, str] = setting(
        {"float16": "NHWC", "float32": "NCHW"},
        "Image layout per dtype. NCHW, or NHWC (channels last, input padded to 4 channels"
        " with zeros, BatchNorm on axis 3, NHWC pooling) as the original trained float16."
        " Checkpoints are written in NCHW whatever the layout.",
        original="runner L69-74 (the NHWC flags for float16 only), runner L41-42, L66 and"
        " dali.py L112 (float16 input padded to 4 channels), data.py L64-77 (float32 in NCHW)",
        affects=RESULT,
        choices=LAYOUTS,
        keys=DTYPES,
        key_defaults=True,
        key_description="Layout of {key} training, scoring and benchmarks.",
    )

    def layout_for(self, dtype):
        """The layout (NCHW or NHWC) the network runs in `dtype`."""
        layout = self.layout.get(dtype)
        if layout not in LAYOUTS:
            raise UserError(
                f"network.layout.{dtype} is {layout!r}, expected one of {', '.join(LAYOUTS)}"
            )
        return layout

    @property
    def model_name(self):
        """The network's name with its version (resnet50_v1.5), as ONNX metadata names it."""
        return f"resnet{self.depth}_v{self.version}"


@dataclass(frozen=True)
class InputPipeline(Section):
    """The input pipelines (the config's `input` section). DALI gives the same batches for
    any thread count, prefetch depth and decoder padding (tests/unit/test_pipelines.py): those
    settings affect speed only."""

    backend: str = setting(
        "dali-gpu",
        "dali-gpu decodes JPEGs on the GPU (mixed), dali-cpu on the host, synthetic feeds"
        " random tensors (throughput only).",
        original="dali.py, through which train.py L91 always trains (mixed decoding)",
        affects=RESULT,
        choices=("dali-gpu", "dali-cpu", "synthetic"),
    )
    image_size: int = setting(
        224,
        "Side of the square training and evaluation crops in pixels.",
        original="runner L66",
        affects=RESULT,
        minimum=8,
    )
    val_resize: int = setting(
        256,
        "Evaluation resizes the shorter side to this, then center-crops image_size.",
        original="train.py L70",
        affects=RESULT,
        minimum=8,
    )
    min_random_area: float = setting(
        0.05,
        "Smallest crop area of the training random-resized crop, as a fraction of the"
        " image. Set 0.08 to train as NVIDIA's runs did.",
        original="README.md L35 says 0.05 and the runner passes it (L61), but only to the"
        " unused ImageRecordIter path (data.py L239-246; train.py L91 always trains through"
        " dali.py, whose crop passes no area, L53): DALI's default 0.08 applied",
        affects=RESULT,
        exclusive_minimum=0,
        maximum=1,
    )
    max_random_area: float = setting(
        1.0,
        "Largest crop area of the random-resized crop.",
        original="README.md L35",
        affects=RESULT,
        exclusive_minimum=0,
        maximum=1,
    )
    min_aspect_ratio: float = setting(
        0.75,
        "Smallest aspect ratio (width/height) of the random-resized crop.",
        original="DALI's random-resized-crop range (dali.py L53 passes none)",
        affects=RESULT,
        exclusive_minimum=0,
    )
    max_aspect_ratio: float = setting(
        1.3333333,
        "Largest aspect ratio (width/height) of the random-resized crop.",
        original="DALI's random-resized-crop range (dali.py L53 passes none)",
        affects=RESULT,
        exclusive_minimum=0,
    )
    mean: tuple[float, ...] = setting(
        (123.675, 116.28, 103.53),
        "Per-channel RGB mean subtracted before training, in 0-255 units.",
        original="dali.py L38, 255 x (0.485, 0.456, 0.406)",
        affects=RESULT,
        length=3,
    )
    std: tuple[float, ...] = setting(
        (58.395, 57.12, 57.375),
        "Per-channel RGB standard deviation divided out, in 0-255 units.",
        original="dali.py L39, 255 x (0.229, 0.224, 0.225)",
        affects=RESULT,
        length=3,
        exclusive_minimum=0,
    )
    dali_threads: int = setting(
        3,
        "DALI CPU threads of each device's training pipeline.",
        original="dali.py L29-30 (the runner passes none, runner L50-96)",
        affects=SPEED,
        minimum=1,
    )
    dali_val_threads: int = setting(
        10,
        "DALI CPU threads of each device's validation and scoring pipeline.",
        original="dali.py L31-32 (the runner passes none, runner L50-96)",
        affects=SPEED,
        minimum=1,
    )
    prefetch_queue_depth: int = setting(
        2,
        "Batches each DALI pipeline prepares ahead.",
        original="runner L79 (--dali-prefetch-queue 2), over dali.py's own default of 3 (L33)",
        affects=SPEED,
        minimum=1,
    )
    nvjpeg_padding_mb: int = setting(
        64,
        "nvJPEG memory padding of the GPU (mixed) decoder, on the device and on the host,"
        " in MiB, so larger images do not reallocate; unused by host decoding.",
        original="runner L79 (--dali-nvjpeg-memory-padding 64), dali.py L51-52, L84-85",
        affects=SPEED,
        minimum=0,
    )
