"""DTN's f resolved on the driver (pipelines.pretrained): the encoder of a registered ae on the real MLflow server
(alias pinned, traced to TorchScript, shipped content-addressed to S3, fetched into a local cache), and clear errors
for a missing file and for a registered model that does not encode."""

import hashlib
import os
import uuid

import pytest
import torch

from i2i_models.registry import get_model
from pipelines import tracking
from pipelines.errors import ConfigError
from pipelines.pretrained import fetch_files, ship_files
from tests.conftest import BUCKET, register_version

DTN = dict(image_size=16, out_channels=3, ngf=4, ndf=4)


def test_f_from_a_registered_ae_is_its_encoder(mlflow_server, tmp_path):
    cfg = tracking.MlflowConfig(tracking_uri=mlflow_server, experiment="dtn-f")
    name = f"i2i-ae-{uuid.uuid4().hex[:8]}"
    torch.manual_seed(0)
    ae = get_model("ae", image_size=16, nz=6, ngf=4, ndf=4)
    ae.save_pretrained(str(tmp_path / "ae"))
    reg = register_version(cfg, str(tmp_path / "ae"), name=name, model="ae")
    store = f"s3://{BUCKET}/{name}"  # storage every node reads; a worker copies from it into its local cache
    files, origin = ship_files("dtn", {"f_source": f"models:/{name}@challenger"}, store, cfg)
    digest = origin["f_source"].rsplit("sha256:", 1)[1]
    assert files["f_source"] == f"{store}/pretrained/f_source-{digest[:16]}.pt"  # content-addressed
    assert origin["f_source"].startswith(f"models:/{name}/{reg.version} sha256:")  # the alias pinned
    local = fetch_files(files)
    assert os.path.isfile(local["f_source"]) and hashlib.sha256(open(local["f_source"], "rb").read()).hexdigest() \
        == digest
    dtn = get_model("dtn", f_source=local["f_source"], **DTN)
    x = torch.rand(3, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(dtn.nets["f"](x), ae.eval().nets["E"](x))  # f = the ae's encoder E
    assert dtn.nets["g"][0].in_channels == 6  # g decodes the ae's 6-d code

    gan = f"i2i-gan-{uuid.uuid4().hex[:8]}"
    get_model("gan", image_size=16, nz=6, ngf=4, ndf=4).save_pretrained(str(tmp_path / "gan"))
    register_version(cfg, str(tmp_path / "gan"), name=gan, model="gan")
    with pytest.raises(ConfigError, match=rf"models:/{gan}@challenger is a 'gan' model, which does not encode images"):
        ship_files("dtn", {"f_source": f"models:/{gan}@challenger"}, store, cfg)


def test_a_missing_f_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match=r"f_source .*nope\.pt: no such file.*nothing is downloaded"):
        ship_files("dtn", {"f_source": str(tmp_path / "nope.pt")}, str(tmp_path / "store"))
    assert ship_files("dtn", {}, str(tmp_path / "store")) == ({}, {})  # the built-in f: nothing to ship
