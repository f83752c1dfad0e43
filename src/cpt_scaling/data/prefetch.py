"""Run an iterator one or two items ahead in a background thread, so reading overlaps computing."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")

ITEM, END, ERROR = range(3)  # kinds of the messages a producer sends (also used by batch_process)
_POLL_S = 0.1


def prefetch(items: Iterable[T], depth: int = 2) -> Iterator[T]:
    """Yield the items of ``items`` in order while a thread produces up to ``depth`` of them ahead.

    Worth it when producing an item spends its time in code that releases the GIL (Arrow's readers and compute
    functions, zlib). An exception raised while producing is re-raised here, in the consumer, in order. When the
    consumer stops early, the thread stops after the item it is producing.
    """
    slots: queue.Queue[tuple[int, object]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(entry: tuple[int, object]) -> bool:
        while not stop.is_set():
            try:
                slots.put(entry, timeout=_POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put((ITEM, item)):
                    return
        except BaseException as exc:  # handed to the consumer, which re-raises it
            put((ERROR, exc))
            return
        put((END, None))

    thread = threading.Thread(target=produce, name="prefetch", daemon=True)
    thread.start()
    try:
        while True:
            kind, value = slots.get()
            if kind == END:
                return
            if kind == ERROR:
                assert isinstance(value, BaseException)
                raise value
            yield value  # type: ignore[misc]
    finally:
        stop.set()
        thread.join()
