"""The unpaired families train on Ray Train with 2 CPU workers from shards (the larger domain leads each epoch, the
other one cycles unsplit): UNIT here; CycleGAN on two nodes in tests/jobs/test_multinode.py; MUNIT and StarGAN v2
(labeled, EMA copies not DDP-wrapped) end to end in tests/jobs/test_zoo_nightly.py."""

import pytest
import torch

from i2i_models.base import I2IModel
from pipelines.shard import ShardConfig, run_shard
from pipelines.tracking import MlflowConfig
from pipelines.train import TrainConfig, run_train

TINY = {
    "unit": {"image_size": 32, "dim": 8, "n_res": 2, "dis_dim": 8, "dis_n_layer": 3, "dis_num_scales": 2},
}
DATASET = {"unit": "photo2winter"}


@pytest.fixture(scope="module")
def shards(ray_cluster, demo_root, tmp_path_factory) -> dict[str, str]:
    out = {}
    for name in ("photo2winter",):
        out[name] = str(tmp_path_factory.mktemp(name))
        run_shard(ShardConfig(source=f"{demo_root}/{name}", output=out[name], load_size=32, num_shards=2))
    return out


@pytest.mark.parametrize("model", list(TINY))
def test_family_trains_with_two_workers(model, shards, tmp_path):
    dataset = shards[DATASET[model]]
    train = TrainConfig(dataset=dataset, epochs=1, batch_size=2, crop_size=32, num_workers=2, val_split="test",
                        shuffle_buffer=8, storage_path=str(tmp_path / "runs"), log_every_steps=1000)
    r = run_train(model=model, model_args=TINY[model], loss_weights={}, train=train,
                  mlflow=MlflowConfig(tracking_uri=f"sqlite:///{tmp_path}/m.db"))
    assert r.metrics["val_kid"] == r.metrics["val_kid"] and r.metrics["objective"] == r.metrics["val_kid"]
    assert all(k in r.metrics for k in ("loss_" + t.name for t in I2IModel.from_pretrained(r.checkpoint).loss_terms))
    trained = I2IModel.from_pretrained(r.checkpoint)
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    assert torch.isfinite(trained.translate(x, direction="b2a")).all()
