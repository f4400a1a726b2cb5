"""Components for the apply tests, loaded by workers through --code: one
that slows a run down (so a test can interrupt it between parts) and one
that kills its own worker process once, part-way through a part."""
import os
import time

from spacy.language import Language


@Language.factory("test_slow", default_config={"delay": 0.05})
def make_slow(nlp, name, delay: float):
    def slow(doc):
        time.sleep(delay)
        return doc

    return slow


@Language.factory("test_crash_once", default_config={"marker": "", "after": 3})
def make_crash_once(nlp, name, marker: str, after: int):
    """Exit the process hard (as a SIGKILL or an OOM kill would) at the
    `after`-th doc, the first time any worker gets there: the marker file,
    created atomically, makes exactly one worker die in the whole run."""
    seen = {"n": 0}

    def crash_once(doc):
        seen["n"] += 1
        if seen["n"] >= after:
            try:
                fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                return doc
            os.write(fd, str(os.getpid()).encode())
            os.close(fd)
            os._exit(17)
        return doc

    return crash_once
