"""Shared helpers of the firmware library tests (test_firmware_lib.py: int8,
test_firmware_16x8.py: 16x8): the library built for the host, its code windows, and the example
main.c streamed in QEMU (mps2-an386, SysTick delivering the samples) against the host build."""
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from firmware_sim.mcu.libhost import LibraryHost
from firmware_sim.mcu.quant import quantize
from mcu_models import full_range_windows

SANITIZE = ("-fsanitize=undefined", "-fno-sanitize-recover=all")
NEEDS_CC = pytest.mark.skipif(not (shutil.which("gcc") or shutil.which("cc")),
                              reason="needs a host C compiler")
ARM = pytest.mark.skipif(not (shutil.which("arm-none-eabi-gcc") and shutil.which("make")),
                         reason="needs gcc-arm-none-eabi and make")
OK, NULL, LENGTH, NOT_INIT, VALUE = 0, -1, -2, -3, -4     # the library's return codes


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """The host builds of a test module's libraries (LibraryHost's cache folder)."""
    return tmp_path_factory.mktemp("lib_host_cache")

QEMU_BOARD = r"""
/* mps2-an386 (QEMU) board for the example main.c, on the firmware's startup and semihosting
 * (mcu_startup.c): SysTick is the sampling interrupt, the outputs go to example_out.bin. */
#include <stdint.h>
#include "model.h"
#include "mcu_startup.h"
#include "samples.h"     /* N_SAMPLES, g_samples[N_SAMPLES][MODEL_FEATURES] */
void example_sample_isr(const float *sample);
uint32_t example_dropped(void);

static float g_out[N_SAMPLES][MODEL_STEP_OUTPUT_BYTES];
static volatile uint32_t g_next;

static volatile uint32_t g_idle;

void SysTick_Handler(void)
{
    if (g_next < N_SAMPLES) example_sample_isr(g_samples[g_next++]);
    else if (++g_idle > 64) sh_exit(example_dropped() ? 4 : 5);   /* outputs missing */
}
void board_init(void)
{
    *(volatile uint32_t *)0xE000E014u = SAMPLE_TICKS;   /* SysTick reload */
    *(volatile uint32_t *)0xE000E018u = 0;
    *(volatile uint32_t *)0xE000E010u = 7u;             /* enable, interrupt, CPU clock */
}
void board_wait(void) { __asm__ volatile("wfi"); }
void board_output(const float *y, uint32_t samples)
{
    for (int i = 0; i < MODEL_STEP_OUTPUT_BYTES; i++) g_out[samples - 1][i] = y[i];
    if (samples < N_SAMPLES) return;
    int fd = sh_open("example_out.bin", 5);
    sh_write(fd, g_out, sizeof g_out);
    sh_close(fd);
    sh_exit(example_dropped() ? 4 : 0);
}
"""


def host_library(tflite_path, cache) -> LibraryHost:
    """The library of the .tflite built for the host (cached in cache), initialized."""
    lib = LibraryHost(tflite_path, cache)
    lib.init()
    return lib


def code_windows(lib, x_eval, n_random: int, dtype: str = "int8") -> np.ndarray:
    """Evaluation windows as codes, n_random random full-range codes and the two constant extremes."""
    q = quantize(x_eval, lib.info["input_scale"], lib.info["input_zero_point"], dtype)
    return full_range_windows(q, n_random, seed=3)


def stream_example_in_qemu(tflite_path, name, samples, lib, tmp_path, sample_ticks: int,
                           step_output_macro: str = "MODEL_STEP_OUTPUT_BYTES"):
    """(the QEMU outputs, the host build's model_step_f outputs) of the library's example main.c
    linked for mps2-an386 (DSP kernels) with the samples [n, F] pushed by the SysTick interrupt
    every sample_ticks. The run must exit 0 (4: samples dropped, 5: outputs missing)."""
    from firmware_sim.mcu import toolchain
    from firmware_sim.mcu.bundle import write_library
    out = tmp_path / "fw"
    write_library(tflite_path, out, name=name)
    want = np.stack([lib.step_f(s) for s in samples])
    rows = ",\n".join("{" + ", ".join(float(v).hex() + "f" for v in s) + "}" for s in samples)
    (out / "samples.h").write_text(
        f"#define N_SAMPLES {len(samples)}\n#define SAMPLE_TICKS {sample_ticks}u\n"
        f"static const float g_samples[N_SAMPLES][MODEL_FEATURES] = {{\n{rows}\n}};\n")
    (out / "board.c").write_text(QEMU_BOARD.replace("MODEL_STEP_OUTPUT_BYTES", step_output_macro))
    ld = tmp_path / "link.ld"
    ld.write_text((toolchain.HERE / "mcu_link.ld").read_text().replace("@FLASH_BYTES@", str(1 << 20))
                  .replace("@SRAM_BYTES@", str(256 << 10)).replace("@MIN_STACK@", "2048"))
    elf = tmp_path / "example.elf"
    r = subprocess.run(["arm-none-eabi-gcc", *toolchain.cflags("mps2-an386", "simd"), f"-I{out}",
                        f"-I{toolchain.HERE}", str(toolchain.HERE / "mcu_startup.c"),
                        *(str(out / f) for f in ("board.c", "main.c", "model.c", "mcu_kernels.c")),
                        "-nostdlib", "-nostartfiles", f"-T{ld}", "-Wl,--gc-sections", "-o", str(elf),
                        "-lgcc"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    q = toolchain.run_qemu(elf, tmp_path, board="mps2-an386", timeout=60)
    assert q.returncode == 0, (q.returncode, q.stdout[-500:], q.stderr[-500:])
    return np.fromfile(tmp_path / "example_out.bin", np.float32).reshape(want.shape), want


# the library's API: every shipped build must define these
LIBRARY_API = {"model_init", "model_reset", "model_run", "model_run_steps", "model_step", "model_run_f",
               "model_run_steps_f", "model_step_f", "model_quantize", "model_dequantize"}


def defined_symbols(lib_a) -> set:
    out = subprocess.run(["arm-none-eabi-nm", "--defined-only", str(lib_a)], capture_output=True,
                         text=True, check=True).stdout
    return {line.split()[-1] for line in out.splitlines() if len(line.split()) == 3}


def build_folder_as_shipped(out) -> dict:
    """The library folder built as its README says, each build without a warning: `make`
    (Cortex-M4, the DSP kernels), `make CPU=cortex-m0 BUILD=build-m0 example` (plain C) and, when
    cmake is installed, the CMake build. Returns {build folder: symbols its libmodel.a defines}."""
    syms = {}
    for build, extra in (("build", []), ("build-m0", ["CPU=cortex-m0", "BUILD=build-m0", "example"])):
        r = subprocess.run(["make", "-C", str(out), *extra], capture_output=True, text=True)
        assert r.returncode == 0 and "warning" not in r.stderr, r.stderr
        syms[build] = defined_symbols(out / build / "libmodel.a")
    assert (out / "build-m0" / "main.o").is_file()
    if shutil.which("cmake"):
        r = subprocess.run(["cmake", "-S", str(out), "-B", str(out / "cbuild"),
                            f"-DCMAKE_TOOLCHAIN_FILE={out / 'cmake' / 'arm-none-eabi.cmake'}",
                            "-DMODEL_CPU=cortex-m4", "-DMODEL_BUILD_EXAMPLE=ON"],
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
        r = subprocess.run(["cmake", "--build", str(out / "cbuild")], capture_output=True, text=True)
        assert r.returncode == 0 and "warning" not in r.stdout, r.stdout[-2000:] + r.stderr[-2000:]
        syms["cbuild"] = defined_symbols(out / "cbuild" / "libmodel.a")
    return syms


# what every bad-calls script starts with: `lib`, the library's host build (argv[1]) loaded
BAD_CALLS_HEAD = """import json, sys
import numpy as np
from firmware_sim.mcu.libhost import LibraryHost
lib = LibraryHost.from_library(sys.argv[1])
"""


def run_bad_calls(tflite_path, tmp_path, script: str) -> dict:
    """The JSON a fresh Python process prints running `script` after BAD_CALLS_HEAD against the
    library's host build compiled with the undefined-behaviour sanitizer: not initialised yet,
    and a sanitizer abort cannot take pytest down. Skips where there is no sanitizer."""
    from firmware_sim.mcu.libhost import build_library_host
    try:
        b = build_library_host(tflite_path, tmp_path, extra_cflags=SANITIZE)
    except RuntimeError as e:
        pytest.skip(f"no undefined-behaviour sanitizer here: {str(e)[-200:]}")
    r = subprocess.run([sys.executable, "-c", BAD_CALLS_HEAD + script, b["dir"]], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    return json.loads(r.stdout.strip().splitlines()[-1])
