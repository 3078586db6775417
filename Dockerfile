# One image for every service of docker-compose.yml: the Ray head and workers, the MLflow
# server and the search driver all run the same automl-cnn, Ray and MLflow versions (MLflow's
# database schema must match between driver and server).
FROM python:3.11.7-slim-bookworm
WORKDIR /app
RUN apt-get update && apt-get install -y --no-install-recommends curl && rm -rf /var/lib/apt/lists/*
COPY pyproject.toml README.md ./
COPY docker/constraints.txt ./docker/
COPY automl_cnn ./automl_cnn
COPY search_spaces ./search_spaces
# mlflow[auth]: the MLflow server's basic-auth app (Flask-WTF)
RUN pip install --no-cache-dir ".[cluster]" "mlflow[auth]" -c docker/constraints.txt
ENV MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR=false
