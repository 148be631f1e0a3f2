"""The CLI's edge: a library call's result becomes one line on stdout, its error one line on
stderr and an exit code.

The machine failing under a command is handled here, once for every command: Ctrl-C (exit
130) and SIGTERM (exit 143) print what is kept and the command that resumes; a full disk, a
read-only file system or a permission denied print one line naming the folder or file.
Everything else that is not a :class:`FracdetError` is a bug and keeps its traceback.
"""

from __future__ import annotations

import errno
import functools
import shlex
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol, TypeVar

import typer

from fracdet.errors import FracdetError
from fracdet.fsutil import outputs_of

__all__ = ["Terminated", "clean_errors", "echo_line", "stop_line", "os_error_line"]

F = TypeVar("F", bound=Callable[..., object])


class Terminated(KeyboardInterrupt):  # noqa: N818 - a signal, like KeyboardInterrupt
    """SIGTERM, raised like Ctrl-C so that every cleanup written for an interrupt runs."""


#: What a stopped command (by its function's name) keeps, and the flag that continues it
#: (``""``: rerunning the same command continues it; ``None``: rerunning it starts over,
#: nothing half-done was kept).
_AFTER_STOP: dict[str, tuple[str | None, str]] = {
    "predict": ("--resume", "the rows written so far are kept"),
    "audit": ("--resume", "the chunks audited so far are kept"),
    "train_cls": ("--resume", "the last finished epoch is kept"),
    "pretrain_mae": ("--resume", "the last finished epoch is kept"),
    "train_det": ("--resume", "the last epoch Ultralytics saved is kept"),
    "run_study_command": ("", "the finished stages are kept"),
    "demo": ("", "the finished stages are kept"),
}
_NOTHING_KEPT = (None, "nothing was written (outputs appear only when complete)")
#: Flags that must not come back in a resume command: they would start over.
_STARTS_OVER = {"--overwrite", "--fresh"}
#: The trainings whose ``--resume`` needs a checkpoint (see :func:`_nothing_saved`).
_TRAININGS = ("train_cls", "pretrain_mae", "train_det")
_NOTHING_TO_RESUME = "no epoch had finished, so there is nothing to resume"


def resume_command(flag: str | None) -> str | None:
    """The exact command line that continues this one; ``None`` when it cannot be known.

    Built from ``sys.argv``, so only when this process is the ``fracdet`` program itself
    (an in-process caller's argv is its own). ``flag`` ``--overwrite`` is the command that
    starts again: a ``--resume`` it held goes.
    """
    program = Path(sys.argv[0]).name if sys.argv else ""
    if program not in ("fracdet", "__main__.py"):
        return None
    args = list(sys.argv[1:])
    if flag is not None:
        drop = _STARTS_OVER | ({"--resume"} if flag == "--overwrite" else set())
        args = [a for a in args if a not in drop]
        if flag and flag not in args:
            args.append(flag)
    return shlex.join(["fracdet", *args])


def _nothing_saved(command: str, out: Path) -> bool:
    """Whether a training stopped before its first checkpoint, so ``--resume`` cannot continue.

    Such a run is started again, not resumed: ``--resume`` stays strict (as Ultralytics'
    ``resume``, which needs ``last.pt``, and timm's ``--resume PATH``), because a ``--resume``
    that quietly started over, on a mistyped ``--out`` say, would spend hours on a training the
    user believes continues. The stop line says so instead, with the command that starts again.
    """
    if command not in _TRAININGS:
        return False
    if command == "train_det":
        checkpoint = "weights/last.pt"  # Ultralytics' layout, in the run folder the lock names
    else:
        from fracdet.cls.train_state import STATE_FILE  # train-cls's and pretrain-mae's

        checkpoint = STATE_FILE
    return not (out / checkpoint).is_file()


def _where(exc: BaseException, *, outer: bool) -> str:
    outputs = outputs_of(exc)
    if not outputs:
        return ""
    return f" in {outputs[-1] if outer else outputs[0]}"


def stop_line(exc: KeyboardInterrupt, command: str) -> str:
    """The one line of an interrupted command: what stopped it, what is kept, how to go on."""
    flag, kept = _AFTER_STOP.get(command, _NOTHING_KEPT)
    outputs = outputs_of(exc)
    if not outputs:  # stopped before its output was opened: nothing to resume
        flag, kept = None, "nothing was written yet"
    elif flag == "--resume" and _nothing_saved(command, outputs[0]):
        # the folder holds the stopped run's first files (or, for train-det, the run it was
        # replacing, put back): a plain rerun refuses it, --overwrite starts again
        flag, kept = "--overwrite", _NOTHING_TO_RESUME
    what = "SIGTERM" if isinstance(exc, Terminated) else "Ctrl-C"
    again = resume_command(flag)
    if kept == _NOTHING_TO_RESUME:
        how = f"start again with: {again}" if again else "start again: rerun it with --overwrite"
    elif flag is None:
        how = f"rerun: {again}" if again else "rerun the same command"
    elif flag:
        how = f"resume with: {again}" if again else f"rerun the same command with {flag}"
    else:
        how = f"continue with: {again}" if again else "rerun the same command to continue"
    return f"interrupted ({what}): {kept}{_where(exc, outer=True)}; {how}"


def os_error_line(exc: OSError, command: str) -> str | None:
    """One line for a machine failure (disk full, read-only, permission); ``None`` otherwise."""
    outputs = outputs_of(exc)
    filename = Path(exc.filename) if exc.filename else None
    folder = outputs[0] if outputs else (filename.parent if filename else None)
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        flag, _ = _AFTER_STOP.get(command, _NOTHING_KEPT)
        again = "rerun with --resume" if flag == "--resume" else "rerun the same command"
        if flag == "--resume" and outputs and _nothing_saved(command, outputs[0]):
            again = "rerun with --overwrite (no epoch had finished)"
        where = f" writing {folder}" if folder else ""
        return f"no space left on device{where}: free space and {again}"
    if exc.errno == errno.EROFS:
        return (
            f"{folder or filename}: read-only file system: pass an output folder on a writable disk"
        )
    if exc.errno in (errno.EACCES, errno.EPERM) and filename is not None:
        if any(_writes_to(filename, out) for out in outputs):
            return f"{folder}: permission denied writing here: pass another output folder"
        return f"{filename}: permission denied: make it readable (or writable) for this user"
    return None


def _writes_to(path: Path, out: Path) -> bool:
    """Whether ``path`` is a file of output ``out``: inside it, or its lock or temporary sibling."""
    return (
        path.is_relative_to(out)
        or (path.parent == out.parent and path.name.startswith(f".{out.name}"))
        or path.name.startswith(".fracdet-write-test-")
    )


@contextmanager
def _sigterm_raises() -> Iterator[None]:
    """SIGTERM raises :class:`Terminated` for the block (main thread only: signals go there)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminate(signum: int, frame: object) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # once: the cleanup must not be cut short
        raise Terminated

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def clean_errors(func: F) -> F:
    """Turn a :class:`FracdetError`, an interrupt or a machine failure into one line on stderr
    and a non-zero exit code (130 after Ctrl-C, 143 after SIGTERM)."""

    @functools.wraps(func)
    def wrapper(*args: object, **kwargs: object) -> object:
        command = func.__name__
        try:
            with _sigterm_raises():
                return func(*args, **kwargs)
        except FracdetError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt as exc:
            typer.echo(stop_line(exc, command), err=True)
            raise typer.Exit(143 if isinstance(exc, Terminated) else 130) from None
        except OSError as exc:
            line = os_error_line(exc, command)
            if line is None:
                raise
            typer.echo(f"error: {line}", err=True)
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


class _Summary(Protocol):
    def line(self) -> str: ...


def echo_line(summary: _Summary | None) -> None:
    """Print a library call's one-line summary; ``None`` (what torchrun's other processes get:
    rank 0 alone reports) prints nothing."""
    if summary is not None:
        typer.echo(summary.line())
