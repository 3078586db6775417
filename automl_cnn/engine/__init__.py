"""The orchestration tier: the settings of a search (``config``), the session holding a run's
context, the driver loop, the final fit, recovery of a killed run, warm starts, and the
entry points ``search()`` / ``resume()`` (``run``).
"""
