"""Learning-rate multipliers of the authors' schedulers, as pure functions of the epoch or the iteration.

The trainer sets lr = base lr × factor before every iteration (``I2IModel.lr_factor``), so each rule below is written
for the iteration or epoch it is applied to, including where the authors' scheduler is stepped (before or after the
iteration or epoch). Checked against the authors' code: junyanz/pytorch-CycleGAN-and-pix2pix (train.py,
models/networks.py ``get_scheduler``), NVlabs/MUNIT and mingyuliutw/UNIT (train.py, utils.py ``get_scheduler``).
"""

from __future__ import annotations


def linear_decay(epoch: int, n_epochs: int, n_epochs_decay: int) -> float:
    """pix2pix / CycleGAN ``--lr_policy linear`` during 0-based ``epoch``.

    The authors' rule is λ(e) = 1 − max(0, e + epoch_count − n_epochs)/(n_epochs_decay + 1) (epoch_count 1) and their
    LambdaLR is stepped at the *start* of each epoch (``model.update_learning_rate()`` before the epoch's iterations),
    so 1-based epoch e trains at λ(e): epochs 1 … n_epochs − 1 at the full rate, epoch n_epochs already at
    1 − 1/(n_epochs_decay + 1), and the last one (n_epochs + n_epochs_decay) at 0. With e = epoch + 1:
    1 − max(0, epoch + 2 − n_epochs)/(n_epochs_decay + 1), floored at 0 for epochs past the schedule.

    ``n_epochs_decay`` = 0 means no decay phase: a constant rate. (The authors' rule would still zero the last
    epoch there, 1 − 1/1 — a degenerate case no published run uses, which would leave a short run untrained.)"""
    if n_epochs_decay == 0:
        return 1.0
    return max(0.0, 1.0 - max(0, epoch + 2 - n_epochs) / float(n_epochs_decay + 1))


def step_decay(step: int, step_size: int, gamma: float) -> float:
    """UNIT / MUNIT ``lr_policy: step`` during 0-based iteration ``step``.

    The authors' StepLR (created with last_epoch = −1, i.e. at 0 after construction) is stepped at the *start* of
    every iteration (``trainer.update_learning_rate()`` before ``dis_update``/``gen_update``), so iteration i trains at
    gamma^⌊(i + 1)/step_size⌋: the first halving applies from the step_size-th iteration (i = step_size − 1)."""
    return gamma ** ((step + 1) // step_size)
