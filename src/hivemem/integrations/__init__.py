"""Optional integrations with the servers and clusters hivemem's users already run.

Each is a submodule that imports its third-party package only when used;
``import hivemem`` never loads any of them:

``hivemem.integrations.gunicorn``    pre-fork server hooks (``pre_fork``, ``post_fork``, ...)
``hivemem.integrations.prometheus``  metrics for prometheus_client (extra ``prometheus``)
``hivemem.integrations.dask``        a ``distributed`` WorkerPlugin (extra ``dask``)

See ``docs/integrations.md``.
"""
