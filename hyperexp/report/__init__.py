"""Compare the jobs of a sweep: ``python -m hyperexp.report TARGET [--tracking-uri URI] [--out DIR]``.

:mod:`.queries` reads the runs from MLflow; :mod:`.summary` summarises each group's
``test/<metric>`` values over seeds (mean, sample sd with ddof=1, n); :mod:`.figures` draws them;
:mod:`.write` writes ``report.md``, ``report.csv`` and the figures and logs them to a run.
Only FINISHED runs enter the statistics; the other jobs are listed in the report.
"""
