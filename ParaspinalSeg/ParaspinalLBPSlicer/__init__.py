"""Slicer-side helpers shared by the four ParaspinalLBP modules (they may import ``slicer``).

Lives beside ParaspinalSeg because every other module already depends on it: the pinned package
list and the install prompt, Sample Data registration, the plumbing of the headless scripts
(table nodes to CSV, loading files with a message naming the option, Slicer's exit status) and
background jobs (a Lib's command line in its own process, polled and cancellable: ``jobs.py``).
The numeric work stays in the ``<M>Lib`` packages, which never import ``slicer``.
"""
