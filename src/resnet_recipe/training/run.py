"""Where a training run starts: in this process, or across settings.nodes workers.

    train(TrainingJob(...)) -> the run's out_dir

A run on one node trains here (loop.train_here). A run over several nodes is started by
the launcher, whose workers each train their share of it (launcher.py).
"""

from resnet_recipe.training import launcher, loop


def train(job):
    """Train `job` (a TrainingJob) and return its out_dir."""
    if job.settings.nodes > 1:
        launcher.launch_training(job)
    else:
        loop.train_here(job)
    return job.out_dir
