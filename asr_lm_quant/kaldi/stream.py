"""A forward-only byte reader over a (possibly decompressing) stream, for parsing Kaldi archives.

It keeps only the bytes of the object being parsed (plus one read chunk) in memory, knows the absolute byte
offset of every position, and never asks the underlying stream for more than it has: a corrupt length field
can only make it read to the end of the data, never allocate from the field's value.
"""

from __future__ import annotations

CHUNK = 1 << 20
WHITESPACE = b" \t\n\r\v\f"


class ByteReader:
    def __init__(self, raw, *, chunk: int = CHUNK):
        self.raw = raw
        self.chunk = chunk
        self.buf = b""
        self.pos = 0
        self.base = 0  # absolute offset of buf[0]
        self.eof = False

    @property
    def offset(self) -> int:
        return self.base + self.pos

    def _fill(self, want: int) -> None:
        """Make ``buf[pos:]`` at least ``want`` bytes long if the stream has them."""
        have = len(self.buf) - self.pos
        if have >= want or self.eof:
            return
        parts = [self.buf[self.pos:]]
        self.base += self.pos
        self.pos = 0
        while have < want:
            block = self.raw.read(max(self.chunk, min(want - have, 1 << 26)))
            if not block:
                self.eof = True
                break
            parts.append(block)
            have += len(block)
        self.buf = b"".join(parts)

    def need(self, n: int) -> bool:
        """True if ``n`` bytes are available at ``pos`` (reading more as needed)."""
        if len(self.buf) - self.pos >= n:
            return True
        self._fill(n)
        return len(self.buf) - self.pos >= n

    def at_eof(self) -> bool:
        return not self.need(1)

    def peek(self) -> int:
        """The next byte, or -1 at the end."""
        return self.buf[self.pos] if self.need(1) else -1

    def skip_whitespace(self) -> None:
        while self.need(1) and self.buf[self.pos] in WHITESPACE:
            self.pos += 1

    def read_token(self, limit: int = 1 << 16) -> bytes | None:
        """Bytes up to the next whitespace (not consumed); None if longer than ``limit``."""
        scanned = 0
        while True:
            end = len(self.buf)
            i = self.pos + scanned
            while i < end and self.buf[i] not in WHITESPACE:
                i += 1
            if i < end or self.eof:
                tok = self.buf[self.pos:i]
                self.pos = i
                return tok
            scanned = i - self.pos
            if scanned > limit:
                return None
            self._fill(scanned + self.chunk)

    def read_line(self, limit: int = 1 << 24) -> bytes | None:
        """One line without its ``\\n``; None at the end of the data. Raises ValueError over ``limit``."""
        scanned = 0
        while True:
            j = self.buf.find(b"\n", self.pos + scanned)
            if j >= 0:
                line = self.buf[self.pos:j]
                self.pos = j + 1
                return line
            scanned = len(self.buf) - self.pos
            if scanned > limit:
                raise ValueError(f"line longer than {limit} bytes")
            if self.eof:
                if scanned == 0:
                    return None
                line = self.buf[self.pos:]
                self.pos = len(self.buf)
                return line
            self._fill(scanned + self.chunk)
