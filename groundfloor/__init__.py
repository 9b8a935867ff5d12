"""The ground floor: shared machinery under every other package, importing nothing of the project.

Errors, child-process isolation, atomic file I/O and JSON documents, tool versions, TFLite
flatbuffer access, I/O quantization, the TFLite Micro driver, result caches, the reference
metrics, the bench/manifest contracts, model-file verification and the on-device runtime."""
__version__ = "0.1.0"
