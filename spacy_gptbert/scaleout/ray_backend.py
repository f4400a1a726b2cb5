"""Ray backend: Ray Data's map_batches over a fixed actor pool, one loaded
pipeline per actor. The only module that imports ray.

The dataset holds one row per pending part (a few hundred bytes); actors read
their part from the shared input path and write the part file themselves, so
no corpus text passes through the driver or the object store. Each part is a
separate block, so the pool hands parts to whichever actor is free.

Fault tolerance is Ray Data's: actors are restarted and their tasks retried
when a worker process dies (max_restarts / max_task_retries = -1). A retried
part rewrites the same file name atomically, so it is never counted twice.
"""
import contextlib
import inspect
import json
import signal
import threading
from typing import Any, Callable, Dict, List, Optional

import numpy as np

from ..errors import Errors
from .inputs import Part
from .worker import PartWorker


class RayPartWorker:
    """The callable class for map_batches: a batch is a few parts."""

    def __init__(self, settings: Dict[str, Any], output: str):
        self.worker = PartWorker(settings, output)

    def __call__(self, batch: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        names, counts = [], []
        for text in batch["part"]:
            part = Part.from_dict(json.loads(text))
            counts.append(self.worker.process(part))
            names.append(part.name)
        return {"name": np.array(names, dtype=object), "n_docs": np.array(counts, dtype=np.int64)}


def import_ray():
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as err:
        raise ImportError(Errors.E357) from err
    return ray


def run_ray(parts: List[Part], settings: Dict[str, Any], output: str, on_done: Callable[[Part, int], None], *,
            address: Optional[str] = None, workers: Optional[int] = None, cpus_per_worker: float = 1.0,
            gpus_per_worker: Optional[float] = None) -> None:
    ray = import_ray()
    started_here = not ray.is_initialized()
    if started_here:
        # address None: a local Ray instance; "auto" or "ray://head:10001": an existing cluster.
        ray.init(address=address, include_dashboard=False, log_to_driver=True)
    try:
        _run(ray, parts, settings, output, on_done, workers, cpus_per_worker, gpus_per_worker)
    finally:
        if started_here:
            ray.shutdown()


def _run(ray, parts, settings, output, on_done, workers, cpus_per_worker, gpus_per_worker) -> None:
    from ray.data import ActorPoolStrategy, DataContext

    resources = ray.cluster_resources()
    if gpus_per_worker is None:  # one GPU per actor when the cluster has GPUs
        gpus_per_worker = 1.0 if resources.get("GPU", 0) >= 1 else 0.0
    if workers is None:
        workers = int(resources.get("GPU", 0) // gpus_per_worker) if gpus_per_worker else \
            int(resources.get("CPU", 1) // cpus_per_worker)
    workers = max(1, min(workers, len(parts)))
    settings = dict(settings, prefer_gpu=gpus_per_worker > 0)
    by_name = {p.name: p for p in parts}
    DataContext.get_current().enable_progress_bars = False  # ours counts docs, Ray's counts blocks
    ds = _from_items(ray, [{"part": json.dumps(p.to_dict())} for p in parts])
    ds = ds.map_batches(
        RayPartWorker,
        fn_constructor_kwargs={"settings": settings, "output": output},
        batch_size=1,
        # Two parts in flight per actor: the next part is already queued when one
        # finishes, so an actor never idles waiting for the driver to hand it
        # work (with one, both actors of a 2-CPU run sat ~12% idle); at the end
        # of a run an actor may wait for at most one part of the other's.
        compute=ActorPoolStrategy(size=workers, max_tasks_in_flight_per_actor=2),
        num_cpus=cpus_per_worker,
        num_gpus=gpus_per_worker,
        runtime_env={"env_vars": {"OMP_NUM_THREADS": str(settings["threads"])}},
    )
    with _sigint_as_flag() as interrupted:
        for row in ds.iter_rows():
            on_done(by_name[row["name"]], int(row["n_docs"]))
            if interrupted:
                raise KeyboardInterrupt


@contextlib.contextmanager
def _sigint_as_flag():
    """Ctrl-C while Ray Data runs: note it, and raise KeyboardInterrupt
    ourselves at the next finished part. Raised from the default handler, it
    lands wherever the main thread is, which may be inside Ray's own waiting
    code, and there it was seen to be lost: the run went on to the end.
    A second Ctrl-C raises at once."""
    interrupted: List[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield interrupted
        return

    def on_sigint(signum, frame):
        if interrupted:
            raise KeyboardInterrupt
        interrupted.append(signum)

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        yield interrupted
    finally:
        signal.signal(signal.SIGINT, previous)


def _from_items(ray, items: List[Dict[str, str]]):
    """One block per part (the argument was renamed in Ray 2.10)."""
    params = inspect.signature(ray.data.from_items).parameters
    key = "override_num_blocks" if "override_num_blocks" in params else "parallelism"
    return ray.data.from_items(items, **{key: len(items)})
