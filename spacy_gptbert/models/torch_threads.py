"""Make torch safe to use in forked worker processes (nlp.pipe(n_process=N)).

A child forked after the parent ran torch ops inherits a dead OpenMP thread
pool: with GNU libgomp (torch's CPU wheels) its first parallel op hangs. One
intra-op thread per worker avoids the pool, and is what N worker processes on
N cores want anyway. Imported for its side effect by the torch modules.
"""
import os

import torch


def _one_thread_in_child() -> None:
    torch.set_num_threads(1)


os.register_at_fork(after_in_child=_one_thread_in_child)
