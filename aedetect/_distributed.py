"""Data-parallel training over ``torch.distributed`` (a script launched with ``torchrun``).

Every rank runs the same script: it initialises the process group itself
(``torch.distributed.init_process_group("gloo")`` on CPUs, ``"nccl"`` on GPUs, one GPU
per rank), builds the same detector with the same int ``random_state`` and calls
``fit`` on the full ``X``. A fit that finds an initialised group of more than one
process (:meth:`DataParallel.current`) then trains data-parallel, with the semantics of
``DistributedDataParallel``:

- every rank draws the same epoch permutation (the fit's generator, seeded alike on
  every rank) and trains on its share of it: every ``world_size``-th row, the
  permutation padded by wrapping around so that every rank has as many rows, and so
  the same batch shapes and the same number of steps, as every other
  (:meth:`DataParallel.batches`); dropout, corruption and the models' own draws come
  from a generator of each rank (:meth:`DataParallel.step_generator`);
- before every optimizer step the gradients of that optimizer's parameters are
  averaged over the ranks (a step pre-hook on each optimizer,
  :meth:`DataParallel.average_gradients`), so every rank takes the same step and the
  weights stay identical;
- after each epoch the batch-norm running statistics are averaged over the ranks and
  so are the epoch's loss sums (:meth:`DataParallel.reduce_epoch`): the records, the
  validation loss and with them early stopping and the divergence guard are the same
  on every rank; a stop asked for on any rank stops every rank (:class:`StopOnAnyRank`);
- callbacks that log or save (the detector's ``callbacks``, the global ones such as
  MLflow autolog, the progress bar) run on rank 0 only, unless a callback sets
  ``every_rank = True`` (one that changes training, a learning-rate schedule say,
  must run everywhere); epoch timing, the divergence guard and early stopping run on
  every rank.

Calibration and the threshold then run on every rank over the full data, which is
deterministic given identical weights: every rank ends with the same fitted detector.

``DistributedDataParallel`` itself is not used: it averages gradients during the
backward pass of outputs of its own ``forward``, while the models own their step
(``training_step`` calls sub-modules, ``backward`` and ``optimizer.step()`` itself;
the AAE takes three steps on overlapping parameter sets per batch, one of them with a
double backward for its gradient penalty, and its encoder also runs in eval mode). A
hook on each optimizer's step sees exactly the gradients that step applies, whatever
the model does before it.
"""

import math

import torch
from torch import distributed as dist

from ._training import Callback


class DataParallel:
    """The ranks of a data-parallel fit: this process's ``rank`` of ``world_size``."""

    def __init__(self, rank, world_size, backend):
        self.rank, self.world_size, self.backend = rank, world_size, backend

    @classmethod
    def current(cls):
        """The fit's ranks when ``torch.distributed`` has an initialised group of more
        than one process, else ``None`` (a plain single-process fit)."""
        if not (dist.is_available() and dist.is_initialized()):
            return None
        world_size = dist.get_world_size()
        if world_size < 2:
            return None
        return cls(dist.get_rank(), world_size, str(dist.get_backend()))

    # ------------------------------------------------------------ set-up
    def check(self, detector):
        """Refuse what cannot give the same fit on every rank, naming the fix."""
        name = type(detector).__name__
        if detector.random_state is None:
            raise ValueError(
                f"Distributed training of {name} needs the same random_state on every "
                "rank (it seeds the initial weights, the shuffling and the validation "
                f"split); got random_state=None. Pass an int, e.g. {name}(random_state=0).")
        if self.backend == "nccl" and detector.device_.type != "cuda":
            raise ValueError(
                f"The process group uses the NCCL backend, which needs CUDA tensors, but "
                f"{name} trains on {detector.device_}. Use init_process_group('gloo') on "
                "CPUs, or device='cuda' (with torch.cuda.set_device(local_rank)) on GPUs.")

    def keeps(self, callback):
        """Whether ``callback`` runs on this rank: everywhere on rank 0; elsewhere only
        a callback that sets ``every_rank = True``."""
        return self.rank == 0 or bool(getattr(callback, "every_rank", False))

    def check_same_start(self, model, X_train, name="The model"):
        """Raise on every rank when the ranks start from other training rows or other
        weights (a rank given its own shard of ``X``, or another ``random_state``)."""
        device = _device(model)
        mine = torch.zeros(3, dtype=torch.float64, device=device)
        mine[0] = X_train.shape[0]
        if torch.is_tensor(X_train):
            mine[1] = X_train.sum(dtype=torch.float64)
        for parameter in model.parameters():
            mine[2] += parameter.detach().sum(dtype=torch.float64)
        gathered = [torch.empty_like(mine) for _ in range(self.world_size)]
        dist.all_gather(gathered, mine)
        table = torch.stack(gathered).cpu()
        differ = [rank for rank in range(1, self.world_size)
                  if not torch.allclose(table[rank], table[0], rtol=1e-6, atol=1e-6)]
        if differ:
            raise ValueError(
                f"Distributed training of {name}: rank(s) {', '.join(map(str, differ))} "
                f"started from other training rows or initial weights than rank 0 (rows "
                f"{table[:, 0].long().tolist()}). Every rank must call fit with the full X "
                "(not its shard: the fit shares the batches out itself) and the same int "
                "random_state.")

    def step_generator(self, generator):
        """A generator of this rank's own draws (dropout, corruption, the models'
        noise), seeded from ``generator`` (alike on every rank) and the rank."""
        seed = torch.randint(2**62, (1,), generator=generator, device=generator.device)
        own = torch.Generator(device=generator.device)
        return own.manual_seed(int(seed) + self.rank)

    # ------------------------------------------------------------ epochs
    def batches(self, n_rows, batch_size, generator):
        """This rank's index batches of an epoch: the permutation every rank draws
        alike from ``generator``, padded by wrapping around to a multiple of
        ``world_size``, every ``world_size``-th row from ``rank`` on, split into
        batches of ``batch_size`` (a trailing batch of one row joins the previous one,
        as in ``aedetect._training.batch_indices``). Every rank gets the same number
        of rows, hence the same batch sizes and the same steps."""
        perm = torch.randperm(n_rows, generator=generator, device=generator.device)
        per_rank = max(math.ceil(n_rows / self.world_size), min(n_rows, 2))
        total = per_rank * self.world_size
        if total > n_rows:
            perm = perm.repeat(math.ceil(total / n_rows))[:total]
        batches = list(torch.split(perm[self.rank::self.world_size], batch_size))
        if len(batches) > 1 and batches[-1].numel() == 1:
            batches[-2] = torch.cat(batches[-2:])
            batches.pop()
        return batches

    def average_gradients(self, optimizers):
        """Register, on each optimizer, a step pre-hook that replaces the gradients of
        its parameters by their mean over the ranks (one all-reduce per step, on the
        gradients' device: no host synchronization). Every rank's step must leave the
        same parameters without a gradient, as a step that does not branch on the
        values of its batch does. Returns the hook handles."""
        return [optimizer.register_step_pre_hook(self._average_hook)
                for optimizer in optimizers.values()]

    def _average_hook(self, optimizer, args, kwargs):
        grads = [p.grad for group in optimizer.param_groups for p in group["params"]
                 if p.grad is not None]
        if not grads:
            return
        flat = torch.cat([grad.reshape(-1).float() for grad in grads])
        dist.all_reduce(flat)
        flat.div_(self.world_size)
        for grad, mean in zip(grads, torch.split(flat, [grad.numel() for grad in grads])):
            grad.copy_(mean.view_as(grad))

    def reduce_epoch(self, totals, n_rows, model):
        """``{name: mean over every rank's rows}`` from this rank's loss ``totals``
        (0-d tensors, sums over its ``n_rows`` rows); also sets the batch-norm running
        statistics of ``model`` to their mean over the ranks. One all-reduce."""
        names = list(totals)
        buffers = _running_statistics(model)
        device = buffers[0].device if buffers else _device(model)
        parts = [torch.stack([totals[name].to(device, torch.float64) for name in names]
                             + [torch.tensor(float(n_rows), dtype=torch.float64,
                                             device=device)])]
        parts += [buffer.reshape(-1).to(torch.float64) for buffer in buffers]
        flat = torch.cat(parts)
        dist.all_reduce(flat)
        sums, rest = flat[:len(names) + 1], flat[len(names) + 1:]
        for buffer, total in zip(buffers, torch.split(rest, [b.numel() for b in buffers])):
            buffer.copy_((total / self.world_size).view_as(buffer).to(buffer.dtype))
        sums = sums.tolist()  # the epoch's one host synchronization
        return {name: total / sums[-1] for name, total in zip(names, sums[:-1])}

    def any_rank(self, flag, device):
        """``flag`` or'ed over the ranks."""
        value = torch.tensor([float(bool(flag))], device=device)
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return bool(value.item())


class StopOnAnyRank(Callback):
    """The last callback of a data-parallel fit: ``trainer.stop_training`` set on any
    rank (by a callback that runs on rank 0 only, say) stops every rank."""

    def __init__(self, ranks):
        self.ranks = ranks

    def on_epoch_end(self, trainer, record):
        trainer.stop_training = self.ranks.any_rank(trainer.stop_training,
                                                    _device(trainer.model))


def _device(model):
    for tensor in model.parameters():
        return tensor.device
    return torch.device("cpu")


def _running_statistics(model):
    """The floating-point running statistics of the batch-norm layers of ``model``."""
    found = []
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            found += [buffer for buffer in (module.running_mean, module.running_var)
                      if buffer is not None]
    return found
