"""i2i pipeline steps: Ray + object storage + MLflow around the pure-torch models in ``i2i_models``.

Each step is a plain function (config and URIs in, a small result dataclass out); ``jobs/`` holds the thin
``ray job submit`` entrypoints that call them.
"""
