"""Child-side functions that misbehave on purpose (tests of crash isolation)."""


def segfault(**kwargs):
    import ctypes
    ctypes.string_at(0)
