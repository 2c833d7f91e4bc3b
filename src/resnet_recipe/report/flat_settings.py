"""A training report's settings as one flat mapping, and which of them differ between runs
(compare, the accuracy table's setting columns, the families of replicas).

This module imports neither MXNet, DALI nor pandas.
"""

from resnet_recipe.workflow_support.declaration import EXPORTS, LOGGING, names_affecting
from resnet_recipe.workflow_support.settings import TrainingRun

# The sections of a training report that hold its settings; the training settings keep
# their own names, the others are prefixed with their section (network.depth).
SETTINGS_SECTIONS = ("settings", "network", "pipeline")


def flatten(value, prefix):
    """{dotted name: value} of a nested mapping under `prefix`; lists become tuples."""
    if isinstance(value, dict):
        flat = {}
        for key, inner in value.items():
            flat.update(flatten(inner, f"{prefix}.{key}" if prefix else key))
        return flat
    return {prefix: tuple(value) if isinstance(value, list) else value}


def run_settings(report):
    """{setting: value} of a training report: the training settings by name (without the
    presentation settings, which change no result), network.* and pipeline.*; lists become
    tuples, so values compare and hash."""
    flat = {}
    for section in SETTINGS_SECTIONS:
        prefix = "" if section == "settings" else section
        flat.update(flatten(report.get(section, {}), prefix))
    presentation = names_affecting(TrainingRun, LOGGING, EXPORTS)
    return {name: value for name, value in flat.items() if name not in presentation}


def differing(settings):
    """The names (sorted) whose value is not the same in every dict of `settings`; a name
    missing from one of them differs."""
    names = sorted(set().union(*settings)) if settings else []
    missing = object()
    return [name for name in names if len({repr(s.get(name, missing)) for s in settings}) > 1]
