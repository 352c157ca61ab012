# cython: language_level=3, boundscheck=False, wraparound=False
"""Compiled forward-token decoder. Its specification is edge_proxy/_forward_token_py.py.

One pass over the token does whitespace removal, both base64 alphabets and the padding rules, into a
stack buffer; the JSON step is shared with the twin (msgspec, already compiled).
"""
from cpython.bytes cimport PyBytes_FromStringAndSize
from libc.stdint cimport uint32_t

from edge_proxy.errors import InvalidToken
from edge_proxy.forward_token_fields import MAX_TOKEN_CHARS, fields_from_json

cdef enum:
    BUF = 6200  # MAX_TOKEN_CHARS * 3 / 4, rounded up

cdef signed char _LUT[256]
cdef int _i
for _i in range(256):
    _LUT[_i] = -1
for _i, _ch in enumerate("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"):
    _LUT[ord(_ch)] = _i
_LUT[ord("-")] = 62
_LUT[ord("_")] = 63
for _ch in " \t\n\r\x0b\x0c":
    _LUT[ord(_ch)] = -2          # whitespace: skipped
_LUT[ord("=")] = -3        # padding: only at the end


def decode_forward_token(str token):
    cdef Py_ssize_t n = len(token)
    if n > MAX_TOKEN_CHARS or not token.isascii():
        raise InvalidToken()
    cdef bytes raw = token.encode("ascii")
    cdef const unsigned char* src = raw
    cdef unsigned char out[BUF]
    cdef Py_ssize_t i, o = 0, chars = 0, pads = 0
    cdef uint32_t acc = 0
    cdef signed char v
    for i in range(n):
        v = _LUT[src[i]]
        if v >= 0:
            if pads:
                raise InvalidToken()
            acc = (acc << 6) | <uint32_t>v
            chars += 1
            if (chars & 3) == 0:
                out[o] = (acc >> 16) & 0xFF
                out[o + 1] = (acc >> 8) & 0xFF
                out[o + 2] = acc & 0xFF
                o += 3
                acc = 0
        elif v == -3:
            pads += 1
        elif v != -2:
            raise InvalidToken()
    if pads > 2:
        raise InvalidToken()
    cdef Py_ssize_t rest = chars & 3
    if rest == 1:
        raise InvalidToken()
    elif rest == 2:
        out[o] = (acc >> 4) & 0xFF
        o += 1
    elif rest == 3:
        out[o] = (acc >> 10) & 0xFF
        out[o + 1] = (acc >> 2) & 0xFF
        o += 2
    return fields_from_json(PyBytes_FromStringAndSize(<char*>out, o))
