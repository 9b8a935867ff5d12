/* Firmware harness: reads evaluation inputs through semihosting (mcu_in.bin, one model input
 * after another), runs one inference per input and writes a record per inference to
 * mcu_out.bin: the raw output bytes (int8 codes, int16 for a 16x8 model; padded to 4 bytes),
 * the SysTick ticks spent in the inference and the stack high-water mark in bytes. Exit code 0 = success. */
#include <stdint.h>
#include "mcu_startup.h"
#include "model.h"

int main(void)
{
    int fin = sh_open("mcu_in.bin", 1);
    int fout = sh_open("mcu_out.bin", 5);
    if (fin < 0 || fout < 0) { sh_puts("mcu: cannot open mcu_in.bin/mcu_out.bin\n"); return 2; }
    int len = sh_flen(fin);
    if (len < 0 || len % MODEL_INPUT_BYTES) { sh_puts("mcu: bad input file length\n"); return 2; }
    uint32_t n = (uint32_t)len / MODEL_INPUT_BYTES;
    uint32_t header[4] = {0x3055434Du /* "MCU0" */, n, MODEL_INPUT_BYTES, MODEL_OUTPUT_BYTES};
    sh_write(fout, header, sizeof header);
    systick_start();
    for (uint32_t k = 0; k < n; k++) {
        if (sh_read(fin, model_input(), MODEL_INPUT_BYTES) != 0) { sh_puts("mcu: short read\n"); return 2; }
        stack_paint();
        uint64_t t0 = systick_now();
        mcu_mark();
        model_invoke();
        mcu_mark();
        uint64_t t1 = systick_now();
        uint32_t rec[2] = {(uint32_t)(t1 - t0), stack_high_water()};
        uint32_t out[(MODEL_OUTPUT_BYTES + 3) / 4];
        const int8_t *y = model_output();
        int8_t *o = (int8_t *)out;
        for (int i = 0; i < (int)sizeof out; i++) o[i] = i < MODEL_OUTPUT_BYTES ? y[i] : 0;
        sh_write(fout, out, sizeof out);
        sh_write(fout, rec, sizeof rec);
    }
    sh_close(fin);
    sh_close(fout);
    return 0;
}
