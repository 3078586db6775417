"""One concrete network: its frozen record (``architecture``), the pure builder, static analysis
before training (``profile``: shapes, parameters, FLOPs, latency, limits), what is measured of it
(``measures``), and the trained, deliverable model (``trained``, ``export``). Pure: no Ray, no MLflow.
"""
