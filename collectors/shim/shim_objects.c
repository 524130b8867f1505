/*
 * shim_objects.c - the table of live tracked objects (and of large and mmap ones),
 * and tracking itself: ALLOC, BIND and FREE records as objects come and go.
 */
#include "shim_internal.h"

/* ------------------------------------------------------------------ object table */
static obj_t *g_tab;
static size_t g_tab_cap, g_tab_n;
static int g_tab_shift;
HIDDEN big_t *g_big;
HIDDEN size_t g_big_n, g_big_cap, g_big_cursor;
static uintptr_t *g_mm; /* live mmap objects, for munmap/MAP_FIXED range overlaps */
static size_t g_mm_n, g_mm_cap;
HIDDEN _Atomic uint32_t g_bloom[1u << BLOOM_BITS];

static inline size_t tab_hash(uintptr_t a) {
    return (size_t)(((uint64_t)(a >> 4) * 0x9E3779B97F4A7C15ull) >> g_tab_shift);
}
HIDDEN obj_t *tab_find(uintptr_t a) {
    if (!g_tab) return NULL;
    size_t m = g_tab_cap - 1;
    for (size_t i = tab_hash(a);; i = (i + 1) & m) {
        if (g_tab[i].addr == a) return &g_tab[i];
        if (!g_tab[i].addr) return NULL;
    }
}
HIDDEN int tab_grow(void) {
    size_t ncap = g_tab_cap ? g_tab_cap * 2 : 4096;
    if (ncap / 2 > g_max_objects && g_tab_cap) return -1;
    obj_t *nt = raw_map(ncap * sizeof(obj_t));
    if (!nt) return -1;
    obj_t *old = g_tab;
    size_t ocap = g_tab_cap;
    g_tab = nt;
    g_tab_cap = ncap;
    g_tab_shift = 64 - __builtin_ctzll(ncap);
    for (size_t i = 0; i < ocap; i++) {
        if (!old[i].addr) continue;
        size_t m = ncap - 1, j = tab_hash(old[i].addr);
        while (nt[j].addr) j = (j + 1) & m;
        nt[j] = old[i];
    }
    if (old) raw_unmap(old, ocap * sizeof(obj_t));
    return 0;
}
static void big_fix(size_t idx) { /* g_big[idx] moved: update its table entry */
    obj_t *o = tab_find(g_big[idx].addr);
    if (o) o->big = (uint32_t)idx;
}
static int big_add(obj_t *o) {
    if (g_big_n == g_big_cap) {
        size_t ncap = g_big_cap ? g_big_cap * 2 : 1024;
        big_t *nb = raw_map(ncap * sizeof(big_t));
        if (!nb) return -1;
        if (g_big) { memcpy(nb, g_big, g_big_n * sizeof(big_t)); raw_unmap(g_big, g_big_cap * sizeof(big_t)); }
        g_big = nb;
        g_big_cap = ncap;
    }
    g_big[g_big_n] = (big_t){o->addr, o->size, o->seq, o->flags};
    o->big = (uint32_t)g_big_n++;
    return 0;
}
static void big_del(obj_t *o) {
    size_t i = o->big;
    if (i >= g_big_n || g_big[i].addr != o->addr) return;
    g_big[i] = g_big[--g_big_n];
    if (i < g_big_n) big_fix(i);
    if (g_big_cursor > g_big_n) g_big_cursor = 0;
}
static void mm_add(uintptr_t a) {
    if (g_mm_n == g_mm_cap) {
        size_t ncap = g_mm_cap ? g_mm_cap * 2 : 512;
        uintptr_t *nm = raw_map(ncap * sizeof(uintptr_t));
        if (!nm) return;
        if (g_mm) { memcpy(nm, g_mm, g_mm_n * sizeof(uintptr_t)); raw_unmap(g_mm, g_mm_cap * sizeof(uintptr_t)); }
        g_mm = nm;
        g_mm_cap = ncap;
    }
    g_mm[g_mm_n++] = a;
}
static void mm_del(uintptr_t a) {
    for (size_t i = 0; i < g_mm_n; i++)
        if (g_mm[i] == a) { g_mm[i] = g_mm[--g_mm_n]; return; }
}

static void stale_end_locked(obj_t *o);
/* Insert (tab lock held). Returns the entry or NULL (table full: not tracked). */
static obj_t *tab_insert_locked(const obj_t *src) {
    obj_t *o = tab_find(src->addr);
    if (o) { /* freed behind our back (e.g. from a signal handler): end the stale entry */
        STAT_ADD(ST_STALE_OBJECTS, 1);
        stale_end_locked(o);
        if (o->flags & OF_BOUND) { /* its binding, where the new object's own pages are */
            uintptr_t lo = (src->addr + g_page - 1) & g_page_mask;
            plan_policy(o->site, o->addr, o->size, lo, (src->addr + src->size) & g_page_mask, 1);
        }
        if (o->big != UINT32_MAX) big_del(o);
        if (o->flags & OF_MMAP) mm_del(o->addr);
        uint32_t bi = bloom_idx(o->addr);
        atomic_fetch_sub(&g_bloom[bi], 1);
        *o = *src;
    } else {
        if ((g_tab_n + 1) * 2 > g_tab_cap && tab_grow() != 0) return NULL;
        size_t m = g_tab_cap - 1, i = tab_hash(src->addr);
        while (g_tab[i].addr) i = (i + 1) & m;
        g_tab[i] = *src;
        o = &g_tab[i];
        g_tab_n++;
    }
    o->big = UINT32_MAX;
    o->slot = UINT32_MAX;
    atomic_fetch_add(&g_bloom[bloom_idx(o->addr)], 1);
    if (o->flags & OF_MMAP) mm_add(o->addr);
    if ((o->flags & OF_SAMPLEABLE) && g_sampling) {
        if (big_add(o) != 0) o->flags &= (uint8_t)~OF_SAMPLEABLE;
    }
    return o;
}
/* Remove (tab lock held); backward-shift deletion keeps probing chains intact. */
static void tab_remove_locked(obj_t *o) {
    if (o->big != UINT32_MAX) big_del(o);
    if (o->flags & OF_MMAP) mm_del(o->addr);
    atomic_fetch_sub(&g_bloom[bloom_idx(o->addr)], 1);
    size_t m = g_tab_cap - 1, i = (size_t)(o - g_tab), j = i;
    g_tab[i].addr = 0;
    for (;;) {
        j = (j + 1) & m;
        if (!g_tab[j].addr) break;
        size_t k = tab_hash(g_tab[j].addr);
        if ((j > i && (k <= i || k > j)) || (j < i && (k <= i && k > j))) {
            g_tab[i] = g_tab[j];
            g_tab[j].addr = 0;
            if (g_tab[i].big != UINT32_MAX && g_tab[i].big < g_big_n) {
                /* big entries find their table slot by address: nothing to fix */
            }
            i = j;
        }
    }
    g_tab_n--;
}

/* ------------------------------------------------------------------ tracking */
static void track_site(void *p, size_t size, int kind, int mmap_obj, int sampleable,
                       uint64_t known_site);
HIDDEN void track(void *p, size_t size, int kind, int mmap_obj, int sampleable) {
    track_site(p, size, kind, mmap_obj, sampleable, 0);
}
static void track_site(void *p, size_t size, int kind, int mmap_obj, int sampleable,
                       uint64_t known_site) {
    uint64_t t = now_ns();
    site_t st;
    if (known_site) { st.n = 0; st.hash = known_site; }
    else capture_site(&st);
    const plan_ent_t *pe = g_plan_loaded ? plan_lookup(st.hash) : NULL;
    obj_t src;
    memset(&src, 0, sizeof src);
    src.addr = (uintptr_t)p;
    src.size = size;
    src.seq = atomic_fetch_add(&g_seq, 1);
    src.site = st.hash;
    src.time_ns = t;
    src.kind = (uint8_t)kind;
    src.flags = (uint8_t)((mmap_obj ? OF_MMAP : 0) |
                          (sampleable && size >= g_sample_min ? OF_SAMPLEABLE : 0) |
                          (plan_binds(pe) ? OF_BOUND : 0));
    if (g_sampling && size >= g_sample_min && !sampleable) STAT_ADD(ST_UNSAMPLEABLE_OBJECTS, 1);
    lock_acquire(&g_tab_lock);
    obj_t *o = tab_insert_locked(&src);
    int big = o && (o->flags & OF_SAMPLEABLE) && g_sampling;
    lock_release(&g_tab_lock);
    if (!o) { STAT_ADD(ST_UNTRACKED_OBJECTS, 1); return; } /* untracked: not bound either */
    int node = pe ? pe->node : -1;
    struct rec_bind br;
    if (node >= 0) {
        int err = do_mbind(src.addr, size, node);
        STAT_ADD(err ? ST_BINDS_FAILED : ST_BINDS_OK, 1);
        br = (struct rec_bind){{REC_BIND, sizeof br}, src.seq, (uint32_t)node, err};
    }
    struct rec_alloc ar = {{REC_ALLOC, sizeof ar}, src.seq, t, src.addr, size, st.hash,
                           (uint32_t)my_tid(), (uint8_t)kind, {0, 0, 0}};
    lock_acquire(&g_log_lock);
    emit_site_locked(&st);
    log_append_locked(&ar, sizeof ar);
    if (node >= 0) log_append_locked(&br, sizeof br);
    /* a point on the CPU-time timeline where a priced object's life starts (and, in
     * log_free, ends): its CPU lifetime is then read, not interpolated across an interval */
    if (size >= g_sample_min) log_clock_locked();
    lock_release(&g_log_lock);
    if (pe && pe->chunk_head != PLAN_NONE) bind_chunks(pe, src.seq, src.addr, size);
    if (big) sampler_wanted(); /* never pthread_create here: a hook may run inside the allocator */
}

HIDDEN range_t obj_tail(uintptr_t p) {
    range_t r = {0, 0};
    /* an object is in the list before its pointer is handed out, so a pointer the program
     * holds was in it when g_big_n was last read non-zero */
    if (!g_sampling || !p || !__atomic_load_n(&g_big_n, __ATOMIC_RELAXED)) return r;
    if (lock_held_by_me(&g_tab_lock)) return (range_t){p, UINTPTR_MAX}; /* in a handler */
    int saved = t_in_hook;
    t_in_hook = 1;
    lock_acquire(&g_tab_lock);
    for (size_t i = 0; i < g_big_n; i++) {
        const big_t *b = &g_big[i];
        if (p >= b->addr && p - b->addr < b->size) {
            r = (range_t){p, b->addr + b->size};
            break;
        }
    }
    lock_release(&g_tab_lock);
    t_in_hook = saved;
    return r;
}

/* Take a live object out of the table (ending its sample). 1 if it was tracked. */
HIDDEN int take_object(uintptr_t a, obj_t *out, struct rec_sample *srec, int *has_srec) {
    *has_srec = 0;
    if (!atomic_load_explicit(&g_bloom[bloom_idx(a)], memory_order_relaxed)) return 0;
    lock_acquire(&g_tab_lock);
    obj_t *o = tab_find(a);
    if (!o) { lock_release(&g_tab_lock); return 0; }
    *out = *o;
    if (g_sampling && o->slot != UINT32_MAX) {
        lock_acquire(&g_smp_lock);
        *has_srec = sample_end_for(o, srec, now_ns());
        lock_release(&g_smp_lock);
    }
    tab_remove_locked(o);
    lock_release(&g_tab_lock);
    return 1;
}
/* An object found still in the table when its address is handed out again: it was freed
 * where we could not see it. Close it now (tab lock held; smp and log come after it). */
static void stale_end_locked(obj_t *o) {
    struct rec_sample sr;
    int hs = 0;
    uint64_t now = now_ns();
    if (g_sampling && o->slot != UINT32_MAX) {
        lock_acquire(&g_smp_lock);
        hs = sample_end_for(o, &sr, now);
        lock_release(&g_smp_lock);
    }
    struct rec_free fr = {{REC_FREE, sizeof fr}, o->seq, now, o->addr, F_FREE,
                          {0, 0, 0, 0, 0, 0, 0}};
    lock_acquire(&g_log_lock);
    if (hs) log_append_locked(&sr, sizeof sr);
    log_append_locked(&fr, sizeof fr);
    lock_release(&g_log_lock);
}
HIDDEN void put_back(const obj_t *o) {
    lock_acquire(&g_tab_lock);
    if (!tab_insert_locked(o)) STAT_ADD(ST_UNTRACKED_OBJECTS, 1);
    lock_release(&g_tab_lock);
}
HIDDEN void log_free(const obj_t *o, int kind, const struct rec_sample *srec, int has_srec) {
    struct rec_free fr = {{REC_FREE, sizeof fr}, o->seq, now_ns(), o->addr, (uint8_t)kind,
                          {0, 0, 0, 0, 0, 0, 0}};
    lock_acquire(&g_log_lock);
    if (has_srec) log_append_locked(srec, sizeof *srec);
    log_append_locked(&fr, sizeof fr);
    if (o->size >= g_sample_min) log_clock_locked();
    lock_release(&g_log_lock);
}
HIDDEN void untrack_free(void *p, int kind) {
    obj_t o;
    struct rec_sample sr;
    int hs;
    if (!take_object((uintptr_t)p, &o, &sr, &hs)) return;
    unbind_object(&o);
    log_free(&o, kind, &sr, hs);
}
/* Before the allocator gets a bound object's memory back (no lock held): its ranges go
 * back to the default policy, so whatever reuses the memory starts unbound. */
HIDDEN void unbind_object(const obj_t *o) {
    if (UNLIKELY(o->flags & OF_BOUND)) plan_policy(o->site, o->addr, o->size, 0, UINTPTR_MAX, 1);
}
/* The allocator refused (realloc, mremap failed): the object lives on, bound again. */
HIDDEN void rebind_object(const obj_t *o) {
    if (UNLIKELY(o->flags & OF_BOUND)) plan_policy(o->site, o->addr, o->size, 0, UINTPTR_MAX, 0);
}

/* mmap objects overlapping [lo, hi) are ended; what stays mapped is re-logged. */
HIDDEN void mmap_range_gone(uintptr_t lo, uintptr_t hi) {
    if (!g_mm_n || hi <= lo) return;
    enum { MAXHIT = 64 };
    uintptr_t hits[MAXHIT];
    int nh = 0;
    lock_acquire(&g_tab_lock);
    for (size_t i = 0; i < g_mm_n && nh < MAXHIT; i++) {
        obj_t *o = tab_find(g_mm[i]);
        if (o && o->addr < hi && o->addr + o->size > lo) hits[nh++] = o->addr;
    }
    lock_release(&g_tab_lock);
    for (int i = 0; i < nh; i++) {
        obj_t o;
        struct rec_sample sr;
        int hs;
        if (!take_object(hits[i], &o, &sr, &hs)) continue;
        log_free(&o, F_MUNMAP, &sr, hs);
        uintptr_t end = o.addr + o.size;
        int samp = (o.flags & OF_SAMPLEABLE) != 0;
        if (o.addr < lo && lo - o.addr >= g_threshold)
            track_site((void *)o.addr, lo - o.addr, K_MMAP, 1, samp, o.site ? o.site : 1);
        if (end > hi && end - hi >= g_threshold)
            track_site((void *)hi, end - hi, K_MMAP, 1, samp, o.site ? o.site : 1);
    }
}
