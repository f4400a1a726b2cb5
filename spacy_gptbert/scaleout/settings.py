"""What every worker needs to process a part, as one JSON-able object (it is
shipped to Ray actors and to local worker processes)."""
from dataclasses import asdict, dataclass
from typing import Any, Dict, Optional

from ..errors import Errors

OUTPUT_FORMATS = ("jsonl", "spacy")


@dataclass
class ApplySettings:
    pipeline: str
    output_format: str = "jsonl"
    text_key: str = "text"
    id_key: str = "id"
    vectors: bool = False
    batch_size: int = 32
    part_size: int = 1000
    threads: int = 1            # torch threads per worker (local process or Ray actor)
    code: Optional[str] = None  # a Python file with registered functions, imported by each worker
    gpu_id: int = -1            # >= 0: require this GPU in every worker (local --gpu-id)
    prefer_gpu: bool = False    # use the GPU Ray assigned to the actor, if thinc can
    strict: bool = False        # a bad record stops the run, instead of going to OUTPUT/errors.tsv

    def __post_init__(self) -> None:
        if self.output_format not in OUTPUT_FORMATS:
            raise ValueError(Errors.E351.format(fmt=self.output_format, options=", ".join(OUTPUT_FORMATS)))
        for name in ("batch_size", "part_size", "threads"):
            if int(getattr(self, name)) < 1:
                raise ValueError(Errors.E352.format(setting=name, value=getattr(self, name)))

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)

    def fingerprint(self) -> Dict[str, Any]:
        """The settings that decide what the output records are; a resumed run
        must match them. Batch size, threads and backend may change between runs.
        The pipeline is matched by its content (fingerprint.py), not its path."""
        return {"output_format": self.output_format, "text_key": self.text_key,
                "id_key": self.id_key, "vectors": self.vectors, "part_size": self.part_size}
