"""Serving a trained pipeline over HTTP (``python -m mtfcdd.serve``, LitServe): the worker's API (:mod:`.api`), the
request checks and decoding (:mod:`.decoding`), the routes (:mod:`.server`), the state shared by the server's
processes (:mod:`.shared`) and its Prometheus metrics (:mod:`.metrics`); the inspection page's files in ``page/``."""
