"""Pod metadata for the collector: the node-scoped watch, its cache and the enricher.

``config.py`` settings, ``client.py`` list/watch over the API, ``watch.py`` the
reflector service, ``metadata.py`` compact pod values, ``cache.py`` live and
deleted pods, ``snapshot.py`` the on-disk copy, ``enrich.py`` the
:class:`~collector.enrichment.Enricher` and ``build_enricher``, ``events.py``
logs and metrics.
"""
