# cython: language_level=3
"""The cost of one call at one model's price, compiled: the twin of edge_proxy/metering/model_price.py's `cost_of`
(the specification; its module docstring has the rules).

The same steps in the same order. A product of a token count and a rate can pass 64 bits, so they run on 64-bit C
integers only when every count is within 2**60 and no product or sum overflows (checked by the compiler's
overflow builtins: every real call), else on Python integers; both give the same integers. Built as
edge_proxy.metering._cost_c; edge_proxy/metering/pricing.py picks it.
"""
cimport cython
from cpython.long cimport PyLong_AsLongLongAndOverflow, PyLong_FromLongLong

from edge_proxy.metering.model_price import Cost

__all__ = ["cost_of"]

cdef object _PICO_PER_NANO_MILLION = 10**9  # pico-dollars per 1M tokens -> nano-dollars per token
cdef long long _DIV = 1_000_000_000

cdef extern from *:
    # GCC/Clang: the exact product or sum, and whether it overflowed 64 bits
    bint _mul_ovf "__builtin_mul_overflow" (long long a, long long b, long long *res) noexcept nogil
    bint _add_ovf "__builtin_add_overflow" (long long a, long long b, long long *res) noexcept nogil


cdef inline bint _ll(object v, long long *out) noexcept:
    """A Python int that fits 64 bits, as a C one; False for anything else (the object path takes it)."""
    cdef int overflow = 0
    if type(v) is not int:
        return False
    out[0] = PyLong_AsLongLongAndOverflow(v, &overflow)
    return overflow == 0


cdef inline bint _dot(long long *n, long long *c, int k, long long *out) noexcept nogil:
    """sum(n[i] * c[i]) into out; False if a product or a partial sum overflowed 64 bits."""
    cdef long long acc = 0, term
    cdef int i
    for i in range(k):
        if _mul_ovf(n[i], c[i], &term) or _add_ovf(acc, term, &acc):
            return False
    out[0] = acc
    return True


@cython.cdivision(True)  # C's division truncates: corrected to Python's floor below
cdef inline long long _round_half_even_ll(long long n) noexcept nogil:
    """n / 10**9 rounded half to even, with Python's floor division for a negative n (as the object path)."""
    cdef long long q = n // _DIV, r = n % _DIV
    if r < 0:
        r += _DIV
        q -= 1
    if 2 * r > _DIV or (2 * r == _DIV and (q & 1)):
        q += 1
    return q


cdef object _round_half_even(object numerator, object denominator):
    q, r = divmod(numerator, denominator)
    if 2 * r > denominator or (2 * r == denominator and q % 2):
        q += 1
    return q


cdef inline long long _at_least(long long v, long long floor) noexcept nogil:
    return v if v > floor else floor


cdef object _cost_ll(object bands, long long *raw):
    """The object path below in 64-bit C integers, from the raw counts (w1h, write, ca, cached, audio, inp,
    reasoning, out_audio, out), each within +-2**60 so no clamp or floor sum can overflow; None when a
    coefficient does not fit 64 bits or a product or sum would overflow (the object path then takes it)."""
    cdef long long n[9]
    cdef long long k[9]
    cdef long long w1h, write, ca, cached, audio, inp, reasoning, out_audio, out, above, in_sum, out_sum, i_n, o_n
    cdef Py_ssize_t i
    w1h = _at_least(raw[0], 0)
    write = _at_least(raw[1], w1h)
    ca = _at_least(raw[2], 0)
    cached = _at_least(raw[3], ca)
    audio = _at_least(raw[4], ca)
    inp = _at_least(raw[5], cached + write + audio - ca)
    reasoning = _at_least(raw[6], 0)
    out_audio = _at_least(raw[7], 0)
    out = _at_least(raw[8], reasoning + out_audio)
    c = bands[0][1]
    if len(bands) > 1:
        for band in reversed(bands):
            if not _ll(band[0], &above):
                return None
            if inp > above:
                c = band[1]
                break
    if len(c) != 9:
        return None
    for i in range(9):
        if not _ll(c[i], &k[i]):
            return None
    n[0], n[1], n[2], n[3], n[4], n[5], n[6], n[7], n[8] = inp, cached, ca, write, w1h, audio, out, reasoning, out_audio
    if not (_dot(n, k, 6, &in_sum) and _dot(n + 6, k + 6, 3, &out_sum)):
        return None
    i_n, o_n = _round_half_even_ll(in_sum), _round_half_even_ll(out_sum)
    return Cost(PyLong_FromLongLong(i_n + o_n), PyLong_FromLongLong(i_n), PyLong_FromLongLong(o_n), True)


cdef long long _BOUND = 1LL << 60


cdef inline bint _small(object v, long long *out) noexcept:
    return _ll(v, out) and -_BOUND < out[0] < _BOUND


def cost_of(price, usage):
    """The cost of ``usage`` at ``price``: exact integer arithmetic, rounded half to even (see the twin)."""
    cdef object w1h, write, ca, cached, audio, inp, floor, reasoning, out_audio, out, bands, c, above, coef
    cdef object input_nanos, output_nanos, fast
    cdef long long raw[9]
    w1h, write, ca = usage.cache_write_1h_tokens, usage.cache_write_tokens, usage.cached_audio_tokens
    cached, audio, inp = usage.cached_tokens, usage.input_audio_tokens, usage.input_tokens
    reasoning, out_audio, out = usage.reasoning_tokens, usage.output_audio_tokens, usage.output_tokens
    bands = price.bands
    # Every real call: counts that fit 64-bit C integers with room, so the same steps run on C integers (the same
    # integers, so the same result). Anything else (a count past 2**60, a float, a product past 64 bits) takes
    # Python's integers below, which never overflow.
    if (_small(w1h, &raw[0]) and _small(write, &raw[1]) and _small(ca, &raw[2]) and _small(cached, &raw[3])
            and _small(audio, &raw[4]) and _small(inp, &raw[5]) and _small(reasoning, &raw[6])
            and _small(out_audio, &raw[7]) and _small(out, &raw[8])):
        fast = _cost_ll(bands, raw)
        if fast is not None:
            return fast
    w1h = w1h if w1h > 0 else 0
    write = write if write > w1h else w1h
    ca = ca if ca > 0 else 0
    cached = cached if cached > ca else ca
    audio = audio if audio > ca else ca
    floor = cached + write + audio - ca
    inp = inp if inp > floor else floor
    reasoning = reasoning if reasoning > 0 else 0
    out_audio = out_audio if out_audio > 0 else 0
    floor = reasoning + out_audio
    out = out if out > floor else floor
    c = bands[0][1]
    if len(bands) > 1:
        for above, coef in reversed(bands):
            if inp > above:
                c = coef
                break
    input_nanos = _round_half_even(inp * c[0] + cached * c[1] + ca * c[2] + write * c[3] + w1h * c[4]
                                   + audio * c[5], _PICO_PER_NANO_MILLION)
    output_nanos = _round_half_even(out * c[6] + reasoning * c[7] + out_audio * c[8], _PICO_PER_NANO_MILLION)
    return Cost(input_nanos + output_nanos, input_nanos, output_nanos, True)
