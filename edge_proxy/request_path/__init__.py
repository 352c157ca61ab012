"""The request path: one story for every proxied request, whichever route it came in on.

| module | what |
|---|---|
| `pipeline.py` | the story, top to bottom: read, plan, admit, reserve, forward, relay, settle and log |
| `plan.py` | a request's plan: one pass-through attempt (forward routes) or up to six translated ones (unified) |
| `relay.py` | the answer, whole or streamed, translated or not; the disconnect watcher |
| `ownership.py` | on the managed key, a request may name only stored objects its merchant owns (its responses) |
| `exchange.py` | one attempt from its start to its log record (usage, timing, the estimate rule) |
| `replies.py` | the gateway's own error bodies, in the shape of the route's format |
| `body.py` | reading a request body within its limit |
"""
