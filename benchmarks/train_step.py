"""Train-step throughput (images/s) and peak memory of every registered family, on the current device.

Each family is built in its standard configuration (``get_model(name)``: the paper's networks) at ``--size`` px
(256 by default; every family's config has ``image_size``) and trained on random images of its data mode for
``--warmup`` + ``--steps`` steps; the timed steps come after the warm-up. One line per family: img/s, seconds per
step, peak memory and the number of parameters the optimizers train (StarGAN v2's EMA copies are not counted).
Steps are numbered on from the warm-up, so a family that trains G only every ``n_critic``-th step (DualGAN: 2)
is averaged over its D/G schedule; use an even ``--steps`` for it.

Peak memory: CUDA, ``torch.cuda.max_memory_allocated`` over the timed steps (weights, gradients and optimizer
state included). CPU: the growth of the process's peak RSS (``resource.getrusage``) over its RSS before the model
was built; on Linux (glibc) freed heap is trimmed and the peak reset per family (/proc/self/clear_refs), elsewhere
it is the process's lifetime peak, so run one family per process there. bf16 autocast (``--bf16``) is opt-in: on
CPUs without AMX it is slower. Prints measured figures; not a test.

    python benchmarks/train_step.py [--models pix2pix cyclegan ...] [--size 256] [--batch 1] [--steps 5]
        [--warmup 2] [--bf16] [--variants base channels_last compile compile+channels_last]
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import os
import platform
import resource
import sys
import time

import psutil
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from i2i_models.registry import get_model, get_model_class, list_models  # noqa: E402


def reset_cpu_peak() -> bool:
    """Linux: hand freed heap back (else the next family reuses it and shows no growth) and reset the peak RSS."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        with open("/proc/self/clear_refs", "w") as f:  # "5": VmHWM (getrusage's ru_maxrss) := current RSS
            f.write("5")
        return True
    except OSError:
        return False


VARIANTS = ("base", "channels_last", "compile", "compile+channels_last")


def measure(name: str, size: int, batch: int, warmup: int, steps: int, device: torch.device, bf16: bool,
            variant: str = "base") -> dict:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    per_family = reset_cpu_peak()
    rss0 = psutil.Process().memory_info().rss
    torch.manual_seed(0)
    model = get_model(name, image_size=size).to(device)
    model.amp_dtype = torch.bfloat16 if bf16 else None
    model.setup_optimizers()
    trained = {id(p): p.numel() for opt in model.optimizers.values() for g in opt.param_groups for p in g["params"]}
    data = model.example_batch(batch, size, device=device)
    for net in model.nets.values():  # what train.channels_last / train.compile do to each trained network
        if not any(p.requires_grad for p in net.parameters()):
            continue
        if "channels_last" in variant:
            net.to(memory_format=torch.channels_last)
        if "compile" in variant:
            net.compile()
    if "channels_last" in variant:
        data = {k: v.contiguous(memory_format=torch.channels_last) if v.dim() == 4 else v for k, v in data.items()}
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for s in range(warmup):  # cuDNN autotune, allocator, lazy state (optimizer moments, EMA reset at step 0)
        model.train_step(data, s)
    sync()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for s in range(warmup, warmup + steps):
        model.train_step(data, s)
    sync()
    dt = time.perf_counter() - t0
    if device.type == "cuda":
        peak = f"peak GPU mem {torch.cuda.max_memory_allocated() / 2**30:6.2f} GiB"
    else:
        maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024)
        peak = f"peak RSS growth {(maxrss - rss0) / 2**30:6.2f} GiB" + ("" if per_family else " (lifetime peak)")
    del model, data
    return {"img_s": batch * steps / dt, "s_step": dt / steps, "peak": peak, "params": sum(trained.values())}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=None, help=f"default: all registered ({', '.join(list_models())})")
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--steps", type=int, default=5, help="timed steps, after the warm-up")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--bf16", action="store_true", help="bf16 autocast (model.amp_dtype)")
    p.add_argument("--variants", nargs="+", choices=VARIANTS, default=["base"],
                   help="train.channels_last / train.compile variants; each is also printed as a ratio to the first")
    args = p.parse_args()
    models = args.models or list_models()
    for m in models:
        get_model_class(m)  # fail fast on an unknown name
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    where = torch.cuda.get_device_name() if device.type == "cuda" else \
        f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    print(f"train step, standard configs, {args.size}px, batch {args.batch}, {args.warmup} warm-up + {args.steps} "
          f"timed steps, {'bf16 autocast' if args.bf16 else 'fp32'} on {device.type} ({where}); "
          f"torch {torch.__version__}; {time.strftime('%Y-%m-%d')}", flush=True)
    for name in models:
        first = None
        for variant in args.variants:
            r = measure(name, args.size, args.batch, args.warmup, args.steps, device, args.bf16, variant)
            first = first or r["img_s"]
            ratio = f"  {r['img_s'] / first:5.2f}× {args.variants[0]}" if len(args.variants) > 1 else ""
            print(f"{name:<11} {device.type:<4} {args.size:>4}px  batch {args.batch:>2}  {variant:<21} "
                  f"{r['img_s']:8.3f} img/s  {r['s_step']:8.3f} s/step  {r['peak']}  {r['params']:>11,} params{ratio}",
                  flush=True)


if __name__ == "__main__":
    main()
