"""Settings: one frozen dataclass per section of the config, built once where a stage
starts (its stage script, or the command line) and read by name everywhere after.

    TrainingRun    training.defaults with one run's overrides (training.runs.NAME)
    Network        network
    InputPipeline  input
    Score          score
    BenchTrain     benchmark.train, without its points
    BenchInfer     benchmark.infer, without its batch sizes
    Distributed    distributed

    run = TrainingRun.from_config(mapping, "training.runs.cpu_fp32")
    run.batch_per_device

Every default is the original recipe's (NVIDIA's ResNet50 v1.5 for MXNet on a DGX-1); the
config schema carries the same values as its defaults, and a test keeps the two equal.
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


@dataclass(frozen=True)
class TrainingRun(Section):
    """One training run (the config's training.defaults with the run's overrides)."""

    gpus: int = 8
    batch_per_device: int = 208
    dtype: str = "float16"
    epochs: int = 90
    lr_per_256: float = 0.1
    warmup_epochs: float = 5
    lr_schedule: str = "step"
    lr_steps: tuple[int, ...] = (30, 60, 80)
    lr_factor: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 0.0001
    no_wd_on_bn_and_bias: bool = False
    label_smoothing: float = 0.0
    loss_scale: float | str = "dynamic"
    seed: int = 1
    log_interval: int = 50
    cpu_contexts: int = 1
    nodes: int = 1


# Settings that change how a run is watched, not what it computes: a change of these
# still resumes from the run's checkpoints.
PRESENTATION_SETTINGS = ("log_interval",)
# What a training benchmark point sets itself; the rest of its run comes from the config's
# training.defaults.
BENCH_POINT_SETTINGS = ("gpus", "batch_per_device", "dtype", "cpu_contexts", "nodes")


@dataclass(frozen=True)
class Network(Section):
    depth: int = 50
    version: str = "1.5"
    zero_init_last_gamma: bool = False

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
    min_random_area: float = 0.05
    max_random_area: float = 1.0
    min_aspect_ratio: float = 0.75
    max_aspect_ratio: float = 1.3333333
    mean: tuple[float, ...] = (123.68, 116.28, 103.53)
    std: tuple[float, ...] = (58.395, 57.12, 57.375)
    dali_threads: int = 3


@dataclass(frozen=True)
class Distributed(Section):
    """How the roles of a run over several nodes find each other (the config's
    `distributed` section): ps-lite binds to `interface` and has no authentication."""

    interface: str = "lo"
    connect_timeout: float = 300


@dataclass(frozen=True)
class Score(Section):
    epoch: int | None = None
    batch_size: int = 128


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
    data: str = "dali"
    iterations: int = 100
    warmup_iterations: int = 20
    gpus: int = 1
