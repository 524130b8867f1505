/*
 * shim_wrappers.c - the exported allocator and mmap-family wrappers, exec, spawn and
 * _exit, and the bootstrap allocator that serves allocations made while dlsym runs.
 */
#include "shim_internal.h"

/* Bootstrap allocator: serves allocations made while dlsym itself runs. */
static _Alignas(64) char boot_buf[1 << 16];
static _Atomic size_t boot_used;
static void *boot_alloc(size_t n, size_t align, int zero) {
    (void)zero; /* static storage is zero and never reused */
    if (align < 16) align = 16;
    size_t need = ((n + 15) & ~(size_t)15) + align;
    size_t off = atomic_fetch_add(&boot_used, need);
    if (off + need > sizeof boot_buf) return NULL;
    uintptr_t base = (uintptr_t)boot_buf + off;
    uintptr_t p = (base + 16 + align - 1) & ~(uintptr_t)(align - 1);
    ((size_t *)p)[-1] = n;
    return (void *)p;
}
static inline int is_boot(const void *p) {
    return (const char *)p >= boot_buf && (const char *)p < boot_buf + sizeof boot_buf;
}
static inline size_t boot_size(const void *p) { return ((const size_t *)p)[-1]; }

/* ------------------------------------------------------------------ allocator wrappers */
#define HOOK_ENTER() do { t_in_hook = 1; } while (0)
#define HOOK_LEAVE() do { t_in_hook = 0; } while (0)
/* Leaving an allocator wrapper the program called: the real allocator has returned and
 * holds no lock, so a sampler asked for by a hook can be created here (never in a hook). */
#define HOOK_LEAVE_SAFE() do { t_in_hook = 0; sampler_safe_point(); } while (0)

EXPORT void *malloc(size_t n) {
    if (UNLIKELY(!real_malloc)) {
        resolve_all();
        if (!real_malloc) return boot_alloc(n, 16, 0);
    }
    if (LIKELY(!g_active) || t_in_hook) return real_malloc(n);
    HOOK_ENTER();
    void *p = real_malloc(n);
    if (p && n >= g_threshold) { int e = errno; track(p, n, K_MALLOC, 0, 1); errno = e; }
    HOOK_LEAVE_SAFE();
    return p;
}

EXPORT void *calloc(size_t a, size_t b) {
    if (UNLIKELY(!real_calloc)) {
        resolve_all();
        if (!real_calloc) {
            size_t n;
            if (__builtin_mul_overflow(a, b, &n)) return NULL;
            return boot_alloc(n, 16, 1);
        }
    }
    if (LIKELY(!g_active) || t_in_hook) return real_calloc(a, b);
    HOOK_ENTER();
    void *p = real_calloc(a, b);
    size_t n;
    if (p && !__builtin_mul_overflow(a, b, &n) && n >= g_threshold) {
        int e = errno;
        track(p, n, K_CALLOC, 0, 1);
        errno = e;
    }
    HOOK_LEAVE_SAFE();
    return p;
}

EXPORT void free(void *p) {
    if (!p) return;
    if (UNLIKELY(is_boot(p))) return;
    if (UNLIKELY(!real_free)) { resolve_all(); if (!real_free) return; }
    if (LIKELY(!g_active) || t_in_hook) { real_free(p); return; }
    if (LIKELY(!atomic_load_explicit(&g_bloom[bloom_idx((uintptr_t)p)], memory_order_relaxed))) {
        HOOK_ENTER();
        real_free(p);
        HOOK_LEAVE();
        return;
    }
    HOOK_ENTER();
    int e = errno;
    untrack_free(p, F_FREE);
    errno = e;
    real_free(p);
    HOOK_LEAVE();
}

static void *realloc_common(void *p, size_t n, int is_array, size_t na, size_t nb) {
    if (is_array) {
        if (__builtin_mul_overflow(na, nb, &n)) { errno = ENOMEM; return NULL; }
    }
    HOOK_ENTER();
    obj_t o;
    struct rec_sample sr;
    int hs = 0, had = 0;
    int e = errno;
    if (p) had = take_object((uintptr_t)p, &o, &sr, &hs);
    if (had) unbind_object(&o); /* the memory may be reused by the time realloc returns */
    errno = e;
    void *q;
    if (is_array && real_reallocarray) q = real_reallocarray(p, na, nb);
    else q = real_realloc(p, n);
    e = errno;
    if (p && !n) { /* realloc(p, 0) frees p (glibc, jemalloc) */
        if (had) log_free(&o, F_REALLOC, &sr, hs);
    } else if (!q) {
        if (had) { put_back(&o); rebind_object(&o); }
    } else {
        if (had) log_free(&o, F_REALLOC, &sr, hs);
        if (n >= g_threshold) track(q, n, K_REALLOC, 0, 1);
    }
    HOOK_LEAVE_SAFE();
    errno = e;
    return q;
}

EXPORT void *realloc(void *p, size_t n) {
    if (UNLIKELY(!real_realloc)) {
        resolve_all();
        if (!real_realloc) {
            void *q = boot_alloc(n, 16, 0);
            if (q && p && is_boot(p)) memcpy(q, p, boot_size(p) < n ? boot_size(p) : n);
            return q;
        }
    }
    if (UNLIKELY(p && is_boot(p))) {
        void *q = malloc(n);
        if (q) memcpy(q, p, boot_size(p) < n ? boot_size(p) : n);
        return q;
    }
    if (LIKELY(!g_active) || t_in_hook) return real_realloc(p, n);
    return realloc_common(p, n, 0, 0, 0);
}

EXPORT void *reallocarray(void *p, size_t a, size_t b) {
    ENSURE(real_realloc);
    size_t n;
    if (UNLIKELY(p && is_boot(p))) {
        if (__builtin_mul_overflow(a, b, &n)) { errno = ENOMEM; return NULL; }
        return realloc(p, n);
    }
    if (LIKELY(!g_active) || t_in_hook) {
        if (real_reallocarray) return real_reallocarray(p, a, b);
        if (__builtin_mul_overflow(a, b, &n)) { errno = ENOMEM; return NULL; }
        return real_realloc(p, n);
    }
    return realloc_common(p, 0, 1, a, b);
}

EXPORT int posix_memalign(void **out, size_t al, size_t n) {
    if (UNLIKELY(!real_posix_memalign)) {
        resolve_all();
        if (!real_posix_memalign) {
            void *q = boot_alloc(n, al, 0);
            if (!q) return ENOMEM;
            *out = q;
            return 0;
        }
    }
    if (LIKELY(!g_active) || t_in_hook) return real_posix_memalign(out, al, n);
    HOOK_ENTER();
    int r = real_posix_memalign(out, al, n);
    if (r == 0 && *out && n >= g_threshold) { int e = errno; track(*out, n, K_POSIX_MEMALIGN, 0, 1); errno = e; }
    HOOK_LEAVE_SAFE();
    return r;
}

#define ALIGNED_WRAPPER(fname, realfn, KIND, SIZEEXPR, ...)                                  \
    {                                                                                    \
        if (UNLIKELY(!realfn)) {                                                         \
            resolve_all();                                                               \
            if (!realfn) {                                                               \
                if (atomic_load(&g_resolve_state) != 2) return boot_alloc(n, g_page, 0); \
                errno = ENOMEM;                                                          \
                return NULL;                                                             \
            }                                                                            \
        }                                                                                \
        if (LIKELY(!g_active) || t_in_hook) return realfn(__VA_ARGS__);                  \
        HOOK_ENTER();                                                                    \
        void *p = realfn(__VA_ARGS__);                                                   \
        size_t sz = (SIZEEXPR);                                                          \
        if (p && sz >= g_threshold) { int e = errno; track(p, sz, KIND, 0, 1); errno = e; } \
        HOOK_LEAVE_SAFE();                                                                 \
        return p;                                                                        \
    }

EXPORT void *aligned_alloc(size_t al, size_t n) ALIGNED_WRAPPER(aligned_alloc, real_aligned_alloc, K_ALIGNED_ALLOC, n, al, n)
EXPORT void *memalign(size_t al, size_t n) ALIGNED_WRAPPER(memalign, real_memalign, K_MEMALIGN, n, al, n)
EXPORT void *valloc(size_t n) ALIGNED_WRAPPER(valloc, real_valloc, K_VALLOC, n, n)
EXPORT void *pvalloc(size_t n) ALIGNED_WRAPPER(pvalloc, real_pvalloc, K_VALLOC, (n + g_page - 1) & g_page_mask, n)

/* ------------------------------------------------------------------ mmap family */
EXPORT void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off) {
    ENSURE(real_mmap);
    if (UNLIKELY(!real_mmap)) {
        long r = syscall(SYS_mmap, addr, len, prot, flags, fd, off);
        return r == -1 ? MAP_FAILED : (void *)r;
    }
    if (LIKELY(!g_active) || t_in_hook) return real_mmap(addr, len, prot, flags, fd, off);
    HOOK_ENTER();
    int e = errno;
    if (flags & MAP_FIXED) mmap_range_gone((uintptr_t)addr, (uintptr_t)addr + len);
    errno = e;
    void *p = real_mmap(addr, len, prot, flags, fd, off);
    e = errno;
    if (p != MAP_FAILED && len >= g_threshold && prot != PROT_NONE) {
        int samp = (flags & MAP_ANONYMOUS) && (flags & MAP_PRIVATE) &&
                   !(flags & (MAP_HUGETLB | MAP_GROWSDOWN | MAP_STACK)) &&
                   prot == (PROT_READ | PROT_WRITE);
        track(p, len, K_MMAP, 1, samp);
    }
    errno = e;
    HOOK_LEAVE();
    return p;
}
EXPORT void *mmap64(void *addr, size_t len, int prot, int flags, int fd, off_t off)
    __attribute__((alias("mmap")));

EXPORT int munmap(void *addr, size_t len) {
    ENSURE(real_munmap);
    if (UNLIKELY(!real_munmap)) return (int)syscall(SYS_munmap, addr, len);
    if (LIKELY(!g_active) || t_in_hook) return real_munmap(addr, len);
    HOOK_ENTER();
    int e = errno;
    uintptr_t a = (uintptr_t)addr;
    /* every tracked mapping overlapping the range ends (what stays mapped is re-logged);
     * arguments the kernel rejects (EINVAL) leave the tracking alone */
    if (len && !(a & ~g_page_mask) && a + len > a) mmap_range_gone(a, a + len);
    errno = e;
    int r = real_munmap(addr, len);
    HOOK_LEAVE();
    return r;
}

EXPORT void *mremap(void *old, size_t old_len, size_t new_len, int flags, ...) {
    void *new_addr = NULL;
    if (flags & MREMAP_FIXED) {
        va_list ap;
        va_start(ap, flags);
        new_addr = va_arg(ap, void *);
        va_end(ap);
    }
    ENSURE(real_mremap);
    if (LIKELY(!g_active) || t_in_hook) return real_mremap(old, old_len, new_len, flags, new_addr);
    HOOK_ENTER();
    int e = errno;
    obj_t o;
    struct rec_sample sr;
    int hs = 0, had = 0;
    uintptr_t a = (uintptr_t)old;
    if (atomic_load_explicit(&g_bloom[bloom_idx(a)], memory_order_relaxed)) {
        lock_acquire(&g_tab_lock);
        obj_t *x = tab_find(a);
        int mm = x && (x->flags & OF_MMAP);
        lock_release(&g_tab_lock);
        if (mm) had = take_object(a, &o, &sr, &hs);
        if (had) unbind_object(&o); /* the policy would move with the mapping */
    }
    if (!had) mmap_range_gone(a, a + old_len);
    if (flags & MREMAP_FIXED) mmap_range_gone((uintptr_t)new_addr, (uintptr_t)new_addr + new_len);
    errno = e;
    void *r = real_mremap(old, old_len, new_len, flags, new_addr);
    e = errno;
    if (r == MAP_FAILED) {
        if (had) { put_back(&o); rebind_object(&o); }
    } else {
        if (had) log_free(&o, F_REALLOC, &sr, hs);
        if (new_len >= g_threshold)
            track(r, new_len, K_REALLOC, 1, had ? (o.flags & OF_SAMPLEABLE) != 0 : 1);
    }
    errno = e;
    HOOK_LEAVE();
    return r;
}

/* The program changes protections itself: lift poison there and stop sampling those objects. */
EXPORT int mprotect(void *addr, size_t len, int prot) {
    ENSURE(real_mprotect);
    if (UNLIKELY(!real_mprotect)) return (int)syscall(SYS_mprotect, addr, len, prot);
    if (LIKELY(!g_sampling) || t_in_hook) return real_mprotect(addr, len, prot);
    HOOK_ENTER();
    uintptr_t lo = (uintptr_t)addr, hi = lo + len;
    lock_acquire(&g_tab_lock);
    lock_acquire(&g_smp_lock);
    for (size_t i = 0; i < g_big_n; i++) {
        big_t *b = &g_big[i];
        if (b->addr < hi && b->addr + b->size > lo && !(b->flags & OF_NOSAMPLE)) {
            b->flags |= OF_NOSAMPLE;
            obj_t *o = tab_find(b->addr);
            if (o) {
                o->flags |= OF_NOSAMPLE;
                if (o->slot < g_act_n && g_act[o->slot].seq == o->seq)
                    sample_restore_all(&g_act[o->slot]);
            }
        }
    }
    lock_release(&g_smp_lock);
    lock_release(&g_tab_lock);
    int r = real_mprotect(addr, len, prot);
    HOOK_LEAVE();
    return r;
}

/* ------------------------------------------------------------------ exec, spawn, _exit */
static void pre_exec(void) {
    if (!g_active && !g_sampling) return;
    int e = errno;
    sampling_quiesce(200000000ull); /* argv/envp strings may sit on sampled pages */
    if (g_active && raw_getpid() == g_log_pid) {
        int saved = t_in_hook;
        t_in_hook = 1;
        if (lock_try_for(&g_log_lock, 200000000ull)) {
            log_end_locked(END_EXEC);
            lock_release(&g_log_lock);
        }
        t_in_hook = saved;
    }
    errno = e;
}
EXPORT int execve(const char *p, char *const a[], char *const en[]) {
    ENSURE(real_execve);
    pre_exec();
    return real_execve(p, a, en);
}
EXPORT int execv(const char *p, char *const a[]) {
    ENSURE(real_execv);
    pre_exec();
    return real_execv(p, a);
}
EXPORT int execvp(const char *p, char *const a[]) {
    ENSURE(real_execvp);
    pre_exec();
    return real_execvp(p, a);
}
EXPORT int execvpe(const char *p, char *const a[], char *const en[]) {
    ENSURE(real_execvpe);
    pre_exec();
    return real_execvpe(p, a, en);
}
EXPORT int fexecve(int fd, char *const a[], char *const en[]) {
    ENSURE(real_fexecve);
    pre_exec();
    return real_fexecve(fd, a, en);
}
#define VA_ARGV(first, ap, argv, extra)                                          \
    size_t argc_ = 1;                                                            \
    va_start(ap, first);                                                         \
    while (va_arg(ap, char *)) argc_++;                                          \
    va_end(ap);                                                                  \
    char *argv[argc_ + 1];                                                       \
    argv[0] = (char *)(first);                                                   \
    va_start(ap, first);                                                         \
    for (size_t i_ = 1; i_ <= argc_; i_++) argv[i_] = va_arg(ap, char *);       \
    extra;                                                                       \
    va_end(ap)
EXPORT int execl(const char *p, const char *arg, ...) {
    va_list ap;
    VA_ARGV(arg, ap, argv, (void)0);
    return execv(p, argv);
}
EXPORT int execlp(const char *p, const char *arg, ...) {
    va_list ap;
    VA_ARGV(arg, ap, argv, (void)0);
    return execvp(p, argv);
}
EXPORT int execle(const char *p, const char *arg, ...) {
    va_list ap;
    char **envp = NULL;
    VA_ARGV(arg, ap, argv, envp = va_arg(ap, char **));
    return execve(p, argv, envp);
}
EXPORT int posix_spawn(pid_t *pid, const char *path, const posix_spawn_file_actions_t *fa,
                       const posix_spawnattr_t *at, char *const a[], char *const en[]) {
    ENSURE(real_posix_spawn);
    if (g_sampling) sampling_quiesce(200000000ull);
    return real_posix_spawn(pid, path, fa, at, a, en);
}
EXPORT int posix_spawnp(pid_t *pid, const char *file, const posix_spawn_file_actions_t *fa,
                        const posix_spawnattr_t *at, char *const a[], char *const en[]) {
    ENSURE(real_posix_spawnp);
    if (g_sampling) sampling_quiesce(200000000ull);
    return real_posix_spawnp(pid, file, fa, at, a, en);
}

EXPORT void _exit(int status) {
    ENSURE(real__exit);
    if (g_active && raw_getpid() == g_log_pid) shim_finish(0, 1);
    real__exit(status);
    __builtin_unreachable();
}
EXPORT void _Exit(int status) {
    ENSURE(real__Exit);
    if (g_active && raw_getpid() == g_log_pid) shim_finish(0, 1);
    real__Exit(status);
    __builtin_unreachable();
}
