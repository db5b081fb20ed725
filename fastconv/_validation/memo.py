"""Memo: a bounded cache of what a pure function of a call's signature gave, for the public ops'
validated calls (fastconv._dispatch.signature) and the CPU backend's plans."""


class Memo(dict):
    """key -> value, at most `size` keys: past that the oldest goes. `get(None)` is None, and
    `remember(None, value)` keeps nothing (None: a call not to remember)."""

    def __init__(self, size=1024):
        super().__init__()
        self.size = size

    def remember(self, key, value):
        if key is None:
            return
        if len(self) >= self.size:
            try:
                del self[next(iter(self))]
            except (KeyError, RuntimeError, StopIteration):  # another thread changed it meanwhile
                pass
        self[key] = value
