"""A local RunPod serverless endpoint for development and tests.

``python -m swarm.endpoint serve --workers 2`` (or ``swarm endpoint serve``) serves RunPod's
public API on loopback and runs real ``runpod`` worker processes (``python handler.py``)
against it. Modules: ``state`` (queue and job states), ``api`` (the HTTP routes), ``webhooks``
(a request's ``webhook``, POSTed when its job ends), ``server`` (uvicorn, foreground or on a
thread), ``workers`` (worker processes and their environment),
``demo_worker`` (a tiny handler for tests and benchmarks). Nothing is imported here.
"""
