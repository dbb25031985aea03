# The MLflow tracking server of infra/k8s/mlflow.yaml: MLflow's own basic-auth app (`mlflow server --app-name
# basic-auth`), the same MLflow version as the jobs (constraints.txt pins it), boto3 for the S3 artifact store.
# Build from the repo root:
#   docker build -f infra/docker/mlflow.Dockerfile -t ghcr.io/OWNER/i2i-mlflow:0.1.0 .
# mlflow[auth] brings Flask-WTF (the auth app's CSRF protection); the import check fails the build without it.
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}

COPY constraints.txt /tmp/constraints.txt
RUN pip install --no-cache-dir -c /tmp/constraints.txt "mlflow[auth]" boto3 \
    && python -c "import flask_wtf, boto3, mlflow.server.auth" \
    && useradd --uid 1000 --create-home mlflow
USER 1000
WORKDIR /home/mlflow
EXPOSE 5000
