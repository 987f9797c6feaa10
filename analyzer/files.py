"""Publishing files atomically: written beside the target, then renamed over it."""

from __future__ import annotations

import os
from pathlib import Path


def publish(tmp_path: Path | str, target: Path | str) -> None:
    """Rename a finished temporary file over ``target`` with the mode of an ordinary new file.

    ``tempfile`` creates files 0600; published results (weights read by the image's unprivileged
    user, JSON for other tools) get 0666 minus the umask, as ``open(..., "w")`` would.
    """
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp_path, 0o666 & ~umask)
    os.replace(tmp_path, target)
