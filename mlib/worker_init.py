"""Imported by the forkserver before it forks pool workers (``multiprocessing.set_forkserver_preload``).

The forkserver hands its SIGINT disposition to every worker, so ignoring SIGINT here keeps Ctrl-C (and
the SIGINT a notebook kernel's process group gets on interrupt) away from workers that are still
starting: the parent process handles the interrupt and ends its workers itself (:mod:`mlib.parallel`).
"""

import signal

signal.signal(signal.SIGINT, signal.SIG_IGN)
