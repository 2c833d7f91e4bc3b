"""float16 training: where it can run, what is cast, master weights, and loss scaling.

float16 training keeps convolution and dense weights and all activations in float16,
BatchNorm parameters and statistics in float32 (MXNet's BatchNorm takes float16 data with
float32 parameters), float32 master copies of the float16 weights in the optimizer (SGD
with multi_precision). Loss scaling is optional: the original recipe had none (its fit.py
L266-270, L273-275 pass multi_precision SGD with momentum, nothing else); a static or a
dynamic scale keeps small gradients from vanishing in float16.
"""

import mxnet as mx
import numpy as np
from mxnet import autograd
from mxnet.gluon import nn

from resnet_recipe.files.user_errors import UserError
from resnet_recipe.workflow_support.settings import DTYPES

# multi_all_finite reads at most 200 arrays per call (MultiAllFiniteKernelParam::N).
FINITE_CHECK_CHUNK = 200


def require_dtype_supported(dtype, contexts, what=None):
    """Stop at once, with the reason, when `dtype` cannot run on `contexts`; `what` (the
    job: a benchmark point, a scoring) starts the message when given."""
    job = f"{what}: " if what else ""
    if dtype not in DTYPES:
        raise UserError(f"{job}dtype must be one of {DTYPES}, not {dtype!r}")
    cpus = [str(ctx) for ctx in contexts if ctx.device_type == "cpu"]
    if dtype == "float16" and cpus:
        raise UserError(
            f"{job}float16 training needs GPUs, but the run uses {', '.join(cpus)}: MXNet 1.9.1 "
            "has no float16 matrix multiply on the CPU (its convolutions fail with 'FP16 gemm on "
            "cpu not implemented'). Train on the CPU with dtype float32, or give the run gpus."
        )


def parameter_dtypes(net, dtype):
    """{parameter name: dtype} a network holds once cast to `dtype`: BatchNorm parameters
    and running statistics stay float32, every other parameter takes `dtype`."""
    batch_norm_params = set()

    def collect(block):
        if isinstance(block, nn.BatchNorm):
            batch_norm_params.update(block.params.keys())

    net.apply(collect)
    return {
        name: "float32" if name in batch_norm_params else np.dtype(dtype).name
        for name in net.collect_params().keys()
    }


def cast_network(net, dtype):
    """Cast the network to `dtype` as parameter_dtypes() describes and check the result.

    Cast before hybridize() and the first forward. The input must then arrive in `dtype`
    too (the input pipelines produce float16 for float16 training): activations follow it.
    """
    if dtype not in DTYPES:
        raise UserError(f"network dtype must be one of {DTYPES}, not {dtype!r}")
    expected = parameter_dtypes(net, dtype)
    net.cast(dtype)  # Gluon's BatchNorm.cast keeps float32 when asked for float16
    actual = {name: np.dtype(p.dtype).name for name, p in net.collect_params().items()}
    wrong = {name: kind for name, kind in actual.items() if kind != expected[name]}
    if wrong:
        raise RuntimeError(f"casting to {dtype} left unexpected parameter dtypes: {wrong}")
    return net


def master_weight(trainer, param):
    """The float32 master copy SGD(multi_precision=True) keeps of a float16 parameter, or
    None (float32 parameter, or no update made yet: states are created at the first one)."""
    # Trainer keeps one updater per device (update_on_kvstore=False); the first device's
    # states hold the same values as the others'. A multi-precision state of a float16
    # weight is (momentum, float32 weight).
    if trainer._update_on_kvstore:
        raise ValueError("master weights are read from a trainer with update_on_kvstore=False")
    state = trainer._updaters[0].states.get(trainer._param2idx[param.name])
    if np.dtype(param.dtype) == np.float16 and isinstance(state, tuple | list):
        return state[1]
    return None


def float32_parameters(net, trainer=None):
    """{name: float32 NDArray on the CPU} of every parameter: trainable ones from the
    optimizer's master copy when `trainer` keeps one, else from the first device; BN
    running statistics (which each device computes on its own share of the batch)
    averaged over the devices."""
    cpu = mx.cpu()
    arrays = {}
    for name, param in net.collect_params().items():
        master = master_weight(trainer, param) if trainer is not None else None
        if master is not None:
            array = master.as_in_context(cpu)
        elif param.grad_req == "null":
            copies = [data.as_in_context(cpu).astype("float32") for data in param.list_data()]
            array = mx.nd.add_n(*copies) / len(copies)
        else:
            array = param.list_data()[0].as_in_context(cpu)
        arrays[name] = array.astype("float32")
    return arrays


def accumulate_finite(arrays, flag):
    """Set the 1-element array `flag` to 0 if one of `arrays` (on flag's device) holds inf
    or NaN, and leave it as it is otherwise. Only queues work on the device: nothing here
    waits for it."""
    by_dtype = {}
    for array in arrays:
        by_dtype.setdefault(np.dtype(array.dtype).name, []).append(array)
    with autograd.pause():
        # The operator reads every input as the dtype of the first: one call per dtype.
        for group in by_dtype.values():
            for start in range(0, len(group), FINITE_CHECK_CHUNK):
                chunk = group[start : start + FINITE_CHECK_CHUNK]
                mx.nd.multi_all_finite(*chunk, num_arrays=len(chunk), init_output=False, out=flag)
    return flag


def all_finite(arrays):
    """True when none of `arrays` (on one device) holds inf or NaN: one host
    synchronisation in all."""
    if not arrays:
        return True
    flag = mx.nd.ones((1,), ctx=arrays[0].context)
    return bool(accumulate_finite(arrays, flag).asscalar())


def gradients_are_finite(params):
    """True when no gradient of `params` (on their first device) holds inf or NaN. After
    Trainer.allreduce_grads() each device holds the sum over all devices, so an overflow
    anywhere shows on the first device."""
    return all_finite([param.list_grad()[0] for param in params if param.grad_req != "null"])


def weights_are_finite(params):
    """True when no trained weight of `params` (on their first device) holds inf or NaN.
    An update with a non-finite gradient leaves non-finite weights behind for good (SGD
    keeps NaN and inf), so one look at the weights finds every such update since the last
    look: on the CPU, a look at every step's gradients instead cost a third of the step
    (ResNet-50, batch 32, 64 px; benchmarks/training_loop.py). Read on the host with
    numpy: for ResNet-50's 25.6 M weights on two CPU cores 0.04 s, against 0.40 s for
    multi_all_finite and 0.16 s for MXNet's sums."""
    arrays = (param.list_data()[0] for param in params if param.grad_req != "null")
    return all(np.isfinite(array.asnumpy()).all() for array in arrays)


def next_loss_scale(scale, clean_steps, finite, growth_interval, min_scale, max_scale):
    """One decision of dynamic loss scaling: (scale, clean_steps) after a step whose
    gradients were `finite` or not. An overflow halves the scale (not below min_scale)
    and restarts the count; growth_interval clean steps in a row double it (up to max_scale)."""
    if not finite:
        return max(scale / 2, min_scale), 0
    clean_steps += 1
    if clean_steps >= growth_interval:
        return min(scale * 2, max_scale), 0
    return scale, clean_steps


class LossScaler:
    """The loss scale of a run. Static: a fixed scale (1: no scaling), gradients never
    checked here. Dynamic: gradients checked every step, steps with overflow skipped, scale
    moved by next_loss_scale(); overflows_at_min counts the steps in a row that overflowed
    at min_scale (a diverged run). state_dict() is JSON, for the training checkpoint."""

    def __init__(
        self,
        scale=2.0**16,
        dynamic=True,
        growth_interval=2000,
        min_scale=1.0,
        max_scale=2.0**24,
    ):
        if scale <= 0:
            raise UserError(f"loss scale must be positive, not {scale!r}")
        self.scale = float(scale)
        self.dynamic = bool(dynamic)
        self.growth_interval = int(growth_interval)
        self.min_scale = float(min_scale)
        self.max_scale = float(max_scale)
        self.clean_steps = 0
        self.skipped_steps = 0
        self.overflows_at_min = 0

    def update(self, finite):
        """Record whether the last step's gradients were finite (a dynamic scaler's step
        with overflow is skipped); move the scale accordingly."""
        if not self.dynamic:
            return
        if not finite:
            self.skipped_steps += 1
        at_min = not finite and self.scale <= self.min_scale
        self.overflows_at_min = self.overflows_at_min + 1 if at_min else 0
        self.scale, self.clean_steps = next_loss_scale(
            self.scale,
            self.clean_steps,
            finite,
            self.growth_interval,
            self.min_scale,
            self.max_scale,
        )

    def state_dict(self):
        return {
            "scale": self.scale,
            "dynamic": self.dynamic,
            "clean_steps": self.clean_steps,
            "skipped_steps": self.skipped_steps,
            "overflows_at_min": self.overflows_at_min,
        }

    def load_state_dict(self, state):
        if bool(state["dynamic"]) != self.dynamic:
            raise UserError(
                f"saved loss scaler is {'dynamic' if state['dynamic'] else 'static'}, "
                f"this run's is {'dynamic' if self.dynamic else 'static'}"
            )
        self.scale = float(state["scale"])
        self.clean_steps = int(state["clean_steps"])
        self.skipped_steps = int(state["skipped_steps"])
        self.overflows_at_min = int(state["overflows_at_min"])


def make_loss_scaler(loss_scale, dtype):
    """The scaler for the setting training.loss_scale ("none", "dynamic" or a number) and
    `dtype`.

    "none" is the original recipe's float16: multi-precision SGD and no scaling (a static
    scale of 1). float32 needs no scaling (its range holds every gradient), so it gets a
    static scale of 1 whatever the setting.
    """
    if dtype == "float32" or loss_scale == "none":
        return LossScaler(scale=1.0, dynamic=False)
    if loss_scale == "dynamic":
        return LossScaler()
    if isinstance(loss_scale, bool) or not isinstance(loss_scale, int | float) or loss_scale <= 0:
        raise UserError(
            f'training.loss_scale must be "none", "dynamic" or a positive number, not '
            f"{loss_scale!r}"
        )
    return LossScaler(scale=loss_scale, dynamic=False)
