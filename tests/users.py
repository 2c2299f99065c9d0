"""Running a piece of a test as an unprivileged user: the tests run as root, which every permission lets through."""
from __future__ import annotations

import os
import pwd
from collections.abc import Callable


def as_nobody(work: Callable[[], list[str]]) -> list[str]:
    """work() run in a forked child that became user nobody (no groups): its lines, through a pipe.
    A fork rather than runuser: this machine's Python lives under /root, which nobody may not enter.
    Run as another user than root, the child simply stays that user."""
    nobody = pwd.getpwnam("nobody")
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: drop to nobody, run, report, and leave without pytest's cleanup
        status = 1
        try:
            os.close(read)
            if os.geteuid() == 0:
                os.setgroups([])
                os.setgid(nobody.pw_gid)
                os.setuid(nobody.pw_uid)
            os.write(write, "\n".join(work()).encode())
            status = 0
        finally:
            os._exit(status)
    os.close(write)
    with os.fdopen(read, "rb") as fh:
        out = fh.read().decode()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, out
    return out.splitlines()
