"""Local backend: the parts in this process, or in `n_process` worker
processes (each loads the pipeline once).

Worker processes are spawned, not forked: a fresh interpreter inherits no
torch thread pool or loaded model from the parent. A worker that dies makes
the pool raise BrokenProcessPool (multiprocessing.Pool would wait forever
for the lost part); finished parts stay on disk and a re-run resumes.
"""
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from typing import Any, Callable, Dict, Iterator, List, Optional

from ..errors import Errors
from .inputs import Part
from .worker import PartWorker

_WORKER: Optional[PartWorker] = None


def run_local(parts: List[Part], settings: Dict[str, Any], output: str, n_process: int,
              on_done: Callable[[Part, int], None]) -> None:
    if n_process <= 1:
        _run_in_process(parts, settings, output, on_done)
        return
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(n_process, mp_context=ctx, initializer=_init_worker,
                             initargs=(settings, output)) as pool:
        # Workers start during submit and read their thread settings at import.
        with scoped_env(OMP_NUM_THREADS=str(settings["threads"])):
            futures = {pool.submit(_process, part.to_dict()): part for part in parts}
        try:
            for future in as_completed(futures):
                on_done(futures[future], future.result())
        except BrokenProcessPool as err:
            raise RuntimeError(Errors.E358.format(output=output, why="a worker process died")) from err
        except BaseException:
            for future in futures:
                future.cancel()
            raise


@contextmanager
def scoped_env(**values: str) -> Iterator[None]:
    before = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _run_in_process(parts, settings, output, on_done) -> None:
    import torch

    threads = torch.get_num_threads()
    try:
        worker = PartWorker(settings, output)
        for part in parts:
            on_done(part, worker.process(part))
    finally:
        torch.set_num_threads(threads)  # the caller's setting, not the worker's


def _init_worker(settings: Dict[str, Any], output: str) -> None:
    global _WORKER
    _WORKER = PartWorker(settings, output)


def _process(part: Dict[str, Any]) -> int:
    return _WORKER.process(Part.from_dict(part))
