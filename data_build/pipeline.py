"""Stages over a stream of items, each stage in a thread of its own, so that no stage waits for the
others to finish an item before it starts the next: the build's segmentation (the task's GPU) works on
the next batches of videos while the last ones are captioned and refined (the model servers).

`run_stages(items, stages, in_flight, discard)` runs every item through the stages in order and
returns the items in input order. Stage i runs in its own thread and hands each item on to stage i + 1
through a queue; the last stage runs in the calling thread. At most `in_flight` items are between the
start of the first stage and the end of the last, so memory stays bounded; `in_flight=1` is a plain
loop in the calling thread, one item through every stage at a time.

The first exception of any stage stops the others: each finishes the item it is on, every item begun
and not through the last stage goes to `discard` (the build closes its videos), every thread is joined, and
the exception is raised again in the calling thread, the same object with its one-line message.
Ctrl-C does not wait for the items being worked on: the threads are told to stop and given
`INTERRUPT_GRACE_S`, then the KeyboardInterrupt goes on (the threads are daemons: they end with the
process).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, TypeVar

T = TypeVar("T")
INTERRUPT_GRACE_S = 2.0
_END = object()  # a stage's last output: no item comes after it


def run_stages(
    items: Iterable[T], stages: Sequence[Callable[[T], None]], in_flight: int, discard: Callable[[T], None]
) -> list[T]:
    """`items` through `stages` in order, stage i of item k + 1 overlapping stage i + 1 of item k; the
    items, in input order, once every stage ran on each."""
    if in_flight < 1:
        raise ValueError(f"in_flight must be ≥ 1, got {in_flight}")
    if in_flight == 1 or len(stages) == 1:
        return _in_sequence(items, stages, discard)
    return _Threads(stages, in_flight, discard).run(iter(items))


def _in_sequence(
    items: Iterable[T], stages: Sequence[Callable[[T], None]], discard: Callable[[T], None]
) -> list[T]:
    done = []
    for item in items:
        try:
            for stage in stages:
                stage(item)
        except BaseException:
            discard(item)
            raise
        done.append(item)
    return done


class _Threads:
    """One run of the stages in threads. An item belongs to one party at a time, the stage working on
    it or the queue in front of a stage, and whoever holds it when the run stops discards it."""

    def __init__(
        self, stages: Sequence[Callable[[Any], None]], in_flight: int, discard: Callable[[Any], None]
    ):
        self.stages, self.discard = stages, discard
        self.slots = threading.Semaphore(in_flight)  # taken by the first stage, given back by the last
        self.inboxes: list[queue.SimpleQueue] = [queue.SimpleQueue() for _ in stages]  # [0]: unused
        self.stop = threading.Event()
        self.errors: list[BaseException] = []

    def run(self, items: Iterator[Any]) -> list[Any]:
        workers = [
            threading.Thread(target=self._thread, args=(index, items), name=f"stage-{index}", daemon=True)
            for index in range(len(self.stages) - 1)
        ]
        for worker in workers:
            worker.start()
        try:
            done = self._last()
        except Exception as err:
            self._fail(err)
            self._shut_down(workers, wait_s=None)
            raise
        except BaseException as err:  # Ctrl-C: stop without finishing what is being worked on
            self._fail(err)
            self._shut_down(workers, wait_s=INTERRUPT_GRACE_S)
            raise
        self._shut_down(workers, wait_s=None)
        return done

    def _inputs(self, index: int, items: Iterator[Any]) -> Iterator[Any]:
        """What stage `index` works on: the items (a slot each) for the first, else its inbox."""
        if index == 0:
            for item in items:
                self.slots.acquire()  # given back by the last stage, or by _fail and _shut_down
                if self.stop.is_set():
                    return  # not begun: nothing to discard
                yield item
            return
        while (item := self.inboxes[index].get()) is not _END:
            if self.stop.is_set():
                self.discard(item)
                return
            yield item

    def _thread(self, index: int, items: Iterator[Any]) -> None:
        try:
            for item in self._inputs(index, items):
                self._work(index, item)
                self.inboxes[index + 1].put(item)
        except BaseException as err:  # noqa: BLE001 - raised again in the calling thread
            self._fail(err)
        finally:
            self.inboxes[index + 1].put(_END)

    def _last(self) -> list[Any]:
        done = []
        last = len(self.stages) - 1
        for item in self._inputs(last, iter(())):
            self._work(last, item)
            done.append(item)
            self.slots.release()
        if self.errors:
            raise self.errors[0]
        return done

    def _work(self, index: int, item: Any) -> None:
        try:
            self.stages[index](item)
        except BaseException:
            self.discard(item)
            raise

    def _fail(self, err: BaseException) -> None:
        if not self.errors:
            self.errors.append(err)
        self.stop.set()
        self.slots.release()  # the first stage may be waiting for a slot that the last will not give back

    def _shut_down(self, workers: list[threading.Thread], wait_s: float | None) -> None:
        self.stop.set()
        self.slots.release(len(workers))
        for inbox in self.inboxes[1:-1]:
            inbox.put(_END)  # a stage may be waiting for an item
        deadline = None if wait_s is None else time.monotonic() + wait_s
        for worker in workers:
            worker.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        if any(worker.is_alive() for worker in workers):
            return  # interrupted: what they hold ends with the process
        for inbox in self.inboxes[1:]:  # items handed on by a stage that then stopped
            while not inbox.empty():
                if (item := inbox.get()) is not _END:
                    self.discard(item)
