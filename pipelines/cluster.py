"""The one place that connects to Ray."""

from __future__ import annotations

import os

from pydantic import Field

from pipelines.schema import StrictModel


class RayConfig(StrictModel):
    # None: $RAY_ADDRESS (set by `ray job submit` inside a job) or else a fresh local cluster, never someone
    # else's cluster found on the machine.
    address: str | None = None
    num_cpus: int | None = Field(default=None, gt=0)  # local cluster only
    object_store_memory: int | None = Field(default=None, gt=0)  # bytes, local cluster only


def init_ray(cfg: RayConfig | None = None) -> None:
    import ray
    import ray.data

    # an error raised in a Ray Data task (a StorageError writing a shard, …) reaches the driver as itself, not as
    # Ray Data's generic UserCodeException (which drops it): the job prints its message and exits 2
    ray.data.DataContext.get_current().raise_original_map_exception = True
    if ray.is_initialized():
        return
    cfg = cfg or RayConfig()
    address = cfg.address or os.environ.get("RAY_ADDRESS") or "local"
    kwargs = {}
    if address == "local":
        kwargs = {"num_cpus": cfg.num_cpus, "object_store_memory": cfg.object_store_memory}
    ray.init(address=address, log_to_driver=True, **kwargs)


def use_gpu(requested: bool | None) -> bool:
    """``requested``, or (None) whether the cluster has GPUs now. A cluster whose GPU nodes scale from zero has
    none before the first one starts: request them explicitly there."""
    import ray

    return requested if requested is not None else ray.cluster_resources().get("GPU", 0) > 0
