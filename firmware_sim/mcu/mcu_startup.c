/* Bare-metal startup, semihosting and measurement helpers for the QEMU MPS2 boards. */
#include <stdint.h>
#include <stddef.h>
#include "mcu_startup.h"

extern uint32_t _sidata, _sdata, _edata, _sbss, _ebss, _sstack, _estack;
extern int main(void);

void Reset_Handler(void);
static void Default_Handler(void);
void SysTick_Handler(void);

/* ---- semihosting ---- */
static int32_t sh_call(int32_t op, void *arg)
{
    register int32_t r0 __asm__("r0") = op;
    register void *r1 __asm__("r1") = arg;
    __asm__ volatile("bkpt 0xAB" : "+r"(r0) : "r"(r1) : "memory");
    return r0;
}

static size_t cstrlen(const char *s) { size_t n = 0; while (s[n]) n++; return n; }

int sh_open(const char *path, int mode)
{
    uint32_t a[3] = {(uint32_t)path, (uint32_t)mode, (uint32_t)cstrlen(path)};
    return sh_call(0x01, a);
}
int sh_close(int fd) { uint32_t a[1] = {(uint32_t)fd}; return sh_call(0x02, a); }
int sh_write(int fd, const void *buf, uint32_t n)
{
    uint32_t a[3] = {(uint32_t)fd, (uint32_t)buf, n};
    return sh_call(0x05, a);    /* bytes NOT written */
}
int sh_read(int fd, void *buf, uint32_t n)
{
    uint32_t a[3] = {(uint32_t)fd, (uint32_t)buf, n};
    return sh_call(0x06, a);    /* bytes NOT read */
}
int sh_flen(int fd) { uint32_t a[1] = {(uint32_t)fd}; return sh_call(0x0C, a); }
void sh_puts(const char *s) { sh_call(0x04, (void *)s); }
void sh_exit(int code)
{
    uint32_t a[2] = {0x20026u /* ADP_Stopped_ApplicationExit */, (uint32_t)code};
    sh_call(0x20, a);            /* SYS_EXIT_EXTENDED */
    for (;;) { }
}

/* ---- libc bits the compiler may call ---- */
void *memcpy(void *d, const void *s, size_t n)
{
    uint8_t *dp = d; const uint8_t *sp = s;
    while (n--) *dp++ = *sp++;
    return d;
}
void *memset(void *d, int v, size_t n)
{
    uint8_t *dp = d;
    while (n--) *dp++ = (uint8_t)v;
    return d;
}

/* ---- SysTick: a free-running tick counter (under -icount shift=0 ticks follow instructions) */
#define SYST_CSR (*(volatile uint32_t *)0xE000E010u)
#define SYST_RVR (*(volatile uint32_t *)0xE000E014u)
#define SYST_CVR (*(volatile uint32_t *)0xE000E018u)
static volatile uint32_t g_systick_wraps;
/* weak: a board that drives its own SysTick interrupt (the library example's test) overrides it */
__attribute__((weak)) void SysTick_Handler(void) { g_systick_wraps++; }
void systick_start(void) { SYST_RVR = 0x00FFFFFFu; SYST_CVR = 0; SYST_CSR = 7u; }
uint64_t systick_now(void)
{
    uint32_t w, v;
    do { w = g_systick_wraps; v = SYST_CVR; } while (w != g_systick_wraps);
    return ((uint64_t)w << 24) + (0x00FFFFFFu - v);
}

/* ---- stack painting ---- */
#define PAINT 0xC5A5C5A5u
void stack_paint(void)
{
    uint32_t *p = &_sstack;
    uint32_t *sp;
    __asm__ volatile("mov %0, sp" : "=r"(sp));
    sp -= 16;
    while (p < sp) *p++ = PAINT;
}
uint32_t stack_high_water(void)
{
    uint32_t *p = &_sstack;
    while (p < &_estack && *p == PAINT) p++;
    return (uint32_t)((uint8_t *)&_estack - (uint8_t *)p);
}

/* Marker for the instruction-counting plugin: called right before and after each inference. */
__attribute__((noinline)) void mcu_mark(void) { __asm__ volatile("" ::: "memory"); }

void Reset_Handler(void)
{
    uint32_t *s = &_sidata, *d = &_sdata;
    while (d < &_edata) *d++ = *s++;
    for (d = &_sbss; d < &_ebss;) *d++ = 0;
    sh_exit(main());
}

static void Default_Handler(void) { sh_puts("mcu: fault\n"); sh_exit(3); }

__attribute__((section(".vectors"), used))
void (*const g_vectors[16])(void) = {
    (void (*)(void))&_estack, Reset_Handler, Default_Handler, Default_Handler,
    Default_Handler, Default_Handler, Default_Handler, 0, 0, 0, 0,
    Default_Handler, Default_Handler, 0, Default_Handler, SysTick_Handler,
};
