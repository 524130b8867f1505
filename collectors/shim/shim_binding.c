/*
 * shim_binding.c - the placement plan (PLACER_SHIM_PLAN): which sites, or which
 * chunks of their allocations, to bind to a NUMA node, and the mbind that does it.
 */
#include "shim_internal.h"

/* ------------------------------------------------------------------ plan and mbind */
/* Lines: `site node` binds the whole allocation; `site node chunk_index chunk_size` binds
 * that chunk's byte range of each allocation of the site. A site's chunk lines form a list
 * in file order (plan_chunk_t.next), applied after its whole-allocation line, if any. */
typedef struct { uint64_t size; uint32_t index, next; int32_t node, pad; } plan_chunk_t;
#define PLAN_CAP 4096u
#define PLAN_CHUNK_CAP 65536u
static plan_ent_t *g_plan;
static plan_chunk_t *g_plan_chunks;
static uint32_t g_plan_nchunks;
HIDDEN const plan_ent_t *plan_lookup(uint64_t site) {
    if (!g_plan) return NULL;
    uint32_t i = (uint32_t)((site * 0x9E3779B97F4A7C15ull) >> 52);
    for (uint32_t k = 0; k < PLAN_CAP; k++, i = (i + 1) & (PLAN_CAP - 1)) {
        if (!g_plan[i].used) return NULL;
        if (g_plan[i].site == site) return &g_plan[i];
    }
    return NULL;
}
static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}
/* One decimal token at *q (ending at whitespace or eol), at most `max`: 1 if ok. */
static int plan_dec(char **qp, const char *eol, uint64_t max, uint64_t *out) {
    char *q = *qp;
    uint64_t v = 0;
    int nd = 0;
    while (q < eol && *q >= '0' && *q <= '9') {
        uint64_t d = (uint64_t)(*q++ - '0');
        if (v > (max - d) / 10) return 0;
        v = v * 10 + d;
        nd++;
    }
    if (!nd || (q < eol && *q != ' ' && *q != '\t' && *q != '\r')) return 0;
    *out = v;
    *qp = q;
    return 1;
}
static void plan_skip_ws(char **qp, const char *eol) {
    while (*qp < eol && (**qp == ' ' || **qp == '\t' || **qp == '\r')) (*qp)++;
}
static plan_ent_t *plan_slot(uint64_t site, unsigned *entries) {
    uint32_t i = (uint32_t)((site * 0x9E3779B97F4A7C15ull) >> 52);
    for (uint32_t k = 0; k < PLAN_CAP; k++, i = (i + 1) & (PLAN_CAP - 1)) {
        if (!g_plan[i].used) {
            if (*entries >= PLAN_CAP / 2) return NULL;
            g_plan[i] = (plan_ent_t){site, -1, 1, PLAN_NONE, PLAN_NONE};
            (*entries)++;
            return &g_plan[i];
        }
        if (g_plan[i].site == site) return &g_plan[i];
    }
    return NULL;
}
static void plan_bad(void) {
    STAT_ADD(ST_PLAN_BAD_LINES, 1);
    dbg("ignoring bad plan line", NULL, (uint64_t)-1);
}
HIDDEN void load_plan(const char *path) {
    int fd = raw_open(path, O_RDONLY | O_CLOEXEC, 0);
    if (fd < 0) { dbg("cannot open plan ", path, (uint64_t)-1); return; }
    size_t cap = 1 << 20;
    char *buf = raw_map(cap);
    if (!buf) { raw_close(fd); return; }
    size_t n = 0;
    for (;;) {
        ssize_t r = raw_read(fd, buf + n, cap - 1 - n);
        if (r <= 0) break;
        n += (size_t)r;
        if (n >= cap - 1) break;
    }
    raw_close(fd);
    buf[n] = 0;
    g_plan = raw_map(PLAN_CAP * sizeof(plan_ent_t));
    if (!g_plan) { raw_unmap(buf, cap); return; }
    unsigned entries = 0;
    char *p = buf, *end = buf + n; /* by length: a NUL byte is just a bad character */
    while (p < end) {
        char *line = p;
        while (p < end && *p != '\n') p++;
        char *eol = p;
        if (p < end) p++;
        char *q = line;
        plan_skip_ws(&q, eol);
        if (q >= eol || *q == '#') continue;
        char *tok = q;
        while (q < eol && *q != ' ' && *q != '\t' && *q != '\r') q++;
        size_t tl = (size_t)(q - tok);
        uint64_t site = 0;
        int ok = tl > 0;
        int hex = (tl > 2 && tok[0] == '0' && (tok[1] == 'x' || tok[1] == 'X'));
        if (!hex && tl == 16) {
            hex = 1;
            for (size_t i = 0; i < tl; i++) if (hexval(tok[i]) < 0) hex = 0;
            if (hex) { tok -= 2; tl += 2; } /* treat as if prefixed */
        }
        if (hex) {
            if (tl > 18) ok = 0;
            for (size_t i = 2; i < tl && ok; i++) {
                int v = hexval(tok[i]);
                if (v < 0) ok = 0; else site = (site << 4) | (uint64_t)v;
            }
        } else {
            for (size_t i = 0; i < tl && ok; i++) {
                uint64_t d = (uint64_t)(tok[i] - '0');
                if (tok[i] < '0' || tok[i] > '9' || site > (UINT64_MAX - d) / 10) ok = 0;
                else site = site * 10 + d;
            }
        }
        plan_skip_ws(&q, eol);
        uint64_t node = 0, index = 0, csize = 0;
        if (!ok || !plan_dec(&q, eol, 1023, &node)) { plan_bad(); continue; }
        plan_skip_ws(&q, eol);
        int chunk = q < eol && *q != '#';
        if (chunk) {
            if (!plan_dec(&q, eol, PLAN_NONE - 1, &index)) { plan_bad(); continue; }
            plan_skip_ws(&q, eol);
            if (!plan_dec(&q, eol, (uint64_t)1 << 56, &csize) || csize == 0) {
                plan_bad();
                continue;
            }
            plan_skip_ws(&q, eol);
            if (q < eol && *q != '#') { plan_bad(); continue; }
        }
        if (chunk && !g_plan_chunks) {
            g_plan_chunks = raw_map(PLAN_CHUNK_CAP * sizeof(plan_chunk_t));
            if (!g_plan_chunks) { plan_bad(); continue; }
        }
        if (chunk && g_plan_nchunks >= PLAN_CHUNK_CAP) { plan_bad(); continue; }
        plan_ent_t *e = plan_slot(site, &entries);
        if (!e) { plan_bad(); continue; } /* table full */
        if (!chunk) { e->node = (int32_t)node; continue; }
        uint32_t c = g_plan_nchunks++;
        g_plan_chunks[c] = (plan_chunk_t){csize, (uint32_t)index, PLAN_NONE, (int32_t)node, 0};
        if (e->chunk_tail == PLAN_NONE) e->chunk_head = c;
        else g_plan_chunks[e->chunk_tail].next = c;
        e->chunk_tail = c;
    }
    raw_unmap(buf, cap);
    g_plan_loaded = entries > 0;
    dbg("plan entries loaded:", NULL, entries);
    dbg("plan chunk entries loaded:", NULL, g_plan_nchunks);
}
static int mbind_range(uintptr_t lo, uintptr_t hi, int node) {
    if (hi <= lo) return EINVAL;
    unsigned long mask[1024 / (8 * sizeof(unsigned long))];
    memset(mask, 0, sizeof mask);
    mask[node / (8 * sizeof(unsigned long))] |= 1ul << (node % (8 * sizeof(unsigned long)));
    long r = syscall(SYS_mbind, lo, hi - lo, 2 /* MPOL_BIND */, mask,
                     (unsigned long)(8 * sizeof mask), 2 /* MPOL_MF_MOVE */);
    return r == 0 ? 0 : errno;
}
/* Back to the default policy (pages stay where they are). */
static void mbind_default(uintptr_t lo, uintptr_t hi) {
    if (hi > lo) syscall(SYS_mbind, lo, hi - lo, 0 /* MPOL_DEFAULT */, NULL, 0ul, 0u);
}
/* The whole pages a whole-allocation line binds: those wholly inside the allocation. */
static void whole_range(uintptr_t addr, size_t size, uintptr_t *lo, uintptr_t *hi) {
    *lo = (addr + g_page - 1) & g_page_mask;
    *hi = (addr + size) & g_page_mask;
}
HIDDEN int do_mbind(uintptr_t addr, size_t size, int node) {
    uintptr_t lo, hi;
    whole_range(addr, size, &lo, &hi);
    return mbind_range(lo, hi, node);
}
/* The pages a chunk line binds in [addr, addr+size): the whole pages whose first byte lies
 * in the chunk's byte range (and inside the allocation). 0: the allocation has no such
 * chunk. Every chunk's range lies inside whole_range() of the allocation. */
static int chunk_range(const plan_chunk_t *ch, uintptr_t addr, size_t size, uintptr_t *lo,
                       uintptr_t *hi) {
    uint64_t off, off_end;
    if (__builtin_mul_overflow((uint64_t)ch->index, ch->size, &off) || off >= size) return 0;
    off_end = size - off < ch->size ? size : off + ch->size;
    uintptr_t end_page = (addr + size) & g_page_mask;
    *lo = (addr + off + g_page - 1) & g_page_mask;
    *hi = (addr + off_end + g_page - 1) & g_page_mask;
    if (*hi > end_page) *hi = end_page;
    return 1;
}
/* Bind each planned chunk of [addr, addr+size) (chunk_range), so the chunks of an
 * allocation tile its whole pages. One BIND record (with the chunk) per chunk the
 * allocation has. */
HIDDEN void bind_chunks(const plan_ent_t *e, uint64_t seq, uintptr_t addr, size_t size) {
    for (uint32_t c = e->chunk_head; c != PLAN_NONE && c < g_plan_nchunks;
         c = g_plan_chunks[c].next) {
        const plan_chunk_t *ch = &g_plan_chunks[c];
        uintptr_t lo, hi;
        if (!chunk_range(ch, addr, size, &lo, &hi)) continue;
        int err = mbind_range(lo, hi, ch->node);
        STAT_ADD(err ? ST_BINDS_FAILED : ST_BINDS_OK, 1);
        struct rec_bind_chunk br = {{REC_BIND, sizeof br}, seq, (uint32_t)ch->node, err,
                                    ch->index, 0, hi > lo ? lo : 0, hi > lo ? hi - lo : 0};
        lock_acquire(&g_log_lock);
        log_append_locked(&br, sizeof br);
        lock_release(&g_log_lock);
    }
}
HIDDEN int plan_binds(const plan_ent_t *e) {
    return e && (e->node >= 0 || e->chunk_head != PLAN_NONE);
}
/* The ranges the plan bound for an object of `site` at [addr, addr+size), recomputed
 * (the plan never changes once read), clipped to [clo, chi): reset to MPOL_DEFAULT
 * (reset=1; adjacent chunk ranges in one call), or bound again in the original order, with
 * no BIND record (reset=0). Only pages inside the allocation are touched, never the
 * partial first and last pages it shares with its neighbours. */
HIDDEN void plan_policy(uint64_t site, uintptr_t addr, size_t size, uintptr_t clo,
                        uintptr_t chi, int reset) {
    const plan_ent_t *e = g_plan_loaded ? plan_lookup(site) : NULL;
    if (!plan_binds(e)) return;
    uintptr_t lo, hi;
    if (e->node >= 0) {
        whole_range(addr, size, &lo, &hi);
        if (lo < clo) lo = clo;
        if (hi > chi) hi = chi;
        if (reset) { mbind_default(lo, hi); return; } /* covers every chunk range too */
        if (hi > lo) mbind_range(lo, hi, e->node);
    }
    uintptr_t run_lo = 0, run_hi = 0;
    for (uint32_t c = e->chunk_head; c != PLAN_NONE && c < g_plan_nchunks;
         c = g_plan_chunks[c].next) {
        const plan_chunk_t *ch = &g_plan_chunks[c];
        if (!chunk_range(ch, addr, size, &lo, &hi)) continue;
        if (lo < clo) lo = clo;
        if (hi > chi) hi = chi;
        if (hi <= lo) continue;
        if (!reset) { mbind_range(lo, hi, ch->node); continue; }
        if (lo == run_hi) { run_hi = hi; continue; }
        mbind_default(run_lo, run_hi);
        run_lo = lo;
        run_hi = hi;
    }
    if (reset) mbind_default(run_lo, run_hi);
}
