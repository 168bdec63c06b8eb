"""vLLM's child processes die with the process that started them.

vLLM runs its engine core in a child process (spawned), which starts its own workers. When the
process holding the engine dies without shutting it down (SIGKILL, an OOM kill), the engine core
is re-parented to init and keeps its gigabytes. `die_with_parent` is a vLLM general plugin
(entry point group `vllm.general_plugins`, loaded in each vLLM process): in a child it watches
the parent's multiprocessing sentinel, a pipe that reads end-of-file when the parent is gone,
however it went, and then stops the child the way vLLM stops on SIGTERM (its workers follow,
through vLLM's own death pipe), killing it if that has not happened within GRACE_S.
"""

import multiprocessing
import os
import signal
import threading
import time
from multiprocessing.connection import wait

GRACE_S = 10.0


def die_with_parent() -> None:
    parent = multiprocessing.parent_process()
    if parent is None:  # the process that owns the engine
        return
    threading.Thread(
        target=_stop_when_gone, args=(parent.sentinel,), name="tandem-lifeline", daemon=True
    ).start()


def _stop_when_gone(sentinel: int) -> None:
    wait([sentinel])
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(GRACE_S)
    os._exit(1)
