"""Serving a trained pipeline over HTTP (``python -m mtfcdd.serve``, LitServe): the worker's API (``.api``), the
request checks and decoding (``.decoding``), the routes (``.server``), the state shared by the server's
processes (``.shared``) and its Prometheus metrics (``.metrics``); the inspection page's files in ``page/``."""
