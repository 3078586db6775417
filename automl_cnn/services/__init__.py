"""What the search loop talks to: executors (Ray actors, or the in-process twin), the Ray runtime,
the Optuna study and its storage, and MLflow tracking.
"""
