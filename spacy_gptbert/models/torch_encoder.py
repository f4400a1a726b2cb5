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


class WindowedModule(nn.Module):
    """What the windowed modules share: the Hugging Face model (`hf_model`)
    and two precisions. mixed_precision: bf16 autocast on the CPU in training
    (with autograd); predict_mixed_precision: the same in prediction (without
    autograd, under torch.inference_mode). They differ because a bf16
    prediction depends on the batch a doc shares (its padding and chunk
    shapes), which a training step does not mind. The thinc side
    (encoder.py) calls forward with the keyword arguments of a window plan;
    each subclass's `_forward` takes those it reads."""

    hf_attr = ""  # the attribute holding the Hugging Face model (its state_dict prefix)

    def __init__(self, hf_model: nn.Module, mixed_precision: bool = False, predict_mixed_precision: bool = False):
        super().__init__()
        setattr(self, self.hf_attr, hf_model)
        self.mixed_precision = mixed_precision
        self.predict_mixed_precision = predict_mixed_precision

    @property
    def hf_model(self) -> nn.Module:
        return getattr(self, self.hf_attr)

    def forward(self, **plan):
        if torch.is_grad_enabled():
            return self._forward(bf16=self.mixed_precision, **plan)
        with torch.inference_mode():
            return self._forward(bf16=self.predict_mixed_precision, **plan)

    def _forward(self, bf16: bool, **plan):
        raise NotImplementedError


class WindowedEncoder(WindowedModule):
    """An encoder over strided windows, its outputs pooled onto tokens and docs."""

    hf_attr = "transformer"

    def _forward(
        self,
        bf16: bool,
        chunks: List[Tuple[torch.Tensor, torch.Tensor]],
        content_pos: torch.Tensor,
        content_wp: torch.Tensor,
        content_scale: torch.Tensor,
        align_wp: torch.Tensor,
        align_token: torch.Tensor,
        align_scale: torch.Tensor,
        window_doc: torch.Tensor,
        window_scale: torch.Tensor,
        n_wordpieces: int,
        n_tokens: int,
        n_docs: int,
        return_wordpieces: bool = False,
        return_tokens: bool = True,
        **_unused,
    ) -> Tuple[torch.Tensor, ...]:
        """
        chunks: (input_ids, attention_mask) pairs, each (n_windows_in_chunk, length);
            windows sorted by length so padding stays small; real positions
            first in each row (right padding).
        (pos_window (P,), pos_scale (P,), in `_unused`: window of each real
            position, all windows concatenated, special tokens included, and
            1 / window length.)
        content_pos (C,), content_wp (C,), content_scale (C,): which real
            positions are content wordpieces, their doc-level wordpiece index and
            1 / number of windows covering that wordpiece (strided overlap).
        align_wp (A,), align_token (A,), align_scale (A,): wordpiece-token
            pairs, one per overlap (a wordpiece may cover two tokens and a
            token several wordpieces), and 1 / wordpieces aligned to that token.
        window_doc (N,), window_scale (N,): doc of each window, 1 / its windows.
        Returns tokens (n_tokens, d), cls (n_docs, d), mean (n_docs, d) and, if
        asked, wordpieces (n_wordpieces, d). With return_tokens=False the
        token rows are a zero-stride view of zeros (nothing is pooled onto
        tokens: for callers that only read cls/mean).

        Each chunk's outputs are pooled as soon as it is computed, so memory
        holds one chunk's hidden states plus the pooled rows, never all
        windows' hidden states at once.
        """
        width = int(self.transformer.config.hidden_size)
        need_wordpieces = return_wordpieces or return_tokens
        wordpieces = None
        window_cls, window_mean = [], []
        pos_offset = 0  # real positions before this chunk (indexes content_pos)
        content_start = 0
        for input_ids, attention_mask in chunks:
            with cpu_autocast(bf16, input_ids.device):
                last = self.transformer(input_ids=input_ids, attention_mask=attention_mask)[0]
            last = last.float()  # pooled in float32 (a no-op without autocast)
            if wordpieces is None:
                width = last.shape[-1]
                wordpieces = last.new_zeros((n_wordpieces if need_wordpieces else 0, width))
            mask = attention_mask.to(last.dtype)
            lengths = mask.sum(1, keepdim=True)
            window_cls.append(last[:, 0])  # each row starts with its first real position
            window_mean.append(torch.bmm(mask.unsqueeze(1), last).squeeze(1) / lengths)
            if need_wordpieces:
                flat_mask = attention_mask.reshape(-1).bool()
                n_real = int(flat_mask.sum())
                content_end = int(torch.searchsorted(content_pos, pos_offset + n_real))
                # content positions among this chunk's real positions, then among its padded ones
                local = content_pos[content_start:content_end] - pos_offset
                flat = torch.nonzero(flat_mask, as_tuple=False).squeeze(1)[local]
                rows = last.reshape(-1, width).index_select(0, flat)
                scale = content_scale[content_start:content_end].unsqueeze(1)
                wordpieces.index_add_(0, content_wp[content_start:content_end], rows * scale)
                pos_offset += n_real
                content_start = content_end
        if wordpieces is None:  # no windows at all (only empty docs)
            wordpieces = window_doc.new_zeros((n_wordpieces, width), dtype=torch.float32)
            window_cls = window_mean = wordpieces[:0]
        else:
            window_cls, window_mean = torch.cat(window_cls), torch.cat(window_mean)
        cls = _scatter_mean(window_cls, window_doc, window_scale, n_docs, width)
        mean = _scatter_mean(window_mean, window_doc, window_scale, n_docs, width)
        if return_tokens:
            tokens = _scatter_mean(wordpieces.index_select(0, align_wp), align_token, align_scale, n_tokens, width)
        else:
            tokens = wordpieces.new_zeros((1, width)).expand(n_tokens, width)
        outputs = (tokens, cls, mean)
        if return_wordpieces:
            outputs = outputs + (wordpieces,)
        return outputs


def _scatter_mean(
    rows: torch.Tensor, index: torch.Tensor, scale: torch.Tensor, n_out: int, width: int
) -> torch.Tensor:
    """out[i] = sum of rows[j] * scale[j] over j with index[j] == i."""
    out = rows.new_zeros((n_out, width))
    if rows.shape[0]:
        out = out.index_add(0, index, rows * scale.to(rows.dtype).unsqueeze(1))
    return out


class WindowedClassifier(WindowedModule):
    """A fine-tuned sequence-classification model run over strided windows;
    a doc's logits are the mean of its windows' logits."""

    hf_attr = "classifier"

    def _forward(self, bf16: bool, chunks: List[Tuple[torch.Tensor, torch.Tensor]], window_doc: torch.Tensor,
                 window_scale: torch.Tensor, n_docs: int, **_unused) -> torch.Tensor:
        logits = []
        for ids, mask in chunks:
            with cpu_autocast(bf16, ids.device):
                logits.append(self.classifier(input_ids=ids, attention_mask=mask).logits.float())
        logits = torch.cat(logits, dim=0)  # (n_windows, n_labels), windows in processing order
        return _scatter_mean(logits, window_doc, window_scale, n_docs, logits.shape[1])
