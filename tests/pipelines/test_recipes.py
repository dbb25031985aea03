"""The published runs as configs, and how a run is driven: global batch → per-worker batch and iteration counts, run
length in the authors' unit, the learning rate set per iteration. Pure functions and the training loop on in-memory
shards (no Ray cluster, no MLflow): seconds."""

import pathlib
import re
import shutil

import pytest
import torch

from i2i_models.registry import get_model_class
from pipelines.config import load_config
from pipelines.errors import ConfigError
from pipelines.manifest import SplitEntry
from pipelines.train import TrainConfig, batch_plan, epoch_images, run_plan
from pipelines.train_loop import LoopIO, run_loop

RECIPES = pathlib.Path(__file__).parents[2] / "jobs" / "configs" / "recipes"
P2P = {"gan": 1, "l1": 100, "d_real": 0.5, "d_fake": 0.5}
CYC = {"gan_ab": 1, "gan_ba": 1, "cycle": 10, "idt": 5, "d_a_real": 0.5, "d_a_fake": 0.5, "d_b_real": 0.5,
       "d_b_fake": 0.5}
SV2 = {"adv": 1, "sty": 1, "cyc": 1, "d_real": 1, "d_fake": 1, "r1": 1}

# The authors' numbers, read from their code, configs, READMEs and papers (see each recipe's header): training
# images per epoch (unpaired: the larger domain), global batch, iterations the run takes, its length in the
# authors' unit, the loss weights, load → crop size, and the command the recipe names.
AUTHORS = {
    "pix2pix_facades": dict(model="pix2pix", split={"samples": 400}, batch=1, iterations=80_000,
                            length=("epochs", 200), weights=P2P, load=286, crop=256, layout="aligned",
                            command="--dataroot ./datasets/facades --name facades_pix2pix --model pix2pix "
                                    "--direction BtoA"),
    "pix2pix_maps": dict(model="pix2pix", split={"samples": 1096}, batch=1, iterations=219_200,
                         length=("epochs", 200), weights=P2P, load=286, crop=256, layout="aligned",
                         command="--dataroot ./datasets/maps --name maps_pix2pix --model pix2pix --direction AtoB"),
    "pix2pix_edges2shoes": dict(model="pix2pix", split={"samples": 49_825}, batch=4, iterations=186_840,
                                length=("epochs", 15), weights=P2P, load=286, crop=256, layout="aligned",
                                command="which_direction=AtoB batchSize=4 niter=15 th train.lua"),
    "cyclegan_horse2zebra": dict(model="cyclegan", split={"domains": {"A": 1067, "B": 1334}}, batch=1,
                                 iterations=266_800, length=("epochs", 200), weights=CYC, load=286, crop=256,
                                 layout="unaligned",
                                 command="--dataroot ./datasets/horse2zebra --name horse2zebra_cyclegan "
                                         "--model cycle_gan"),
    "cyclegan_summer2winter": dict(model="cyclegan", split={"domains": {"A": 1231, "B": 962}}, batch=1,
                                   iterations=246_200, length=("epochs", 200), weights=CYC, load=286, crop=256,
                                   layout="unaligned", command="--dataroot ./datasets/summer2winter_yosemite"),
    "unit_edges2shoes": dict(model="unit", split={"domains": {"A": 49_825, "B": 49_825}}, batch=1,
                             iterations=1_000_000, length=("iterations", 1_000_000),
                             weights={"gan": 1, "recon_x": 10, "recon_kl": 0.01, "recon_x_cyc": 10,
                                      "recon_kl_cyc": 0.01, "d_gan": 1}, load=256, crop=256, layout="unaligned",
                             command="python train.py --config configs/unit_edges2shoes_folder.yaml --trainer UNIT"),
    "munit_edges2shoes": dict(model="munit", split={"domains": {"A": 49_825, "B": 49_825}}, batch=1,
                              iterations=1_000_000, length=("iterations", 1_000_000),
                              weights={"gan": 1, "recon_x": 10, "recon_s": 1, "recon_c": 1, "recon_x_cyc": 0,
                                       "vgg": 0, "d_gan": 1}, load=256, crop=256, layout="unaligned",
                              command="python train.py --config configs/edges2shoes_folder.yaml"),
    "stargan_v2_afhq": dict(model="stargan_v2", split={"samples": 14_630}, batch=8, iterations=100_000,
                            length=("iterations", 100_000), weights={**SV2, "ds": 2}, load=256, crop=256,
                            layout="domains", command="--num_domains 3 --w_hpf 0 --lambda_reg 1 --lambda_sty 1 "
                                                      "--lambda_ds 2 --lambda_cyc 1"),
    "stargan_v2_celeba_hq": dict(model="stargan_v2", split={"samples": 28_000}, batch=8, iterations=100_000,
                                 length=("iterations", 100_000), weights={**SV2, "ds": 1}, load=256, crop=256,
                                 layout="domains", command="--num_domains 2 --w_hpf 1 --lambda_reg 1 --lambda_sty 1 "
                                                           "--lambda_ds 1 --lambda_cyc 1"),
}


def split_entry(samples: int = 0, domains: dict | None = None) -> SplitEntry:
    domains = domains or {}
    return SplitEntry(samples=samples or sum(domains.values()), bytes=0, domains=domains, shards=[])


def test_every_published_run_has_a_recipe_and_only_those():
    assert sorted(p.stem for p in RECIPES.glob("*.yaml")) == sorted(AUTHORS)


@pytest.mark.parametrize("name", sorted(AUTHORS))
def test_recipe_resolves_to_the_authors_numbers(name):
    a = AUTHORS[name]
    text = (RECIPES / f"{name}.yaml").read_text()
    words = " ".join(w for w in text.split() if w not in ("#", "\\"))  # comment lines, continuations joined
    assert re.search(r"^#\s+Authors' command", text, re.M) and a["command"] in words
    with pytest.raises(ConfigError, match="missing required value 'shard.source'"):  # the one thing to fill in
        load_config(RECIPES / f"{name}.yaml")
    cfg = load_config(RECIPES / f"{name}.yaml", ["shard.source=s3://bucket/data"])
    family = get_model_class(cfg.model.name)
    assert cfg.model.name == a["model"] and cfg.shard.layout == a["layout"]
    assert family.resolve_weights(cfg.loss_weights) == pytest.approx(a["weights"])
    assert (cfg.shard.load_size, cfg.train.crop_size) == (a["load"], a["crop"])
    assert cfg.train.global_batch_size == a["batch"]  # stated, not derived
    length = family.run_length(family.Config(**cfg.model.args))
    assert (length.unit, length.value) == a["length"]
    images = epoch_images(split_entry(**a["split"]), family.data_mode)
    plan = run_plan(cfg.model.name, cfg.model.args, cfg.train, images)
    assert plan.total_iterations == a["iterations"] and plan.global_batch_size == a["batch"]
    assert plan.per_worker_batch_size * plan.num_workers == a["batch"]
    if name.startswith("stargan_v2"):
        assert cfg.model.args["ds_iter"] == 100_000 and family.Config(**cfg.model.args).lr == 1e-4


def test_the_global_batch_splits_over_workers_and_the_schedule_stays():
    """A recipe's global batch on 1, 2, 4 or 8 workers: per-worker batch derived, same steps and iterations."""
    base = load_config(RECIPES / "stargan_v2_afhq.yaml", ["shard.source=x"])
    edges = load_config(RECIPES / "pix2pix_edges2shoes.yaml", ["shard.source=x"])
    for workers, per_worker in ((1, 8), (2, 4), (4, 2), (8, 1)):
        train = base.train.model_copy(update={"num_workers": workers})
        plan = run_plan("stargan_v2", base.model.args, train, 14_630)
        assert (plan.per_worker_batch_size, plan.total_iterations) == (per_worker, 100_000)
        assert plan.steps_per_epoch == 14_630 // workers // per_worker
    for workers in (1, 2, 4):  # an epoch-counted run: ⌊49,825 / 4⌋ steps per epoch on any of them
        plan = run_plan("pix2pix", edges.model.args, edges.train.model_copy(update={"num_workers": workers}),
                        49_825)
        assert (plan.steps_per_epoch, plan.total_iterations) == (12_456, 15 * 12_456)


def test_an_impossible_split_and_two_batch_settings_are_errors():
    with pytest.raises(ConfigError, match=r"global_batch_size=1 cannot be split evenly over train.num_workers=2"):
        TrainConfig(dataset="d", global_batch_size=1, num_workers=2)
    with pytest.raises(ConfigError, match=r"global_batch_size=8 cannot be split evenly over train.num_workers=3"):
        load_config(RECIPES / "stargan_v2_afhq.yaml", ["shard.source=x", "train.num_workers=3"])
    with pytest.raises(ConfigError, match="not both"):
        TrainConfig(dataset="d", global_batch_size=4, batch_size=2)
    # a split changed after validation (tune's trial copies) is caught where the loop config is derived
    with pytest.raises(ConfigError, match="cannot be split"):
        batch_plan(TrainConfig(dataset="d", global_batch_size=4, num_workers=2).model_copy(update={"num_workers": 3}))


def test_per_worker_batch_and_bounds():
    """batch_size keeps its per-worker meaning (existing configs); epochs / iterations bound the authors' length."""
    assert batch_plan(TrainConfig(dataset="d", batch_size=4, num_workers=2)).global_batch_size == 8
    assert batch_plan(TrainConfig(dataset="d", num_workers=2)).global_batch_size == 2  # default: 1 per worker
    unit = run_plan("unit", {}, TrainConfig(dataset="d", num_workers=1), 1000)
    assert (unit.length_unit, unit.epochs, unit.iterations, unit.total_iterations) == ("iterations", None,
                                                                                       1_000_000, 1_000_000)
    short = run_plan("unit", {}, TrainConfig(dataset="d", num_workers=1, epochs=3, iterations=10_000), 1000)
    assert (short.epochs, short.iterations, short.total_iterations) == (3, 10_000, 3000)  # whichever comes first
    p2p = run_plan("pix2pix", {}, TrainConfig(dataset="d", num_workers=1, iterations=500), 400)
    assert (p2p.epochs, p2p.total_iterations) == (None, 500)
    assert epoch_images(split_entry(domains={"A": 5, "B": 9}), "unpaired") == 9  # the larger domain leads


# --- the loop on in-memory shards ----------------------------------------------------------------------------------
@pytest.fixture
def one_thread():
    """Tiny networks: one intra-op thread is many times faster on a loaded machine (tests/i2i_models/conftest.py)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class MemoryShard:
    """Rows held in memory, served the way a Ray Data shard serves them to the feeds (``iter_torch_batches``)."""

    def __init__(self, **columns: torch.Tensor):
        self.columns = columns

    def iter_torch_batches(self, *, batch_size, drop_last=False, local_shuffle_buffer_size=None,
                           local_shuffle_seed=None):
        n = len(next(iter(self.columns.values())))
        stop = n - n % batch_size if drop_last else n
        for i in range(0, stop, batch_size):
            yield {k: v[i:i + batch_size] for k, v in self.columns.items()}


def images(n: int, seed: int, size: int = 32) -> torch.Tensor:
    return torch.randint(0, 256, (n, size, size, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def run(config: dict, datasets: dict, tmp_path) -> list[tuple[dict, pathlib.Path]]:
    """run_loop on one CPU worker; (metrics, checkpoint folder) of every epoch's report."""
    reports = []

    def keep(directory: str) -> pathlib.Path:
        return pathlib.Path(shutil.copytree(directory, tmp_path / f"ckpt{len(reports)}"))

    io = LoopIO(dataset=datasets.__getitem__, get_checkpoint=lambda: None, checkpoint_from_directory=keep,
                report=lambda m, c: reports.append((m, c)))
    run_loop(config, io, rank=0, world=1, device=torch.device("cpu"))
    return reports


def loop_config(model: str, model_args: dict, data_mode: str, **bounds) -> dict:
    return {"model": model, "model_args": model_args, "loss_weights": {}, "data_mode": data_mode,
            "lead_domain": "a", "batch_size": 1, "crop_size": 32, "flip": False, "shuffle_buffer": 0, "bf16": False,
            "channels_last": False, "seed": 0, "log_every_steps": 100, "mlflow_tracking_uri": "",
            "mlflow_run_id": "", "feature_net": "tiny", "epochs": None, "max_steps": None, **bounds}


def optimizer_lrs(checkpoint: pathlib.Path) -> set[float]:
    state = torch.load(checkpoint / "train_state.pt", weights_only=True)
    return {g["lr"] for opt in state["optimizers"].values() for g in opt["param_groups"]}


def test_step_decay_is_applied_per_iteration_and_the_run_stops_mid_epoch(tmp_path, one_thread):
    """UNIT's rate halves every step_size iterations, counted in global steps across epochs (here 4 per epoch),
    and a run of max_steps iterations ends in the middle of an epoch."""
    args = dict(image_size=32, dim=4, n_res=1, dis_dim=4, dis_n_layer=2, dis_num_scales=1, step_size=3, gamma=0.5)
    data = {"train_a": MemoryShard(image=images(4, 1)), "train_b": MemoryShard(image=images(4, 2)),
            "val_a": MemoryShard(image=images(2, 3)), "val_b": MemoryShard(image=images(2, 4))}
    reports = run(loop_config("unit", args, "unpaired", max_steps=7), data, tmp_path)
    assert [(m["epoch"], m["step"]) for m, _ in reports] == [(0, 4), (1, 7)]  # epoch 1 cut at 7 of its 8
    # the rate of each epoch's last iteration (step 3: 0.5^⌊4/3⌋; step 6: 0.5^⌊7/3⌋), in the reports and optimizers
    assert [m["lr_factor"] for m, _ in reports] == [0.5, 0.25]
    assert [optimizer_lrs(c) for _, c in reports] == [{1e-4 * 0.5}, {1e-4 * 0.25}]


def test_pix2pix_trains_its_last_epoch_at_rate_zero_as_the_authors(tmp_path, one_thread):
    """n_epochs 1 + n_epochs_decay 1: the authors' scheduler steps at each epoch's start, so epoch 0 trains at 1/2
    and the last epoch at 0 — its weights do not move."""
    args = dict(image_size=32, ngf=4, ndf=4, norm="instance", n_epochs=1, n_epochs_decay=1)
    pairs = lambda n, s: MemoryShard(input=images(n, s), target=images(n, s + 1))  # noqa: E731
    reports = run(loop_config("pix2pix", args, "paired", epochs=2), {"train": pairs(3, 1), "val": pairs(2, 5)},
                  tmp_path)
    assert [m["lr_factor"] for m, _ in reports] == [0.5, 0.0]
    after = [torch.load(c / "train_state.pt", weights_only=True)["nets"] for _, c in reports]
    for net in ("G", "D"):
        assert all(torch.equal(after[0][net][k], after[1][net][k]) for k in after[0][net])
    assert optimizer_lrs(reports[0][1]) == {1e-4}


def test_every_rank_builds_the_same_model_then_draws_its_own_noise(one_thread):
    """StarGAN v2's EMA copies start before He init and are never broadcast: ranks agree only if every rank builds
    the model from the same seed. After building, each rank has a stream of its own."""
    from pipelines.train_loop import build_model

    config = loop_config("stargan_v2", dict(image_size=32, num_domains=2, base_dim=4, max_conv_dim=8, style_dim=8,
                                            latent_dim=4, mapping_dim=8), "labeled")
    built = []
    for rank in (0, 1):
        model = build_model(config, torch.device("cpu"), world_size=1, rank=rank)
        built.append(({k: v.clone() for k, v in model.nets.state_dict().items()}, torch.rand(3)))
    (w0, noise0), (w1, noise1) = built
    assert w0.keys() == w1.keys() and all(torch.equal(w0[k], w1[k]) for k in w0)  # G_ema … included
    assert not torch.equal(noise0, noise1)


def test_an_epoch_without_a_full_batch_is_an_error_not_an_endless_run(tmp_path, one_thread):
    """A run bounded in iterations only must not loop over empty epochs for ever."""
    from pipelines.errors import DatasetError

    pairs = lambda n, s: MemoryShard(input=images(n, s), target=images(n, s + 1))  # noqa: E731
    config = {**loop_config("pix2pix", dict(image_size=32, ngf=4, ndf=4, norm="instance"), "paired",
                            max_steps=100), "batch_size": 4}
    with pytest.raises(DatasetError, match="no full batch of 4"):
        run(config, {"train": pairs(3, 1), "val": pairs(2, 5)}, tmp_path)


def test_i2i_train_shards_a_recipe_first_when_its_shards_do_not_exist(ray_cluster, demo_root, tmp_path, capsys):
    """A recipe plus ``--set shard.source=…`` is one command: ``i2i train`` shards it first (and only then)."""
    import json

    from jobs.cli import main as i2i

    shards = tmp_path / "shards"
    sets = [f"shard.source={demo_root}/edges2photo", f"shard.output={shards}", "shard.load_size=32",
            f"train.dataset={shards}", "model.args.image_size=32", "model.args.ngf=4", "model.args.ndf=4",
            "train.crop_size=32", "train.epochs=1", "train.num_workers=1", "train.batch_size=8",
            f"train.storage_path={tmp_path}/runs", f"mlflow.tracking_uri=sqlite:///{tmp_path}/mlflow.db"]
    args = ["train", "--config", "jobs/configs/quickstart.yaml", *[a for s in sets for a in ("--set", s)]]
    assert i2i(args) == 0
    printed = capsys.readouterr().out
    out = json.loads(printed[printed.index("{\n"):])  # the JSON summary ends stdout
    assert (shards / "manifest.json").exists() and out["dataset_id"] == json.loads(
        (shards / "manifest.json").read_text())["id"]
    assert pathlib.Path(out["checkpoint"], "config.json").exists()
