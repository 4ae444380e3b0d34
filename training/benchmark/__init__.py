"""The evaluation suite behind `mattebox eval --suite`: every model on validation composites of
held-out photographs, scored with the DIM metrics, beside the seed papers' figures and claims.

  composites.py  the validation composites (DIM rule, dataset trimaps, perturbed plates)
  runner.py      model entries (NAME, NAME@sK), running them in-process, progress, Ctrl-C
  results.py     per-model means and per-foreground variance across backgrounds
  claims.py      the seeds' claims, checked: pass / fail / not evaluated
  published.py   the seeds' published figures, one typed table
  report.py      results.json and results.md;  sheet.py  contact.png
  suite.py       the whole run, from a SuiteConfig
"""
