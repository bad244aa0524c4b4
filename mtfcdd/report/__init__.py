"""``python -m mtfcdd.report DIR [DIR ...]``: one report over the jobs of a sweep (or any run directories).

:mod:`.jobs` finds the jobs and reads their results, :mod:`.files` writes ``report.md`` / ``report.csv``,
:mod:`.plots` the PNG figures, :mod:`.wandb_summary` the W&B summary run; :mod:`.__main__` is the command line.
"""
