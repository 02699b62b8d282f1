"""Reading possibly gzipped input files: a damaged gzip stream yields what decompressed cleanly
and says where it stopped (a light module: the readers and the SMILES lists use it)."""

from __future__ import annotations

import io
import zlib
from pathlib import Path


def is_gz(path: Path) -> bool:
    return path.name.lower().endswith(".gz")


class SalvagingGunzip(io.RawIOBase):
    """A gzip stream that ends quietly where the compressed data is cut or corrupt.

    Reads the bytes that decompress cleanly; after the damage it reports end of file and keeps the
    reason in :attr:`problem` (empty for an intact stream). Multi-member gzip files are read whole.
    """

    CHUNK = 1 << 14

    def __init__(self, path: Path) -> None:
        super().__init__()
        self._fh = open(path, "rb")  # noqa: SIM115 - closed by close()
        self._d = zlib.decompressobj(16 + zlib.MAX_WBITS)
        self._in_member = False
        self._buf = b""
        self._done = False
        self.problem = ""
        self.n_out = 0

    def readable(self) -> bool:
        return True

    def _fill(self) -> None:
        pending = b""
        if self._d.eof:  # member finished: anything left starts the next member
            pending = self._d.unused_data
            self._d = zlib.decompressobj(16 + zlib.MAX_WBITS)
            self._in_member = False
        chunk = pending or self._fh.read(self.CHUNK)
        if not self._in_member:  # zero bytes between or after members are padding (as
            while chunk and not chunk.lstrip(b"\x00"):  # gzip and Python's gzip read them)
                chunk = self._fh.read(self.CHUNK)
            chunk = chunk.lstrip(b"\x00")
        if not chunk:
            if self._in_member:
                self.problem = (f"compressed stream cut after {self.n_out + len(self._buf)} "
                                "bytes (gzip end marker missing)")
            self._done = True
            return
        self._in_member = True
        try:
            self._buf += self._d.decompress(chunk)
        except zlib.error as e:
            self.problem = (f"compressed stream damaged after {self.n_out + len(self._buf)} "
                            f"bytes ({e})")
            self._done = True

    def readinto(self, b) -> int:  # type: ignore[override]
        while not self._buf and not self._done:
            self._fill()
        n = min(len(b), len(self._buf))
        b[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        self.n_out += n
        return n

    def close(self) -> None:
        self._fh.close()
        super().close()


def open_binary(path: Path) -> tuple[io.BufferedIOBase, SalvagingGunzip | None]:
    """(binary stream, gunzip state or None for a plain file)."""
    if is_gz(path):
        raw = SalvagingGunzip(path)
        return io.BufferedReader(raw), raw
    return open(path, "rb"), None
