"""MLflow settings and run lookup — the driver side (workers log through ``train_loop._Tracker`` on rank 0).

Embedded default: a sqlite store ``data/mlflow/mlflow.db`` with artifacts in ``data/mlflow/artifacts`` (absolute
paths, resolved where the job starts). A tracking server (``http://host:5000``, artifacts proxied to S3) is just
``mlflow.tracking_uri`` — or ``$MLFLOW_TRACKING_URI``.
"""

from __future__ import annotations

import logging
import os
import warnings

from pipelines.schema import StrictModel

RUN_NAME_TAG = "i2i.run_name"


class MlflowConfig(StrictModel):
    tracking_uri: str | None = None  # None: $MLFLOW_TRACKING_URI, else sqlite:///<cwd>/data/mlflow/mlflow.db
    experiment: str = "i2i"

    def uri(self) -> str:
        uri = self.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
        if uri:
            return uri
        root = os.path.abspath(os.path.join("data", "mlflow"))
        os.makedirs(root, exist_ok=True)
        return f"sqlite:///{root}/mlflow.db"

    def artifact_location(self) -> str | None:
        uri = self.uri()
        if uri.startswith("sqlite:///"):  # local store: keep artifacts beside it (not in the job's cwd)
            return "file://" + os.path.join(os.path.dirname(uri[len("sqlite:///"):]), "artifacts")
        return None  # a server decides (proxied artifacts)


def quote(value: str) -> str:
    """``value`` as a string literal of an MLflow search filter. MLflow's filter grammar has no escape character:
    a value holding a quote is put in the other kind of quotes; one holding both kinds (or a backslash) is refused,
    so no name can change the meaning of a filter."""
    from pipelines.errors import I2IError

    value = str(value)
    if "\\" in value or ("'" in value and '"' in value):
        raise I2IError(f"{value!r} cannot be used in an MLflow search: it holds a backslash or both kinds of quotes")
    return f'"{value}"' if "'" in value else f"'{value}'"


def client(cfg: MlflowConfig):
    import mlflow

    mlflow.set_tracking_uri(cfg.uri())
    mlflow.set_registry_uri(cfg.uri())
    return mlflow.MlflowClient(cfg.uri(), registry_uri=cfg.uri())


def experiment_id(cfg: MlflowConfig) -> str:
    c = client(cfg)
    exp = c.get_experiment_by_name(cfg.experiment)
    if exp is not None:
        return exp.experiment_id
    return c.create_experiment(cfg.experiment, artifact_location=cfg.artifact_location())


def run_for(cfg: MlflowConfig, run_name: str, tags: dict[str, str]) -> str:
    """The MLflow run of a (deterministically named) training run: reused when the run resumes or is re-run."""
    c = client(cfg)
    exp = experiment_id(cfg)
    found = c.search_runs([exp], filter_string=f"tags.`{RUN_NAME_TAG}` = {quote(run_name)}", max_results=1)
    if found:
        return found[0].info.run_id
    from pipelines.storage import redact

    run = c.create_run(exp, run_name=run_name, tags={RUN_NAME_TAG: run_name, **{k: redact(str(v)) for k, v in
                                                                               tags.items()}})
    return run.info.run_id


def flatten(d: dict, prefix: str = "") -> dict[str, str]:
    """A nested config as MLflow params ``{"a.b": "value"}``; URIs in values lose their credentials
    (``storage.redact``), so a source like ``s3://KEY:SECRET@bucket/x`` is logged as ``s3://***@bucket/x``."""
    from pipelines.storage import redact

    out: dict[str, str] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = redact(str(v))[:6000]
    return out


DIGEST_CHARS = 36  # MLflow stores a dataset digest in at most 36 characters


def log_dataset_inputs(cfg: MlflowConfig, run_id: str, *, dataset: str, manifest_uri: str, manifest_id: str,
                       splits: dict[str, str]) -> None:
    """The shards a run reads, as MLflow dataset inputs — the run page's "Datasets", ``run.inputs.dataset_inputs``:
    one per split (``splits``: split → the role it plays, e.g. ``{"train": "train", "val": "val"}``), named
    ``<dataset>/<split>``, its source the manifest's URI (absolute, without credentials), its digest the manifest id
    (its first 36 characters) and its context (``mlflow.data.context``) the role. A split is a dataset of its own
    because MLflow links one dataset to a run once; for the same reason a resumed run logs nothing new."""
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.entities import DatasetInput, InputTag
    from mlflow.exceptions import MlflowException
    from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

    from pipelines import storage

    uri = storage.strip_credentials(storage.absolute(manifest_uri))
    try:
        with warnings.catch_warnings():  # "can be interpreted in multiple ways: LocalArtifactDatasetSource, …" (same)
            warnings.simplefilter("ignore", UserWarning)
            source = resolve_dataset_source(uri)
    except MlflowException as err:  # a scheme MLflow has no dataset source for: the i2i.dataset_* tags remain
        logging.getLogger(__name__).warning("not logging %s as an MLflow dataset: %s", uri, err)
        return
    inputs = [DatasetInput(MetaDataset(source, name=f"{dataset}/{split}", digest=manifest_id[:DIGEST_CHARS]
                                       )._to_mlflow_entity(),
                           [InputTag(MLFLOW_DATASET_CONTEXT, role), InputTag("i2i.split", split)])
              for split, role in splits.items()]
    client(cfg).log_inputs(run_id, datasets=inputs)
