"""``bcc serve``: a DICOM node that a PACS routes screening studies to, and that sends the
results back (docs/serve.md).

One module per job:

* :mod:`.config`: the service's settings (``ServeConfig``), ``--destination`` and TLS;
* :mod:`.naming`: the short hash that names a study in logs, folders and metrics;
* :mod:`.durable`: files written so that they survive a crash (fsync, rename, fsync);
* :mod:`.state`: the SQLite database of studies, instances and result objects;
* :mod:`.intake`: the DICOM listener (C-ECHO, C-STORE of mammograms, refusals);
* :mod:`.processor`: the seam between the service and the analysis, and the analysis
  itself (``ModelProcessor``: bcc dicom + bcc run + DICOM results, models loaded once);
* :mod:`.loop`: the shape of the two threads below (turns until stopped);
* :mod:`.worker`: the one thread that decides completeness and runs the processor;
* :mod:`.sender`: the thread that C-STOREs result objects to the destination, with retries;
* :mod:`.metrics`: Prometheus metrics and ``/healthz``;
* :mod:`.service`: everything wired together, start and stop, ``--reprocess``.
"""
