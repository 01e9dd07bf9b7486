"""Trio in a dedicated daemon thread, driven from an asyncio loop.

asyncio -> trio: ``TrioToken.run_sync_soon`` (FIFO, never blocks the caller);
``call`` spawns a trio task and hands back an asyncio future, ``post`` runs a
plain function in the trio thread. trio -> asyncio: ``loop.call_soon_threadsafe``
(``to_loop``) and ``run_in_loop`` for coroutines that trio awaits without
blocking its own thread. Guest mode is deliberately not used: a slow asyncio
callback would stall the whole network stack with it (P2P-NOTES.md).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from p2p.errors import ServiceNotRunning

logger = logging.getLogger("qenex.p2p")

# main(*args, stop_requested, task_status=...) must call task_status.started(x)
# once ready and return (gracefully) after stop_requested is set.
MainFn = Callable[..., Awaitable[None]]


def _set_result(future: asyncio.Future[Any], value: Any) -> None:
    if not future.done():
        future.set_result(value)


def _set_exception(future: asyncio.Future[Any], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)


def _unwrap(exc: BaseException) -> BaseException:
    """Nurseries wrap errors in groups; a single failure reads better bare."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


class _Job:
    __slots__ = ("fn", "args", "future", "scope", "token")

    def __init__(
        self,
        fn: Callable[..., Awaitable[Any]],
        args: tuple[Any, ...],
        future: asyncio.Future[Any],
        token: trio.lowlevel.TrioToken,
    ) -> None:
        self.fn = fn
        self.args = args
        self.future = future
        self.scope = trio.CancelScope()
        self.token = token

    def on_future_done(self, future: asyncio.Future[Any]) -> None:
        # asyncio side gave up (e.g. wait_for timeout): cancel the trio task.
        if future.cancelled():
            try:
                self.token.run_sync_soon(self.scope.cancel)
            except trio.RunFinishedError:
                pass


class TrioThread:
    def __init__(self, name: str) -> None:
        self._name = name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._nursery: trio.Nursery | None = None
        self._stop_requested: trio.Event | None = None
        self._accepting = False
        self._thread: threading.Thread | None = None
        self._finished: asyncio.Future[None] | None = None
        # stop() may come before the trio side has created its token/event.
        self._stop_lock = threading.Lock()
        self._stop_asked = False
        self.crash: BaseException | None = None

    @property
    def running(self) -> bool:
        return self._finished is not None and not self._finished.done()

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            raise ServiceNotRunning("not started")
        return self._loop

    async def start(self, main: MainFn, *args: Any, grace_s: float) -> Any:
        """Start the thread; returns the value main passed to task_status.started."""
        if self._thread is not None:
            raise ServiceNotRunning("already started once")
        self._loop = asyncio.get_running_loop()
        started: asyncio.Future[Any] = self._loop.create_future()
        self._finished = self._loop.create_future()
        self._thread = threading.Thread(
            target=self._thread_main,
            args=(main, args, started, grace_s),
            name=self._name,
            daemon=True,
        )
        self._thread.start()
        return await started

    def _thread_main(
        self, main: MainFn, args: tuple[Any, ...], started: asyncio.Future[Any], grace_s: float
    ) -> None:
        try:
            trio.run(self._trio_main, main, args, started, grace_s)
        except BaseException as exc:  # the thread must report, never vanish
            self.crash = exc
            if self._accepting:
                logger.critical("p2p trio thread crashed", exc_info=exc)
            else:  # failed to start: start() raises it to the caller
                logger.error("p2p trio thread failed to start: %r", _unwrap(exc))
            self.to_loop(_set_exception, started, _unwrap(exc))
        finally:
            self._accepting = False
            self.to_loop(_set_result, self._finished, None)

    async def _trio_main(
        self, main: MainFn, args: tuple[Any, ...], started: asyncio.Future[Any], grace_s: float
    ) -> None:
        stop_requested = trio.Event()
        with self._stop_lock:
            self._token = trio.lowlevel.current_trio_token()
            self._stop_requested = stop_requested
            if self._stop_asked:
                stop_requested.set()
        main_done = trio.Event()

        async def run_main(*, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
            try:
                await main(*args, stop_requested, task_status=task_status)
            finally:
                main_done.set()

        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            value = await nursery.start(run_main)
            self._accepting = True
            self.to_loop(_set_result, started, value)
            await stop_requested.wait()
            with trio.move_on_after(grace_s):
                await main_done.wait()
            if not main_done.is_set():
                logger.warning("p2p shutdown exceeded %.1fs grace; cancelling", grace_s)
            self._accepting = False
            nursery.cancel_scope.cancel()

    async def stop(self, grace_s: float) -> None:
        """Ask main to finish, wait for the thread; idempotent."""
        if self._finished is None or self._finished.done():
            return
        with self._stop_lock:
            self._stop_asked = True
            token, event = self._token, self._stop_requested
        if token is not None and event is not None:
            try:
                token.run_sync_soon(event.set)
            except trio.RunFinishedError:
                pass
        try:
            await asyncio.wait_for(asyncio.shield(self._finished), grace_s + 2.0)
        except TimeoutError:
            logger.error("p2p trio thread did not stop within %.1fs", grace_s + 2.0)

    # asyncio -> trio ----------------------------------------------------

    def post(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run a plain function in the trio thread soon (FIFO). Never blocks."""
        if self._token is None or not self.running:
            raise ServiceNotRunning("not running")
        try:
            self._token.run_sync_soon(self._run_posted, fn, args)
        except trio.RunFinishedError as exc:
            raise ServiceNotRunning("stopped") from exc

    @staticmethod
    def _run_posted(fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        # An exception escaping a run_sync_soon callback would crash trio.run.
        try:
            fn(*args)
        except Exception:
            logger.exception("p2p call %r failed", fn)

    def call(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> asyncio.Future[Any]:
        """Run ``await fn(*args)`` as a trio task; the asyncio future gets its
        outcome. Cancelling the future cancels the trio task."""
        future: asyncio.Future[Any] = self.loop.create_future()
        if self._token is None or not self.running:
            future.set_exception(ServiceNotRunning("not running"))
            return future
        job = _Job(fn, args, future, self._token)
        future.add_done_callback(job.on_future_done)
        try:
            self._token.run_sync_soon(self._spawn, job)
        except trio.RunFinishedError:
            future.set_exception(ServiceNotRunning("stopped"))
        return future

    def _spawn(self, job: _Job) -> None:
        if not self._accepting or self._nursery is None:
            self.to_loop(_set_exception, job.future, ServiceNotRunning("stopping"))
            return
        self._nursery.start_soon(self._run_job, job)

    async def _run_job(self, job: _Job) -> None:
        try:
            with job.scope:
                result = await job.fn(*job.args)
                self.to_loop(_set_result, job.future, result)
                return
        except Exception as exc:
            self.to_loop(_set_exception, job.future, exc)
            return
        except BaseException:  # trio.Cancelled: the service is shutting down
            self.to_loop(_set_exception, job.future, ServiceNotRunning("stopping"))
            raise
        # Reaching here means job.scope was cancelled by the asyncio side,
        # whose future is already cancelled.

    # trio -> asyncio ----------------------------------------------------

    def to_loop(self, fn: Callable[..., Any], *args: Any) -> bool:
        """Schedule a plain callable on the asyncio loop; False if it is gone."""
        loop = self._loop
        if loop is None:
            return False
        try:
            loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:  # loop closed
            return False
        return True

    async def run_in_loop(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> Any:
        """From trio: run a coroutine on the asyncio loop and await its result
        without blocking the trio thread. Cancelling the trio task cancels it."""
        loop = self.loop
        token = trio.lowlevel.current_trio_token()
        done = trio.Event()
        coro = fn(*args)
        try:
            cfuture = asyncio.run_coroutine_threadsafe(coro, loop)  # type: ignore[arg-type]
        except RuntimeError as exc:
            coro.close()  # type: ignore[attr-defined]
            raise ServiceNotRunning("asyncio loop closed") from exc

        def wake(_: Any) -> None:
            try:
                token.run_sync_soon(done.set)
            except trio.RunFinishedError:
                pass

        cfuture.add_done_callback(wake)
        try:
            await done.wait()
        except BaseException:
            cfuture.cancel()
            raise
        return cfuture.result()
