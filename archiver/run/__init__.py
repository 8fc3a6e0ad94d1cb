"""`archiver run`: the pipeline over articles and URLs, its per-article and per-asset steps, report and progress.
"""
