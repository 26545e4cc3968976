"""Read official SMPL .pkl files without chumpy, scipy or any code named by the file.

SMPL v1.0/v1.1 pickles hold numpy arrays, a scipy.sparse CSC joint regressor and (v1.0)
chumpy ``Ch`` objects whose state carries the array under ``'x'``. A pickle is a program
for a stack machine that may call anything importable, and even the "harmless" library
classes are not: a ``csc_matrix`` rebuilt from an attribute dict has unchecked indices
(``toarray()`` then writes outside its buffer), an attribute ``__array_interface__`` makes
``np.asarray`` read any address, and a hand-built dtype can hold object fields.

So this module does not use ``pickle.Unpickler`` at all. ``_Machine`` runs the opcodes of
protocols 0-5 itself and turns every allowed global into an inert description
(``_ArrayDesc``, ``_DtypeDesc``, ``_ObjectDesc``...); nothing from the file is called.
``_Builder`` then checks each description (plain numeric dtype, shape, byte count,
sparse index ranges and monotone ``indptr``) before it builds a plain numpy array with
our own code. Work and memory are bounded by the file size (memo indices, stack, the
bytes the machine may create) and nesting by ``MAX_DEPTH``, so a crafted file ends in
``ModelFileError`` (or ``UnsafePickleError`` for a global outside the allow-list).
"""

from __future__ import annotations

import codecs
import re
import struct
from collections.abc import Iterable
from typing import Any

import numpy as np

from .errors import ModelFileError, UnsafePickleError

MAX_DEPTH = 64  # nesting of containers / chumpy wrappers; SMPL files nest < 10 deep
MAX_DENSE_ELEMENTS = 2**24  # a densified sparse matrix (SMPL's J_regressor: 24 x 6890)
_MAX_NDIM = 32
_MAX_TEXT_NUMBER = 64  # characters of a protocol-0 number; longer ones are not from a model

# (module, name) -> kind. Everything here becomes a description, never the real object.
_GLOBALS: dict[tuple[str, str], str] = {
    ("copy_reg", "_reconstructor"): "reconstructor",
    ("copyreg", "_reconstructor"): "reconstructor",
    ("__builtin__", "object"): "object",
    ("builtins", "object"): "object",
    ("__builtin__", "set"): "set",
    ("builtins", "set"): "set",  # chumpy state holds sets of names
    ("__builtin__", "frozenset"): "frozenset",
    ("builtins", "frozenset"): "frozenset",
    ("__builtin__", "bytes"): "bytes",
    ("builtins", "bytes"): "bytes",  # b'' at protocol 2
    ("_codecs", "encode"): "encode",  # Python 3 protocol-2 bytes: encode(text, 'latin1')
    ("numpy", "ndarray"): "ndarray",
    ("numpy", "dtype"): "dtype",
}
for _np in ("numpy.core", "numpy._core"):
    _GLOBALS[(f"{_np}.multiarray", "_reconstruct")] = "reconstruct"
    _GLOBALS[(f"{_np}.multiarray", "scalar")] = "scalar"
    _GLOBALS[(f"{_np}.numeric", "_frombuffer")] = "frombuffer"  # protocol 5
for _fmt in ("csc", "csr"):
    for _mod in (f"scipy.sparse.{_fmt}", f"scipy.sparse._{_fmt}", "scipy.sparse"):
        _GLOBALS[(_mod, f"{_fmt}_matrix")] = _fmt
_CLASS_KINDS = ("csc", "csr", "chumpy")
_PLAIN_DTYPES = {"b": (1,), "i": (1, 2, 4, 8), "u": (1, 2, 4, 8), "f": (2, 4, 8)}
_HASHABLE = (str, bytes, int, float, type(None))


class _BadPickleError(Exception):
    """A structural problem in the stream; becomes ModelFileError with the file's name."""


class _Py2Str(bytes):
    """A Python 2 ``str``: bytes that are array data, or latin-1 text everywhere else."""


class _Global:
    def __init__(self, kind: str, qualname: str):
        self.kind, self.qualname = kind, qualname


class _Described:
    """A numpy value the file describes: its BUILD state is kept, checked later."""

    state: Any = None

    def state_free(self) -> bool:
        return self.state is None

    def set_state(self, state: Any) -> None:
        if state is None:
            raise _BadPickleError("a numpy value BUILT with no state")
        self.state = state


class _DtypeDesc(_Described):
    def __init__(self, spec: Any):
        self.spec = spec


class _ArrayDesc(_Described):
    """An ndarray: from ``_reconstruct`` + BUILD (state) or protocol 5 (parts given)."""

    def __init__(self, dtype=None, shape=None, fortran=False, data=None):
        self.dtype, self.shape, self.fortran, self.data = dtype, shape, fortran, data

    def state_free(self) -> bool:
        return self.state is None and self.data is None


class _ScalarDesc:
    def __init__(self, dtype, data):
        self.dtype, self.data = dtype, data


class _ObjectDesc:
    """An instance of an allowed class: only its kind and the state the file gave it."""

    def __init__(self, kind: str, qualname: str, state: Any = None):
        self.kind, self.qualname, self.state = kind, qualname, state


class _Mark:
    pass


_MARK = _Mark()


def _refuse_global(module: str, name: str) -> UnsafePickleError:
    return UnsafePickleError(
        f"Refused to load {module}.{name} from the pickle: SMPL model files only need "
        "numpy, scipy.sparse and chumpy arrays, so this file is not a SMPL model (or has "
        "been tampered with). Nothing from it was executed. Use the official SMPL .pkl "
        "or an .npz export."
    )


def _lookup_global(module: str, name: str) -> _Global:
    if not isinstance(module, str) or not isinstance(name, str):
        raise _BadPickleError("a global name that is not text")
    if module == "chumpy" or module.startswith("chumpy."):
        return _Global("chumpy", f"{module}.{name}")
    kind = _GLOBALS.get((module, name))
    if kind is None:
        raise _refuse_global(module, name)
    return _Global(kind, f"{module}.{name}")


class _Machine:
    """The pickle stack machine, protocols 0-5, with inert results and bounded work.

    Memo indices and the stack cannot outgrow the file (one opcode per entry), and every
    byte string or set the machine creates itself is charged to a budget of a few times
    the file size, so a small file cannot make it allocate much more than itself.
    """

    def __init__(self, data: bytes):
        self.data, self.pos, self.end = data, 0, len(data)
        self.stack: list = []
        self.marks: list[int] = []
        self.floor = 0  # stack length at the innermost MARK: pops may not go below it
        self.memo: dict[int, Any] = {}
        self.budget = 4 * len(data) + (1 << 20)
        self.ops = self._dispatch()

    # ---------------------------------------------------------------- reading
    def charge(self, n: int) -> None:
        self.budget -= n
        if self.budget < 0:
            raise _BadPickleError(
                "it builds far more data than the file holds (a decompression bomb)"
            )

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > self.end:
            raise _BadPickleError("it ends in the middle of a value (truncated)")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def line(self) -> bytes:
        nl = self.data.find(b"\n", self.pos)
        if nl < 0:
            raise _BadPickleError("it ends in the middle of a text value (truncated)")
        text = self.data[self.pos : nl]
        self.pos = nl + 1
        return text

    def unpack(self, fmt: struct.Struct) -> Any:
        value = fmt.unpack_from(self.data, self.pos)[0]  # struct.error when truncated
        self.pos += fmt.size
        return value

    def text_number(self) -> str:
        text = self.line()
        if len(text) > _MAX_TEXT_NUMBER:
            raise _BadPickleError("a number with more digits than any model holds")
        return text.decode("ascii")

    # ---------------------------------------------------------------- stack
    def push(self, value: Any) -> None:
        self.stack.append(value)

    def pop(self) -> Any:
        if len(self.stack) <= self.floor:
            raise _BadPickleError("an opcode finds fewer values than it needs")
        return self.stack.pop()

    def pop_opcode(self) -> None:  # POP drops the value on top, or an empty MARK
        if self.marks and len(self.stack) == self.floor:
            self.pop_mark()
        else:
            self.pop()

    def top(self) -> Any:
        if not self.stack:
            raise _BadPickleError("an opcode finds an empty stack")
        return self.stack[-1]

    def pop_mark(self) -> list:
        if not self.marks:
            raise _BadPickleError("an opcode needs a MARK that is not there")
        start = self.marks.pop()
        self.floor = self.marks[-1] if self.marks else 0
        items = self.stack[start:]
        del self.stack[start:]
        return items

    def put(self, index: int) -> None:
        if not 0 <= index <= self.end:  # a real pickler numbers memo entries 0, 1, 2...
            raise _BadPickleError(f"memo index {index} is larger than the file could need")
        self.memo[index] = self.top()

    def get(self, index: int) -> None:
        if index not in self.memo:
            raise _BadPickleError(f"memo index {index} is read before it is written")
        self.push(self.memo[index])

    # ---------------------------------------------------------------- run
    def run(self) -> Any:
        ops = self.ops
        while self.pos < self.end:
            op = self.data[self.pos]
            self.pos += 1
            handler = ops.get(op)
            if handler is None:
                raise _BadPickleError(
                    f"opcode {bytes([op])!r} is not one a model file uses "
                    "(persistent ids, extension codes and out-of-band buffers are refused)"
                )
            if handler() is _STOP:
                if len(self.stack) != 1 or self.marks:
                    raise _BadPickleError("it stops with a malformed stack")
                return self.stack[0]
        raise _BadPickleError("it ends before its STOP opcode (truncated)")

    # ---------------------------------------------------------------- values
    def py2_string(self, n: int) -> None:
        self.push(_Py2Str(self.take(n)))

    def text_string(self) -> None:  # protocol 0 STRING: a quoted repr
        body = self.line().rstrip(b"\r")
        if len(body) < 2 or body[:1] not in (b"'", b'"') or body[-1:] != body[:1]:
            raise _BadPickleError("a text string without its quotes")
        self.push(_Py2Str(codecs.escape_decode(body[1:-1])[0]))

    def unicode(self, n: int) -> None:
        self.push(self.take(n).decode("utf-8", "surrogatepass"))

    def long(self, n: int) -> None:
        if n > 64:
            raise _BadPickleError("an integer with more digits than any model holds")
        self.push(int.from_bytes(self.take(n), "little", signed=True))

    def text_int(self) -> None:
        text = self.text_number()
        self.push(False if text == "00" else True if text == "01" else int(text))

    def text_long(self) -> None:
        self.push(int(self.text_number().rstrip("L")))

    def proto(self) -> None:
        version = self.take(1)[0]
        if version > 5:
            raise _BadPickleError(f"pickle protocol {version} is newer than any this reader knows")

    def frame(self) -> None:
        if self.unpack(struct.Struct("<Q")) > self.end - self.pos:
            raise _BadPickleError("a frame longer than the rest of the file")

    # ---------------------------------------------------------------- containers
    def hashable(self, key: Any) -> Any:
        if not isinstance(key, _HASHABLE) or (isinstance(key, int) and abs(key) > 2**31):
            raise _BadPickleError(f"a dict key or set element of type {type(key).__name__}")
        return key.decode("latin-1") if isinstance(key, _Py2Str) else key  # py2 keys are text

    def set_items(self, target: Any, items: list) -> None:
        if not isinstance(target, dict) or len(items) % 2:
            raise _BadPickleError("SETITEMS on something that is not a dict")
        for i in range(0, len(items), 2):
            target[self.hashable(items[i])] = items[i + 1]

    def append_items(self, target: Any, items: list) -> None:
        if not isinstance(target, list):
            raise _BadPickleError("APPENDS on something that is not a list")
        target.extend(items)

    def add_items(self, target: Any, items: list) -> None:
        if not isinstance(target, set):
            raise _BadPickleError("ADDITEMS on something that is not a set")
        self.charge(len(items))
        target.update(self.hashable(i) for i in items)

    def make_set(self, items: Any, frozen: bool) -> Any:
        if not isinstance(items, (list, tuple, set, frozenset)):
            raise _BadPickleError("a set built from something that is not a list")
        self.charge(len(items))
        made = {self.hashable(i) for i in items}
        return frozenset(made) if frozen else made

    # ---------------------------------------------------------------- objects
    def global_(self) -> None:
        module = self.line().decode("utf-8", "replace")
        name = self.line().decode("utf-8", "replace")
        self.push(_lookup_global(module, name))

    def stack_global(self) -> None:
        name, module = self.pop(), self.pop()
        self.push(_lookup_global(module, name))

    def instance(self, cls: Any, args: Any) -> _ObjectDesc:
        """``cls.__new__(cls, *args)`` for an allowed class: only its kind is kept."""
        if not isinstance(cls, _Global) or cls.kind not in _CLASS_KINDS:
            name = cls.qualname if isinstance(cls, _Global) else type(cls).__name__
            raise _BadPickleError(f"it creates an instance of {name}, which no model file does")
        if not isinstance(args, tuple):
            raise _BadPickleError("NEWOBJ arguments that are not a tuple")
        return _ObjectDesc(cls.kind, cls.qualname)

    def reduce(self) -> None:
        args, func = self.pop(), self.pop()
        if not isinstance(func, _Global) or not isinstance(args, tuple):
            raise _BadPickleError(
                "REDUCE on something that is not an allowed function with arguments"
            )
        self.push(self.call(func, args))

    def call(self, func: _Global, args: tuple) -> Any:
        kind = func.kind
        if kind == "reconstruct":  # _reconstruct(ndarray, (0,), b'b'): filled by BUILD
            if len(args) != 3 or not isinstance(args[0], _Global) or args[0].kind != "ndarray":
                raise _BadPickleError("numpy _reconstruct of something other than a plain ndarray")
            return _ArrayDesc()
        if kind == "dtype":
            if not 1 <= len(args) <= 3:
                raise _BadPickleError("a numpy dtype with unexpected arguments")
            return _DtypeDesc(args[0])
        if kind == "scalar":
            if len(args) != 2:
                raise _BadPickleError("a numpy scalar with unexpected arguments")
            return _ScalarDesc(args[0], args[1])
        if kind == "frombuffer":  # protocol 5: _frombuffer(buffer, dtype, shape, order)
            if len(args) != 4 or _text(args[3]) not in ("C", "F"):
                raise _BadPickleError("a protocol-5 array with unexpected arguments")
            return _ArrayDesc(args[1], args[2], _text(args[3]) == "F", args[0])
        if kind == "encode":
            if (
                len(args) != 2
                or not isinstance(args[0], str)
                or args[1] not in ("latin1", "latin-1")
            ):
                raise _BadPickleError("_codecs.encode with arguments other than (text, 'latin1')")
            self.charge(len(args[0]))
            return args[0].encode("latin-1")
        if kind == "bytes" and args == ():
            return b""
        if kind in ("set", "frozenset") and len(args) <= 1:
            return self.make_set(args[0] if args else [], kind == "frozenset")
        if kind == "reconstructor":  # copyreg._reconstructor(cls, object, None)
            if (
                len(args) != 3
                or not isinstance(args[1], _Global)
                or args[1].kind != "object"
                or args[2] is not None
            ):
                raise _BadPickleError("copyreg._reconstructor with a base other than object")
            return self.instance(args[0], ())
        if kind in ("csc", "csr") and len(args) == 2:  # csc_matrix((data, indices, indptr), shape)
            parts, shape = args
            if not isinstance(parts, tuple) or len(parts) != 3:
                raise _BadPickleError(
                    f"{func.qualname} built from something other than (data, indices, indptr)"
                )
            state = {"data": parts[0], "indices": parts[1], "indptr": parts[2], "_shape": shape}
            return _ObjectDesc(kind, func.qualname, state)
        raise _BadPickleError(f"it calls {func.qualname} in a way no model file does")

    def newobj(self) -> None:
        args, cls = self.pop(), self.pop()
        self.push(self.instance(cls, args))

    def newobj_ex(self) -> None:
        kwargs, args, cls = self.pop(), self.pop(), self.pop()
        if not isinstance(kwargs, dict):
            raise _BadPickleError("NEWOBJ_EX keyword arguments that are not a dict")
        self.push(self.instance(cls, args))

    def inst(self) -> None:  # protocol 0/1 INST module\nname\n: class from text, args after MARK
        module = self.line().decode("utf-8", "replace")
        name = self.line().decode("utf-8", "replace")
        args = tuple(self.pop_mark())
        self.push(self.instance(_lookup_global(module, name), args))

    def obj(self) -> None:  # OBJ: class and args after MARK
        items = self.pop_mark()
        if not items:
            raise _BadPickleError("OBJ without a class")
        self.push(self.instance(items[0], tuple(items[1:])))

    def build(self) -> None:
        state, target = self.pop(), self.top()
        if isinstance(target, (_ArrayDesc, _DtypeDesc)) and target.state_free():
            target.set_state(state)
        elif isinstance(target, _ObjectDesc) and target.state is None:
            if isinstance(state, tuple) and len(state) == 2 and state[1] is None:
                state = state[0]  # (dict, slots) form
            if state is not None and not isinstance(state, dict):
                raise _BadPickleError(f"the state of {target.qualname} is not a dict")
            target.state = state
        else:
            raise _BadPickleError(
                f"BUILD on a {type(target).__name__.strip('_')}, which no model file does"
            )

    # ---------------------------------------------------------------- dispatch
    def _dispatch(self) -> dict[int, Any]:
        """Opcode byte -> handler: the allow-list (an opcode not in it is refused). The three
        groups: protocol and constants, containers, memo and objects."""
        table = {**self._constant_ops(), **self._container_ops(), **self._object_ops()}
        return {k[0]: v for k, v in table.items()}

    def _constant_ops(self) -> dict[bytes, Any]:
        """Framing, STOP and the opcodes that push one constant (numbers, strings, bytes)."""
        u, push = self.unpack, self.stack.append
        return {
            b"\x80": self.proto,
            b"\x95": self.frame,
            b".": lambda: _STOP,
            b"N": lambda: push(None),
            b"\x88": lambda: push(True),
            b"\x89": lambda: push(False),
            b"I": self.text_int,
            b"L": self.text_long,
            b"F": lambda: push(float(self.text_number())),
            b"J": lambda: push(u(_I32)),
            b"K": lambda: push(u(_U8)),
            b"M": lambda: push(u(_U16)),
            b"\x8a": lambda: self.long(u(_U8)),
            b"\x8b": lambda: self.long(u(_I32)),
            b"G": lambda: push(u(_F64)),
            b"S": self.text_string,
            b"T": lambda: self.py2_string(u(_I32)),
            b"U": lambda: self.py2_string(u(_U8)),
            b"V": lambda: push(self.line().decode("raw-unicode-escape")),
            b"X": lambda: self.unicode(u(_U32)),
            b"\x8c": lambda: self.unicode(u(_U8)),
            b"\x8d": lambda: self.unicode(u(_U64)),
            b"B": lambda: push(self.take(u(_U32))),
            b"C": lambda: push(self.take(u(_U8))),
            b"\x8e": lambda: push(self.take(u(_U64))),
            b"\x96": lambda: push(bytearray(self.take(u(_U64)))),
            b"\x98": lambda: None,  # READONLY_BUFFER: our buffers are never written to
        }

    def _container_ops(self) -> dict[bytes, Any]:
        """MARK, the stack opcodes and those that build tuples, lists, dicts and sets."""
        push = self.stack.append

        def mark():
            self.floor = len(self.stack)
            self.marks.append(self.floor)

        def tuple_n(n):
            return lambda: push(tuple(reversed([self.pop() for _ in range(n)])))

        def setitem():
            value, key = self.pop(), self.pop()
            self.set_items(self.top(), [key, value])

        def append():
            value = self.pop()
            self.append_items(self.top(), [value])

        def with_mark(fn):
            def run():
                items = self.pop_mark()
                fn(self.top(), items)

            return run

        def dict_from_mark():
            items = self.pop_mark()
            d: dict = {}
            self.set_items(d, items)
            push(d)

        return {
            b"(": mark,
            b"0": self.pop_opcode,
            b"1": self.pop_mark,
            b"2": lambda: push(self.top()),
            b")": lambda: push(()),
            b"t": lambda: push(tuple(self.pop_mark())),
            b"\x85": tuple_n(1),
            b"\x86": tuple_n(2),
            b"\x87": tuple_n(3),
            b"]": lambda: push([]),
            b"l": lambda: push(self.pop_mark()),
            b"a": append,
            b"e": with_mark(self.append_items),
            b"}": lambda: push({}),
            b"d": dict_from_mark,
            b"s": setitem,
            b"u": with_mark(self.set_items),
            b"\x8f": lambda: push(set()),
            b"\x90": with_mark(self.add_items),
            b"\x91": lambda: push(self.make_set(self.pop_mark(), True)),
        }

    def _object_ops(self) -> dict[bytes, Any]:
        """The memo (PUT/GET) and the opcodes that name a global or build an object from one:
        each goes through the allow-list of ``_lookup_global`` / ``instance``."""
        u = self.unpack
        return {
            b"p": lambda: self.put(int(self.text_number())),
            b"q": lambda: self.put(u(_U8)),
            b"r": lambda: self.put(u(_U32)),
            b"\x94": lambda: self.put(len(self.memo)),
            b"g": lambda: self.get(int(self.text_number())),
            b"h": lambda: self.get(u(_U8)),
            b"j": lambda: self.get(u(_U32)),
            b"c": self.global_,
            b"\x93": self.stack_global,
            b"R": self.reduce,
            b"\x81": self.newobj,
            b"\x92": self.newobj_ex,
            b"i": self.inst,
            b"o": self.obj,
            b"b": self.build,
        }


# the fixed-width operands of the opcodes (pickle's own formats: little-endian ints, big-endian
# float for BINFLOAT)
_I32, _U8, _U16, _U32, _U64, _F64 = (struct.Struct(f) for f in ("<i", "<B", "<H", "<I", "<Q", ">d"))
_STOP = object()


def _plain_dtype(desc: Any) -> np.dtype:
    """A numpy dtype built from our own string after checking the file's description."""
    if not isinstance(desc, _DtypeDesc):
        raise _BadPickleError(
            f"an array whose dtype is a {type(desc).__name__.strip('_')}, not a numpy dtype"
        )
    spec = desc.spec.decode("latin-1") if isinstance(desc.spec, bytes) else desc.spec
    found = re.fullmatch(r"([biuf])(\d{1,2})", spec) if isinstance(spec, str) else None
    if not found or int(found[2]) not in _PLAIN_DTYPES[found[1]]:
        raise _BadPickleError(
            f"dtype {str(spec)[:20]!r} is not a plain number type (bool, int, uint or "
            "float); object, string, structured, complex and datetime arrays are refused"
        )
    endian = "="
    state = desc.state
    if state is not None:
        if not isinstance(state, tuple) or len(state) not in (8, 9) or state[0] not in (3, 4):
            raise _BadPickleError(
                f"dtype {spec!r} has a state numpy does not write for plain numbers"
            )
        endian, subarray, names, fields, _elsize, _align, flags = state[1:8]
        endian = _text(endian)
        metadata = state[8] if len(state) == 9 else None
        if (
            subarray is not None
            or names is not None
            or fields is not None
            or metadata not in (None, {})
            or flags != 0
            or endian not in ("<", ">", "|", "=")
        ):
            raise _BadPickleError(
                f"dtype {spec!r} carries fields, sub-arrays or flags; only plain numbers are allowed"
            )
    return np.dtype(("=" if endian == "|" else endian) + found[1] + found[2])


def _text(value: Any) -> Any:
    """Python 2 strings (bytes here) as text; anything else unchanged."""
    return value.decode("latin-1") if isinstance(value, bytes) else value


def _shape_of(shape: Any) -> tuple[int, ...]:
    if (
        not isinstance(shape, tuple)
        or len(shape) > _MAX_NDIM
        or not all(isinstance(n, int) and not isinstance(n, bool) and 0 <= n < 2**40 for n in shape)
    ):
        raise _BadPickleError(f"an array shape that is not a tuple of sizes ({str(shape)[:40]})")
    return shape


def _raw_bytes(data: Any) -> bytes | bytearray:
    if isinstance(data, (bytes, bytearray)):
        return data
    if isinstance(data, str):  # a Python 2 str read with latin-1, as numpy itself accepts
        try:
            return data.encode("latin-1")
        except UnicodeEncodeError:
            raise _BadPickleError("array data given as text that is not latin-1") from None
    raise _BadPickleError(
        f"array data given as {type(data).__name__}, not bytes (object arrays are refused)"
    )


def _array_parts(desc: _ArrayDesc) -> tuple[Any, Any, bool, Any]:
    if desc.data is not None:
        return desc.dtype, desc.shape, desc.fortran, desc.data
    state = desc.state
    if not isinstance(state, tuple) or len(state) not in (4, 5):
        raise _BadPickleError("an ndarray without its (shape, dtype, order, data) state")
    if len(state) == 5:
        state = state[1:]
    shape, dtype, fortran, data = state
    if not isinstance(fortran, (bool, int)):
        raise _BadPickleError("an ndarray whose memory order is not a flag")
    return dtype, shape, bool(fortran), data


class _Builder:
    """Turns the machine's descriptions into plain Python values and numpy arrays.

    Each described object is built once (shared references stay cheap) and a reference
    cycle or nesting beyond ``MAX_DEPTH`` is refused instead of recursing without end.
    """

    def __init__(self, machine: _Machine):
        self.machine = machine
        self.done: dict[int, Any] = {}
        self.busy: set[int] = set()

    def value(self, v: Any, depth: int = 0) -> Any:
        if isinstance(v, bytes):
            return v.decode("latin-1") if isinstance(v, _Py2Str) else bytes(v)
        if v is None or isinstance(v, (str, int, float, bytearray)):
            return bytes(v) if isinstance(v, bytearray) else v
        key = id(v)
        if key in self.done:
            return self.done[key]
        if key in self.busy:
            raise _BadPickleError("a value that contains itself (a reference cycle)")
        if depth >= MAX_DEPTH:
            raise _BadPickleError(
                f"values nested more than {MAX_DEPTH} deep (no model file nests like that)"
            )
        self.busy.add(key)
        out = self.build(v, depth + 1)
        self.busy.discard(key)
        self.done[key] = out
        return out

    def build(self, v: Any, depth: int) -> Any:
        if isinstance(v, list):
            return [self.value(x, depth) for x in v]
        if isinstance(v, tuple):
            return tuple(self.value(x, depth) for x in v)
        if isinstance(v, dict):
            return {_text(k): self.value(x, depth) for k, x in v.items()}
        if isinstance(v, (set, frozenset)):
            return type(v)(_text(x) for x in v)
        if isinstance(v, _ArrayDesc):
            return self.array(v)
        if isinstance(v, _ScalarDesc):
            return self.scalar(v)
        if isinstance(v, _DtypeDesc):
            return _plain_dtype(v)
        if isinstance(v, _ObjectDesc):
            if v.kind == "chumpy":
                return self.chumpy(v, depth)
            return self.sparse(v, depth)
        if isinstance(v, _Global):
            raise _BadPickleError(f"a bare reference to {v.qualname} where a value belongs")
        raise _BadPickleError(f"a {type(v).__name__} where a value belongs")  # pragma: no cover

    def array(self, desc: _ArrayDesc) -> np.ndarray:
        dtype_desc, shape, fortran, data = _array_parts(desc)
        dtype, shape, raw = _plain_dtype(dtype_desc), _shape_of(shape), _raw_bytes(data)
        count = 1
        for n in shape:
            count *= n
        if count * dtype.itemsize != len(raw):
            raise _BadPickleError(
                f"an array of shape {shape} ({dtype}) needs {count * dtype.itemsize} bytes "
                f"but the file gives {len(raw)}"
            )
        self.machine.charge(len(raw))
        if count == 0:
            return np.zeros(shape, dtype.newbyteorder("="))
        flat = np.frombuffer(raw, dtype=dtype, count=count)
        return flat.reshape(shape, order="F" if fortran else "C").astype(dtype.newbyteorder("="))

    def scalar(self, desc: _ScalarDesc) -> Any:
        dtype, raw = _plain_dtype(desc.dtype), _raw_bytes(desc.data)
        if len(raw) != dtype.itemsize:
            raise _BadPickleError(f"a {dtype} scalar given {len(raw)} bytes")
        return np.frombuffer(raw, dtype=dtype, count=1).astype(dtype.newbyteorder("="))[0]

    def chumpy(self, desc: _ObjectDesc, depth: int) -> Any:
        state = desc.state
        if not isinstance(state, dict) or "x" not in state:
            raise _BadPickleError(
                f"a chumpy {desc.qualname} that is an expression, not a plain array; "
                "re-save the model as .npz (numpy arrays)"
            )
        value = self.value(state["x"], depth)
        if not isinstance(value, np.ndarray):
            raise _BadPickleError(
                f"a chumpy {desc.qualname} whose 'x' is a {type(value).__name__}, not an array"
            )
        return value

    def sparse(self, desc: _ObjectDesc, depth: int) -> np.ndarray:
        """A scipy CSC/CSR matrix's parts, checked, densified by our own bounded code."""
        state = desc.state if isinstance(desc.state, dict) else {}
        what = desc.qualname
        shape = state.get("_shape", state.get("shape"))
        missing = [k for k in ("data", "indices", "indptr") if k not in state] + (
            [] if shape else ["shape"]
        )
        if missing:
            raise _BadPickleError(f"a {what} without its {', '.join(missing)}")
        data, indices, indptr = (self.value(state[k], depth) for k in ("data", "indices", "indptr"))
        shape = self.value(shape, depth)
        for name, arr, kinds in (
            ("data", data, "biuf"),
            ("indices", indices, "iu"),
            ("indptr", indptr, "iu"),
        ):
            if not isinstance(arr, np.ndarray) or arr.ndim != 1 or arr.dtype.kind not in kinds:
                raise _BadPickleError(
                    f"a {what} whose {name} is not a 1-D {'integer ' if kinds == 'iu' else ''}array"
                )
        if not (
            isinstance(shape, tuple)
            and len(shape) == 2
            and all(isinstance(n, (int, np.integer)) and 0 <= n < 2**31 for n in shape)
        ):
            raise _BadPickleError(f"a {what} whose shape {str(shape)[:40]} is not two sizes")
        rows, cols = int(shape[0]), int(shape[1])
        if rows * cols > MAX_DENSE_ELEMENTS:
            raise _BadPickleError(f"a {rows} x {cols} {what}, larger than any model's regressor")
        major, minor = (cols, rows) if desc.kind == "csc" else (rows, cols)
        ptr = indptr.astype(np.int64)  # wrapped uint64 values turn negative and fail below
        if len(ptr) != major + 1 or ptr[0] != 0 or np.any(np.diff(ptr) < 0):
            raise _BadPickleError(f"a {what} whose indptr is not {major + 1} rising offsets from 0")
        nnz = int(ptr[-1])
        if nnz > len(indices) or len(indices) != len(data):
            raise _BadPickleError(
                f"a {what} with {len(data)} values, {len(indices)} indices and {nnz} entries"
            )
        idx = indices[:nnz].astype(np.int64)
        if nnz and (idx.min() < 0 or idx.max() >= minor):
            raise _BadPickleError(f"a {what} with indices outside 0..{minor - 1}")
        self.machine.charge(rows * cols * 8)
        dense = np.zeros((rows, cols), np.float64)
        lines = np.repeat(np.arange(major, dtype=np.int64), np.diff(ptr))
        where = (idx, lines) if desc.kind == "csc" else (lines, idx)
        np.add.at(dense, where, data[:nnz].astype(np.float64))  # duplicates add up, as in scipy
        return dense


def load_smpl_pickle(data: bytes, keys: Iterable[str] | None = None) -> dict[str, Any]:
    """Unpickle SMPL model bytes into a dict of plain numpy arrays (and strings).

    ``keys`` limits the values built to those named (the others are never materialised).
    """
    machine = _Machine(bytes(data))
    try:
        top = machine.run()
        if not isinstance(top, dict):
            raise ModelFileError(
                f"The pickle holds a {type(top).__name__.strip('_')}, not the dict of arrays a SMPL "
                "model file holds."
            )
        builder = _Builder(machine)
        wanted = None if keys is None else set(keys)
        out: dict[str, Any] = {}
        for key, value in top.items():
            name = str(_text(key))
            if wanted is None or name in wanted:
                try:
                    out[name] = builder.value(value, 1)
                except _BadPickleError as exc:
                    raise _BadPickleError(f"'{name}': {exc}") from None
        return out
    except ModelFileError:
        raise
    except _BadPickleError as exc:
        raise ModelFileError(
            f"The pickle is not a well-formed SMPL model: {exc}. Nothing from it was executed. "
            "Download the model again or use an .npz export."
        ) from None
    except (
        ValueError,
        TypeError,
        KeyError,
        IndexError,
        OverflowError,
        struct.error,
        UnicodeError,
        RecursionError,
        MemoryError,
    ) as exc:
        raise ModelFileError(
            f"Could not read the pickle ({type(exc).__name__}: {str(exc)[:200]}); the file is damaged "
            "or not a SMPL model. Download the model again or use an .npz export."
        ) from None
