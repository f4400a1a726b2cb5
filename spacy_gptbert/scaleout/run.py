"""The driver: plan the parts, resume from what OUTPUT already holds, hand
the pending parts to a backend, count docs, mark the run complete."""
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Union

from ..errors import Errors
from .fingerprint import describe_pipeline
from .inputs import Part, find_shards, plan_parts
from .outputs import (ERRORS_FILE, check_manifest, collect_errors, finished, make_manifest, prepare_output,
                      read_manifest, write_manifest)
from .settings import ApplySettings

BACKENDS = ("local", "ray")


@dataclass
class ApplyResult:
    output: Path
    n_records: int        # records in the whole output
    n_parts: int
    skipped_parts: int    # finished by an earlier run
    processed_records: int  # input records read by this run, bad ones included
    seconds: float
    bad_records: int = 0  # input records left out, each listed in errors_path

    @property
    def errors_path(self) -> Path:
        return self.output / ERRORS_FILE

    @property
    def docs_per_second(self) -> float:
        return self.processed_records / self.seconds if self.seconds else 0.0


def apply(input_path: Union[str, Path], output: Union[str, Path], settings: ApplySettings, *,
          backend: str = "local", n_process: int = 1, ray_address: Optional[str] = None,
          workers: Optional[int] = None, cpus_per_worker: float = 1.0, gpus_per_worker: Optional[float] = None,
          overwrite: bool = False, progress: bool = True, log=print,
          on_part: Optional[Callable[[Part, int], None]] = None) -> ApplyResult:
    """Apply settings.pipeline to every record under input_path, writing part
    files under the directory `output`. Running it again with the same output
    finishes an interrupted run; each input record is in the output once, or,
    when it cannot be read (settings.strict: the run stops at it), listed in
    OUTPUT/errors.tsv with its file, line and reason.
    on_part(part, n_records) is called in the driver as each part finishes."""
    if backend not in BACKENDS:
        raise ValueError(Errors.E356.format(backend=backend, options=", ".join(BACKENDS)))
    if n_process < 1:
        raise ValueError(Errors.E352.format(setting="n_process", value=n_process))
    if backend == "ray":
        from .ray_backend import import_ray

        import_ray()  # fail before any planning when the extra is missing
    start = time.perf_counter()
    output = Path(output).resolve()
    settings = _absolute_paths(settings)
    pipeline = describe_pipeline(settings.pipeline)  # E307 before the output is touched
    prepare_output(output, overwrite)
    shards = find_shards(input_path)
    fingerprint = settings.fingerprint()
    manifest = read_manifest(output)
    if manifest is None:
        counts, parts = [], []
        for shard in shards:
            n, shard_parts = plan_parts(shard, settings.part_size)
            counts.append(n)
            parts.extend(shard_parts)
        manifest = make_manifest(shards, counts, parts, fingerprint, pipeline)
        write_manifest(output, manifest)
    else:
        # The plan of the first run is kept: same inputs, same parts, same names.
        check_manifest(output, manifest, shards, fingerprint, pipeline)
        parts = [Part.from_dict(d) for d in manifest["parts"]]
    done = finished(output, parts, settings.output_format)
    pending = [p for p, d in zip(parts, done) if not d]
    skipped = len(parts) - len(pending)
    total = manifest["n_records"]
    already = sum(p.count for p, d in zip(parts, done) if d)
    if skipped:
        log(f"Resuming {output}: skipping {skipped} finished parts ({already} docs), {len(pending)} to do")
    bar = _progress_bar(total, already, progress)
    processed = {"n": 0}

    def on_done(part: Part, n: int) -> None:
        processed["n"] += n
        bar.update(n)
        if on_part is not None:
            on_part(part, n)

    try:
        if pending and backend == "local":
            from .local import run_local

            run_local(pending, settings.to_dict(), str(output), n_process, on_done)
        elif pending:
            from .ray_backend import run_ray

            run_ray(pending, settings.to_dict(), str(output), on_done, address=ray_address, workers=workers,
                    cpus_per_worker=cpus_per_worker, gpus_per_worker=gpus_per_worker)
    finally:
        bar.close()
    missing = [p.name for p, d in zip(parts, finished(output, parts, settings.output_format)) if not d]
    if missing:  # a backend returned without writing every part: never report success
        raise RuntimeError(Errors.E358.format(output=output, why=f"{len(missing)} parts missing, e.g. {missing[0]}"))
    bad = collect_errors(output, parts)
    if not manifest.get("complete"):
        manifest["complete"] = True
        write_manifest(output, manifest)
    return ApplyResult(output, total - bad, len(parts), skipped, processed["n"], time.perf_counter() - start, bad)


def _absolute_paths(settings: ApplySettings) -> ApplySettings:
    """Workers may run in another directory: pass them absolute paths. A
    pipeline that is not a path (an installed package name) stays as it is."""
    data: Dict[str, Any] = settings.to_dict()
    if Path(data["pipeline"]).exists():
        data["pipeline"] = str(Path(data["pipeline"]).resolve())
    if data["code"]:
        data["code"] = str(Path(data["code"]).resolve())
    return ApplySettings(**data)


def _progress_bar(total: int, initial: int, enabled: bool):
    from tqdm import tqdm

    # disable=None: shown on a terminal, silent in logs and pipes.
    return tqdm(total=total, initial=initial, unit="doc", desc="apply", disable=None if enabled else True)
