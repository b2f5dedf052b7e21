"""How a benchmark's `main` runs: however it ends (done, failed, Ctrl-C, SIGTERM, a crash), it
stops everything it started and says so."""

from __future__ import annotations

import asyncio
import os
import signal
import traceback
from collections.abc import Callable, Coroutine
from typing import Any


def run_guarded(run: Callable[[], int], cleanup: Callable[[], None], *, log: Callable[[str], None],
                failures: tuple[type[BaseException], ...] = (), catch_sigint: bool = False) -> int:
    """`run()`'s exit code; 130 when interrupted; 1 with a `FAILED:` line for one of `failures`
    or a `SystemExit` with a message; 1 with a traceback for anything else."""

    def on_term(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_term)
    if catch_sigint:
        # Also when started from a script that ignores SIGINT (a shell's background job does):
        # Ctrl-C or kill -INT must still stop everything.
        signal.signal(signal.SIGINT, on_term)
    code = 1
    try:
        code = run()
    except KeyboardInterrupt:
        log("interrupted; stopping everything")
        code = 130
    except failures as exc:
        log(f"FAILED: {exc}")
        code = 1
    except SystemExit as exc:
        if isinstance(exc.code, str):
            log(f"FAILED: {exc.code}")
            code = 1
        else:
            code = exc.code or 0
    except Exception:
        traceback.print_exc()
        code = 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        cleanup()
        log("all stopped")
    return code


def run_child(main: Callable[[str], Coroutine[Any, Any, None]], conn) -> None:
    """A load-client process's body: ignore Ctrl-C (the parent decides when it stops), die with
    the parent, run `main(loop_name)` on uvloop when there is one, send a crash to the parent over
    `conn`, and exit at once, without waiting for thousands of graceful closes."""
    from deploy.launch import DIE_WITH_PARENT

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if DIE_WITH_PARENT is not None:
        DIE_WITH_PARENT()
    try:
        import uvloop

        uvloop.install()
        loop_name = "uvloop"
    except ImportError:
        loop_name = "asyncio"
    try:
        asyncio.run(main(loop_name))
    except BaseException:
        try:
            conn.send(("error", traceback.format_exc()))
        except Exception:
            pass
    finally:
        conn.close()
        os._exit(0)


def stop_clients(clients) -> None:
    """Tell each load-client process (proc, conn, ...) to exit, give it 3 s, then kill it."""
    for _proc, conn, *_ in clients:
        try:
            conn.send(("exit",))
        except Exception:  # already gone
            pass
    for proc, *_ in clients:
        proc.join(3)
        if proc.is_alive():
            proc.kill()
            proc.join(5)
