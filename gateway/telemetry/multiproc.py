"""The per-run directory where several workers' metrics meet (prometheus multiprocess).

`gateway serve --workers N` creates it before the workers start (they inherit the
environment variable) and removes it when they have stopped, so a new run never
adds up the files of an old one.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"  # prometheus-client's own name


@contextmanager
def shared_metrics_dir() -> Iterator[str]:
    """A fresh directory named in PROMETHEUS_MULTIPROC_DIR while the workers run."""
    path = tempfile.mkdtemp(prefix="gateway-metrics-")
    previous = os.environ.get(MULTIPROC_ENV)
    os.environ[MULTIPROC_ENV] = path
    try:
        yield path
    finally:
        if previous is None:
            os.environ.pop(MULTIPROC_ENV, None)
        else:
            os.environ[MULTIPROC_ENV] = previous
        shutil.rmtree(path, ignore_errors=True)
