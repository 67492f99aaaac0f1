"""Where executions' working directories go (``AUTOMATION_EXECUTOR_WORKDIR_ROOT``), checked at start-up.

Every execution gets a fresh directory under the root, made with ``mkdtemp`` before it starts and,
when the run left it empty, removed with ``rmdir`` when it ends, both on the executor's event loop (a
directory with files in it is removed in a thread). On a journalled disk
filesystem (ext4, xfs) each of those is a journal update: ~30 µs of CPU and more of waiting while the
journal commits other writers' fsyncs (PostgreSQL's, on a shared disk); on ``tmpfs`` the pair is a
few µs. :func:`check_root` runs at start-up so that a root that cannot take directories stops the
replica with a clear error instead of failing every run; :func:`filesystem_type` names what the root
is on, for the start-up log line.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

MOUNTINFO = "/proc/self/mountinfo"


class WorkdirRootError(RuntimeError):
    """The working directories' root cannot take new directories."""


def check_root(root: str | None) -> str:
    """The root (``root``, or the system's temporary directory), after making and removing one directory there.

    Raises :class:`WorkdirRootError` naming the setting, the directory and the system's reason.
    """
    parent = root or tempfile.gettempdir()
    try:
        os.rmdir(tempfile.mkdtemp(prefix="automation-check-", dir=parent))
    except OSError as exc:
        raise WorkdirRootError(
            f"AUTOMATION_EXECUTOR_WORKDIR_ROOT: cannot create working directories in {parent}: {exc.strerror or exc}"
        ) from exc
    return parent


_OCTAL_ESCAPE = re.compile(r"\\([0-7]{3})")


def _unescape(field: str) -> str:
    """A mountinfo path field, whose spaces, tabs, newlines and backslashes the kernel writes as octal escapes."""
    return _OCTAL_ESCAPE.sub(lambda match: chr(int(match.group(1), 8)), field)


def filesystem_type(path: str, mountinfo: str = MOUNTINFO) -> str | None:
    """The type of the filesystem ``path`` is on (``ext4``, ``tmpfs``, ``overlay`` …), from the
    longest mount point that contains it; None where the mount table cannot be read (not Linux)."""
    target = Path(os.path.realpath(path))
    best: tuple[int, str] | None = None
    try:
        lines = Path(mountinfo).read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        fields, _, rest = line.partition(" - ")
        parts = fields.split()
        if len(parts) < 5 or not rest:
            continue
        mount_point = Path(_unescape(parts[4]))
        if target == mount_point or mount_point in target.parents:
            depth = len(mount_point.parts)
            if best is None or depth >= best[0]:  # a later mount over the same point hides the earlier one
                best = (depth, rest.split()[0])
    return best[1] if best is not None else None
