"""The MLflow model of a registered i2i generator, logged as *models from code* (no pickle anywhere).

``register.run_register`` logs this file as the ``python_model`` of an ``mlflow.pyfunc`` model, with the model's
``save_pretrained`` folder (``config.json`` + ``nets.pt``, tensors only) as the artifact ``pretrained`` and the
``i2i_models`` package as code. So ``mlflow.pyfunc.load_model("models:/NAME@champion")`` works in a fresh process
with only torch and MLflow installed: it runs *this* file, whose ``load_context`` calls
``I2IModel.from_pretrained`` (``torch.load(weights_only=True)``).

``predict(x, params)``: ``x`` is a float32 array (N, C, H, W) in [-1, 1]; ``params`` are the family's
``translate`` conditions (``direction``, ``seed``, ``domain``); the result has the same layout. Single-domain
families that encode (AE, VAE, …) return the reconstructions x → z → x'; one that only generates (GAN) takes an
int64 array of seeds (N,) instead and returns image k = ``sample(1, seed=seeds[k])``, (N, C, H, W) in [-1, 1].

The project's own paths (translate, evaluate, the promotion gate) never execute this file: they download the
``pretrained`` artifact and load it with ``I2IModel.from_pretrained`` (see ``register.load_model``).
"""

import mlflow
from mlflow.pyfunc import PythonModel

PRETRAINED_ARTIFACT = "pretrained"


class I2IPyfuncModel(PythonModel):
    def load_context(self, context):
        from i2i_models.base import I2IModel

        self.model = I2IModel.from_pretrained(context.artifacts[PRETRAINED_ARTIFACT]).eval()

    def predict(self, context, model_input, params=None):
        import numpy as np
        import torch

        model = self.model
        with torch.no_grad():
            if model.data_mode == "single" and not model.encodes:  # a generator only: seeds in, samples out
                seeds = np.asarray(model_input).reshape(-1)
                return np.concatenate([model.sample(1, seed=int(s)).float().numpy() for s in seeds])
            x = torch.as_tensor(np.asarray(model_input, dtype=np.float32))
            condition = {k: v for k, v in (params or {}).items() if v is not None}
            return model.translate(x, **condition).float().numpy()


mlflow.models.set_model(I2IPyfuncModel())
