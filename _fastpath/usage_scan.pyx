# cython: language_level=3, boundscheck=False, wraparound=False
"""Compiled twin of edge_proxy.metering.usage_scan_py (built as edge_proxy.metering._usage_scan_c).

The pure-Python twin is the specification; read its docstring for the rules. This module does the
per-chunk work in C: newline search (memchr / a reverse scan), then one pass over the quotes of each
data: line for the content keys, "delta" and the exact "usage object" test (where the twin runs a
search per key), so a chunk without usage costs a few C scans and no Python-level slicing. The
quotes of a line that a key of interest could follow are found 16 bytes at a time (SSE2 compares for
the quote and the letter after it, one bit mask; a plain byte loop where SSE2 is missing) rather than
by one memchr call per quote: an OpenAI chunk has ~40 quotes in ~260 bytes, ~9 of them before such a
letter. The JSON decode step is shared: candidate
lines go to the same accumulators (msgspec view Structs in usage_types), so both twins return
identical results.
"""
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.string cimport memchr, memcmp, memcpy, memset

cdef extern from *:
    """
    /* Bit i set: p[i] is a double quote and p[i + 1] one of the five letters a key of interest can begin with
       (17 bytes are read from p). */
    #if defined(__SSE2__)
    #include <emmintrin.h>
    static inline unsigned ep_key_mask16(const char *p, char l0, char l1, char l2, char l3, char l4) {
        __m128i q = _mm_cmpeq_epi8(_mm_loadu_si128((const __m128i *)p), _mm_set1_epi8('"'));
        __m128i n = _mm_loadu_si128((const __m128i *)(p + 1));
        __m128i l = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(n, _mm_set1_epi8(l0)), _mm_cmpeq_epi8(n, _mm_set1_epi8(l1))),
                                 _mm_or_si128(_mm_cmpeq_epi8(n, _mm_set1_epi8(l2)), _mm_cmpeq_epi8(n, _mm_set1_epi8(l3))));
        l = _mm_or_si128(l, _mm_cmpeq_epi8(n, _mm_set1_epi8(l4)));
        return (unsigned)_mm_movemask_epi8(_mm_and_si128(q, l));
    }
    #else
    static inline unsigned ep_key_mask16(const char *p, char l0, char l1, char l2, char l3, char l4) {
        unsigned m = 0;
        for (int i = 0; i < 16; i++) {
            char c = p[i + 1];
            m |= (unsigned)(p[i] == '"' && (c == l0 || c == l1 || c == l2 || c == l3 || c == l4)) << i;
        }
        return m;
    }
    #endif
    #if defined(__GNUC__) || defined(__clang__)
    #define ep_ctz(m) ((unsigned)__builtin_ctz(m))
    #else
    static inline unsigned ep_ctz(unsigned m) { unsigned i = 0; while (!(m & 1u)) { m >>= 1; i++; } return i; }
    #endif
    """
    unsigned ep_key_mask16(const char *p, char l0, char l1, char l2, char l3, char l4) noexcept nogil
    unsigned ep_ctz(unsigned m) noexcept nogil

from edge_proxy.metering.usage_types import (MAX_BODY, MAX_LINE, Usage, body_content_events, body_is_error, body_usage,
                                            new_accumulator)

__all__ = ["StreamScanner", "Usage", "usage_from_body"]

cdef enum:  # framing of the stream, decided by its first non-blank byte
    UNDECIDED = 0
    SSE = 1
    BODY = 2
    IGNORE = 3

cdef enum:  # which content test a format's lines get (the twin's _CONTENT)
    NO_CONTENT = 0
    OPENAI = 1
    ANTHROPIC = 2
    GEMINI = 3

cdef Py_ssize_t _MAX_LINE = MAX_LINE
cdef Py_ssize_t _MAX_BODY = MAX_BODY


def usage_from_body(fmt, body):
    """Usage from a whole non-streamed JSON body: one msgspec decode, shared with the twin."""
    return body_usage(fmt, body)


cdef inline bint _is_ws(char c) noexcept nogil:
    return c == b' ' or c == b'\t' or c == b'\r' or c == b'\n'


cdef Py_ssize_t _rfind_nl(const char *p, Py_ssize_t start, Py_ssize_t end) noexcept nogil:
    # Reverse scan: a chunk almost always ends on (or near) a newline, so this stops at once.
    cdef Py_ssize_t i = end - 1
    while i >= start:
        if p[i] == b'\n':
            return i
        i -= 1
    return -1


cdef const char *_value_of(const char *q, const char *end) noexcept nogil:
    """Past a key's closing quote at q: the first byte of its value (after ws ':' ws), or NULL if no ':'."""
    while q < end and _is_ws(q[0]):
        q += 1
    if q >= end or q[0] != b':':
        return NULL
    q += 1
    while q < end and _is_ws(q[0]):
        q += 1
    return q


cdef inline bint _key(const char *r, const char *end, const char *key, Py_ssize_t klen) noexcept nogil:
    """True when the bytes at r are `key` (its closing quote included)."""
    return end - r >= klen and memcmp(r, key, klen) == 0


cdef inline bint _string_after(const char *q, const char *end) noexcept nogil:
    """Past a key's closing quote at q: ws ':' ws '"' and a byte that is not '"' (a non-empty string value)."""
    q = _value_of(q, end)
    return q != NULL and q + 1 < end and q[0] == b'"' and q[1] != b'"'


cdef enum:  # what one pass over a data: line found (_scan_data)
    CONTENT = 1  # a content key of the format with a non-empty string value ("functionCall" for Gemini)
    DELTA = 2  # a "delta" key (OpenAI content counts only on such a line)
    USAGE = 4  # a "usage" or "usageMetadata" key whose value is an object


cdef int _scan_data(int kind, const char *p, Py_ssize_t n) noexcept nogil:
    """The twin's _is_content and _wanted for the data: line p[:n], in one pass over its quotes.

    The twin searches for each key on its own; every place one of its searches can match starts with a '"', so
    looking at what follows each '"' of the line, once, finds exactly what they find. Only the quotes followed by
    a letter some key of the format begins with are looked at: a bit mask per 16 bytes gives them (the line's last
    bytes are copied into a zeroed block first, so nothing past the line is read, and a quote that ends the line
    is followed by none)."""
    cdef const char *end = p + n
    cdef const char *block = p + 5
    cdef const char *r
    cdef char last[24]
    cdef unsigned mask
    cdef int found = 0
    cdef char c
    # the letters the keys of this format begin with ("usage"/"usageMetadata" for every format), repeated to 5
    cdef char l1 = b'u', l2 = b'u', l3 = b'u', l4 = b'u'
    if kind == OPENAI:
        l1, l2, l3, l4 = b'd', b'c', b'a', b'r'
    elif kind == ANTHROPIC:
        l1, l2 = b't', b'p'
    elif kind == GEMINI:
        l1, l2 = b't', b'f'
    while block < end:
        if end - block > 16:
            mask = ep_key_mask16(block, b'u', l1, l2, l3, l4)
        else:
            memset(last, 0, 24)
            memcpy(last, block, end - block)
            mask = ep_key_mask16(last, b'u', l1, l2, l3, l4)
        while mask:
            r = block + ep_ctz(mask) + 1  # the byte after this quote: inside the line
            mask &= mask - 1
            c = r[0]
            if c == b'u':
                if _key(r, end, b'usage', 5):
                    r += 5
                    if _key(r, end, b'Metadata', 8):
                        r += 8
                    if r < end and r[0] == b'"':
                        r = _value_of(r + 1, end)
                        if r != NULL and r < end and r[0] == b'{':
                            found |= USAGE
            elif kind == OPENAI:
                if c == b'd':
                    if _key(r, end, b'delta"', 6):
                        found |= DELTA
                        if _string_after(r + 6, end):
                            found |= CONTENT
                elif c == b'c':
                    if _key(r, end, b'content"', 8) and _string_after(r + 8, end):
                        found |= CONTENT
                elif c == b'a':
                    if _key(r, end, b'arguments"', 10) and _string_after(r + 10, end):
                        found |= CONTENT
                elif c == b'r':
                    if ((_key(r, end, b'refusal"', 8) and _string_after(r + 8, end))
                            or (_key(r, end, b'reasoning"', 10) and _string_after(r + 10, end))
                            or (_key(r, end, b'reasoning_content"', 18) and _string_after(r + 18, end))):
                        found |= CONTENT
            elif kind == ANTHROPIC:
                if ((c == b't' and ((_key(r, end, b'text"', 5) and _string_after(r + 5, end))
                                    or (_key(r, end, b'thinking"', 9) and _string_after(r + 9, end))))
                        or (c == b'p' and _key(r, end, b'partial_json"', 13) and _string_after(r + 13, end))):
                    found |= CONTENT
            elif kind == GEMINI:
                if ((c == b't' and _key(r, end, b'text"', 5) and _string_after(r + 5, end))
                        or (c == b'f' and _key(r, end, b'functionCall"', 13))):
                    found |= CONTENT
        block += 16
    if kind == OPENAI and not found & DELTA:
        found &= ~CONTENT
    return found


cdef inline bint _is_data(const char *p, Py_ssize_t n) noexcept nogil:
    return n >= 5 and memcmp(p, b"data:", 5) == 0


cdef inline const char *_skip_ws(const char *q, const char *end) noexcept nogil:
    while q < end and (q[0] == b' ' or q[0] == b'\t'):
        q += 1
    return q


cdef bint _is_error(const char *p, Py_ssize_t n) noexcept nogil:
    """The twin's _is_error: `event: error`, or a data: line whose object starts with "error" or "type": "error"."""
    cdef const char *end = p + n
    cdef const char *q
    if n >= 6 and memcmp(p, b"event:", 6) == 0:
        q = _skip_ws(p + 6, end)
        if end - q < 5 or memcmp(q, b"error", 5) != 0:
            return False
        q += 5
        while q < end and (q[0] == b' ' or q[0] == b'\t' or q[0] == b'\r'):
            q += 1
        return q == end
    if n < 5 or memcmp(p, b"data:", 5) != 0:
        return False
    q = _skip_ws(p + 5, end)
    if q >= end or q[0] != b'{':
        return False
    q += 1
    while q < end and _is_ws(q[0]):
        q += 1
    if end - q >= 7 and memcmp(q, b'"error"', 7) == 0:
        return True
    if end - q < 6 or memcmp(q, b'"type"', 6) != 0:
        return False
    q = _skip_ws(q + 6, end)
    if q >= end or q[0] != b':':
        return False
    q = _skip_ws(q + 1, end)
    return end - q >= 7 and memcmp(q, b'"error"', 7) == 0


cdef class StreamScanner:
    """Reads provider usage from a response stream as it passes, without holding it."""

    cdef object _acc
    cdef object _fmt
    cdef int _kind
    cdef Py_ssize_t _events  # content events in complete lines
    cdef bint _error  # an in-band error event went by
    cdef int _mode
    cdef list _tail  # pieces of the unfinished current line
    cdef Py_ssize_t _tail_len
    cdef bint _skip  # the current line overflowed MAX_LINE: drop it up to its newline
    cdef list _body
    cdef Py_ssize_t _body_len

    def __init__(self, fmt):
        self._acc = new_accumulator(fmt)  # ValueError for an unknown format
        self._fmt = fmt
        self._kind = {"openai": OPENAI, "anthropic": ANTHROPIC, "gemini": GEMINI}.get(fmt, NO_CONTENT)
        self._events = 0
        self._error = False
        self._mode = IGNORE if fmt == "none" else UNDECIDED
        self._tail = []
        self._tail_len = 0
        self._skip = False
        self._body = []
        self._body_len = 0

    def feed(self, chunk):
        """Take the next chunk of the response (any split: mid-line, mid-UTF-8)."""
        cdef bytes data = chunk if type(chunk) is bytes else bytes(chunk)
        cdef const char *p
        cdef Py_ssize_t i, n
        if self._mode == SSE:
            self._feed_sse(data)
            return
        if self._mode == UNDECIDED:
            p = PyBytes_AS_STRING(data)
            n = PyBytes_GET_SIZE(data)
            i = 0
            while i < n and _is_ws(p[i]):
                i += 1
            if i == n:
                return  # blank so far: nothing to keep either way
            if p[i] == b'{' or p[i] == b'[':
                self._mode = BODY
            else:
                self._mode = SSE
                self._feed_sse(data)
                return
        if self._mode == BODY:
            self._body_len += PyBytes_GET_SIZE(data)
            if self._body_len > _MAX_BODY:
                self._mode = IGNORE  # too big to buffer: give up rather than grow
                self._body = []
            else:
                self._body.append(data)

    cdef int _feed_sse(self, bytes data) except -1:
        cdef const char *p = PyBytes_AS_STRING(data)
        cdef Py_ssize_t n = PyBytes_GET_SIZE(data)
        cdef Py_ssize_t last = _rfind_nl(p, 0, n)
        cdef Py_ssize_t start = 0, first, le
        cdef bytes line
        if last < 0:  # still inside one line
            if not self._skip:
                self._keep(data)
            return 0
        if self._tail_len or self._skip:  # finish the line left open by earlier chunks
            first = <const char *>memchr(p, b'\n', n) - p
            if not self._skip:
                self._tail.append(PyBytes_FromStringAndSize(p, first))
                line = b"".join(self._tail)
                self._line(PyBytes_AS_STRING(line), PyBytes_GET_SIZE(line))
            self._tail = []
            self._tail_len = 0
            self._skip = False
            start = first + 1
        # Complete lines in p[start:last], each looked at once (memchr is vectorised).
        while start <= last:
            le = <const char *>memchr(p + start, b'\n', last + 1 - start) - p
            self._line(p + start, le - start)
            start = le + 1
        if last + 1 < n:
            self._keep(PyBytes_FromStringAndSize(p + last + 1, n - last - 1))
        return 0

    cdef int _line(self, const char *p, Py_ssize_t n) except -1:
        cdef int found
        if not self._error and _is_error(p, n):
            self._error = True
        if _is_data(p, n):
            found = _scan_data(self._kind, p, n)
            if found & CONTENT:
                self._events += 1
            if found & USAGE:
                self._acc.feed(PyBytes_FromStringAndSize(p + 5, n - 5))
        return 0

    cdef int _keep(self, bytes piece) except -1:
        self._tail_len += PyBytes_GET_SIZE(piece)
        if self._tail_len > _MAX_LINE:
            self._tail = []
            self._tail_len = 0
            self._skip = True
        else:
            self._tail.append(piece)
        return 0

    def result(self):
        """The usage seen so far; may be called repeatedly and before the stream ends."""
        cdef bytes line, body
        cdef const char *p
        cdef Py_ssize_t n
        cdef int found
        cdef Py_ssize_t events = self._events
        cdef bint error = self._error
        acc = self._acc
        if self._mode == BODY:
            acc = acc.copy()
            body = b"".join(self._body)
            acc.feed_body(body)
            events = body_content_events(self._fmt, body)
            error = body_is_error(body)
        elif self._tail_len and not self._skip:
            line = b"".join(self._tail)  # a final line that lost its newline
            p = PyBytes_AS_STRING(line)
            n = PyBytes_GET_SIZE(line)
            found = _scan_data(self._kind, p, n) if _is_data(p, n) else 0
            if found & USAGE:
                acc = acc.copy()
                acc.feed(line[5:])
            events += (found & CONTENT) != 0
            error = error or _is_error(p, n)
        usage = acc.usage()
        usage.content_events = events
        usage.error_event = error
        return usage
