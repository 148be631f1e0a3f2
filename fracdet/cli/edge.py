"""The CLI's edge: a library call's result becomes one line on stdout, its error one line on
stderr and an exit code."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Protocol, TypeVar

import typer

from fracdet.errors import FracdetError

__all__ = ["clean_errors", "echo_line"]

F = TypeVar("F", bound=Callable[..., object])


def clean_errors(func: F) -> F:
    """Turn a :class:`FracdetError` into one line on stderr and a non-zero exit code."""

    @functools.wraps(func)
    def wrapper(*args: object, **kwargs: object) -> object:
        try:
            return func(*args, **kwargs)
        except FracdetError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            typer.echo(
                (
                    "interrupted: finished outputs are kept, unfinished ones were not written "
                    "(training and predict: rerun with --resume)"
                ),
                err=True,
            )
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


class _Summary(Protocol):
    def line(self) -> str: ...


def echo_line(summary: _Summary | None) -> None:
    """Print a library call's one-line summary; ``None`` (what torchrun's other processes get:
    rank 0 alone reports) prints nothing."""
    if summary is not None:
        typer.echo(summary.line())
