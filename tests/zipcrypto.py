"""Write a one-member zip encrypted with traditional PKWARE encryption (ZipCrypto, APPNOTE 6.1), which Python's
zipfile reads but cannot write."""

from __future__ import annotations

import random
import struct
import zlib
from pathlib import Path


def _crc_entry(n: int) -> int:
    for _ in range(8):
        n = (n >> 1) ^ 0xEDB88320 if n & 1 else n >> 1
    return n


_CRC_TABLE = [_crc_entry(n) for n in range(256)]  # CRC-32's table: the key update is one CRC step per byte
_DOS_TIME, _DOS_DATE = 0, (2024 - 1980) << 9 | 1 << 5 | 1  # 2024-01-01 00:00


class _Keys:
    """The three 32-bit keys of APPNOTE 6.1.5, initialised from the password."""

    def __init__(self, password: bytes) -> None:
        self.k0, self.k1, self.k2 = 0x12345678, 0x23456789, 0x34567890
        for byte in password:
            self.update(byte)

    def update(self, byte: int) -> None:
        self.k0 = (self.k0 >> 8) ^ _CRC_TABLE[(self.k0 ^ byte) & 0xFF]
        self.k1 = ((self.k1 + (self.k0 & 0xFF)) * 134775813 + 1) & 0xFFFFFFFF
        self.k2 = (self.k2 >> 8) ^ _CRC_TABLE[(self.k2 ^ (self.k1 >> 24)) & 0xFF]

    def encrypt(self, plain: bytes) -> bytes:
        out = bytearray(len(plain))
        for i, byte in enumerate(plain):
            temp = (self.k2 | 2) & 0xFFFF
            out[i] = byte ^ (((temp * (temp ^ 1)) >> 8) & 0xFF)
            self.update(byte)
        return bytes(out)


def write_zipcrypto(path: Path, member: str, data: bytes, password: str, *, deflate: bool = True,
                    seed: int = 0) -> None:
    """Write `data` as `member` of a new archive at `path`, deflated (or stored) and then ZipCrypto-encrypted."""
    crc = zlib.crc32(data)
    if deflate:
        packer = zlib.compressobj(9, zlib.DEFLATED, -15)
        body, method = packer.compress(data) + packer.flush(), 8
    else:
        body, method = data, 0
    # 12-byte encryption header: 11 random bytes, then the CRC's high byte (the reader's password check).
    header = bytes(random.Random(seed).randrange(256) for _ in range(11)) + bytes([crc >> 24])
    sealed = _Keys(password.encode()).encrypt(header + body)
    name, flags = member.encode(), 0x0001  # bit 0: encrypted
    fields = (20, flags, method, _DOS_TIME, _DOS_DATE, crc, len(sealed), len(data), len(name))
    local = struct.pack("<4s5H3I2H", b"PK\x03\x04", *fields, 0) + name
    central = struct.pack("<4s6H3I5H2I", b"PK\x01\x02", 20, *fields, 0, 0, 0, 0, 0, 0) + name
    end = struct.pack("<4s4H2IH", b"PK\x05\x06", 0, 0, 1, 1, len(central), len(local) + len(sealed), 0)
    path.write_bytes(local + sealed + central + end)
