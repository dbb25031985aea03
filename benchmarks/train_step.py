"""pix2pix train-step throughput (images/s) and peak memory at its standard resolution, on the current device.

On a GPU: fp32 vs bf16 autocast vs bf16 + channels_last. On a CPU: fp32 (bf16 autocast on CPUs without AMX is
slower, so it is measured only with --cpu-bf16). Prints measured figures; not a test.

    python benchmarks/train_step.py [--size 256] [--batches 1 4] [--steps 5]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from i2i_models.registry import get_model  # noqa: E402


def measure(size: int, batch: int, steps: int, device: torch.device, amp: bool, channels_last: bool) -> dict:
    torch.manual_seed(0)
    model = get_model("pix2pix", image_size=size)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    for name in model.nets:
        model.nets[name] = model.nets[name].to(device, memory_format=fmt)
    model.amp_dtype = torch.bfloat16 if amp else None
    model.setup_optimizers()
    x = (torch.rand(batch, 3, size, size, device=device) * 2 - 1).contiguous(memory_format=fmt)
    y = (torch.rand(batch, 3, size, size, device=device) * 2 - 1).contiguous(memory_format=fmt)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for s in range(2):  # warm-up (cuDNN autotune, allocator)
        model.train_step({"input": x, "target": y}, s)
    sync()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for s in range(steps):
        model.train_step({"input": x, "target": y}, s)
    sync()
    dt = time.perf_counter() - t0
    if device.type == "cuda":
        peak = f"peak GPU memory {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB"
    else:
        import resource

        peak = f"peak process RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB"
    return {"img_s": batch * steps / dt, "step_ms": 1000 * dt / steps, "peak": peak}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--batches", type=int, nargs="+", default=[1, 4])
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--cpu-bf16", action="store_true")
    args = p.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    name = torch.cuda.get_device_name() if device.type == "cuda" else f"{platform.processor() or platform.machine()}, " \
        f"{torch.get_num_threads()} threads"
    print(f"pix2pix standard config (unet_256 + 70x70 PatchGAN, batch norm) at {args.size}px on {device.type}: "
          f"{name}; torch {torch.__version__}; {time.strftime('%Y-%m-%d')}")
    variants = [("fp32", False, False)]
    if device.type == "cuda":
        variants += [("bf16", True, False), ("bf16+channels_last", True, True)]
    elif args.cpu_bf16:
        variants += [("bf16", True, False)]
    for batch in args.batches:
        for label, amp, cl in variants:
            r = measure(args.size, batch, args.steps, device, amp, cl)
            print(f"batch {batch:>2} {label:<20} {r['img_s']:8.2f} img/s  {r['step_ms']:9.1f} ms/step  {r['peak']}")


if __name__ == "__main__":
    main()
