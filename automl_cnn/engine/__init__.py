"""The orchestration tier. Its two phases are sub-packages: ``search`` (propose, check, train,
stop early, record) and ``final`` (tie-break, plan, fit, check, ensemble). What both share sits
here: the settings (``config``), the run's context (``session``), the time budget (``budget``),
trial records and outcomes, the run folder's state, the progress panel and the opening of a run.
``automl_cnn.app`` runs them in order.
"""
