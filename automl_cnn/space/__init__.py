"""Search spaces: YAML loaded into typed, validated records (``schema``), the settings they hold
(``params``), the one adapter from an Optuna trial to a candidate (``sampling``) and the classic
designs projected onto a space (``presets``). Pure: no Ray, no MLflow.
"""
