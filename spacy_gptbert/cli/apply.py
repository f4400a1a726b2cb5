"""`python -m spacy_gptbert apply PIPELINE INPUT OUTPUT`: `spacy apply` for
sharded corpora, in-process or on a Ray cluster, resumable and exactly once."""
from pathlib import Path
from typing import Optional

import typer
from wasabi import msg

INPUT_HELP = ("A file, a directory (walked recursively) or a quoted glob. .jsonl: one JSON object per line; "
              ".spacy: a DocBin; anything else: plain text, one doc per non-empty line")
OUTPUT_HELP = ("Output directory: one file per finished part plus manifest.json. Run the same command "
               "again to resume an interrupted run")


def apply_command(
    pipeline: str = typer.Argument(..., help="A trained pipeline: directory or installed package name"),
    input_path: str = typer.Argument(..., help=INPUT_HELP),
    output: Path = typer.Argument(..., help=OUTPUT_HELP),
    output_format: str = typer.Option("jsonl", "--output-format", "-f", help="jsonl or spacy"),
    backend: str = typer.Option("local", "--backend", help="local (this machine) or ray"),
    n_process: int = typer.Option(1, "--n-process", "-n", help="local: worker processes"),
    ray_address: Optional[str] = typer.Option(
        None, "--ray-address", help="ray: cluster address (\"auto\", \"ray://head:10001\"); default: a local Ray instance"),
    workers: Optional[int] = typer.Option(None, "--workers", "-w", help="ray: actors (default: CPUs, or GPUs, / per worker)"),
    cpus_per_worker: float = typer.Option(1.0, "--cpus-per-worker", help="ray: CPUs reserved per actor"),
    gpus_per_worker: Optional[float] = typer.Option(
        None, "--gpus-per-worker", help="ray: GPUs per actor (default: 1 when the cluster has GPUs, else 0)"),
    threads: int = typer.Option(1, "--threads", help="torch threads per worker (process or actor)"),
    batch_size: int = typer.Option(32, "--batch-size", "-b", help="nlp.pipe batch size"),
    part_size: int = typer.Option(1000, "--part-size", help="records per part: the unit of work and of resuming"),
    text_key: str = typer.Option("text", "--text-key", help="JSONL: key of the text"),
    id_key: str = typer.Option("id", "--id-key", help="JSONL: key of the id (default id: file:line)"),
    vectors: bool = typer.Option(False, "--vectors", help="Also write doc.vector of every doc"),
    code: Optional[Path] = typer.Option(None, "--code", "-c", help="Python file with registered functions"),
    gpu_id: int = typer.Option(-1, "--gpu-id", "-g", help="local: GPU id, -1 for CPU"),
    merge: Optional[Path] = typer.Option(None, "--merge", help="Also concatenate the parts into this one file"),
    overwrite: bool = typer.Option(False, "--overwrite", help="Delete an earlier apply output at OUTPUT first"),
    strict: bool = typer.Option(
        False, "--strict", help="Stop at the first bad record (not UTF-8, not JSON, no text, a lone surrogate) "
        "with its file and line, instead of listing it in OUTPUT/errors.tsv and going on"),
) -> None:
    """Apply a pipeline to every record of a corpus: cats, generations and
    (--vectors) doc vectors, one output record per input id, in-process or on Ray."""
    from ..scaleout import ApplySettings, apply
    from ..scaleout.outputs import merge as merge_parts

    try:
        settings = ApplySettings(
            pipeline=pipeline, output_format=output_format, text_key=text_key, id_key=id_key, vectors=vectors,
            batch_size=batch_size, part_size=part_size, threads=threads, code=str(code) if code else None,
            gpu_id=gpu_id if backend == "local" else -1, strict=strict)
        result = apply(input_path, output, settings, backend=backend, n_process=n_process,
                       ray_address=ray_address, workers=workers, cpus_per_worker=cpus_per_worker,
                       gpus_per_worker=gpus_per_worker, overwrite=overwrite, log=msg.info)
    except KeyboardInterrupt:
        msg.warn(f"Interrupted. Finished parts are kept in {output}: run the same command again to resume.")
        raise typer.Exit(130)
    except (ValueError, RuntimeError, ImportError) as err:
        msg.fail(str(err), exits=1)
    msg.good(f"{result.n_records} docs in {result.n_parts} parts under {result.output} "
             f"({result.processed_records} processed now, {result.skipped_parts} parts skipped, "
             f"{result.docs_per_second:.1f} docs/s)")
    if result.bad_records:
        msg.warn(f"{result.bad_records} bad records left out: their file, line and reason are in "
                 f"{result.errors_path}")
    if merge is not None:
        n = merge_parts(result.output, merge)
        msg.good(f"Merged {n} records into {merge}")
