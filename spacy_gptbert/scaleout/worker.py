"""One loaded pipeline that turns parts into part files.

The same class runs in-process (local backend), in local worker processes
(n_process > 1) and inside Ray actors, so every backend produces the same
bytes for the same part: same reader, same batches, same writer.
"""
from pathlib import Path
from typing import Any, Dict

from ..errors import Errors
from .inputs import Part, read_part
from .outputs import encode_part, part_path, write_atomic, write_part_errors
from .settings import ApplySettings


def import_code(path: str) -> None:
    """Import a Python file with registered functions (as `spacy apply --code`)."""
    from spacy.util import import_file

    if not Path(path).exists():
        raise ValueError(Errors.E359.format(path=path))
    import_file("spacy_gptbert_apply_code", path)


class PartWorker:
    def __init__(self, settings: Dict[str, Any], output: str):
        self.settings = ApplySettings(**settings)
        self.output = Path(output)
        # Each worker owns `threads` cores: N workers on N cores must not each
        # run a full thread pool and oversubscribe the machine. (OMP_NUM_THREADS
        # is set by the backend before the process starts: torch is imported by now.)
        import spacy
        import torch

        torch.set_num_threads(self.settings.threads)
        if self.settings.code:
            import_code(self.settings.code)
        if self.settings.gpu_id >= 0:
            spacy.require_gpu(self.settings.gpu_id)
        elif self.settings.prefer_gpu:
            spacy.prefer_gpu(0)  # Ray sets CUDA_VISIBLE_DEVICES: 0 is the actor's own GPU
        import spacy_gptbert  # noqa: F401  (registers factories when entry points are stale)

        self.nlp = spacy.load(self.settings.pipeline)

    def process(self, part: Part) -> int:
        """Process one part and write its file (and its bad records' file);
        returns its number of input records, bad ones included."""
        s = self.settings
        bad = []
        on_bad = None if s.strict else (lambda line, reason: bad.append((line, reason)))
        records = list(read_part(part, s.text_key, s.id_key, self.nlp.vocab, on_bad=on_bad))
        ids = [doc_id for doc_id, _ in records]
        docs = self.nlp.pipe((item for _, item in records), batch_size=s.batch_size)
        data, n = encode_part(zip(ids, docs), s.output_format, s.vectors)
        write_part_errors(self.output, part, bad)
        write_atomic(part_path(self.output, part, s.output_format), data)
        return n + len(bad)
