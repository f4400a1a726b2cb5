"""Apply a pipeline to sharded corpora, in-process or on Ray, exactly once.

The unit of work is a *part*: a fixed number of records of one input shard.
Each finished part is written atomically under the output directory with a
name derived from its shard and index, so a re-run with the same output skips
finished parts and a retried part replaces itself rather than adding a copy.

Ray is only imported by `ray_backend`, when that backend is asked for: this
package (and the CLI) stay importable without it.
"""
from .run import ApplyResult, apply
from .settings import ApplySettings

__all__ = ["ApplyResult", "ApplySettings", "apply"]
