/* Startup, semihosting and measurement helpers (mcu_startup.c) the firmware harness calls. */
#ifndef MCU_STARTUP_H
#define MCU_STARTUP_H
#include <stdint.h>
int sh_open(const char *path, int mode);   /* mode 1 = "rb", 5 = "wb" */
int sh_close(int fd);
int sh_write(int fd, const void *buf, uint32_t n);
int sh_read(int fd, void *buf, uint32_t n);
int sh_flen(int fd);
void sh_puts(const char *s);
void sh_exit(int code) __attribute__((noreturn));
void systick_start(void);
uint64_t systick_now(void);
void stack_paint(void);
uint32_t stack_high_water(void);
void mcu_mark(void);
#endif
