"""Helpers shared by the inference benchmarks: inputs, word counts, RSS
sampling, machine description, table printing and JSON output."""
import contextlib
import json
import os
import platform
import threading
import time
from pathlib import Path
from typing import Dict, List, Optional

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
SST2 = SHARED / "sst2"
RESULTS = ROOT / "benchmarks" / "results"
MINILM = "sentence-transformers/all-MiniLM-L6-v2"


def sst2_texts(split: str = "train") -> List[str]:
    from spacy_gptbert.training.convert import read_tsv

    return [t for t, _ in read_tsv(SST2 / f"{split}.tsv")]


def short_texts(n: int) -> List[str]:
    """n SST-2 train sentences (repeated if n is larger than the file)."""
    texts = sst2_texts("train")
    return [texts[i % len(texts)] for i in range(n)]


def long_texts(n: int, min_words: int = 2000) -> List[str]:
    """n documents of at least min_words whitespace words, each SST-2 train
    sentences joined in file order (no document repeats another)."""
    texts = sst2_texts("train")
    docs, current, count, i = [], [], 0, 0
    while len(docs) < n:
        sentence = texts[i % len(texts)]
        i += 1
        current.append(sentence)
        count += len(sentence.split())
        if count >= min_words:
            docs.append(" ".join(current))
            current, count = [], 0
    return docs


def texts_of_length(n: int, n_words: int) -> List[str]:
    """n documents of exactly n_words whitespace words (SST-2 text, cut)."""
    words = " ".join(sst2_texts("train")).split()
    out, start = [], 0
    for _ in range(n):
        if start + n_words > len(words):
            start = 0
        out.append(" ".join(words[start : start + n_words]))
        start += n_words
    return out


def count_words(texts: List[str]) -> int:
    """Whitespace-separated words: the unit of every words/s figure."""
    return sum(len(t.split()) for t in texts)


def status_mb(field: str) -> float:
    """A memory field of /proc/self/status (e.g. "VmRSS", "VmHWM") in MB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def rss_mb() -> float:
    """Current resident set size (VmRSS) of this process in MB."""
    return status_mb("VmRSS")


class RSSSampler:
    """Samples VmRSS every `interval` seconds in a thread; `peak` is the
    highest sample since start (or the last reset)."""

    def __init__(self, interval: float = 0.005):
        self.interval = interval
        self.peak = rss_mb()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def __enter__(self):
        self.start_rss = self.peak = rss_mb()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_mb())
            time.sleep(self.interval)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_mb())


@contextlib.contextmanager
def forced_bf16():
    """Components built inside run mixed_precision = true as bf16 autocast even
    on a CPU without bf16 instructions (where the plugin runs float32, W003), so
    a benchmark's bf16 row measures bf16 on every machine."""
    import warnings

    from spacy_gptbert.models import autocast

    native = autocast.native_bf16  # cpu_bf16 looks it up in its own module
    autocast.native_bf16 = lambda: True
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        autocast.native_bf16 = native


def machine() -> Dict[str, object]:
    import torch

    from spacy_gptbert.models.autocast import native_bf16

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "native_bf16": native_bf16(),
        "load_average_at_start": os.getloadavg(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


def print_table(rows: List[dict], columns: List[tuple]) -> None:
    """columns: (key, header, format) triples."""
    widths = [max(len(h), *(len(fmt.format(r.get(k, ""))) if r.get(k) is not None else 1 for r in rows))
              for k, h, fmt in columns]
    print("  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, ((_, h, _), w) in enumerate(zip(columns, widths))))
    for r in rows:
        cells = []
        for i, ((k, _, fmt), w) in enumerate(zip(columns, widths)):
            text = fmt.format(r[k]) if r.get(k) is not None else "-"
            cells.append(text.ljust(w) if i == 0 else text.rjust(w))
        print("  ".join(cells))


def write_json(path, payload: dict) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, default=float))
    print(f"wrote {path}")
