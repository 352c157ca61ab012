# The compiled decoder's API (built from _fastpath/forward_token.pyx): the same as its twin, _forward_token_py.
from .forward_token_fields import ForwardToken

def decode_forward_token(token: str) -> ForwardToken: ...
