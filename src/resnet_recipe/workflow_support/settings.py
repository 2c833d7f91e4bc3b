"""Settings: one frozen dataclass per section of the config, built once where a stage
starts (its stage script, or the command line) and read by name everywhere after.

    TrainingRun    training.defaults with one run's overrides (training.runs.NAME)
    Network        network
    InputPipeline  input
    Score          score
    BenchTrain     benchmark.train, without its points
    BenchInfer     benchmark.infer, without its batch sizes
    Onnx           onnx
    Distributed    distributed

    run = TrainingRun.from_config(mapping, "training.runs.cpu_fp32")
    run.batch_per_device

The defaults are the original recipe's (NVIDIA's ResNet50 v1.5 for MXNet, first release,
DeepLearningExamples commit a8e1d1cd, MxNet/Classification/RN50v1.5/) wherever it had one;
the comments name its file and line. The few settings the original did not have, or where
this project departs from it, say so (onnx has no counterpart in the original, which exports
nothing). The config schema carries the same values as its defaults, and a test keeps the
two equal.
from_config stops at a value of the wrong type or an unknown key with a message that names
the option (`training.runs.x.lr_per_256`). A number written as text in exponent form
(`1e-3`, which YAML 1.1 and the command line hand over as text) is the number it says.

This module imports neither MXNet nor DALI: the command line, the Snakefile and the report
read it.
"""

import dataclasses
import re
import types
import typing
from dataclasses import dataclass, field

# Training and inference precisions, in the order the report and the tables show them.
DTYPES = ("float16", "float32")
# Image layouts of the network and its input: channels second (NCHW) or last (NHWC).
LAYOUTS = ("NCHW", "NHWC")
# A decimal number written as text; EXPONENT_NUMBER the forms YAML 1.1 leaves as text
# (1e-3, 2E5, 1.5e+3: YAML 1.1 wants a dot and a signed exponent to see a float).
NUMBER = re.compile(r"^[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?$")
EXPONENT_NUMBER = re.compile(r"^[-+]?(\d+(\.\d*)?|\.\d+)[eE][-+]?\d+$")


def number_from_text(text):
    """The int or float a text says (`1e-3` -> 0.001, `128` -> 128), or None."""
    if not NUMBER.match(text.strip()):
        return None
    value = float(text)
    return int(value) if re.fullmatch(r"[-+]?\d+", text.strip()) else value


def read_config_numbers(config):
    """Replace, in place, every string value of a config mapping that is a number in
    exponent form by that number, so that the schema checks `lr_per_256: 1e-3` as the
    number it is. Keys and other strings (`version: "1.5"`) stay as they are."""

    def as_number(value):
        if isinstance(value, str) and EXPONENT_NUMBER.match(value.strip()):
            return float(value)
        if isinstance(value, dict):
            for key, item in value.items():
                value[key] = as_number(item)
        elif isinstance(value, list):
            value[:] = [as_number(item) for item in value]
        return value

    as_number(config)
    return config


class Section:
    """What every settings section shares: built from a config mapping, back to one."""

    @classmethod
    def from_config(cls, mapping, option):
        """The section of `mapping` (missing keys take their default). `option` names the
        section in errors: "training.runs.x" gives "training.runs.x.lr_per_256: ..."."""
        known = {item.name: item for item in dataclasses.fields(cls)}
        unknown = sorted(set(mapping) - set(known))
        if unknown:
            raise ValueError(f"{option}: unknown setting(s) {unknown}; known: {sorted(known)}")
        hints = typing.get_type_hints(cls)
        values = {
            name: convert(value, hints[name], f"{option}.{name}") for name, value in mapping.items()
        }
        return cls(**values)

    def to_config(self):
        """The section as a plain mapping (lists for tuples), as JSON and the config hold it."""
        return {
            name: list(value) if isinstance(value, tuple) else value
            for name, value in dataclasses.asdict(self).items()
        }

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)


def convert(value, annotation, option):
    """`value` as the type `annotation` (of a settings field) says, or a ValueError naming
    `option`. Text that is a number is read as one where a number is expected."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        for choice in args:
            try:
                return convert(value, choice, option)
            except ValueError:
                continue
        expected = " or ".join(_type_name(choice) for choice in args)
        raise ValueError(f"{option}: expected {expected}, not {value!r}")
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise ValueError(f"{option}: expected a list, not {value!r}")
        return tuple(convert(item, args[0], f"{option}[{i}]") for i, item in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise ValueError(f"{option}: expected a mapping, not {value!r}")
        return {key: convert(item, args[1], f"{option}.{key}") for key, item in value.items()}
    if annotation is type(None) and value is None:
        return None
    if annotation is bool and isinstance(value, bool):
        return value
    if annotation in (int, float) and isinstance(value, str):
        number = number_from_text(value)
        value = value if number is None else number
    if annotation is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if annotation is float and isinstance(value, int | float) and not isinstance(value, bool):
        return value  # an int stays an int: 5 epochs of warmup are written as 5
    if annotation is str and isinstance(value, str):
        return value
    raise ValueError(f"{option}: expected {_type_name(annotation)}, not {value!r}")


def _type_name(annotation):
    names = {int: "an integer", float: "a number", str: "a text", bool: "true or false"}
    return names.get(annotation, "null" if annotation is type(None) else str(annotation))


# training.weight_decay_on: which parameters SGD decays, by the parameter's name.
#   weights_and_bn_gamma  names ending in _weight or _gamma: convolution and dense weights
#                         and BatchNorm gamma, not BatchNorm beta or biases. MXNet 1.x's
#                         name rule (Optimizer.set_wd_mult, 1.9.1 optimizer.py L388-397),
#                         which the original's Module optimizer went through (fit.py L437,
#                         resnet.py sets no wd_mult).
#   all                   every parameter (what a Gluon Trainer does unless told otherwise,
#                         as NVIDIA's later Gluon versions of the recipe did).
#   weights_only          names ending in _weight: convolution and dense weights only.
WEIGHT_DECAY_RULES = ("weights_and_bn_gamma", "all", "weights_only")
# training.loss_scale: "none" (float16 with float32 master weights and nothing else, as
# the original), "dynamic", or a number (a static scale).
LOSS_SCALES = ("none", "dynamic")


@dataclass(frozen=True)
class TrainingRun(Section):
    """One training run (the config's training.defaults with the run's overrides)."""

    gpus: int = 8  # original: runner L23 (-n 8)
    batch_per_device: int = 208  # original: runner L25 (-b 208)
    dtype: str = "float16"  # original: runner L37 (--dtype float16)
    epochs: int = 90  # original: runner L27-28 (-e 90)
    lr_per_256: float = 0.1  # original: runner L29-30, L48 (lr x global batch / 256)
    warmup_epochs: float = 5  # original: runner L66 (--warmup-epochs 5), fit.py L78-80
    lr_schedule: str = "step"  # original: fit.py L61-80 (MultiFactorScheduler)
    lr_steps: tuple[int, ...] = (30, 60, 80)  # original: runner L60 (--lr-step-epochs)
    lr_factor: float = 0.1  # original: fit.py L121
    momentum: float = 0.9  # original: fit.py L129-130
    weight_decay: float = 0.0001  # original: fit.py L131-132
    weight_decay_on: str = "weights_and_bn_gamma"  # original: see WEIGHT_DECAY_RULES
    label_smoothing: float = 0.0  # original: resnet.py L298 (plain SoftmaxOutput)
    # original: fit.py L266-270 are the complete optimizer params: multi_precision SGD, no
    # loss scaling of any kind.
    loss_scale: float | str = "none"
    # A dynamic loss scale that overflows this many steps in a row at its floor (1) means
    # the run diverged: training stops (not in the original, which had no loss scaling).
    max_overflows_at_min_loss_scale: int = 100
    # Not the original's: it set no global seed (data.py L80, --seed default None) and
    # seeded each DALI pipeline with 12 + device id (dali.py L46, L80). A fixed seed makes
    # runs repeatable.
    seed: int = 1
    log_interval: int = 20  # original: runner L67 (--disp-batches 20)
    # Export model-NNNN.params after every epoch divisible by this, and after the last
    # one; 0 exports the last epoch only. original: fit.py L139 (--save-period 1) with
    # mx.callback.do_checkpoint (fit.py L97-101): every epoch.
    export_every: int = 1
    cpu_contexts: int = 1
    nodes: int = 1


# Settings that change how a run is watched or stopped, never what it computes: a change
# of these reruns nothing.
WATCH_SETTINGS = ("log_interval", "max_overflows_at_min_loss_scale")
# Settings that change how a run is watched, exported or stopped, not what it computes: a
# change of these still resumes from the run's checkpoints.
PRESENTATION_SETTINGS = (*WATCH_SETTINGS, "export_every")
# What a training benchmark point sets itself; the rest of its run comes from the config's
# training.defaults.
BENCH_POINT_SETTINGS = ("gpus", "batch_per_device", "dtype", "cpu_contexts", "nodes")


@dataclass(frozen=True)
class Network(Section):
    depth: int = 50
    version: str = "1.5"
    zero_init_last_gamma: bool = False
    # Image layout per dtype. The original trained float16 in NHWC (its runner adds the
    # NHWC flags for float16 only, runner L69-74) and float32 in NCHW (data.py L64-77).
    layout: dict[str, str] = field(default_factory=lambda: {"float16": "NHWC", "float32": "NCHW"})

    def layout_for(self, dtype):
        """The layout (NCHW or NHWC) the network runs in `dtype`."""
        layout = self.layout.get(dtype)
        if layout not in LAYOUTS:
            raise ValueError(
                f"network.layout.{dtype} is {layout!r}, expected one of {', '.join(LAYOUTS)}"
            )
        return layout

    @property
    def model_name(self):
        """The original benchmark.py's model name: resnet50_v1.5."""
        return f"resnet{self.depth}_v{self.version}"


@dataclass(frozen=True)
class InputPipeline(Section):
    """The input pipelines (the config's `input` section)."""

    backend: str = "dali-gpu"
    image_size: int = 224
    val_resize: int = 256
    # The original's README (L35) says 5% to 100%, and its runner passes 0.05 (L61), but
    # that reached only the unused ImageRecordIter path (data.py L239-246; train.py L91
    # always trains through dali.py, whose crop passes no area, L53): DALI's 8% applied.
    min_random_area: float = 0.05
    max_random_area: float = 1.0
    min_aspect_ratio: float = 0.75
    max_aspect_ratio: float = 1.3333333
    # original: dali.py L38-39, 255 x (0.485, 0.456, 0.406) and 255 x (0.229, 0.224, 0.225)
    mean: tuple[float, ...] = (123.675, 116.28, 103.53)
    std: tuple[float, ...] = (58.395, 57.12, 57.375)
    # DALI CPU worker threads of each device's pipeline. original: dali.py L29-32 (3 for
    # training, 10 for validation; the runner passes neither, runner L50-96).
    dali_threads: int = 3
    dali_val_threads: int = 10
    # Batches DALI prepares ahead. original: runner L79 (--dali-prefetch-queue 2), which
    # overrides dali.py's own default of 3 (L33).
    prefetch_queue_depth: int = 2
    # Extra memory nvJPEG allocates up front on the device and on the host, in MiB, so
    # larger images do not reallocate; only the GPU ("mixed") decoder takes it.
    # original: runner L79 (--dali-nvjpeg-memory-padding 64), dali.py L51-52, L84-85.
    nvjpeg_padding_mb: int = 64


# Input settings that change how fast batches come and how much memory they reserve, never
# which batches: DALI gives the same batches for any thread count, prefetch depth and
# decoder padding (tests/test_pipelines.py). A change of these reruns only the benchmarks
# and resumes a run from its checkpoints.
INPUT_SPEED_SETTINGS = (
    "dali_threads",
    "dali_val_threads",
    "prefetch_queue_depth",
    "nvjpeg_padding_mb",
)


@dataclass(frozen=True)
class Distributed(Section):
    """How the roles of a run over several nodes find each other (the config's
    `distributed` section): ps-lite binds to `interface` and has no authentication."""

    interface: str = "lo"
    connect_timeout: float = 300


@dataclass(frozen=True)
class Score(Section):
    epoch: int | None = None
    # Images per batch by the run's dtype. original: examples/SCORE_FP16.sh L19 (-b 128),
    # examples/SCORE_FP32.sh L19 (-b 64 --dtype float32).
    batch_size: dict[str, int] = field(default_factory=lambda: {"float16": 128, "float32": 64})

    def batch_size_of(self, dtype):
        """The scoring batch of a run trained in `dtype`."""
        if dtype not in self.batch_size:
            raise ValueError(
                f"score.batch_size has no entry for {dtype} (it has {self.batch_size})"
            )
        return self.batch_size[dtype]


@dataclass(frozen=True)
class BenchTrain(Section):
    """The original benchmark.py -i 100 -e 12 -w 4 and its --num-examples per precision."""

    data: str = "dali"
    iterations: int = 100
    epochs: int = 12
    warmup_epochs: int = 4
    num_examples: dict[str, int] = field(
        default_factory=lambda: {"float16": 25600, "float32": 12800}
    )


@dataclass(frozen=True)
class BenchInfer(Section):
    """The original benchmark.py --only-inference -i 200 -e 12 -w 4 of its published
    inference table (README L207-208), then a pass of latency_iterations waited batches."""

    data: str = "dali"
    iterations: int = 200
    epochs: int = 12
    warmup_epochs: int = 4
    latency_iterations: int = 100
    gpus: int = 1


@dataclass(frozen=True)
class Onnx(Section):
    """ONNX export and parity (no counterpart in the original recipe, which exports nothing):
    the largest logit difference onnxruntime may show against MXNet, and whether onnxruntime
    inference points are measured."""

    logit_tolerance: float = 0.001
    benchmark: bool = True
