"""Raw torch: run a Hugging Face encoder over strided windows and pool the
outputs onto spaCy tokens and documents. No spaCy or thinc imports here: the
thinc side (encoder.py) prepares integer index tensors, this module only does
differentiable arithmetic, so autograd gives the backward pass for free.
"""
from typing import List, Tuple

import torch
from torch import nn

from . import torch_threads  # noqa: F401  (fork-safe thread settings)
from .autocast import cpu_autocast


class WindowedEncoder(nn.Module):
    def __init__(self, transformer: nn.Module, mixed_precision: bool = False):
        super().__init__()
        self.transformer = transformer
        self.mixed_precision = mixed_precision

    def forward(
        self,
        chunks: List[Tuple[torch.Tensor, torch.Tensor]],
        pos_window: torch.Tensor,
        pos_scale: torch.Tensor,
        content_pos: torch.Tensor,
        content_wp: torch.Tensor,
        content_scale: torch.Tensor,
        wp_token: torch.Tensor,
        wp_token_scale: torch.Tensor,
        window_doc: torch.Tensor,
        window_scale: torch.Tensor,
        n_wordpieces: int,
        n_tokens: int,
        n_docs: int,
        return_wordpieces: bool = False,
    ) -> Tuple[torch.Tensor, ...]:
        """
        chunks: (input_ids, attention_mask) pairs, each (n_windows_in_chunk, length);
            windows sorted by length so padding stays small.
        pos_window (P,), pos_scale (P,): window of each real position (all
            windows concatenated, special tokens included) and 1 / window length.
        content_pos (C,), content_wp (C,), content_scale (C,): which real
            positions are content wordpieces, their doc-level wordpiece index and
            1 / number of windows covering that wordpiece (strided overlap).
        wp_token (W,), wp_token_scale (W,): the token each wordpiece belongs
            to and 1 / wordpieces of that token; a wordpiece attached to no token
            points at row n_tokens with scale 0.
        window_doc (N,), window_scale (N,): doc of each window, 1 / its windows.
        Returns tokens (n_tokens, d), cls (n_docs, d), mean (n_docs, d) and, if
        asked, wordpieces (n_wordpieces, d).
        """
        hidden = []
        for input_ids, attention_mask in chunks:
            with cpu_autocast(self.mixed_precision, input_ids.device):
                last = self.transformer(input_ids=input_ids, attention_mask=attention_mask)[0]
            # (n_windows, length, d) -> (real positions, d), pooled in float32
            hidden.append(last[attention_mask.bool()].float())
        packed = torch.cat(hidden, dim=0)  # (P, d)
        width = packed.shape[1]
        # Window CLS rows sit at each window's first real position.
        first = _window_starts(pos_window)
        cls = _scatter_mean(packed[first], window_doc, window_scale, n_docs, width)
        window_mean = _scatter_mean(packed, pos_window, pos_scale, first.shape[0], width)
        mean = _scatter_mean(window_mean, window_doc, window_scale, n_docs, width)
        wordpieces = _scatter_mean(packed[content_pos], content_wp, content_scale, n_wordpieces, width)
        # Unaligned wordpieces point at a spare row n_tokens (scale 0), cut off here.
        tokens = _scatter_mean(wordpieces, wp_token, wp_token_scale, n_tokens + 1, width)[:n_tokens]
        outputs = (tokens, cls, mean)
        if return_wordpieces:
            outputs = outputs + (wordpieces,)
        return outputs


def _window_starts(pos_window: torch.Tensor) -> torch.Tensor:
    """Index of the first position of each window in the packed positions."""
    change = torch.ones_like(pos_window, dtype=torch.bool)
    change[1:] = pos_window[1:] != pos_window[:-1]
    return torch.nonzero(change, as_tuple=False).squeeze(1)


def _scatter_mean(
    rows: torch.Tensor, index: torch.Tensor, scale: torch.Tensor, n_out: int, width: int
) -> torch.Tensor:
    """out[i] = sum of rows[j] * scale[j] over j with index[j] == i."""
    out = rows.new_zeros((n_out, width))
    if rows.shape[0]:
        out = out.index_add(0, index, rows * scale.to(rows.dtype).unsqueeze(1))
    return out


class WindowedClassifier(nn.Module):
    """A fine-tuned sequence-classification model run over strided windows;
    a doc's logits are the mean of its windows' logits."""

    def __init__(self, classifier: nn.Module, mixed_precision: bool = False):
        super().__init__()
        self.classifier = classifier
        self.mixed_precision = mixed_precision

    def forward(
        self,
        chunks: List[Tuple[torch.Tensor, torch.Tensor]],
        window_doc: torch.Tensor,
        window_scale: torch.Tensor,
        n_docs: int,
        **_unused,
    ) -> torch.Tensor:
        logits = []
        for ids, mask in chunks:
            with cpu_autocast(self.mixed_precision, ids.device):
                logits.append(self.classifier(input_ids=ids, attention_mask=mask).logits.float())
        logits = torch.cat(logits, dim=0)  # (n_windows, n_labels), windows in processing order
        return _scatter_mean(logits, window_doc, window_scale, n_docs, logits.shape[1])
