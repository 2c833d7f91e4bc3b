"""Training runs: the loop, its resumable state, and runs across several nodes.

job.py             TrainingJob: one run's inputs, outputs and settings, as a typed object
run.py             train(job): here, or through the launcher on settings.nodes workers
loop.py            the data-parallel training loop (train_here), validated every epoch
epochs.py          a run's epochs, each from its own input pipeline; resume and save states
epoch_progress.py  how far an epoch got (its metric sums), to save inside it and resume
run_logs.py        the DLLogger log and TensorBoard events a user watches while it trains
interruption.py    stop signals, states by time, the "stopped to be resumed" exit status
slurm_job.py       stopping ahead of a SLURM job's end, and requeuing the job to resume
attempts.py        each start of a run, its wall time and how it ended, for report.json
checkpoints.py     resumable state of each position and the exported model-NNNN.params
distributed.py     a worker's place in a run on MXNet's distributed kvstore
launcher.py        starting and watching the scheduler, servers and workers (local, srun)
"""
