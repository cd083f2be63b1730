"""Writing a file so that a crash never leaves half of it where a whole one was."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path


def atomic_write(path: str | os.PathLike, write) -> None:
    """Call ``write(tmp_path)`` then move the result over ``path`` in one step.

    The temporary file is beside ``path`` (missing folders are made); if ``write``
    fails it is removed and ``path`` is left as it was.

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "new" / "notes.txt"
    >>> atomic_write(p, lambda tmp: pathlib.Path(tmp).write_text("done\\n"))
    >>> p.read_text(), [f.name for f in p.parent.iterdir()]     # no temporary file left
    ('done\\n', ['notes.txt'])
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    umask = current_umask()
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~umask)  # after write: mkstemp (and safetensors' own save) make 0600
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def current_umask() -> int:
    """The process's umask, read without changing it where Linux shows it (/proc/self/status),
    so that no other thread can create a file under a umask of 0 meanwhile.

    >>> 0 <= current_umask() <= 0o777
    True
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    umask = os.umask(0)  # elsewhere the only way to read it is to set it, then set it back
    os.umask(umask)
    return umask
