"""Arrow record batches made in a forked child process and handed over in shared memory.

For a consumer that holds the GIL while it computes (fastText's ``predict`` does), a reader thread cannot run
beside it; a child process can, on another core. Each batch travels as an Arrow IPC stream in an anonymous
memory file (``memfd``) whose descriptor is passed over a Unix socket: the parent maps it and reads the batch
without copying, so the hand-over costs the parent well under a microsecond per document (a pipe would copy
every byte twice). Linux only; elsewhere the batches are read by a thread (:func:`cpt_scaling.data.prefetch.prefetch`).
"""

from __future__ import annotations

import contextlib
import mmap
import multiprocessing as mp
import os
from collections.abc import Callable, Iterable, Iterator
from multiprocessing import reduction
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Semaphore

import pyarrow as pa

from cpt_scaling.data.prefetch import END, ERROR, ITEM, prefetch

_PARENT_CHECK_S = 1.0  # how often a child waiting for a free slot checks that its parent still lives
# Fault the whole mapping in at once: touching a fresh mapping page by page costs ~1 µs per document.
_MAP_FLAGS = mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0)


def batches_in_child(produce: Callable[[], Iterable[pa.RecordBatch]], depth: int = 2) -> Iterator[pa.RecordBatch]:
    """Start a child process running ``produce()`` now; return an iterator over its batches, in order.

    The child runs at most ``depth`` batches ahead. An exception raised in the child is re-raised by the
    iterator; a child that dies without one (killed) is a ``RuntimeError``. When the consumer stops early, the
    child is terminated.
    """
    if not hasattr(os, "memfd_create") or "fork" not in mp.get_all_start_methods():
        return prefetch(produce(), depth)
    ctx = mp.get_context("fork")
    parent_end, child_end = ctx.Pipe(duplex=True)  # a Unix socket pair: it can carry file descriptors
    slots = ctx.Semaphore(depth)
    child = ctx.Process(target=_child, args=(produce, child_end, slots), name="batch-reader", daemon=True)
    child.start()
    child_end.close()
    return _receive(parent_end, child, slots)


def _receive(conn: Connection, child: mp.process.BaseProcess, slots: Semaphore) -> Iterator[pa.RecordBatch]:
    """Parent side: map each batch's memory file, yield the batch, free a slot for the child."""
    try:
        while True:
            try:
                kind, value = conn.recv()
                if kind == ITEM:
                    fd = reduction.recv_handle(conn)
            except EOFError:
                child.join()
                raise RuntimeError(f"the batch reader process died (exit code {child.exitcode})") from None
            if kind == END:
                return
            if kind == ERROR:
                raise value
            try:  # the mapping lives as long as the batch's buffers; the descriptor is not needed after mmap
                memory = mmap.mmap(fd, value, flags=_MAP_FLAGS, prot=mmap.PROT_READ)
            finally:
                os.close(fd)
            batch = pa.ipc.open_stream(pa.py_buffer(memory)).read_next_batch()
            slots.release()
            yield batch
    finally:
        conn.close()
        if child.is_alive():
            child.terminate()
        child.join()


def _child(produce: Callable[[], Iterable[pa.RecordBatch]], conn: Connection, slots: Semaphore) -> None:
    """Child side: write each batch to a fresh memory file and send its size and descriptor."""
    parent = os.getppid()
    try:
        for batch in produce():
            while not slots.acquire(timeout=_PARENT_CHECK_S):
                if os.getppid() != parent:  # the parent was killed: nobody will read, stop
                    return
            sink = pa.BufferOutputStream()
            with pa.ipc.new_stream(sink, batch.schema) as writer:
                writer.write_batch(batch)
            data = sink.getvalue()
            fd = os.memfd_create("cpt-batch", os.MFD_CLOEXEC)
            try:
                with os.fdopen(os.dup(fd), "wb", buffering=0) as f:
                    f.write(data)
                conn.send((ITEM, data.size))
                reduction.send_handle(conn, fd, os.getppid())
            finally:
                os.close(fd)
        conn.send((END, None))
    except BaseException as exc:  # handed to the parent, which re-raises it
        try:
            conn.send((ERROR, exc))
        except Exception:  # an unpicklable exception, or the parent is gone
            with contextlib.suppress(Exception):
                conn.send((ERROR, RuntimeError(f"{type(exc).__name__}: {exc}")))
    finally:
        conn.close()
