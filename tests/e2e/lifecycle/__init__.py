"""Lifecycle fault suite: a kubelet-faithful log writer, podlog killed with SIGKILL, a line-by-line checker.

``writer.py`` writes the node's logs and their ground truth (``truth.py``,
``formats.py``), ``targets.py`` runs podlog as processes and reads records
back (``wire.py`` is the one reader of the wire format), ``scenario.py``
runs one fault scenario and ``checker.py`` judges it.  CI-sized tests:
``test_lifecycle.py``; the full size, repeated: ``bench/lifecycle_faults.py``.
"""
