/*
 * shim_sites.c - where an allocation comes from: the registry of loaded modules
 * (build ids), the call-site stack walk and its hash, and the MODULE and SITE records.
 */
#include "shim_internal.h"

/* ------------------------------------------------------------------ modules and sites */
typedef struct { uintptr_t lo, hi, bias; uint32_t mod; } mrange_t;
typedef struct { size_t n; mrange_t r[]; } msnap_t;

#define MAX_RANGES 4096
HIDDEN module_t *g_mods;
HIDDEN _Atomic uint32_t g_nmods;
static _Atomic(msnap_t *) g_snap;
static unsigned long long g_snap_adds, g_snap_subs;
static uint32_t g_self_mod = UINT32_MAX, g_anon_mod = UINT32_MAX;
static unsigned g_rebuilds;

/* FNV-1a 64 */
#define FNV_OFF 0xcbf29ce484222325ull
#define FNV_PRIME 0x100000001b3ull
static inline uint64_t fnv(uint64_t h, const void *p, size_t n) {
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) { h ^= b[i]; h *= FNV_PRIME; }
    return h;
}

static uint32_t module_intern(const char *path, const uint8_t *bid, uint8_t bid_len) {
    uint32_t n = atomic_load(&g_nmods);
    size_t pl = cstrlen(path);
    for (uint32_t i = 0; i < n; i++)
        if (g_mods[i].path_len == pl && memcmp(g_mods[i].path, path, pl) == 0) return i;
    if (n >= MAX_MODULES || pl >= PATH_MAX) return UINT32_MAX;
    module_t *m = &g_mods[n];
    memcpy(m->path, path, pl + 1);
    m->path_len = (uint32_t)pl;
    m->bid_len = bid_len > 32 ? 32 : bid_len;
    if (m->bid_len) memcpy(m->bid, bid, m->bid_len);
    m->emitted = 0;
    atomic_store(&g_nmods, n + 1);
    return n;
}

typedef struct {
    char name[PATH_MAX];
    uintptr_t bias;
    uint8_t bid[32];
    uint8_t bid_len;
    int nr;
    uintptr_t lo[16], hi[16];
} objinfo_t;
typedef struct { objinfo_t *o; int n, cap; unsigned long long adds, subs; } collect_t;

static void find_build_id(struct dl_phdr_info *info, objinfo_t *o) {
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_NOTE) continue;
        const char *p = (const char *)(info->dlpi_addr + ph->p_vaddr);
        const char *end = p + ph->p_memsz;
        while (p + sizeof(ElfW(Nhdr)) <= end) {
            const ElfW(Nhdr) *nh = (const ElfW(Nhdr) *)p;
            const char *name = p + sizeof *nh;
            const char *desc = name + ((nh->n_namesz + 3) & ~3u);
            const char *next = desc + ((nh->n_descsz + 3) & ~3u);
            if (next > end) break;
            if (nh->n_type == NT_GNU_BUILD_ID && nh->n_namesz == 4 && memcmp(name, "GNU", 4) == 0) {
                o->bid_len = (uint8_t)(nh->n_descsz > 32 ? 32 : nh->n_descsz);
                memcpy(o->bid, desc, o->bid_len);
                return;
            }
            p = next;
        }
    }
}
static int phdr_collect(struct dl_phdr_info *info, size_t size, void *data) {
    (void)size;
    collect_t *c = data;
    if (c->n == 0) { c->adds = info->dlpi_adds; c->subs = info->dlpi_subs; }
    if (c->n >= c->cap) return 1;
    objinfo_t *o = &c->o[c->n];
    const char *nm = info->dlpi_name ? info->dlpi_name : "";
    size_t l = cstrlen(nm);
    if (l >= PATH_MAX) l = PATH_MAX - 1;
    memcpy(o->name, nm, l);
    o->name[l] = 0;
    o->bias = info->dlpi_addr;
    o->bid_len = 0;
    o->nr = 0;
    for (int i = 0; i < info->dlpi_phnum && o->nr < 16; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_LOAD) continue;
        o->lo[o->nr] = info->dlpi_addr + ph->p_vaddr;
        o->hi[o->nr] = info->dlpi_addr + ph->p_vaddr + ph->p_memsz;
        o->nr++;
    }
    find_build_id(info, o);
    c->n++;
    return 0;
}
static int phdr_counts(struct dl_phdr_info *info, size_t size, void *data) {
    (void)size;
    unsigned long long *v = data;
    v[0] = info->dlpi_adds;
    v[1] = info->dlpi_subs;
    return 1;
}
static int cmp_range(const mrange_t *a, const mrange_t *b) {
    return a->lo < b->lo ? -1 : a->lo > b->lo;
}

/* Rebuild the module snapshot (dl_iterate_phdr); the old snapshot is left in place for
 * lock-free readers (a few KiB per dlopen/dlclose; capped). */
HIDDEN void modules_rebuild(void) {
    lock_acquire(&g_mod_lock);
    if (g_rebuilds > 256) { lock_release(&g_mod_lock); return; }
    g_rebuilds++;
    STAT_ADD(ST_MODULE_REBUILDS, 1);
    size_t cap = 512;
    objinfo_t *objs = raw_map(cap * sizeof(objinfo_t));
    if (!objs) { lock_release(&g_mod_lock); return; }
    collect_t c = {objs, 0, (int)cap, 0, 0};
    dl_iterate_phdr(phdr_collect, &c);
    size_t nr = 0;
    for (int i = 0; i < c.n; i++) nr += (size_t)objs[i].nr;
    size_t ssz = sizeof(msnap_t) + (nr + 1) * sizeof(mrange_t);
    msnap_t *s = raw_map(ssz);
    if (!s) { raw_unmap(objs, cap * sizeof(objinfo_t)); lock_release(&g_mod_lock); return; }
    static char rp[PATH_MAX]; /* g_mod_lock held: keeps hooks' stack use small */
    uintptr_t self = (uintptr_t)&modules_rebuild;
    for (int i = 0; i < c.n; i++) {
        objinfo_t *o = &objs[i];
        const char *path = o->name;
        if (i == 0 && !o->name[0]) {
            long k = syscall(SYS_readlinkat, AT_FDCWD, "/proc/self/exe", rp, sizeof rp - 1);
            if (k > 0) { rp[k] = 0; path = rp; }
        } else if (o->name[0] == '/' || o->name[0] == '.') {
            if (realpath(o->name, rp)) path = rp;
        } else if (!o->name[0]) {
            continue;
        }
        uint32_t id = module_intern(path, o->bid, o->bid_len);
        if (id == UINT32_MAX) continue;
        for (int j = 0; j < o->nr; j++) {
            if (self >= o->lo[j] && self < o->hi[j]) g_self_mod = id;
            s->r[s->n].lo = o->lo[j];
            s->r[s->n].hi = o->hi[j];
            s->r[s->n].bias = o->bias;
            s->r[s->n].mod = id;
            s->n++;
        }
    }
    /* insertion sort: tens of ranges */
    for (size_t i = 1; i < s->n; i++) {
        mrange_t t = s->r[i];
        size_t j = i;
        while (j > 0 && cmp_range(&s->r[j - 1], &t) > 0) { s->r[j] = s->r[j - 1]; j--; }
        s->r[j] = t;
    }
    g_snap_adds = c.adds;
    g_snap_subs = c.subs;
    atomic_store(&g_snap, s);
    raw_unmap(objs, cap * sizeof(objinfo_t));
    lock_release(&g_mod_lock);
}
static const mrange_t *snap_find(const msnap_t *s, uintptr_t a) {
    if (!s) return NULL;
    size_t lo = 0, hi = s->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (s->r[mid].hi <= a) lo = mid + 1;
        else if (s->r[mid].lo > a) hi = mid;
        else return &s->r[mid];
    }
    return NULL;
}

/* Top K return addresses above the shim's own frames, as (module, offset). */
HIDDEN void capture_site(site_t *st) {
    void *fr[MAX_DEPTH + 8];
    int want = g_depth + 8;
    int n = backtrace(fr, want);
    unsigned long long cnt[2] = {0, 0};
    dl_iterate_phdr(phdr_counts, cnt);
    msnap_t *s = atomic_load(&g_snap);
    if (!s || cnt[0] != g_snap_adds || cnt[1] != g_snap_subs) {
        modules_rebuild();
        s = atomic_load(&g_snap);
    }
    int i = 0;
    while (i < n) {
        const mrange_t *r = snap_find(s, (uintptr_t)fr[i]);
        if (!r || r->mod != g_self_mod) break;
        i++;
    }
    uint64_t h = FNV_OFF;
    st->n = 0;
    for (; i < n && st->n < g_depth; i++) {
        uintptr_t a = (uintptr_t)fr[i];
        const mrange_t *r = snap_find(s, a);
        if (!r) {
            modules_rebuild();
            s = atomic_load(&g_snap);
            r = snap_find(s, a);
        }
        uint32_t mod;
        uint64_t off;
        if (r) { mod = r->mod; off = a - r->bias; }
        else {
            if (g_anon_mod == UINT32_MAX) {
                lock_acquire(&g_mod_lock);
                if (g_anon_mod == UINT32_MAX) g_anon_mod = module_intern("[anonymous]", NULL, 0);
                lock_release(&g_mod_lock);
            }
            mod = g_anon_mod;
            off = a;
        }
        const char *path = mod != UINT32_MAX ? g_mods[mod].path : "";
        size_t pl = mod != UINT32_MAX ? g_mods[mod].path_len : 0;
        uint8_t zero = 0;
        h = fnv(h, path, pl);
        h = fnv(h, &zero, 1);
        h = fnv(h, &off, 8);
        st->mod[st->n] = mod;
        st->off[st->n] = off;
        st->n++;
    }
    st->hash = h;
}

/* Sites already written to this log (open addressing; full: write again, harmless). */
HIDDEN uint64_t *g_siteset;
static int siteset_add(uint64_t h) { /* 1 if new */
    if (!g_siteset) return 1;
    if (!h) h = 1;
    uint32_t i = (uint32_t)((h * 0x9E3779B97F4A7C15ull) >> 48);
    for (uint32_t k = 0; k < 64; k++, i = (i + 1) & (SITESET_CAP - 1)) {
        if (g_siteset[i] == h) return 0;
        if (!g_siteset[i]) { g_siteset[i] = h; return 1; }
    }
    return 1;
}

static void emit_module_locked(uint32_t id) {
    if (id == UINT32_MAX || g_mods[id].emitted) return;
    module_t *m = &g_mods[id];
    static char rec[8 + 12 + PATH_MAX + 32 + 8]; /* g_log_lock held */
    size_t len = 8 + 12 + m->path_len + m->bid_len;
    len = (len + 7) & ~(size_t)7;
    memset(rec, 0, len);
    struct rec_hdr h = {REC_MODULE, (uint32_t)len};
    memcpy(rec, &h, 8);
    memcpy(rec + 8, &id, 4);
    memcpy(rec + 12, &m->path_len, 4);
    rec[16] = (char)m->bid_len;
    memcpy(rec + 20, m->path, m->path_len);
    memcpy(rec + 20 + m->path_len, m->bid, m->bid_len);
    log_append_locked(rec, len);
    m->emitted = 1;
}
HIDDEN void emit_site_locked(const site_t *st) {
    if (!st->n || !siteset_add(st->hash)) return;
    for (int i = 0; i < st->n; i++) emit_module_locked(st->mod[i]);
    char rec[8 + 16 + MAX_DEPTH * 16];
    size_t len = 8 + 16 + (size_t)st->n * 16;
    struct rec_hdr h = {REC_SITE, (uint32_t)len};
    memcpy(rec, &h, 8);
    memcpy(rec + 8, &st->hash, 8);
    uint32_t d[2] = {(uint32_t)st->n, 0};
    memcpy(rec + 16, d, 8);
    for (int i = 0; i < st->n; i++) {
        struct site_frame f = {st->mod[i], 0, st->off[i]};
        memcpy(rec + 24 + 16 * i, &f, 16);
    }
    log_append_locked(rec, len);
}
