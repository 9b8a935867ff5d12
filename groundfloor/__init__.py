"""Shared machinery under every other package, importing nothing of the project: errors,
child-process isolation, atomic file I/O, tool versions, TFLite flatbuffer access, I/O
quantization, the TFLite Micro driver, result caches and the on-device runtime."""
__version__ = "0.1.0"
