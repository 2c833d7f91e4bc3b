"""Where a training run starts: in this process, or across settings.nodes workers.

    train(TrainingJob(...)) -> the run's out_dir

A run on one node trains here (loop.train_here). A run over several nodes is started by
the launcher, whose workers each train their share of it (launcher.py). Inside a SLURM
job, a run that stopped ahead of the job's end requeues the job here, in the job's own
process, never in a worker.
"""

from resnet_recipe.training import launcher, loop, slurm_job
from resnet_recipe.training.interruption import RunStopped


def train(job):
    """Train `job` (a TrainingJob) and return its out_dir. A run that stopped ahead of its
    SLURM job's end requeues the job (slurm_job.py) before RunStopped ends the process."""
    try:
        if job.settings.nodes > 1:
            launcher.launch_training(job)
        else:
            loop.train_here(job)
    except RunStopped:
        slurm_job.requeue_after_stop(job.settings)
        raise
    return job.out_dir
