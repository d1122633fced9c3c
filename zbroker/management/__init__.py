"""Windows into a running broker: ``zbroker ctl`` (``ctl.py``), the HTTP API and dashboard
(``http.py``), Prometheus metrics (``metrics.py``); all of them ask the broker through
``client.py``, over the broker's own socket."""
