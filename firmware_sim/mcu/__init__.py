"""Emulated microcontroller: int8 TFLite LSTM -> plain C -> Cortex-M4/M7 firmware in QEMU.

run_emulated(tflite_path, x, profile, board="mps2-an386", workdir=None) -> dict
generate_c(tflite_path, out_dir) -> dict          (model.h / model.c)
build(src_dir, build_dir, profile, board, variant) -> dict   (raises ModelTooLarge)
See emulate.py for the measurement and latency (CPI) assumptions.
"""
from .emulate import build, generate_c, quantize_input, run_emulated, to_jsonable
from .toolchain import BOARDS, ModelTooLarge, ToolMissing

__all__ = ["run_emulated", "generate_c", "build", "quantize_input",
           "to_jsonable", "BOARDS", "ModelTooLarge", "ToolMissing"]
