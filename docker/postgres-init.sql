-- A second database for the Optuna study (MLflow uses the default one, "mlflow").
CREATE DATABASE optuna OWNER automl;
