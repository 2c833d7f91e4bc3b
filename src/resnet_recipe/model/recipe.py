"""The original recipe's learning rate schedule, optimizer and loss.

Learning rate: lr_per_256 scaled linearly with the global batch, linear warmup from 0 over
warmup_epochs updated every iteration, then either steps (x lr_factor after each epoch in
lr_steps) or a cosine decay to 0 at the end of training. The warmup and steps follow
MXNet's MultiFactorScheduler(warmup_mode="linear", warmup_begin_lr=0) as the original
recipe used it, and the cosine MXNet's CosineScheduler: both see the update count, which
for the 0-based iteration i is i + 1, so the first iteration already moves (base_lr / warmup
iterations) and the last warmup iteration uses the full rate.

Optimizer: SGD with momentum, float32 master weights for float16 (multi_precision) as the
original (fit.py L266-270, L273-275 at a8e1d1cd), gradients summed over the devices and divided by
the global batch (as MXNet's Module did for the original, module.py L506) and by the loss
scale when there is one. Weight decay falls on the parameters training.weight_decay_on
names (settings.WEIGHT_DECAY_RULES); by default those MXNet 1.x's optimizer decayed by
name for the original: convolution and dense weights and BatchNorm gamma.
"""

import math
from dataclasses import dataclass

import mxnet as mx
from mxnet import gluon

from resnet_recipe.files.user_errors import UserError
from resnet_recipe.model.precision import gradients_are_finite
from resnet_recipe.workflow_support.settings import DTYPES, WEIGHT_DECAY_RULES

SCHEDULES = ("step", "cosine")
IMAGES_PER_LR = 256
# Name endings of the parameters each weight-decay rule decays (None: every parameter).
# The network's parameters are named <block>_weight (convolution, dense), <block>_bias,
# and BatchNorm's <block>_gamma, _beta, _running_mean, _running_var.
DECAYED_SUFFIXES = {
    # MXNet 1.9.1 optimizer.py L388-397 (Optimizer.set_wd_mult): wd_mult 0 for every name
    # not ending in _weight or _gamma.
    "weights_and_bn_gamma": ("_weight", "_gamma"),
    "all": None,
    "weights_only": ("_weight",),
}


def scaled_learning_rate(lr_per_256, global_batch):
    """The peak learning rate of a global batch: lr_per_256 scaled linearly."""
    return lr_per_256 * global_batch / IMAGES_PER_LR


def warmup_iterations(warmup_epochs, iterations_per_epoch):
    """Warmup length in whole iterations: warmup_epochs x iterations per epoch rounded to the
    nearest. MXNet's schedulers take a whole warmup_steps (the original's came from whole
    epochs); a fractional warmup_epochs must not lose an iteration to floating point, as
    int() would for 0.29 x 100 = 28.999999999999996."""
    return int(round(warmup_epochs * iterations_per_epoch))


@dataclass(frozen=True)
class LearningRate:
    """One run's learning rate schedule over its global iterations."""

    base_lr: float  # the peak rate: lr_per_256 scaled to the global batch
    iterations_per_epoch: int
    warmup_epochs: float
    kind: str  # one of SCHEDULES
    steps: tuple  # epochs after which a step schedule multiplies the rate by `factor`
    factor: float
    epochs: int

    def __post_init__(self):
        if self.kind not in SCHEDULES:
            raise UserError(f"training.lr_schedule must be one of {SCHEDULES}, not {self.kind!r}")
        if self.iterations_per_epoch < 1:
            raise UserError(
                f"iterations per epoch must be at least 1, not {self.iterations_per_epoch}"
            )
        if list(self.steps) != sorted(set(self.steps)):
            raise UserError(f"training.lr_steps must be increasing epochs, not {self.steps!r}")

    @classmethod
    def of_run(cls, run, global_batch, iterations_per_epoch):
        """The schedule of a settings.TrainingRun at `global_batch` images per iteration."""
        return cls(
            base_lr=scaled_learning_rate(run.lr_per_256, global_batch),
            iterations_per_epoch=iterations_per_epoch,
            warmup_epochs=run.warmup_epochs,
            kind=run.lr_schedule,
            steps=tuple(run.lr_steps),
            factor=run.lr_factor,
            epochs=run.epochs,
        )


def learning_rate(iteration, schedule):
    """Learning rate of the 0-based global `iteration` (epoch * iterations_per_epoch + batch)
    under `schedule` (a LearningRate).

    step: base_lr * factor ** (epochs in `steps` already finished); cosine: from base_lr at
    the end of warmup down to 0 at the last iteration of `epochs`.
    """
    update = iteration + 1  # what MXNet's optimizer counts when it makes this update
    per_epoch = schedule.iterations_per_epoch
    warmup = warmup_iterations(schedule.warmup_epochs, per_epoch)
    if update < warmup:
        return schedule.base_lr * update / warmup
    if schedule.kind == "step":
        steps_done = sum(update > step * per_epoch for step in schedule.steps)
        return schedule.base_lr * schedule.factor**steps_done
    total = schedule.epochs * per_epoch
    if update >= total:
        return 0.0
    return schedule.base_lr * (1 + math.cos(math.pi * (update - warmup) / (total - warmup))) / 2


class IterationSchedule(mx.lr_scheduler.LRScheduler):
    """learning_rate() of the global iteration, as an MXNet scheduler.

    The optimizer's own update count leaves out steps skipped for loss-scale overflow, so
    the schedule follows `iteration`, which set_iteration() sets before every update (on
    resume too, whatever count the optimizer restored). It is part of the optimizer, so
    Trainer.save_states/load_states carry it.
    """

    def __init__(self, schedule):
        super().__init__(base_lr=schedule.base_lr)
        self.schedule = schedule
        self.iteration = None
        # (update count, iteration) of the newest update; later calls with the same count
        # are other devices' updaters or someone reading trainer.learning_rate.
        self._last_update = (0, None)

    def __call__(self, num_update):
        if self.iteration is None:
            raise RuntimeError("call recipe.set_iteration(trainer, iteration) before each update")
        counted, iteration_then = self._last_update
        if num_update != counted:
            if self.iteration == iteration_then:
                # A new update at the previous update's iteration: set_iteration was skipped.
                raise RuntimeError(
                    f"update {num_update} would reuse the learning rate of iteration "
                    f"{self.iteration}; call recipe.set_iteration(trainer, iteration) before "
                    "each update"
                )
            self._last_update = (num_update, self.iteration)
        return learning_rate(self.iteration, self.schedule)


def set_iteration(trainer, iteration):
    """Make the trainer's next update use the learning rate of global `iteration`."""
    schedule = trainer.optimizer.lr_scheduler
    if not isinstance(schedule, IterationSchedule):
        raise TypeError("the trainer was not built by recipe.make_trainer")
    schedule.iteration = iteration


def set_weight_decay_rule(params, rule):
    """Set wd_mult 1 on the parameters `rule` (one of WEIGHT_DECAY_RULES) decays and 0 on
    the others; return the names of the decayed ones."""
    if rule not in WEIGHT_DECAY_RULES:
        raise UserError(
            f"training.weight_decay_on must be one of {WEIGHT_DECAY_RULES}, not {rule!r}"
        )
    suffixes = DECAYED_SUFFIXES[rule]
    decayed = []
    for name, param in params.items():
        param.wd_mult = 1.0 if suffixes is None or name.endswith(suffixes) else 0.0
        if param.wd_mult:
            decayed.append(name)
    return decayed


def make_trainer(params, run, global_batch, iterations_per_epoch, dtype, kvstore="device"):
    """A Gluon Trainer running the recipe's SGD over `params` (net.collect_params()) with
    the settings of `run` (a settings.TrainingRun).

    Gradients are summed over the devices by `kvstore` and applied by update_parameters(),
    which divides them by the global batch; float16 gets float32 master weights and
    momentum.
    """
    if dtype not in DTYPES:
        raise UserError(f"training dtype must be one of {DTYPES}, not {dtype!r}")
    set_weight_decay_rule(params, run.weight_decay_on)
    schedule = IterationSchedule(LearningRate.of_run(run, global_batch, iterations_per_epoch))
    optimizer = mx.optimizer.SGD(
        learning_rate=schedule.base_lr,
        momentum=run.momentum,
        wd=run.weight_decay,
        multi_precision=dtype == "float16",
        lr_scheduler=schedule,
    )
    # Updates on the workers, not in the kvstore: the gradients can then be checked for
    # overflow between the all-reduce and the update, and the optimizer (master weights,
    # lr schedule) lives in this process.
    return gluon.Trainer(params, optimizer, kvstore=kvstore, update_on_kvstore=False)


def broadcast_first_parameters(trainer):
    """The Trainer's first reduction, made to wait on both sides: it copies every parameter
    of the first device to the others (in a distributed kvstore: of the first worker to
    all), BN running statistics included, before the first gradients are reduced.

    Before: MXNet 1.9.1's BatchNorm updates its running statistics in place in its backward
    operator, which the engine sees as a read, so the copy, another read, does not wait for
    it: without the first wait the first iteration's update is lost on every device of a
    multi-device run.

    After: in a distributed kvstore (kvstore_dist.h, 1.9.1) the copy is an init by worker 0
    and a pull of every key into the parameters (InitImpl L192-211, PullDefault L500-528),
    and the gradients then go through the same keys (PushPullImpl L217-260), writing other
    arrays, so the engine does not order the two. The server answers a pull at once with
    what the key holds (kvstore_dist_server.h L759-760), and once every worker's gradients
    of the first step have arrived a key holds their sum, not the weights (ApplyUpdates,
    L349-360, no server-side updater with update_on_kvstore off). A worker whose pull is
    late (a busy machine) can take gradient sums for weights: with two CPU burners beside a
    two-worker run, one worker's loss left the single-process run's at its second iteration
    in 7 of 25 runs, and in none of 10 with this wait. Waiting for the pulls before any
    gradient is pushed orders them.
    """
    mx.nd.waitall()
    if not trainer._kv_initialized:
        trainer._init_kvstore()
    trainer._init_params()
    mx.nd.waitall()


def update_parameters(trainer, iteration, global_batch, loss_scaler):
    """One optimizer step after backward() of losses multiplied by loss_scaler.scale.

    Sums the gradients over the devices; a dynamic scaler then checks them (one host
    sync) and an overflow skips the update; the update uses the learning rate of global
    `iteration` and divides the gradients by global_batch * scale. Returns whether the
    parameters were updated. Without a dynamic scaler nothing here waits for the devices:
    the training loop finds non-finite updates in the loss and the weights
    (precision.weights_are_finite) where it waits anyway.
    """
    set_iteration(trainer, iteration)
    if trainer._params_to_init:
        broadcast_first_parameters(trainer)
    trainer.allreduce_grads()
    # Trainer keeps no public list of its parameters; _params is the list it updates.
    finite = not loss_scaler.dynamic or gradients_are_finite(trainer._params)
    if finite:
        trainer.update(global_batch * loss_scaler.scale)
    loss_scaler.update(finite)
    return finite


class CrossEntropy(gluon.HybridBlock):
    """Per-image softmax cross-entropy of logits against integer labels, in float32
    (float16 logits are cast first). With label_smoothing eps the target puts
    1 - eps + eps/classes on the label and eps/classes on every other class."""

    def __init__(self, classes, label_smoothing=0.0):
        super().__init__(prefix="loss_")
        if not 0 <= label_smoothing < 1:
            raise UserError(f"training.label_smoothing must be in [0, 1), not {label_smoothing}")
        self.classes = classes
        self.label_smoothing = label_smoothing
        with self.name_scope():
            self.loss = gluon.loss.SoftmaxCrossEntropyLoss(sparse_label=label_smoothing == 0)

    def hybrid_forward(self, F, logits, label):
        logits = F.cast(logits, dtype="float32")
        label = F.reshape(label, shape=(-1,))  # pipelines give (batch,) or (batch, 1)
        if self.label_smoothing:
            off = self.label_smoothing / self.classes
            label = F.one_hot(
                label, depth=self.classes, on_value=1 - self.label_smoothing + off, off_value=off
            )
        return self.loss(logits, label)
