/* Host harness of the generated model, built into a shared library and called through ctypes
 * (host.py): the firmware's loop of mcu_main.c without semihosting, i.e. for every window copy
 * it into model_input(), run model_invoke() (which resets h and c) and copy model_output().
 * Every pointer and length is checked, so a bad call returns a code instead of reading or
 * writing out of bounds. Only these functions are exported (-fvisibility=hidden). */
#include <stdint.h>
#include "mcu_kernels.h"
#include "model.h"

#define MCU_HOST_API __attribute__((visibility("default")))
#define MCU_HOST_ABI 1

enum { MCU_HOST_OK = 0, MCU_HOST_NULL = -1, MCU_HOST_BAD_LENGTH = -2 };

MCU_HOST_API int32_t mcu_host_abi(void) { return MCU_HOST_ABI; }

/* info[0..3] = input bytes, output bytes, arena bytes, MCU_SIMD (which kernels were built). */
MCU_HOST_API int32_t mcu_host_info(int64_t *info, int64_t n_info)
{
    if (!info) return MCU_HOST_NULL;
    if (n_info != 4) return MCU_HOST_BAD_LENGTH;
    info[0] = MODEL_INPUT_BYTES;
    info[1] = MODEL_OUTPUT_BYTES;
    info[2] = MODEL_ARENA_BYTES;
    info[3] = MCU_SIMD;
    return MCU_HOST_OK;
}

/* n windows: x holds n * MODEL_INPUT_BYTES codes, y receives n * MODEL_OUTPUT_BYTES. */
MCU_HOST_API int32_t mcu_host_run(const int8_t *x, int64_t x_bytes, int8_t *y, int64_t y_bytes,
                                  int64_t n)
{
    if (!x || !y) return MCU_HOST_NULL;
    if (n < 0 || x_bytes != n * MODEL_INPUT_BYTES || y_bytes != n * MODEL_OUTPUT_BYTES)
        return MCU_HOST_BAD_LENGTH;
    for (int64_t k = 0; k < n; k++) {
        int8_t *in = model_input();
        for (int i = 0; i < MODEL_INPUT_BYTES; i++) in[i] = x[k * MODEL_INPUT_BYTES + i];
        model_invoke();
        const int8_t *out = model_output();
        for (int i = 0; i < MODEL_OUTPUT_BYTES; i++) y[k * MODEL_OUTPUT_BYTES + i] = out[i];
    }
    return MCU_HOST_OK;
}
