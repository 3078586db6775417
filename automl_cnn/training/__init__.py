"""Training one candidate: the epoch-at-a-time ``Trainer``, batches, augmentation, and the
``TrialWorker`` that runs jobs for an executor (the same object in-process or as a Ray actor).
Imports nothing from Optuna, Ray or MLflow.
"""
