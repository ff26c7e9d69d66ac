"""Calls submitted to a thread pool in order, within a bounded window, and abandoned cleanly: what
a snapshot's page reads run on. The rate limiter, not the window, paces the requests."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, Future
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def in_order(executor: Executor, call: Callable[[T], R], items: Iterable[T], window: int) -> Iterator[R]:
    """`call` of each item, yielded in order, with at most `window` calls submitted at once.

    Closing the generator early (a failed check) cancels what has not started."""
    pending: list[Future] = []
    todo = iter(items)
    try:
        for item in todo:
            pending.append(executor.submit(call, item))
            if len(pending) >= window:
                break
        while pending:
            result = pending.pop(0).result()
            following = next(todo, None)
            if following is not None:
                pending.append(executor.submit(call, following))
            yield result
    finally:
        settle(pending)


def settle(futures: list[Future]) -> None:
    """Cancel what has not started; wait for the rest, whose failure no longer matters."""
    for future in futures:
        future.cancel()
    for future in futures:
        if not future.cancelled():
            with contextlib.suppress(Exception):
                future.result()  # an abandoned request: its failure is moot
