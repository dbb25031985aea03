"""`i2i report`: one self-contained HTML page of a run from what a real MLflow server holds, checked in a real
headless browser (Debian's Chromium): every loss / val metric is a drawn SVG chart, every logged sample image is
embedded and decodes to the size it was logged at, nothing is loaded from outside the page, and names / params that
hold HTML stay text. The run is logged by hand (metrics, params, `log_image(key="samples", step=…)`, a registered
version with eval.* and promotion.* tags) — no training, no Ray."""

import base64
import json
import math
import os
import re
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

from jobs.report import main as report
from pipelines import tracking

# if the page did not escape them, these would run in the browser and mark <body>
HOSTILE_NAME = 'run <img src=x onerror="document.body.dataset.pwned=1"> & co'
HOSTILE_PARAM = '</td><script>document.body.dataset.pwned=2</script>'
SECRET = "hunter2secret"  # a credential in a URI: never on the page

# appended to a copy of the page for the check: what the browser loaded and drew, into <body data-*>
PROBE = """<script>addEventListener("load", () => {
  const b = document.body.dataset, imgs = [...document.images];
  b.imgs = imgs.length;
  b.decoded = imgs.filter(i => i.complete && i.naturalWidth > 0).length;
  b.sizes = imgs.map(i => i.naturalWidth + "x" + i.naturalHeight).join(",");
  b.plots = document.querySelectorAll("svg.plot").length;
  b.drawn = [...document.querySelectorAll("svg.plot path")].filter(p => p.getTotalLength() > 0 &&
                                                                      p.getBBox().width > 0).length;
  b.external = [...document.querySelectorAll("[src],[href]")].filter(
    e => !(e.getAttribute("src") || e.getAttribute("href")).startsWith("data:")).length;
});</script>"""

LOSSES = {"loss_gan": [0.9, math.nan, 0.7], "loss_l1": [0.5, 0.4, 0.3]}  # a NaN: left out of its chart, counted
VALS = {"val_l1": [0.45, 0.38, 0.33], "val_psnr": [12.0, 13.5, 14.1], "objective": [0.45, 0.38, 0.33],
        "images_per_s": [20.0, 22.0, 21.0]}


def chromium() -> str:
    found = shutil.which("chromium") or ("/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else None)
    if found is None:
        pytest.fail("Chromium is not installed: the report test loads the page in a real headless browser. Install "
                    "it with `apt-get install -y chromium` (Debian)")
    return found


def browse(page: str, tmp_path) -> tuple[dict[str, str], str]:
    """(the <body data-*> the probe set, the DOM) of ``page`` loaded from file:// in headless Chromium."""
    copy = tmp_path / "probed.html"
    copy.write_text(page.replace("</body>", PROBE + "</body>"), encoding="utf-8")
    r = subprocess.run([chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                        "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'profile'}",
                        "--virtual-time-budget=5000", "--dump-dom", copy.as_uri()],
                       capture_output=True, text=True, timeout=120)
    body = re.search(r"<body([^>]*)>", r.stdout)
    assert r.returncode == 0 and body, r.stderr[-2000:]
    return dict(re.findall(r'data-([\w-]+)="([^"]*)"', body.group(1))), r.stdout


def logged_run(cfg: tracking.MlflowConfig) -> tuple[str, list[np.ndarray]]:
    """A run with three epochs of metrics, params, eval_* metrics, a config.yaml artifact and two sample grids;
    (its id, the grids)."""
    from mlflow.entities import Metric, Param

    c = tracking.client(cfg)
    run_id = c.create_run(tracking.experiment_id(cfg), run_name=HOSTILE_NAME, tags={
        tracking.RUN_NAME_TAG: HOSTILE_NAME, "i2i.model": "pix2pix", "i2i.dataset": "edges2photo"}).info.run_id
    metrics = [Metric(k, v, 1_000 + e, e) for k, vs in {**LOSSES, **VALS, "epoch_seconds": [3.0] * 3}.items()
               for e, v in enumerate(vs)]
    c.log_batch(run_id, metrics=metrics + [Metric("eval_l1", 0.31, 2_000, 0), Metric("eval_fid", 88.5, 2_000, 0)],
                params=[Param("model", "pix2pix"), Param("loss_weights.l1", "100.0"), Param("note", HOSTILE_PARAM),
                        Param("train.dataset", f"s3://KEYID:{SECRET}@bucket/shards")])
    c.log_text(run_id, f"train:\n  epochs: 3\n  dataset: s3://KEYID:{SECRET}@bucket/shards\n", "config.yaml")
    grids = [np.full((16, 48, 3), fill, np.uint8) for fill in (40, 200)]
    grids[1][:, :16] = (255, 0, 0)
    for epoch, grid in enumerate(grids):
        c.log_image(run_id, grid, key="samples", step=epoch * 2)
    c.set_terminated(run_id)
    return run_id, grids


def test_report_of_a_registered_version_in_a_headless_browser(mlflow_server, tmp_path, capsys):
    cfg = tracking.MlflowConfig(tracking_uri=mlflow_server, experiment="report")
    run_id, grids = logged_run(cfg)
    c, name = tracking.client(cfg), "i2i-pix2pix-report"
    c.create_registered_model(name)
    version = c.create_model_version(name, f"runs:/{run_id}/model", run_id=run_id).version
    for k, v in {"eval.l1": "0.31", "eval.fid": "88.5", "eval.split": "val", "eval.fingerprint": "fp123",
                 "promotion.decision": "promoted", "promotion.reason": "l1 0.31 < champion's 0.35",
                 "promotion.metric": "l1"}.items():
        c.set_model_version_tag(name, version, k, v)
    c.set_registered_model_alias(name, "champion", version)
    out = tmp_path / "out" / "report.html"
    capsys.readouterr()  # MLflow's own "View run …" line, printed when the test ended its run

    rc = report([f"models:/{name}@champion", "--out", str(out), "--set", f"mlflow.tracking_uri={mlflow_server}"])
    summary = json.loads(capsys.readouterr().out)
    assert rc == 0 and summary == {"status": "succeeded", "out": str(out), "run_id": run_id,
                                   "model_version": f"{name}/{version}", "plots": 6, "images": 2}, summary
    page = out.read_text(encoding="utf-8")
    embedded = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(embedded) == 2  # the full-size PNGs (not MLflow's compressed .webp copies), pixel for pixel
    for data, grid in zip(embedded, grids):
        (tmp_path / "x.png").write_bytes(base64.b64decode(data))
        assert np.array_equal(np.asarray(Image.open(tmp_path / "x.png").convert("RGB")), grid)
    for text in ("promoted", "l1 0.31 &lt; champion&#x27;s 0.35", "88.5", "fp123", "loss_weights.l1", "edges2photo",
                 "1 non-finite value left out", "epochs: 3", "s3://***@bucket/shards"):
        assert text in page, text
    assert SECRET not in page

    seen, dom = browse(page, tmp_path)
    assert seen["imgs"] == seen["decoded"] == "2" and seen["sizes"] == "48x16,48x16", seen
    assert seen["plots"] == seen["drawn"] == "6" and seen["external"] == "0", seen
    assert "pwned" not in seen  # the hostile name and param stayed text…
    assert html_text(HOSTILE_NAME) in dom and html_text(HOSTILE_PARAM) in dom  # …shown as they are
    for metric in [*LOSSES, *VALS]:
        assert f'data-metric="{metric}"' in dom, metric


def html_text(s: str) -> str:
    """``s`` as the browser serialises it in a text node (--dump-dom)."""
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def test_report_of_a_plain_run_and_of_what_does_not_exist(mlflow_server, tmp_path, capsys, monkeypatch):
    cfg = tracking.MlflowConfig(tracking_uri=mlflow_server, experiment="report-plain")
    c = tracking.client(cfg)
    run_id = c.create_run(tracking.experiment_id(cfg), run_name="a/../plain run").info.run_id
    c.log_metric(run_id, "loss_l1", 0.5, step=0)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)  # the tracking URI from the environment

    assert report([f"runs:/{run_id}"]) == 0
    summary = json.loads(capsys.readouterr().out)
    default = tmp_path / "report-a_.._plain_run.html"  # the run name made a file name: no separators
    assert summary == {"status": "succeeded", "out": str(default), "run_id": run_id, "plots": 1, "images": 0}
    assert "not registered" in default.read_text(encoding="utf-8")

    for missing in ("0123456789abcdef0123456789abcdef", "models:/i2i-none/1", "models:/i2i-none@champion"):
        assert report([missing]) == 2, missing
        captured = capsys.readouterr()
        assert json.loads(captured.out)["status"] == "failed"
        error = captured.err.strip().splitlines()[-1]
        assert error.startswith("error: ") and len(error) < 400 and "Traceback" not in captured.err, captured.err
