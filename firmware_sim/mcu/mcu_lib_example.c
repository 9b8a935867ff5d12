/* Example (lstm-edge `edge firmware`): the model library in an interrupt-driven sampling loop.
 *
 * A timer or ADC interrupt delivers one sample (MODEL_FEATURES values) at a time and calls
 * example_sample_isr(), which only copies it into a ring buffer. The main loop takes samples
 * out in order and calls model_step_f(): the LSTM state (h, c) carries from one sample to the
 * next, so each sample costs one time step, not a whole window. The first MODEL_STEPS outputs
 * after model_init()/model_reset() equal the whole-window model on those samples exactly.
 *
 * To port it: call example_sample_isr() from your interrupt handler and define the three
 * board_* hooks (the weak defaults below only let this file build and link on its own). */
#include <stdint.h>
#include "model.h"

#ifndef MODEL_STEP_OUTPUT_CODES       /* an int8 model: one byte per output code */
#define MODEL_STEP_OUTPUT_CODES MODEL_STEP_OUTPUT_BYTES
#endif
#define RING_SAMPLES 16u    /* a power of two, more than the samples that arrive per step */

static float g_ring[RING_SAMPLES][MODEL_FEATURES];
static volatile uint32_t g_head;     /* written only by the interrupt */
static volatile uint32_t g_tail;     /* written only by the main loop */
static volatile uint32_t g_dropped;  /* samples lost because the ring was full */

/* Interrupt context: store one sample, drop it when the main loop has fallen behind. */
void example_sample_isr(const float *sample)
{
    uint32_t head = g_head;
    if (head - g_tail >= RING_SAMPLES) {
        g_dropped++;
        return;
    }
    for (int i = 0; i < MODEL_FEATURES; i++)
        g_ring[head % RING_SAMPLES][i] = sample[i];
    g_head = head + 1;               /* publish the sample after it is complete */
}

uint32_t example_dropped(void) { return g_dropped; }

/* Board hooks: start the sampling interrupt; sleep until an interrupt (e.g. __WFI(), with
 * interrupts masked around the empty-ring test and the WFI on a real board); use one output. */
__attribute__((weak)) void board_init(void) {}
__attribute__((weak)) void board_wait(void) {}
__attribute__((weak)) void board_output(const float *y, uint32_t samples)
{
    (void)y;
    (void)samples;
}

int main(void)
{
    float x[MODEL_FEATURES], y[MODEL_STEP_OUTPUT_CODES];
    uint32_t samples = 0;
    if (model_init() != MODEL_OK)
        return 1;
    board_init();
    for (;;) {
        uint32_t tail = g_tail;
        if (tail == g_head) {
            board_wait();
            continue;
        }
        for (int i = 0; i < MODEL_FEATURES; i++)
            x[i] = g_ring[tail % RING_SAMPLES][i];
        g_tail = tail + 1;           /* the slot is free again */
        if (model_step_f(x, y) != MODEL_OK) {   /* a NaN sample: start the sequence over */
            model_reset();
            samples = 0;
            continue;
        }
        board_output(y, ++samples);  /* samples >= MODEL_STEPS: a full window behind y */
    }
}
