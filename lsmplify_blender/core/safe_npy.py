"""Read .npy and .npz files with every size checked before memory is allocated.

``np.load`` trusts a file's headers: a 8 MB .npz can declare a 6 GiB member (zip
"bombs" compress zeros ~1000:1), and a .npy header can declare any shape, which numpy
allocates before it reads a byte. Here the zip directory and each .npy header are read
first; a member is read only when it is wanted, its dtype is plain (numbers, or text
where the caller allows it), and its declared size is within the caller's limits and
matches what the archive says it holds. Object (pickled) arrays are never loaded.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from .errors import LSMPLifyError

MAX_MEMBER_BYTES = 1 << 30  # 1 GiB: SMPL's posedirs (6890 x 3 x 207 float64) is 34 MB
MAX_TOTAL_BYTES = 2 << 30
_MAX_HEADER = 10_000


def _check_dtype(dtype: np.dtype, kinds: str, what: str, error: type[LSMPLifyError]) -> None:
    if dtype.hasobject:
        raise error(
            f"{what} holds Python objects, which are never loaded (a pickle could run code). "
            "Save numbers as float arrays and text with dtype=str."
        )
    if dtype.fields is not None or dtype.subdtype is not None or dtype.kind not in kinds:
        raise error(
            f"{what} has dtype {dtype}; expected plain "
            f"{'numbers or text' if 'U' in kinds else 'numbers'}."
        )


def read_npy_header(
    f,
    where: str,
    error: type[LSMPLifyError],
    *,
    available: int,
    kinds: str = "biuf",
    max_bytes: int = MAX_MEMBER_BYTES,
) -> tuple[tuple[int, ...], bool, np.dtype, int]:
    """(shape, fortran order, dtype, element count) of the array whose .npy header starts at
    ``f``'s position, which is left at the first data byte; the dtype and the declared size
    are checked against ``kinds``, ``max_bytes`` and the ``available`` bytes of the stream."""
    try:
        version = np.lib.format.read_magic(f)
        read_header = (
            np.lib.format.read_array_header_1_0
            if version == (1, 0)
            else np.lib.format.read_array_header_2_0
        )
        shape, fortran, dtype = read_header(f, max_header_size=_MAX_HEADER)  # type: ignore[call-arg]
        header_end = f.tell()
    except Exception as exc:  # noqa: BLE001 (any failure of a hostile header is one clear error)
        raise error(
            f"{where}: not a readable .npy array ({type(exc).__name__}: {str(exc)[:120]}); the file is "
            "truncated or corrupt. Save it again with np.save / np.savez."
        ) from None
    _check_dtype(dtype, kinds, where, error)
    count = 1
    for n in shape:
        count *= int(n)
    nbytes = count * dtype.itemsize
    if nbytes > max_bytes:
        raise error(
            f"{where}: declares {nbytes / 2**20:.0f} MiB ({shape} {dtype}), more than the "
            f"{max_bytes / 2**20:.0f} MiB limit for this input; it is not a file this program reads."
        )
    if nbytes > available - header_end:
        raise error(
            f"{where}: its header declares {nbytes} bytes of data but the file holds "
            f"{max(available - header_end, 0)}; it is truncated or corrupt."
        )
    return shape, fortran, dtype, count


def read_npy_stream(
    f,
    where: str,
    error: type[LSMPLifyError],
    *,
    available: int,
    kinds: str = "biuf",
    max_bytes: int = MAX_MEMBER_BYTES,
) -> np.ndarray:
    """One array from an open .npy stream; ``available`` bytes at most may follow the header."""
    shape, fortran, dtype, count = read_npy_header(
        f, where, error, available=available, kinds=kinds, max_bytes=max_bytes
    )
    nbytes = count * dtype.itemsize
    raw = bytearray(nbytes)  # read straight into the array's memory: one copy of the data, not two
    got, view = 0, memoryview(raw)
    while got < nbytes:
        n = f.readinto(view[got:])
        if not n:
            raise error(
                f"{where}: the data ends after {got} of {nbytes} bytes; the file is truncated."
            )
        got += n
    flat = np.frombuffer(raw, dtype=dtype, count=count) if count else np.zeros(0, dtype)
    return flat.reshape(shape, order="F" if fortran else "C")


def read_npy(path: str | os.PathLike, error: type[LSMPLifyError], **limits) -> np.ndarray:
    p = Path(path)
    try:
        with open(p, "rb") as f:
            return read_npy_stream(
                f, p.name, error, available=os.fstat(f.fileno()).st_size, **limits
            )
    except OSError as exc:
        raise error(f"Cannot read '{p}': {exc.strerror or exc}.") from None


def read_npz(
    path: str | os.PathLike,
    error: type[LSMPLifyError],
    keys: Iterable[str] | None = None,
    *,
    kinds: str = "biuf",
    max_member: int = MAX_MEMBER_BYTES,
    max_total: int = MAX_TOTAL_BYTES,
) -> tuple[dict[str, np.ndarray], list[str]]:
    """The wanted members of an .npz (all when ``keys`` is None) and the names of all members.

    Every member's declared size is checked first, wanted or not, so a bomb is refused
    at once without decompressing anything.
    """
    p = Path(path)
    try:
        with zipfile.ZipFile(p) as zf:
            infos = {i.filename[:-4]: i for i in zf.infolist() if i.filename.endswith(".npy")}
            total = sum(i.file_size for i in zf.infolist())
            biggest = max(zf.infolist(), key=lambda i: i.file_size, default=None)
            if biggest is not None and (biggest.file_size > max_member or total > max_total):
                raise error(
                    f"{p.name}: the archive declares {total / 2**20:.0f} MiB ('{biggest.filename}' alone "
                    f"{biggest.file_size / 2**20:.0f} MiB, the limit is {max_member / 2**20:.0f} MiB per array); "
                    "it is not a file this program reads (a zip bomb or the wrong file)."
                )
            wanted = list(infos) if keys is None else [k for k in keys if k in infos]
            out = {}
            for key in wanted:
                with zf.open(infos[key]) as f:
                    out[key] = read_npy_stream(
                        f,
                        f"{p.name}: '{key}'",
                        error,
                        available=infos[key].file_size,
                        kinds=kinds,
                        max_bytes=max_member,
                    )
            return out, list(infos)
    except (
        zipfile.BadZipFile,
        zipfile.LargeZipFile,
        EOFError,
        NotImplementedError,
        ValueError,
    ) as exc:
        raise error(
            f"{p.name}: not a readable .npz archive ({type(exc).__name__}: {str(exc)[:120]}); "
            "the file may be truncated. Copy or export it again (np.savez)."
        ) from None
    except OSError as exc:
        raise error(f"Cannot read '{p}': {exc.strerror or exc}.") from None
