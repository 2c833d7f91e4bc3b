"""One training run to do, as a typed object: where its data and outputs are and its
settings. The same object goes from the stage script or the command line to the loop, and,
for a run over several nodes, through a JSON file to every worker."""

import dataclasses
import json
from dataclasses import dataclass, field

from resnet_recipe.workflow_support.settings import (
    Distributed,
    InputPipeline,
    Network,
    TrainingRun,
)

# The fields that are settings sections, and their classes (JSON holds them as mappings).
SECTIONS = {
    "settings": TrainingRun,
    "network_settings": Network,
    "pipeline_settings": InputPipeline,
    "distributed_settings": Distributed,
}


@dataclass(frozen=True)
class TrainingJob:
    """settings: the run; network_settings, pipeline_settings: the network and input
    sections; distributed_settings: how the roles of a run over several nodes meet.
    state_root holds the resumable state (one folder per settings digest), out_dir the
    outputs, written at the end; lock_dir the GPU lock files."""

    train_rec: str
    train_idx: str
    val_rec: str
    val_idx: str
    classes_tsv: str
    out_dir: str
    state_root: str
    settings: TrainingRun
    network_settings: Network
    pipeline_settings: InputPipeline
    lock_dir: str
    run: str = "run"
    distributed_settings: Distributed = field(default_factory=Distributed)

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)

    def to_json(self):
        """The job as JSON text (settings sections as config mappings)."""
        fields = {item.name: getattr(self, item.name) for item in dataclasses.fields(self)}
        return json.dumps(
            {
                name: value.to_config() if name in SECTIONS else value
                for name, value in fields.items()
            },
            indent=1,
        )

    @classmethod
    def from_json(cls, text):
        mapping = json.loads(text)
        return cls(
            **{
                name: SECTIONS[name].from_config(value, name) if name in SECTIONS else value
                for name, value in mapping.items()
            }
        )
