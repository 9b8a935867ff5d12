"""Emulated microcontroller: int8 (or 16x8) TFLite LSTM -> plain C -> Cortex-M4/M7 firmware in QEMU.

run_emulated(tflite_path, x, profile, board="mps2-an386", workdir=None) -> dict
generate_c(tflite_path, out_dir) -> dict          (model.h / model.c)
build(src_dir, build_dir, profile, board, variant) -> dict   (raises ModelTooLarge)
HostModel(tflite_path).predict_int8(x) / .predict(x)   the same C built for the host (ctypes)
host_check(tflite_path, x_int8_path, out_path) -> dict      every window, isolated, vs TFLite Micro
write_library(tflite_path, out_dir, name=...) -> dict       the firmware library folder (`edge firmware`)
LibraryHost(tflite_path).init() / .step(x_t) / .run(x)     that library built for the host (ctypes)
See emulate.py for the measurement and latency (CPI) assumptions.

Modules:
  emulate       run_emulated(): generate, build, run in QEMU, compare, measure (the pipeline)
  tflite_model  the generator's view of the .tflite: the ground floor's graph, and the check
                that names every op or setting the generated C does not implement
  lower         the graph lowered to integer layers with every constant precomputed
  fixedpoint    TFLite (Micro)'s integer arithmetic: multipliers, sigmoid/tanh tables, softmax
  reference     the bit-exact numpy integer reference of the lowered layers
  quant         float <-> integer codes through a tensor's scale and zero point
  arena         the static memory plan: steps, buffer lifetimes, offsets in one arena
  codegen       model.h / model.c: the constants in both weight layouts and model_invoke()
  toolchain     arm-none-eabi-gcc builds against the profile's memories; qemu-system-arm
  host          the generated C built with the host compiler (cached), called through ctypes
  firmware      one firmware run in QEMU: its outputs, stack and instruction counts
  library       the firmware library's C: model.h / model.c with init, reset, whole-window,
                first-n-steps, step and float calls over a persistent LSTM state (int8, 16x8)
  libapi        the library's macros and API text, typed int8_t or int16_t
  libhost       that library built for the host and called through ctypes; verify(): whole /
                step / first-n against TFLite Micro (its streaming twin, the model cut to n steps)
  retime        a copy of the .tflite with another number of time steps (the streaming twin: 1)
  bundle        the library folder: sources, build files, sizes, verification, atomic replace
  libfiles      the folder's Makefile, CMake files and README
  debug/        the per-layer int8 drift debugger built on the reference (see its __init__)
C sources: mcu_kernels.c/.h (the int8 kernels, SIMD and plain, and the 16x8 ones: int16
activations, int64 biases, and the int16 softmax; the DSP LSTM steps are inline in mcu_dsp.h,
which the header includes, compiled into model.c per layer), mcu_main.c (the harness),
mcu_startup.c/.h, mcu_link.ld (the linker script template), mcu_icount_plugin.c (TCG plugin),
mcu_host.c (the host library's harness), mcu_lib_example.c (the library folder's example main.c).
"""
from .codegen import generate_c
from .emulate import run_emulated, to_jsonable
from .bundle import write_library
from .host import HostModel, build_host, host_check
from .libhost import LibraryHost
from .quant import quantize_input
from .toolchain import BOARDS, ModelTooLarge, ToolMissing, build

__all__ = ["run_emulated", "generate_c", "build", "quantize_input", "HostModel", "build_host",
           "host_check", "to_jsonable", "BOARDS", "ModelTooLarge", "ToolMissing", "write_library",
           "LibraryHost"]
