"""Quantized weights that stay packed in memory: the matrix products run from the codes.

A :class:`PackedMatrix` is a weight matrix as the packed file stores it: one or more row segments (a whole
matrix, or the word-frequency bands of a vocabulary-sized one), each either b-bit codes, bit-packed as in the
file, with one scale or one per row, or 32-bit rows. Nothing converts a whole matrix to floats: rows are
decoded a chunk at a time (for 1, 2, 4 and 8 bits by shifting and masking whole byte arrays, one field of
the byte at a time; by bit planes for the others) and multiplied by their scale. The chunks of a product go
to one float32 buffer per device that every packed matrix reuses (:func:`scratch`), so scoring holds one
decoded chunk at any time and leaves no freed temporaries of that size behind in the heap.

What a product gives: the decoded chunk is ``scale * code`` computed in float32 and then cast to the product's
dtype, exactly the dequantized model's weight (float32) or its bfloat16 copy (bfloat16), so a packed model's
costs equal the dequantized model's up to the summation order of the chunked products (measured: 1e-5
relative in float32; bfloat16 as the dequantized model's bfloat16 path).

:class:`PackedLinear` and :class:`PackedEmbedding` put such a matrix in a :class:`~asr_lm_quant.lm.model.
TransformerLM` in place of ``nn.Linear``/``nn.Embedding`` (one matrix for tied embeddings); under
``torch.autocast`` the products run in the autocast dtype.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from asr_lm_quant.quant.quantizers import FLOAT_BITS, kmax

CHUNK_ELEMENTS = 1 << 21  # weights decoded at once (4 MB of bfloat16)


@dataclass
class Segment:
    """Rows ``row0:row1`` of a matrix: packed codes and scales, or float rows (``bits == 32``)."""
    row0: int
    row1: int
    bits: int
    per_row: bool
    codes: torch.Tensor | None   # uint8, bit-packed row-major as in the file
    scale: torch.Tensor | None   # float32 [1] or [rows]
    weight: torch.Tensor | None  # float32 [rows, cols] for a float segment

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (self.codes, self.scale, self.weight) if t is not None)


_SCRATCH: dict = {}


def scratch(numel: int, dtype: torch.dtype, device) -> torch.Tensor:
    """A flat ``dtype`` buffer of ``numel`` elements on ``device``, the same memory on every call (grown when
    a larger one is asked for): the decoded chunk of a product. What it holds is valid until the next call."""
    key = (dtype, str(device))
    buf = _SCRATCH.get(key)
    if buf is None or buf.numel() < numel:
        _SCRATCH.pop(key, None)  # the old buffer goes before the larger one is made
        with torch.inference_mode(False):  # a normal tensor: writable inside and outside inference mode
            buf = _SCRATCH[key] = torch.empty(numel, dtype=dtype, device=device)
    return buf[:numel]


def valid_codes(buf: torch.Tensor, bits: int, numel: int) -> bool:
    """Whether every code lies in the b-bit table (the unsigned value 2^b - 1 is unused for b >= 2)."""
    if bits == 1:
        return True
    if 8 % bits == 0:
        per = 8 // bits
        fields = (torch.arange(256)[:, None] >> (torch.arange(per) * bits)) & ((1 << bits) - 1)
        ok = (fields != (1 << bits) - 1).all(dim=1).to(buf.device)
        full = numel // per
        for a in range(0, full, 1 << 18):  # bounded temporaries
            if not bool(ok[buf[a:min(full, a + (1 << 18))].int()].all()):
                return False
        buf, numel = buf[full:], numel - full * per
        if numel == 0:
            return True
    step = bits * 8192  # bytes holding 65536 whole codes: bounded temporaries
    for a in range(0, len(buf), step):
        n = min(numel - (a // bits) * 8, 65536)
        if n > 0 and not bool((decode_codes(buf[a:a + step], bits, n) <= kmax(bits)).all()):
            return False
    return True


def decode_into(buf: torch.Tensor, bits: int, out: torch.Tensor) -> torch.Tensor:
    """float32 codes of the first ``out.numel()`` values of a bit-packed uint8 buffer (little-endian bit
    order) written into ``out`` (float32, contiguous). Whole-byte widths: field ``j`` of every byte is
    ``(byte >> j*bits) & mask``, written as the j-th of each byte's ``8 // bits`` outputs; the unsigned
    values then become codes in place (``u - kmax``; ``2u - 1`` for one bit), all exact in float32."""
    numel = out.numel()
    flat = out.view(-1)
    if 8 % bits:
        flat.copy_(decode_codes(buf, bits, numel))
        return out
    per, mask = 8 // bits, (1 << bits) - 1
    full, rest = divmod(numel, per)
    if full:
        fields = flat[:full * per].view(full, per)
        if per == 1:
            fields[:, 0].copy_(buf[:full])
        else:
            for j in range(per):
                f = buf[:full] if j == 0 else torch.bitwise_right_shift(buf[:full], j * bits)
                fields[:, j].copy_(f if j == per - 1 else f & mask)
    if rest:  # codes that share the last byte with padding
        flat[full * per:].copy_((buf[full].long() >> (torch.arange(rest, device=buf.device) * bits)) & mask)
    if bits == 1:
        flat.mul_(2).sub_(1)
    else:
        flat.sub_(kmax(bits))
    return out


def decode_codes(buf: torch.Tensor, bits: int, numel: int) -> torch.Tensor:
    """float32 codes of the first ``numel`` values of a bit-packed uint8 buffer (little-endian bit order)."""
    if 8 % bits == 0:
        return decode_into(buf, bits, torch.empty(numel, dtype=torch.float32, device=buf.device))
    planes = (buf[:, None].int() >> torch.arange(8, dtype=torch.int32, device=buf.device)) & 1
    planes = planes.reshape(-1)[:numel * bits].reshape(numel, bits)
    u = (planes << torch.arange(bits, dtype=torch.int32, device=buf.device)).sum(dim=1)
    return (u - kmax(bits)).to(torch.float32)


class PackedMatrix:
    """A [rows, cols] weight matrix kept as its packed segments."""

    def __init__(self, rows: int, cols: int, segments: list[Segment]):
        self.rows, self.cols = rows, cols
        self.segments = sorted(segments, key=lambda s: s.row0)
        ends = [0] + [s.row1 for s in self.segments]
        if any(s.row0 != e for s, e in zip(self.segments, ends)) or ends[-1] != rows:
            raise ValueError(f"segments do not tile the {rows} rows: {[(s.row0, s.row1) for s in self.segments]}")
        for s in self.segments:
            if s.bits != FLOAT_BITS and (cols * s.bits) % 8:
                raise ValueError(f"rows of {cols} {s.bits}-bit codes do not start on a byte")

    @property
    def device(self):
        s = self.segments[0]
        return (s.weight if s.weight is not None else s.codes).device

    def nbytes(self) -> int:
        return sum(s.nbytes() for s in self.segments)

    def to(self, device) -> "PackedMatrix":
        if torch.device(device) == self.device:
            return self  # tied embeddings keep sharing one matrix
        move = (lambda t: None if t is None else t.to(device))  # noqa: E731
        return PackedMatrix(self.rows, self.cols, [Segment(s.row0, s.row1, s.bits, s.per_row, move(s.codes),
                                                           move(s.scale), move(s.weight)) for s in self.segments])

    def _decode(self, s: Segment, r0: int, r1: int, dtype, out: torch.Tensor | None = None) -> torch.Tensor:
        """Rows ``r0:r1`` (segment-relative) as ``dtype``: float32 ``scale * code`` (as ``dequantize`` forms
        it) cast to ``dtype``; into ``out`` (float32 [r1 - r0, cols]) when given, else a new tensor."""
        if s.weight is not None:
            w = s.weight[r0:r1]
            return w.to(dtype) if out is None or dtype != torch.float32 else out.copy_(w)
        if out is None:
            out = torch.empty(r1 - r0, self.cols, dtype=torch.float32, device=s.codes.device)
        row_bytes = self.cols * s.bits // 8
        decode_into(s.codes[r0 * row_bytes:r1 * row_bytes], s.bits, out)
        out.mul_(s.scale[r0:r1].reshape(-1, 1) if s.per_row else s.scale.reshape(1, 1))
        return out if dtype == torch.float32 else out.to(dtype)

    def chunks(self, dtype=torch.float32, max_rows: int | None = None, reuse: bool = False):
        """``(row0, row1, rows as dtype)`` over the whole matrix, a bounded number of rows at a time.
        ``reuse``: every chunk is decoded into the same buffer (:func:`scratch`), valid until the next one."""
        step = max_rows or max(1, CHUNK_ELEMENTS // max(1, self.cols))
        for s in self.segments:
            n = s.row1 - s.row0
            for a in range(0, n, step):
                b = min(n, a + step)
                if s.weight is not None and dtype == torch.float32:
                    yield s.row0 + a, s.row0 + b, s.weight[a:b]  # float rows are used in place
                    continue
                out = scratch((b - a) * self.cols, torch.float32, self.device).view(b - a, self.cols) \
                    if reuse else None
                w = self._decode(s, a, b, torch.float32, out)
                if dtype != torch.float32:
                    w = scratch(w.numel(), dtype, self.device).view_as(w).copy_(w) if reuse else w.to(dtype)
                yield s.row0 + a, s.row0 + b, w

    def gather_rows(self, index: torch.Tensor, dtype=torch.float32) -> torch.Tensor:
        """Rows ``index`` (any shape of int64 ids) -> ``[*index.shape, cols]``; each distinct row decoded once."""
        flat = index.reshape(-1)
        uniq, inverse = torch.unique(flat, return_inverse=True)
        out = torch.empty(len(uniq), self.cols, dtype=dtype, device=flat.device)
        for s in self.segments:
            sel = torch.nonzero((uniq >= s.row0) & (uniq < s.row1)).reshape(-1)
            if not len(sel):
                continue
            local = uniq[sel] - s.row0
            if s.weight is not None:
                out[sel] = s.weight[local].to(dtype)
                continue
            row_bytes = self.cols * s.bits // 8
            byte_idx = (local[:, None] * row_bytes + torch.arange(row_bytes, device=flat.device)).reshape(-1)
            rows = self._decode(Segment(0, len(sel), s.bits, s.per_row, s.codes[byte_idx],
                                        s.scale[local] if s.per_row else s.scale, None), 0, len(sel),
                                torch.float32)
            out[sel] = rows.to(dtype)
        return out[inverse].reshape(*index.shape, self.cols)

    def matmul_t(self, x: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        """``x @ W.T + bias`` for ``x`` [..., cols] in ``x``'s dtype, chunk by chunk of W's rows (the bias
        added inside the product, as ``nn.Linear`` does). The chunks are decoded into the shared buffer,
        unless autograd must keep them (then each is its own tensor)."""
        lead = x.shape[:-1]
        x2 = x.reshape(-1, self.cols)
        out = torch.empty(x2.shape[0], self.rows, dtype=x.dtype, device=x.device)
        reuse = not (torch.is_grad_enabled() and x.requires_grad)
        for r0, r1, w in self.chunks(x.dtype, reuse=reuse):
            whole = r1 - r0 == self.rows
            if bias is None:
                y = torch.mm(x2, w.t(), out=out) if whole else x2 @ w.t()
            else:
                y = torch.addmm(bias[r0:r1], x2, w.t(), out=out) if whole else torch.addmm(bias[r0:r1], x2, w.t())
            if not whole:
                out[:, r0:r1] = y
        return out.reshape(*lead, self.rows)

    def dense(self) -> torch.Tensor:
        """The whole matrix in float32, decoded anew (the fused output loss takes it for one batch)."""
        out = torch.empty(self.rows, self.cols, dtype=torch.float32, device=self.device)
        for s in self.segments:
            self._decode(s, 0, s.row1 - s.row0, torch.float32, out[s.row0:s.row1])
        return out


def _compute_dtype(x: torch.Tensor) -> torch.dtype:
    dev = x.device.type
    if torch.is_autocast_enabled(dev):
        return torch.get_autocast_dtype(dev)
    return x.dtype if x.is_floating_point() else torch.float32


class PackedLinear(nn.Module):
    """``nn.Linear`` over a :class:`PackedMatrix` (the bias stays a float32 parameter)."""

    def __init__(self, matrix: PackedMatrix, bias: torch.Tensor | None):
        super().__init__()
        self.matrix = matrix
        self.in_features, self.out_features = matrix.cols, matrix.rows
        self.bias = nn.Parameter(bias, requires_grad=False) if bias is not None else None

    def forward(self, x):
        dt = _compute_dtype(x)
        return self.matrix.matmul_t(x.to(dt), None if self.bias is None else self.bias.to(dt))

    def gather_rows(self, index, dtype=torch.float32):
        return self.matrix.gather_rows(index, dtype)

    def _apply(self, fn, recurse=True):
        # .to(device) moves the codes too (they are not parameters or buffers); dtype casts leave them
        self.matrix = self.matrix.to(fn(torch.empty(0, device=self.matrix.device)).device)
        return super()._apply(fn, recurse)

    def extra_repr(self):
        bits = sorted({s.bits for s in self.matrix.segments})
        return f"in_features={self.in_features}, out_features={self.out_features}, bits={bits}"


class PackedEmbedding(nn.Module):
    """``nn.Embedding`` over a :class:`PackedMatrix` (rows decoded for the tokens asked for only)."""

    def __init__(self, matrix: PackedMatrix):
        super().__init__()
        self.matrix = matrix
        self.num_embeddings, self.embedding_dim = matrix.rows, matrix.cols

    def forward(self, tokens):
        return self.matrix.gather_rows(tokens, torch.float32)

    def _apply(self, fn, recurse=True):
        self.matrix = self.matrix.to(fn(torch.empty(0, device=self.matrix.device)).device)
        return super()._apply(fn, recurse)
