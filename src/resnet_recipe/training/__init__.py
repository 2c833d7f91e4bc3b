"""Training runs: the loop, its resumable state, and runs across several nodes.

job.py          TrainingJob: one run's inputs, outputs and settings, as a typed object
run.py          train(job): here, or through the launcher on settings.nodes workers
loop.py         the data-parallel training loop (train_here), validated every epoch
checkpoints.py  per-epoch resumable state and the exported model-NNNN.params
distributed.py  a worker's place in a run on MXNet's distributed kvstore
launcher.py     starting and watching the scheduler, servers and workers (local, srun)
"""
