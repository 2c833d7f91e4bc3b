"""A worker's place in a run across several workers on MXNet's distributed kvstore.

A run with `nodes: N` above 1 runs N workers (one per node under SLURM, started by
launcher.py), each driving its own devices through the same training loop; their gradients
meet in MXNet's `dist_sync` (`dist_sync_device` on GPUs) kvstore, served by one parameter
server per worker and coordinated by one scheduler. join() connects a worker (the DMLC_*
variables of its environment say where) and gives its Membership: rank, number of
workers, the kvstore for the Trainer, and sums over all workers through that kvstore (the
metrics, the BN running statistics of a checkpoint).
"""

import contextlib
import logging
import os
from dataclasses import dataclass, field

from resnet_recipe.files.user_errors import UserError

log = logging.getLogger(__name__)

# The line a worker logs once it is connected; launchers count these.
READY_MARK = "distributed worker connected"
# Integer keys of the kvstore that carry sums of metrics, far above the Trainer's keys
# (which number the parameters from 0).
METRIC_KEY_BASE = 1 << 30


@dataclass
class Membership:
    """Where this process stands in a run: rank of workers, and the kvstore the
    Trainer reduces gradients through (a type name, or the connected dist kvstore)."""

    rank: int = 0
    workers: int = 1
    kvstore: object = "device"
    # {name: kvstore key} of the sums made so far (sum_array).
    summed_keys: dict = field(default_factory=dict, repr=False)

    @property
    def writes_outputs(self):
        """Only the first worker writes checkpoints and outputs (all hold the same)."""
        return self.rank == 0

    def sum_over_workers(self, name, values):
        """The element-wise sum of the float list `values` over all workers (each worker
        calls this with the same `name` at the same point); `values` when alone."""
        if self.workers == 1:
            return list(values)
        import mxnet as mx

        return self.sum_array(name, mx.nd.array(values, dtype="float64")).asnumpy().tolist()

    def sum_array(self, name, array):
        """The sum of a host NDArray over all workers, through a kvstore key of its own."""
        import mxnet as mx

        keys = self.summed_keys
        if name not in keys:
            keys[name] = METRIC_KEY_BASE + len(keys)
            self.kvstore.init(keys[name], mx.nd.zeros(array.shape, dtype=array.dtype))
        total = mx.nd.zeros(array.shape, dtype=array.dtype)
        self.kvstore.pushpull(keys[name], array, out=total)
        # Wait for the sum here: a worker that never reads it (it writes no outputs) could
        # otherwise reach the kvstore's exit barrier with its push still queued in its
        # engine, and the workers waiting for that push would wait forever.
        total.wait_to_read()
        return total

    @contextlib.contextmanager
    def statistics_of_all_workers(self, net, rows=None):
        """Within the block, every device holds the BN running statistics averaged over
        the devices of all workers (what a checkpoint of one process over all devices
        holds); the devices' own statistics come back after it. rows: the devices' own,
        as statistics_of_every_device gave them (gathered here when None). Every worker
        must enter."""
        if self.workers == 1:
            yield
            return
        if rows is None:
            rows = self.statistics_of_every_device(net)
        statistics = running_statistics(net)
        own = {name: [c.copy() for c in param.list_data()] for name, param in statistics.items()}
        average = rows.sum(axis=0) / rows.shape[0]
        offset = 0
        for name, copies in own.items():
            size = copies[0].size
            values = average[offset : offset + size].reshape(copies[0].shape)
            statistics[name].set_data(values.astype(copies[0].dtype))
            offset += size
        try:
            yield
        finally:
            for name, copies in own.items():
                for target, source in zip(statistics[name].list_data(), copies, strict=True):
                    source.copyto(target)

    def statistics_of_every_device(self, net):
        """Every device's own BN running statistics, one float64 row per device of all
        workers in shard order (shard_plan), on every worker (one sum over the kvstore):
        the first saves them, and statistics_of_all_workers averages them. A resume gives
        each device its own row back (restore_device_statistics): the average a
        checkpoint's parameters hold would round differently from the devices' own in
        later updates. Every worker must call this."""
        import mxnet as mx

        statistics = running_statistics(net).values()
        local_devices = len(next(iter(statistics)).list_data())
        local = mx.nd.stack(
            *(
                mx.nd.concat(
                    *(_host_copy(param.list_data()[device]) for param in statistics), dim=0
                )
                for device in range(local_devices)
            )
        )
        if self.workers == 1:
            return local
        first, total = shard_plan(self, local_devices)
        placed = mx.nd.zeros((total, local.shape[1]), dtype="float64")
        placed[first : first + local_devices] = local
        # Zeros elsewhere: the sum over workers is every worker's rows, exactly.
        return self.sum_array("BN statistics of every device", placed)

    def require_same(self, what, value):
        """Stop unless every worker holds the same integer `value` (the epoch to resume
        after: workers on separate file systems would otherwise train apart)."""
        count, total, squares = self.sum_over_workers(what, [1, value, value * value])
        mean = total / count
        if squares / count - mean * mean > 1e-9:
            raise UserError(
                f"the {int(count)} workers disagree on {what} (mean {mean:g}, this worker "
                f"{value}): do all nodes see the same checkpoint folder?"
            )


def _host_copy(array):
    """`array` flattened into float64 on the host (exact for float16 and float32)."""
    import mxnet as mx

    return array.as_in_context(mx.cpu()).astype("float64").reshape(-1)


def running_statistics(net):
    """{name: Parameter} of net's BN running statistics (the parameters without gradient)."""
    return {name: p for name, p in net.collect_params().items() if p.grad_req == "null"}


def restore_device_statistics(net, rows, first_row):
    """Give each of this worker's devices its own BN running statistics back: row
    first_row + d of `rows` (statistics_of_every_device) for device d."""
    statistics = running_statistics(net).values()
    for device in range(len(next(iter(statistics)).list_data())):
        row, offset = rows[first_row + device], 0
        for param in statistics:
            target = param.list_data()[device]
            values = row[offset : offset + target.size].reshape(target.shape)
            values.astype(target.dtype).copyto(target)
            offset += target.size
        if offset != row.size:
            raise ValueError(f"saved BN statistics hold {row.size} values, the network {offset}")


def is_worker():
    return os.environ.get("DMLC_ROLE") == "worker"


def join(run):
    """This process's Membership in `run` (a settings.TrainingRun): alone (kvstore
    `device`) unless it was started as a distributed worker, which connects to the kvstore
    here (blocking until every worker and server has registered with the scheduler)."""
    if not is_worker():
        return Membership()
    import mxnet as mx

    kvstore = mx.kv.create("dist_sync_device" if run.gpus else "dist_sync")
    log.info("%s: rank %d of %d", READY_MARK, kvstore.rank, kvstore.num_workers)
    if kvstore.num_workers != run.nodes:
        raise UserError(
            f"the run has nodes: {run.nodes} but the kvstore has {kvstore.num_workers} workers"
        )
    return Membership(kvstore.rank, kvstore.num_workers, kvstore)


class CountedBatches:
    """Batches (pipelines.Batches) that count the real images (DeviceBatch.valid) they
    hand out, so that each worker's share of a validation average has its weight."""

    def __init__(self, batches):
        self.batches = batches
        self.contexts = batches.contexts
        self.images = 0

    def __len__(self):
        return len(self.batches)

    def __iter__(self):
        for device_batches in self.batches:
            self.images += sum(batch.valid for batch in device_batches)
            yield device_batches


def shard_plan(membership, local_devices):
    """(first global shard, shards in all) of this worker's devices: shard numbers run
    over the devices of worker 0, then worker 1, ..., so each worker's DALI pipelines read
    their own part of the records whatever the number of workers."""
    return membership.rank * local_devices, membership.workers * local_devices
