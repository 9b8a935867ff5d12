"""The per-layer int8 drift debugger for TFLite LSTMs, beside the integer reference it analyses.

    from firmware_sim.mcu.debug import debug, format_report
    report = debug("source_tfkeras.h5", "model_int8.tflite", x_eval, y_eval=y_eval)
    print(report["text"])

Modules:
  debugger     debug(): every view on the same windows, assembled into one report
  floatmodel   the Keras model as a chain; its float emulation with switchable quantization points
  runtimes     LiteRT and TFLite Micro on the int8 file, and their drift figures
  agreement    the integer reference on the windows, code for code against the runtimes
  tensors      the per-layer tensor table (int8 value vs float, per gate, cell, hidden, weights)
  attribution  the output drift with one point on alone, and with all points but one
  clipping     inputs, outputs and targets outside the int8 range of the graph's I/O
  figures      the error figures, from groundfloor.metrics.error_metrics
  text         the verdict and the readable report (format_report)
"""
from .debugger import debug, read_graph
from .floatmodel import UnsupportedModel
from .text import format_report

__all__ = ["debug", "format_report", "read_graph", "UnsupportedModel"]
