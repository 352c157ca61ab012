# cython: language_level=3
"""The cost of one call at one model's price, compiled: the twin of edge_proxy/metering/model_price.py's `cost_of`
(the specification; its module docstring has the rules).

The same steps in the same order, on Python integers (a product of a token count and a rate can pass 64 bits, so no
C integer is used); what compiling saves is the interpreter's work between them. Built as
edge_proxy.metering._cost_c; edge_proxy/metering/pricing.py picks it.
"""
from edge_proxy.metering.model_price import Cost

__all__ = ["cost_of"]

cdef object _PICO_PER_NANO_MILLION = 10**9  # pico-dollars per 1M tokens -> nano-dollars per token


cdef object _round_half_even(object numerator, object denominator):
    q, r = divmod(numerator, denominator)
    if 2 * r > denominator or (2 * r == denominator and q % 2):
        q += 1
    return q


def cost_of(price, usage):
    """The cost of ``usage`` at ``price``: exact integer arithmetic, rounded half to even (see the twin)."""
    cdef object w1h, write, ca, cached, audio, inp, floor, reasoning, out_audio, out, bands, c, above, coef
    cdef object input_nanos, output_nanos
    w1h = usage.cache_write_1h_tokens
    w1h = w1h if w1h > 0 else 0
    write = usage.cache_write_tokens
    write = write if write > w1h else w1h
    ca = usage.cached_audio_tokens
    ca = ca if ca > 0 else 0
    cached = usage.cached_tokens
    cached = cached if cached > ca else ca
    audio = usage.input_audio_tokens
    audio = audio if audio > ca else ca
    inp = usage.input_tokens
    floor = cached + write + audio - ca
    inp = inp if inp > floor else floor
    reasoning = usage.reasoning_tokens
    reasoning = reasoning if reasoning > 0 else 0
    out_audio = usage.output_audio_tokens
    out_audio = out_audio if out_audio > 0 else 0
    out = usage.output_tokens
    floor = reasoning + out_audio
    out = out if out > floor else floor
    bands = price.bands
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
