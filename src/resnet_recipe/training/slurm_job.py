"""The SLURM job a training run is in: when training must stop ahead of the job's time
limit, and requeuing the job after such a stop so that it resumes by itself.

    stop_time(minutes)            # epoch seconds to stop at, None outside a job or without one
    requeue_after_stop(settings)  # after RunStopped: `scontrol requeue` when the job's end was why

SLURM's own warning (`sbatch --signal=USR1@N`) cannot reach the training process: the
Snakemake executor plugin submits `sbatch --wrap`, and with `B:` the signal goes to the
wrapping shell alone, which it ends; without `B:` it goes to job steps only, and a one-node
train job has none. So the run reads its job's end from squeue and stops
training.stop_before_job_end_minutes before it, writing the state of its position. Then
`scontrol requeue` puts the same job back in the queue: the workflow's executor, which
counts REQUEUED and PENDING as still running, keeps waiting on that job id, and the job
starts its script again and resumes from the state. The job must be requeueable (sbatch
--requeue, which profiles/slurm asks through slurm-requeue, or the cluster's JobRequeue=1),
and a requeued job waits AuthInfo's cred_expire (120 s unless the cluster sets it) before
it may start again. A stop on a signal (scancel, preemption) is left to SLURM: preemption
with PreemptMode=REQUEUE requeues a requeueable job itself.
"""

import logging
import os
import subprocess
import time

from resnet_recipe.files.user_errors import UserError

log = logging.getLogger(__name__)

JOB_ID = "SLURM_JOB_ID"
# How often SLURM has started the job again (unset before the first restart).
RESTART_COUNT = "SLURM_RESTART_COUNT"


def end_from_squeue(text):
    """Epoch seconds of squeue's `%e` under SLURM_TIME_FORMAT=%s, None when it names no
    time (a job without a time limit)."""
    text = text.strip()
    return int(text) if text.isdigit() else None


def job_end(job_id):
    """Epoch seconds at which SLURM job job_id reaches its time limit, None without one or
    when squeue cannot tell (logged: the job then runs into its limit)."""
    answer = subprocess.run(
        ["squeue", "--noheader", f"--jobs={job_id}", "--format=%e"],
        capture_output=True,
        text=True,
        env={**os.environ, "SLURM_TIME_FORMAT": "%s"},
        check=False,
    )
    if answer.returncode != 0:
        log.warning(
            "squeue cannot tell when SLURM job %s ends (%s): no stop before its time limit",
            job_id,
            answer.stderr.strip(),
        )
        return None
    return end_from_squeue(answer.stdout)


def stop_time(minutes):
    """Epoch seconds at which training stops `minutes` before the end of the SLURM job it
    runs in; None outside a job, without a time limit, or with minutes 0. UserError when
    that moment has already passed: the job would train nothing."""
    job_id, stop = _stop_ahead_of_end(minutes)
    if stop is None:
        return None
    left = (stop - time.time()) / 60 + minutes
    if time.time() >= stop:
        raise UserError(
            f"SLURM job {job_id} ends in {left:.1f} min, within "
            f"training.stop_before_job_end_minutes ({minutes:g}): ask the train rule a "
            "longer runtime or lower the setting"
        )
    log.info(
        "SLURM job %s ends in %.1f min: training stops %g min before (%s)",
        *(job_id, left, minutes, time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(stop))),
    )
    return stop


def _stop_ahead_of_end(minutes):
    """(this process's SLURM job id or None, epoch seconds `minutes` before the job's end
    or None: outside a job, without a time limit, or with minutes 0)."""
    job_id = os.environ.get(JOB_ID)
    if not job_id or not minutes:
        return job_id, None
    end = job_end(job_id)
    return job_id, None if end is None else end - minutes * 60


def requeue_after_stop(settings):
    """After the run stopped (RunStopped) in a SLURM job: when its stop time had come (the
    stop was the one ahead of the job's end), requeue the job unless it restarted
    settings.max_requeues times already. SLURM then ends this job's processes. Returns
    whether the job was requeued."""
    job_id, stop = _stop_ahead_of_end(settings.stop_before_job_end_minutes)
    if stop is None or time.time() < stop:
        return False
    restarts = int(os.environ.get(RESTART_COUNT) or 0)
    if restarts >= settings.max_requeues:
        log.warning(
            "SLURM job %s is not requeued: it restarted %d times (training.max_requeues); "
            "running the workflow again resumes the run",
            *(job_id, restarts),
        )
        return False
    # Logged first: SLURM ends this process right after the requeue.
    log.info(
        "requeueing SLURM job %s (restart %d): it resumes from this state", job_id, restarts + 1
    )
    answer = subprocess.run(
        ["scontrol", "requeue", job_id], capture_output=True, text=True, check=False
    )
    if answer.returncode != 0:
        log.error(
            "SLURM job %s could not be requeued (%s); it must be submitted with --requeue "
            "(profiles/slurm: slurm-requeue: true); running the workflow again resumes the run",
            *(job_id, answer.stderr.strip()),
        )
        return False
    return True
