"""The experiment behind the published reference numbers, and which measured points are
that experiment.

A measured point is compared with a reference point only when it is the same experiment:
ResNet-50 v1.5 at 224x224 on GPUs (for accuracy also 90 epochs on ImageNet's 1000 classes)
at the same GPU count, dtype and batch. The reference tables carry these settings as
columns and the joins match on them, so a CPU point or a demo at 32 px never gets a ratio.
"""

import pandas as pd

REFERENCE_HARDWARE = "NVIDIA DGX-1 (8x V100 16 GB), container mxnet-18.12-py3"
REFERENCE_INFERENCE_HARDWARE = "one V100 16 GB of an NVIDIA DGX-1, container mxnet-18.12-py3"
REFERENCE_LABEL = "reference, DGX-1 V100, 224 px"

# The experiment behind the reference numbers (beyond GPU count, dtype and batch), and in
# words. Accuracy rows must also match the training task.
REFERENCE_SETUP = {"network": "ResNet-50 v1.5", "image_size": 224}
REFERENCE_TASK = {"classes": 1000, "epochs": 90}
REFERENCE_SETUP_TEXT = "ResNet-50 v1.5 at 224x224 px"
REFERENCE_TASK_TEXT = "90 epochs on ImageNet's 1000 classes"

# The columns a measured row and a reference row must share to be compared.
ACCURACY_KEYS = ["gpus", "dtype", *REFERENCE_SETUP, *REFERENCE_TASK]
TRAINING_KEYS = ["gpus", "dtype", "batch_per_device", *REFERENCE_SETUP]
INFERENCE_KEYS = ["gpus", "dtype", "batch_size", *REFERENCE_SETUP]


def same_experiment(table, experiment):
    """True for rows on GPUs whose columns equal the experiment's settings."""
    same = table["gpus"].fillna(0).astype(int) >= 1
    for column, value in experiment.items():
        same &= table[column].eq(value).fillna(False).astype(bool)
    return same


def device_label(gpus):
    """'CPU' for gpus 0 (the contracts' convention), else the GPU count."""
    if pd.isna(gpus):
        return "unknown"
    gpus = int(gpus)
    return "CPU" if gpus == 0 else f"{gpus} GPU" + ("s" if gpus > 1 else "")


def setup_suffix(network, image_size):
    """', 32 px' (and the network when it is not ResNet-50 v1.5) for legends, so that a
    demo point is never read as one at the reference's 224 px; '' for the reference's."""
    parts = [] if network == REFERENCE_SETUP["network"] else [network]
    parts += [] if image_size == REFERENCE_SETUP["image_size"] else [f"{image_size} px"]
    return "".join(f", {part}" for part in parts)


def nodes_label(nodes, gpus):
    """device_label(gpus) on one node; '4 nodes x 8 GPUs' on several."""
    if pd.isna(nodes) or int(nodes) == 1:
        return device_label(gpus)
    return f"{int(nodes)} nodes x {device_label(gpus)}"
