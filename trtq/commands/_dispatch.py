"""Running one subcommand: its errors as one line and an exit status, SIGTERM as cleanup.

Exit statuses: 0 success, 1 a check that ran and failed (`trtq inspect` lint errors), 2 the
user's input (a `TrtqError`, an OSError on a path), 3 a bug in trtq, 130 Ctrl-C, 143 SIGTERM.
Every failure prints one line; `-v` adds the traceback.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import signal
import sys
import traceback

from trtq.errors import TrtqError, describe_os_error, one_line

INTERNAL_ERROR = 3


class Terminated(BaseException):
    """SIGTERM, raised in the main thread so that partial outputs are cleaned up."""


@contextlib.contextmanager
def sigterm_raises():
    def handler(signum, frame):
        raise Terminated()

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread (an embedding application's worker)
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _fail(args, message: str, status: int) -> int:
    if args.verbose:
        traceback.print_exc()
    print(f"trtq: error: {message}", file=sys.stderr)
    return status


def dispatch(args) -> int:
    """Run the subcommand; every failure becomes one line on stderr and an exit status:
    2 for the user's input (TrtqError, an OSError on a path), 3 for a bug in trtq, 130 / 143
    for Ctrl-C / SIGTERM. -v adds the traceback."""
    try:
        module = importlib.import_module(f"trtq.commands.{args.command.replace('-', '_')}_cmd")
        return module.run(args) or 0
    except TrtqError as exc:
        return _fail(args, one_line(exc), 2)
    except BrokenPipeError:  # output piped into `head` and friends
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as exc:
        return _fail(args, describe_os_error(exc), 2)
    except KeyboardInterrupt:
        print("trtq: interrupted", file=sys.stderr)
        return 130
    except Terminated:
        print("trtq: terminated", file=sys.stderr)
        return 143
    except Exception as exc:  # a bug: still one line, the traceback with -v
        hint = "" if args.verbose else "; run with -v for the traceback"
        return _fail(args, f"internal error ({type(exc).__name__}: {one_line(exc)}), a bug in "
                     f"trtq{hint}", INTERNAL_ERROR)
