"""Ctrl-C while the ``fastconv-lenet`` command starts: one line and exit status 130, no traceback.

Both ways of running the command (its console script, ``python -m fastconv.lenet``) import this
package before any code of the command runs, and that import (NumPy, SciPy, the compiled
kernels) takes about 0.3 s. A Ctrl-C then raised KeyboardInterrupt through the imports: a 20-40
line traceback and status -2. So ``fastconv/__init__.py`` calls :func:`guard_command_start`
before those imports: in the command's process only, Ctrl-C exits at once with one line until
the command's ``main`` calls :func:`end_command_start` and reports interruptions itself.
Python's own start (about 30 ms, before fastconv's first line runs) stays out of its reach.
Standard library only, and little of it (no threading): it runs before the heavy imports.
"""

import os
import signal
import sys

__all__ = ["PROG", "INTERRUPTED", "started_as_command", "guard_command_start", "end_command_start"]

PROG = "fastconv-lenet"
INTERRUPTED = f"{PROG}: interrupted"
_MODULE = "fastconv.lenet"
# The console script's names (pip's launchers on Windows: .exe, running NAME-script.py).
_SCRIPTS = (PROG, f"{PROG}.exe", f"{PROG}-script.py", f"{PROG}-script.pyw")


def started_as_command() -> bool:
    """Whether this process runs the fastconv-lenet command: its console script, or
    ``python -m fastconv.lenet`` (while Python imports that module's packages, sys.argv[0] is
    "-m"; sys.orig_argv says which module, on Python >= 3.10)."""
    script = os.path.basename(sys.argv[0]) if sys.argv else ""
    if script == "-m":
        command_line = getattr(sys, "orig_argv", None)
        # On 3.9 any `python -m fastconv.X`: fastconv.lenet is the only one that runs that way.
        return command_line is None or _MODULE in command_line or "-m" + _MODULE in command_line
    return script in _SCRIPTS


def _exit_interrupted(signum: int, frame: object) -> None:
    # Nothing is written or open yet: leave at once. Not by raising SystemExit: raised inside a
    # compiled module's initialisation it can come out as that module's ImportError (NumPy's).
    sys.stdout.flush()
    print(f"\n{INTERRUPTED}", file=sys.stderr, flush=True)
    os._exit(130)


def guard_command_start() -> None:
    """In the command's process, make Ctrl-C exit at once (one line on stderr, status 130) until
    :func:`end_command_start`. Leaves a handler it did not install (an ignored SIGINT) alone."""
    if started_as_command() and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        try:
            signal.signal(signal.SIGINT, _exit_interrupted)
        except ValueError:  # not the main thread, which is where the command imports fastconv
            pass


def end_command_start() -> None:
    """Ctrl-C raises KeyboardInterrupt again: the command's main catches and reports it."""
    if signal.getsignal(signal.SIGINT) is _exit_interrupted:
        signal.signal(signal.SIGINT, signal.default_int_handler)
