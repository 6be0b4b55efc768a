"""Compare the jobs of a sweep: ``python -m hyperexp.report TARGET [TARGET ...] [--baseline GROUP]``.

:mod:`.queries` reads the runs from MLflow and :mod:`.trials` their per-trial values (each run's
``per_trial.csv``); :mod:`.statistics` puts intervals over test trials (or simulated experiments)
and tests paired differences; :mod:`.compare` assembles a sweep's groups, comparisons and
convergence flags; :mod:`.summary` keeps the spread over runs (decoder seeds), for reference;
:mod:`.figures`, :mod:`.sections` and :mod:`.document` draw and lay out the report, and
:mod:`.write` writes its files (Markdown, self-contained HTML, CSV, figures) and logs them to a run.
Only FINISHED runs enter the statistics; the other jobs are listed in the report.
"""
