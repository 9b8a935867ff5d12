/*
 * Instruction-counting TCG plugin for qemu-system-arm (plugin API version 1, QEMU 7.x).
 *
 * Debian ships the plugin-enabled QEMU binary but not qemu-plugin.h, so the few API
 * declarations used here are written out below (they are the public, stable C ABI).
 *
 * Arguments (key=value): ranges=FILE  one "start end" hex pair per line (bucket i, sorted,
 *                                     non-overlapping); instructions outside go to the last
 *                                     bucket ("other")
 *                        mark=ADDR    hex address of a marker function: each time its first
 *                                     instruction executes, all counters are snapshotted
 *                        out=FILE     where the counts are written at exit
 * Output: "buckets N", then one line per snapshot: "snap total c0 c1 ... cN" (cN: other),
 * then the final counters as "final total c0 ...". Counting uses inline adds, so it is exact and
 * deterministic; the snapshots cost a callback only on the marker instruction.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdbool.h>
#include <stddef.h>

typedef uint64_t qemu_plugin_id_t;
typedef struct qemu_info_t qemu_info_t;
struct qemu_plugin_tb;
struct qemu_plugin_insn;
enum qemu_plugin_op { QEMU_PLUGIN_INLINE_ADD_U64 };
enum qemu_plugin_cb_flags { QEMU_PLUGIN_CB_NO_REGS, QEMU_PLUGIN_CB_R_REGS, QEMU_PLUGIN_CB_RW_REGS };
typedef void (*qemu_plugin_vcpu_tb_trans_cb_t)(qemu_plugin_id_t id, struct qemu_plugin_tb *tb);
typedef void (*qemu_plugin_udata_cb_t)(qemu_plugin_id_t id, void *userdata);
typedef void (*qemu_plugin_vcpu_udata_cb_t)(unsigned int vcpu_index, void *userdata);

extern void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t id, qemu_plugin_vcpu_tb_trans_cb_t cb);
extern size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *tb);
extern struct qemu_plugin_insn *qemu_plugin_tb_get_insn(const struct qemu_plugin_tb *tb, size_t idx);
extern uint64_t qemu_plugin_insn_vaddr(const struct qemu_plugin_insn *insn);
extern void qemu_plugin_register_vcpu_insn_exec_inline(struct qemu_plugin_insn *insn, enum qemu_plugin_op op,
                                                       void *ptr, uint64_t imm);
extern void qemu_plugin_register_vcpu_insn_exec_cb(struct qemu_plugin_insn *insn, qemu_plugin_vcpu_udata_cb_t cb,
                                                   enum qemu_plugin_cb_flags flags, void *userdata);
extern void qemu_plugin_register_atexit_cb(qemu_plugin_id_t id, qemu_plugin_udata_cb_t cb, void *userdata);

__attribute__((visibility("default"))) int qemu_plugin_version = 1;

#define MAX_BUCKETS 512
static uint64_t g_lo[MAX_BUCKETS], g_hi[MAX_BUCKETS];
static int g_nranges;
static uint64_t g_count[MAX_BUCKETS + 1];
static uint64_t g_total;
static uint64_t g_mark = UINT64_MAX;
static char g_out[4096];
static FILE *g_snap;

static int bucket_of(uint64_t a)
{
    int lo = 0, hi = g_nranges - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (a < g_lo[mid]) hi = mid - 1;
        else if (a >= g_hi[mid]) lo = mid + 1;
        else return mid;
    }
    return g_nranges;  /* other */
}

static void write_counts(FILE *f, const char *tag)
{
    fprintf(f, "%s %llu", tag, (unsigned long long)g_total);
    for (int i = 0; i <= g_nranges; i++) fprintf(f, " %llu", (unsigned long long)g_count[i]);
    fputc('\n', f);
}

static void on_mark(unsigned int vcpu, void *ud)
{
    (void)vcpu; (void)ud;
    if (g_snap) write_counts(g_snap, "snap");
}

static void on_tb(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
    (void)id;
    size_t n = qemu_plugin_tb_n_insns(tb);
    for (size_t i = 0; i < n; i++) {
        struct qemu_plugin_insn *insn = qemu_plugin_tb_get_insn(tb, i);
        uint64_t a = qemu_plugin_insn_vaddr(insn);
        if (a == g_mark)
            qemu_plugin_register_vcpu_insn_exec_cb(insn, on_mark, QEMU_PLUGIN_CB_NO_REGS, NULL);
        qemu_plugin_register_vcpu_insn_exec_inline(insn, QEMU_PLUGIN_INLINE_ADD_U64, &g_total, 1);
        qemu_plugin_register_vcpu_insn_exec_inline(insn, QEMU_PLUGIN_INLINE_ADD_U64,
                                                   &g_count[bucket_of(a)], 1);
    }
}

static void on_plugin_exit(qemu_plugin_id_t id, void *ud)
{
    (void)id; (void)ud;
    if (!g_snap) return;
    write_counts(g_snap, "final");
    fclose(g_snap);
    g_snap = NULL;
}

__attribute__((visibility("default")))
int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info, int argc, char **argv)
{
    (void)info;
    const char *ranges = NULL;
    for (int i = 0; i < argc; i++) {
        if (!strncmp(argv[i], "ranges=", 7)) ranges = argv[i] + 7;
        else if (!strncmp(argv[i], "out=", 4)) snprintf(g_out, sizeof g_out, "%s", argv[i] + 4);
        else if (!strncmp(argv[i], "mark=", 5)) g_mark = strtoull(argv[i] + 5, NULL, 16);
    }
    if (!g_out[0]) return -1;
    if (ranges) {
        FILE *f = fopen(ranges, "r");
        if (!f) return -1;
        unsigned long long lo, hi;
        while (g_nranges < MAX_BUCKETS && fscanf(f, "%llx %llx", &lo, &hi) == 2) {
            g_lo[g_nranges] = lo; g_hi[g_nranges] = hi; g_nranges++;
        }
        fclose(f);
    }
    g_snap = fopen(g_out, "w");
    if (!g_snap) return -1;
    fprintf(g_snap, "buckets %d\n", g_nranges);
    qemu_plugin_register_vcpu_tb_trans_cb(id, on_tb);
    qemu_plugin_register_atexit_cb(id, on_plugin_exit, NULL);
    return 0;
}
