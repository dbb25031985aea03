"""The one place that connects to Ray."""

from __future__ import annotations

import logging
import os

from pydantic import Field

from pipelines.schema import StrictModel

log = logging.getLogger(__name__)


class RayConfig(StrictModel):
    # None: $RAY_ADDRESS (set by `ray job submit` inside a job) or else a fresh local cluster, never someone
    # else's cluster found on the machine.
    address: str | None = None
    num_cpus: int | None = Field(default=None, gt=0)  # local cluster only
    object_store_memory: int | None = Field(default=None, gt=0)  # bytes, local cluster only


def init_ray(cfg: RayConfig | None = None) -> None:
    import ray
    import ray.data

    from pipelines.progress import bars_for_terminal_only

    # an error raised in a Ray Data task (a StorageError writing a shard, …) reaches the driver as itself, not as
    # Ray Data's generic UserCodeException (which drops it): the job prints its message and exits 2
    ray.data.DataContext.get_current().raise_original_map_exception = True
    bars_for_terminal_only()
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


def _shown(resources: dict) -> str:
    """``{CPU: 2, GPU: 1}``: what tasks ask for (no memory, node or accelerator labels); CPU even when 0."""
    shown = {k: v for k, v in {"CPU": 0, **resources}.items() if (v or k == "CPU") and k not in (
        "memory", "object_store_memory") and not k.startswith(("node:", "accelerator_type:"))}
    return "{" + ", ".join(f"{k}: {v:g}" for k, v in sorted(shown.items())) + "}"


def _sum(bundles: list[dict]) -> dict[str, float]:
    total: dict[str, float] = {}
    for b in bundles:
        for k, v in b.items():
            total[k] = total.get(k, 0.0) + v
    return total


def node_types() -> list[dict[str, float]] | None:
    """The resources of every node type an autoscaler may add, when the autoscaler has reported its node types to
    the GCS (the cluster config Ray Train and Ray Data read for the same check), else None. Ray has no public call
    for it yet (ray-project/ray#49501); a cluster without that report (no autoscaler, or one that does not publish
    it) can still grow by workers joining by hand, so nothing is known about its largest size."""
    try:
        from ray._private.state import state

        config = state.get_cluster_config()
    except Exception:  # noqa: BLE001 - an older or newer Ray without this accessor: the size is unknown
        return None
    types = [{k: float(v) for k, v in g.resources.items()} for g in config.node_group_configs
             if g.max_count != 0] if config is not None else []
    return types or None


def refuse_impossible(bundles: list[dict[str, float]], what: str) -> None:
    """An error when ``bundles`` (placed together) can never fit: one bundle larger than every node type and every
    current node, or more in total than the largest cluster the node types allow. Nothing is refused when the node
    types are unknown (see :func:`node_types`): :func:`wait_for` bounds that case."""
    import ray
    from ray._private.state import state

    from pipelines.errors import I2IError

    types = node_types()
    if types is None:
        return
    nodes = [n["Resources"] for n in ray.nodes() if n["Alive"]]
    scheduled = [{k: v for k, v in b.items() if v and k not in ("memory", "object_store_memory")} for b in bundles]
    for b in scheduled:
        if not any(all(shape.get(k, 0) >= v for k, v in b.items()) for shape in types + nodes):
            raise I2IError(f"{what} asks for {_shown(b)} on one node, more than any node type of this cluster offers "
                           f"({', '.join(_shown(t) for t in types)}) and any node it has now")
    ceiling, now = state.get_max_resources_from_cluster_config() or {}, ray.cluster_resources()
    for k, v in _sum(scheduled).items():
        if v > max(ceiling.get(k, 0), now.get(k, 0)):
            raise I2IError(f"{what} needs {_shown(_sum(scheduled))} at once; this cluster can grow to "
                           f"{_shown(ceiling)} at most (its node types × their max count)")


def wait_for(bundles: list[dict[str, float]], *, timeout_s: float, what: str, setting: str) -> None:
    """Block until the cluster can place ``bundles`` at once. They are asked for as a placement group (PACK, as Tune
    asks for a trial's): while it is pending it is the demand an autoscaler adds nodes for, and a worker joining by
    hand satisfies it just as well. Removed again before returning: the caller asks for the real ones."""
    import time

    import ray
    from ray.util.placement_group import placement_group, remove_placement_group

    from pipelines.errors import I2IError

    wanted = [{k: v for k, v in b.items() if v} for b in bundles]
    pg = placement_group(wanted, strategy="PACK")
    deadline = time.monotonic() + timeout_s
    try:
        if pg.wait(timeout_seconds=min(2, timeout_s)):
            return
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise I2IError(f"{what} needs {_shown(_sum(wanted))} but the cluster offered only "
                               f"{_shown(ray.cluster_resources())} for {setting}={timeout_s:g} s: add nodes (or "
                               "check the autoscaler with `ray status`), or ask for less")
            log.info("waiting for the cluster to offer %s (autoscaler / workers joining); it has %s now; %.0f s left "
                     "(%s)", _shown(_sum(wanted)), _shown(ray.cluster_resources()), left, setting)
            if pg.wait(timeout_seconds=min(30, left)):
                log.info("the cluster can place %s", _shown(_sum(wanted)))
                return
    finally:
        remove_placement_group(pg)
