"""``python -m mtfcdd.report DIR [DIR ...]``: one report over the jobs of a sweep (or any run directories).

``.jobs`` finds the jobs and reads their results, ``.files`` writes ``report.md`` / ``report.csv``,
``.plots`` the PNG figures, ``.wandb_summary`` the W&B summary run; ``.__main__`` is the command line.
"""
