"""The training runs a config asks for: training.runs, each sweep point of training.sweeps,
and one replica per seed of either, each with its name and its merged settings.

    planned_runs(config)   {name: PlannedRun}, in the config's order

A run or sweep point with several `seeds` becomes one run per seed, named NAME.seedN,
with `seed` set to N; with one seed or none it keeps its name. A sweep

    training:
      sweeps:
        lr_study:
          base: cpu_fp32                 # a run of training.runs (optional)
          settings: {epochs: 2}          # overrides of the base (optional)
          grid: {lr_per_256: [0.1, 0.2], batch_per_device: [16, 32]}

is one run per combination of its grid's values, named after the sweep and each value in
the order of the setting names (lr_study.batch_per_device-16.lr_per_256-0.1). Settings are
merged from the lowest level up: training.defaults, the base run, the sweep's settings,
the grid point. A level that sets `seed` drops the `seeds` of the levels below it (and
one that sets `seeds` overrides their `seed`); a run, a sweep's settings or its grid
that sets both is an error. In training.defaults, where the schema fills in the default
seed, seeds overrides seed.

Every expanded run is an ordinary run of the workflow: its own train and score job,
cached and rerun like any run. The values are checked by TrainingRun.from_config when a
run's settings are built (settings.run_settings); this module checks the layout.
"""

import itertools
import re
from dataclasses import dataclass

from resnet_recipe.files.user_errors import UserError

# A training run's name: it becomes part of paths and of the {run} wildcard.
RUN_NAME = "^[A-Za-z0-9][A-Za-z0-9_.-]*$"
# What a sweep's grid may not vary: its points' replicas come from seeds, not the grid.
NOT_IN_GRID = ("seeds",)


@dataclass(frozen=True)
class PlannedRun:
    """One run to train: its name, the run or sweep point it is a replica of (family; the
    name itself for a run of one seed), the config path its settings come from (named in
    errors), its merged settings (a config mapping, not yet checked), and whether it is
    its family's first seed (the one exported to ONNX)."""

    name: str
    family: str
    option: str
    settings: dict
    first_replica: bool = True


def planned_runs(config):
    """{run name: PlannedRun} of every run `config` asks for; a ValueError naming the key
    for a layout error (seed and seeds at one level, an unknown base, an empty grid, a
    name used twice or not fit for a path)."""
    training = config.get("training") or {}
    # The schema fills in the default seed of training.defaults, so there seeds cannot be
    # told from a seed given beside it: seeds wins.
    defaults = _level(training.get("defaults"), "training.defaults", check_seeds=False)
    if defaults.get("seeds"):
        defaults = {name: value for name, value in defaults.items() if name != "seed"}
    runs = training.get("runs") or {}
    families = []
    for name, overrides in runs.items():
        option = f"training.runs.{name}"
        families.append((name, option, _merged([defaults, _level(overrides, option)])))
    for sweep, spec in (training.get("sweeps") or {}).items():
        families += _sweep_points(sweep, spec, defaults, runs)
    planned = {}
    for family, option, settings in families:
        for run in _replicas(family, option, settings):
            if run.name in planned:
                raise UserError(
                    f"{option}: run name {run.name!r} is also made by {planned[run.name].option}"
                )
            if not re.match(RUN_NAME, run.name):
                raise UserError(f"{option}: run name {run.name!r} does not match {RUN_NAME}")
            planned[run.name] = run
    return planned


def _level(mapping, option, check_seeds=True):
    """A level of settings (a mapping, {} for none), checked for seed beside seeds."""
    mapping = {} if mapping is None else mapping
    if not isinstance(mapping, dict):
        raise UserError(f"{option}: expected a mapping of settings, not {mapping!r}")
    if check_seeds and "seed" in mapping and mapping.get("seeds"):
        raise UserError(f"{option}: give seed (one run) or seeds (one replica per seed), not both")
    return mapping


def _merged(levels):
    """The settings of levels merged from the lowest up; seed at a level drops the seeds
    of the levels below it."""
    merged = {}
    for level in levels:
        if "seed" in level:
            merged.pop("seeds", None)
        merged.update(level)
    return merged


def _sweep_points(sweep, spec, defaults, runs):
    """[(point name, option, merged settings)] of the sweep `sweep` (its config mapping
    `spec`), one per combination of its grid's values."""
    option = f"training.sweeps.{sweep}"
    if not isinstance(spec, dict):
        raise UserError(f"{option}: expected a mapping with grid (and base, settings)")
    unknown = sorted(set(spec) - {"base", "settings", "grid"})
    if unknown:
        raise UserError(f"{option}: unknown key(s) {unknown}; known: base, settings, grid")
    levels = [defaults]
    base = spec.get("base")
    if base is not None:
        if base not in runs:
            raise UserError(f"{option}.base: no run {base!r} in training.runs ({sorted(runs)})")
        levels.append(_level(runs[base], f"training.runs.{base}"))
    levels.append(_level(spec.get("settings"), f"{option}.settings"))
    grid = spec.get("grid")
    if not isinstance(grid, dict) or not grid:
        raise UserError(f"{option}.grid: expected settings, each with a list of values")
    for key, values in grid.items():
        if key in NOT_IN_GRID:
            raise UserError(f"{option}.grid.{key}: replicas come from seeds, not from the grid")
        if not isinstance(values, list) or not values:
            raise UserError(f"{option}.grid.{key}: expected a non-empty list of values")
    keys = sorted(grid)
    points = []
    for values in itertools.product(*(grid[key] for key in keys)):
        point = dict(zip(keys, values, strict=True))
        name = sweep + "".join(f".{key}-{value_text(value)}" for key, value in point.items())
        points.append((name, option, _merged([*levels, point])))
    return points


def value_text(value):
    """A swept value as part of a run name: 0.05, 128, cosine, 20_27 for a list."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list | tuple):
        return "_".join(value_text(item) for item in value)
    return str(value)


def _replicas(family, option, settings):
    """The runs of one family: one per seed of its seeds, or the family itself."""
    settings = dict(settings)
    seeds = settings.pop("seeds", None) or []
    if not isinstance(seeds, list) or not all(
        isinstance(seed, int) and not isinstance(seed, bool) and seed >= 0 for seed in seeds
    ):
        raise UserError(f"{option}.seeds: expected a list of integers >= 0, not {seeds!r}")
    if len(set(seeds)) != len(seeds):
        raise UserError(f"{option}.seeds: a seed is listed twice in {seeds}")
    if len(seeds) <= 1:
        settings.update({"seed": seeds[0]} if seeds else {})
        return [PlannedRun(family, family, option, settings)]
    return [
        PlannedRun(f"{family}.seed{seed}", family, option, {**settings, "seed": seed}, i == 0)
        for i, seed in enumerate(seeds)
    ]
