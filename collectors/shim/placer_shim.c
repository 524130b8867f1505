/*
 * placer_shim.c - the preloaded allocation shim of placer (LD_PRELOAD).
 *
 * Wraps the allocator entry points (malloc, calloc, realloc, reallocarray, free,
 * posix_memalign, aligned_alloc, memalign, valloc, pvalloc) and mmap, munmap, mremap;
 * forwards every call through dlsym(RTLD_NEXT) so glibc, jemalloc and tcmalloc all work
 * underneath; logs allocations at or above a size threshold with their call site into a
 * binary log (docs/shim-log.md); samples accesses to large live objects by page
 * poisoning (docs/shim.md, design map 4.2); optionally binds planned sites to a NUMA node.
 *
 * Ground rules, in order: never crash, deadlock or change the behaviour or output of the
 * host program; when anything fails inside the shim, fall back to plain forwarding and
 * count it.  Concretely:
 *   - Nothing here writes to stdout/stderr unless PLACER_SHIM_DEBUG is set.
 *   - The shim's own I/O and memory use raw system calls (no stdio, no malloc).
 *   - A thread-local flag makes every allocation made while a hook is running pass
 *     straight through (the unwinder, dlsym, pthread_create, realpath allocate).
 *   - errno is preserved across all bookkeeping.
 *   - No shim lock is ever held while calling into the real allocator.
 *
 * Lock order: col (sampler phases) -> mod (module registry) -> tab (object table)
 *             -> smp (poisoned pages) -> log (record buffer).  sig is a leaf.
 */
#undef _FORTIFY_SOURCE
#define _GNU_SOURCE
#include <dlfcn.h>
#include <elf.h>
#include <errno.h>
#include <execinfo.h>
#include <fcntl.h>
#include <limits.h>
#include <link.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>

#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the shim log format is little-endian; this host is not"
#endif

#define EXPORT __attribute__((visibility("default")))
#define HIDDEN __attribute__((visibility("hidden")))
#define LIKELY(x) __builtin_expect(!!(x), 1)
#define UNLIKELY(x) __builtin_expect(!!(x), 0)
#define TLS __thread __attribute__((tls_model("initial-exec")))

#ifndef PLACER_SHIM_SOURCE_HASH
#define PLACER_SHIM_SOURCE_HASH "unknown"
#endif
/* Found by collectors.shim.build (a byte search in the .so): tells a stale build. */
__attribute__((used)) static const char shim_source_marker[] =
    "PLACER_SHIM_SOURCE_SHA256=" PLACER_SHIM_SOURCE_HASH ";";

/* ------------------------------------------------------------------ log format */
enum { REC_MODULE = 1, REC_SITE = 2, REC_ALLOC = 3, REC_FREE = 4, REC_SAMPLE = 5,
       REC_END = 6, REC_BIND = 7, REC_STATS = 8 };
enum { K_MALLOC = 0, K_CALLOC = 1, K_REALLOC = 2, K_POSIX_MEMALIGN = 3, K_ALIGNED_ALLOC = 4,
       K_MEMALIGN = 5, K_MMAP = 6, K_VALLOC = 7 };
enum { F_FREE = 0, F_REALLOC = 1, F_MUNMAP = 2 };
#define END_EXEC 256u
#define LOG_VERSION 1u
#define HDR_FLAG_SAMPLING 1u
#define HDR_FLAG_PLAN 2u

#pragma pack(push, 1)
struct file_hdr {
    char magic[8];
    uint32_t version, hdr_size;
    uint64_t start_ns;
    uint32_t pid, page_size, depth, flags;
    uint64_t threshold;
    uint32_t period_ms, ppid;
    uint64_t proc_start; /* process start time, clock ticks since boot (same across exec) */
};
struct rec_hdr { uint32_t type, len; };
struct rec_alloc {
    struct rec_hdr h;
    uint64_t seq, time_ns, address, size, site;
    uint32_t tid;
    uint8_t kind, pad[3];
};
struct rec_free {
    struct rec_hdr h;
    uint64_t seq, time_ns, address;
    uint8_t kind, pad[7];
};
struct rec_sample {
    struct rec_hdr h;
    uint64_t seq, start_ns, end_ns;
    uint32_t interval, sampled, touched, written;
};
struct rec_end {
    struct rec_hdr h;
    uint64_t time_ns, dropped;
    uint32_t reason, pad;
};
struct rec_bind {
    struct rec_hdr h;
    uint64_t seq;
    uint32_t node;
    int32_t err;
};
/* A BIND of one chunk: the same first fields, then the chunk and the range bound. */
struct rec_bind_chunk {
    struct rec_hdr h;
    uint64_t seq;
    uint32_t node;
    int32_t err;
    uint32_t chunk, pad;
    uint64_t start, length; /* whole pages bound (0, 0: none) */
};
struct site_frame { uint32_t module_id, pad; uint64_t offset; };
#pragma pack(pop)
_Static_assert(sizeof(struct file_hdr) == 64, "header");
_Static_assert(sizeof(struct rec_alloc) == 56, "alloc");
_Static_assert(sizeof(struct rec_free) == 40, "free");
_Static_assert(sizeof(struct rec_sample) == 48, "sample");
_Static_assert(sizeof(struct rec_end) == 32, "end");
_Static_assert(sizeof(struct rec_bind) == 24, "bind");
_Static_assert(sizeof(struct rec_bind_chunk) == 48, "bind chunk");

/* Counters written in the STATS record, in this order (docs/shim-log.md). */
enum {
    ST_DROPPED_RECORDS, ST_UNTRACKED_OBJECTS, ST_LOG_WRITE_ERRORS, ST_LOG_REOPENS,
    ST_SAMPLE_INTERVALS, ST_SAMPLE_FAULTS, ST_IO_UNPOISONS, ST_BUSY_SKIPS, ST_FOREIGN_SEGV,
    ST_MPROTECT_FAILURES, ST_BINDS_OK, ST_BINDS_FAILED, ST_STALE_OBJECTS, ST_MODULE_REBUILDS,
    ST_UNSAMPLEABLE_OBJECTS, ST_SAMPLER_CPU_NS, ST_FAULT_NS, ST_BUDGET_SKIPS,
    ST_PLAN_BAD_LINES, ST_COUNT
};
static _Atomic uint64_t g_stat[ST_COUNT];
#define STAT_ADD(i, n) atomic_fetch_add_explicit(&g_stat[i], (uint64_t)(n), memory_order_relaxed)

/* ------------------------------------------------------------------ raw helpers */
static TLS int t_in_hook;       /* set while a hook runs: nested allocations pass through */
static TLS int t_resolving;     /* this thread is inside dlsym at bootstrap */
static TLS pid_t t_tid;
static TLS int t_segv_blocked;  /* the program believes SIGSEGV is blocked in this thread */
static TLS uintptr_t t_last_fault_page;
static TLS uint64_t t_last_fault_epoch;

static inline pid_t my_tid(void) {
    if (UNLIKELY(!t_tid)) t_tid = (pid_t)syscall(SYS_gettid);
    return t_tid;
}
static inline uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}
static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}
static void *raw_map(size_t len) {
    long r = syscall(SYS_mmap, 0, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return r == -1 ? NULL : (void *)r;
}
static void raw_unmap(void *p, size_t len) { syscall(SYS_munmap, p, len); }
static int raw_mprotect(uintptr_t p, size_t len, int prot) {
    return (int)syscall(SYS_mprotect, p, len, prot);
}
static int raw_open(const char *p, int fl, int mode) {
    return (int)syscall(SYS_openat, AT_FDCWD, p, fl, mode);
}
static void raw_close(int fd) { syscall(SYS_close, fd); }
static ssize_t raw_read(int fd, void *b, size_t n) { return syscall(SYS_read, fd, b, n); }
static pid_t raw_getpid(void) { return (pid_t)syscall(SYS_getpid); }

static size_t cstrlen(const char *s) { size_t n = 0; while (s[n]) n++; return n; }
static char *put_str(char *p, char *end, const char *s) {
    while (*s && p < end) *p++ = *s++;
    return p;
}
static char *put_u64(char *p, char *end, uint64_t v) {
    char tmp[24];
    int n = 0;
    do { tmp[n++] = (char)('0' + v % 10); v /= 10; } while (v);
    while (n && p < end) *p++ = tmp[--n];
    return p;
}

/* A spin lock that knows its owner (signal handlers must not wait on themselves). */
typedef struct { _Atomic int owner; } lock_t;
static void lock_acquire(lock_t *l) {
    int me = my_tid(), spins = 0;
    for (;;) {
        int exp = 0;
        if (atomic_load_explicit(&l->owner, memory_order_relaxed) == 0 &&
            atomic_compare_exchange_weak_explicit(&l->owner, &exp, me, memory_order_acquire,
                                                  memory_order_relaxed))
            return;
        if (++spins < 100) cpu_relax();
        else sched_yield();
    }
}
/* 1: acquired; 0: held by this very thread, or still busy after max_ns. */
static int lock_try_for(lock_t *l, uint64_t max_ns) {
    int me = my_tid();
    uint64_t t0 = 0;
    for (int spins = 0;; spins++) {
        int exp = 0;
        if (atomic_compare_exchange_weak_explicit(&l->owner, &exp, me, memory_order_acquire,
                                                  memory_order_relaxed))
            return 1;
        if (exp == me) return 0;
        if ((spins & 63) == 63) {
            uint64_t t = now_ns();
            if (!t0) t0 = t;
            else if (t - t0 > max_ns) return 0;
            sched_yield();
        } else {
            cpu_relax();
        }
    }
}
static inline void lock_release(lock_t *l) {
    atomic_store_explicit(&l->owner, 0, memory_order_release);
}
static inline int lock_held_by_me(lock_t *l) {
    return atomic_load_explicit(&l->owner, memory_order_relaxed) == my_tid();
}

static lock_t g_col_lock, g_mod_lock, g_tab_lock, g_smp_lock, g_log_lock, g_sig_lock;

/* ------------------------------------------------------------------ real functions */
static void *(*real_malloc)(size_t);
static void *(*real_calloc)(size_t, size_t);
static void *(*real_realloc)(void *, size_t);
static void *(*real_reallocarray)(void *, size_t, size_t);
static void (*real_free)(void *);
static int (*real_posix_memalign)(void **, size_t, size_t);
static void *(*real_aligned_alloc)(size_t, size_t);
static void *(*real_memalign)(size_t, size_t);
static void *(*real_valloc)(size_t);
static void *(*real_pvalloc)(size_t);
static void *(*real_mmap)(void *, size_t, int, int, int, off_t);
static int (*real_munmap)(void *, size_t);
static void *(*real_mremap)(void *, size_t, size_t, int, ...);
static int (*real_mprotect)(void *, size_t, int);
static int (*real_sigaction)(int, const struct sigaction *, struct sigaction *);
static int (*real_sigprocmask)(int, const sigset_t *, sigset_t *);
static int (*real_pthread_sigmask)(int, const sigset_t *, sigset_t *);
static ssize_t (*real_read)(int, void *, size_t);
static ssize_t (*real_write)(int, const void *, size_t);
static ssize_t (*real_pread)(int, void *, size_t, off_t);
static ssize_t (*real_pwrite)(int, const void *, size_t, off_t);
static ssize_t (*real_readv)(int, const struct iovec *, int);
static ssize_t (*real_writev)(int, const struct iovec *, int);
static ssize_t (*real_preadv)(int, const struct iovec *, int, off_t);
static ssize_t (*real_pwritev)(int, const struct iovec *, int, off_t);
static ssize_t (*real_preadv2)(int, const struct iovec *, int, off_t, int);
static ssize_t (*real_pwritev2)(int, const struct iovec *, int, off_t, int);
static ssize_t (*real_recv)(int, void *, size_t, int);
static ssize_t (*real_recvfrom)(int, void *, size_t, int, struct sockaddr *, socklen_t *);
static ssize_t (*real_recvmsg)(int, struct msghdr *, int);
static ssize_t (*real_send)(int, const void *, size_t, int);
static ssize_t (*real_sendto)(int, const void *, size_t, int, const struct sockaddr *, socklen_t);
static ssize_t (*real_sendmsg)(int, const struct msghdr *, int);
static size_t (*real_fread)(void *, size_t, size_t, FILE *);
static size_t (*real_fwrite)(const void *, size_t, size_t, FILE *);
static size_t (*real_fread_unlocked)(void *, size_t, size_t, FILE *);
static size_t (*real_fwrite_unlocked)(const void *, size_t, size_t, FILE *);
static ssize_t (*real___read_chk)(int, void *, size_t, size_t);
static ssize_t (*real___pread_chk)(int, void *, size_t, off_t, size_t);
static ssize_t (*real___pread64_chk)(int, void *, size_t, off_t, size_t);
static ssize_t (*real___recv_chk)(int, void *, size_t, size_t, int);
static ssize_t (*real___recvfrom_chk)(int, void *, size_t, size_t, int, struct sockaddr *,
                                      socklen_t *);
static size_t (*real___fread_chk)(void *, size_t, size_t, size_t, FILE *);
static size_t (*real___fread_unlocked_chk)(void *, size_t, size_t, size_t, FILE *);
static ssize_t (*real_getrandom)(void *, size_t, unsigned int);
static int (*real_getentropy)(void *, size_t);
static int (*real_setvbuf)(FILE *, char *, int, size_t);
static void (*real_setbuffer)(FILE *, char *, size_t);
static int (*real_execve)(const char *, char *const[], char *const[]);
static int (*real_execv)(const char *, char *const[]);
static int (*real_execvp)(const char *, char *const[]);
static int (*real_execvpe)(const char *, char *const[], char *const[]);
static int (*real_fexecve)(int, char *const[], char *const[]);
static int (*real_posix_spawn)(pid_t *, const char *, const posix_spawn_file_actions_t *,
                               const posix_spawnattr_t *, char *const[], char *const[]);
static int (*real_posix_spawnp)(pid_t *, const char *, const posix_spawn_file_actions_t *,
                                const posix_spawnattr_t *, char *const[], char *const[]);
static void (*real__exit)(int);
static void (*real__Exit)(int);

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

static _Atomic int g_resolve_state; /* 0 none, 1 running, 2 done */
#define SYM(var, name) (var = (__typeof__(var))dlsym(RTLD_NEXT, name))
static void resolve_all(void) {
    int exp = 0;
    if (atomic_compare_exchange_strong(&g_resolve_state, &exp, 1)) {
        t_resolving = 1;
        SYM(real_malloc, "malloc");
        SYM(real_free, "free");
        SYM(real_calloc, "calloc");
        SYM(real_realloc, "realloc");
        SYM(real_reallocarray, "reallocarray");
        SYM(real_posix_memalign, "posix_memalign");
        SYM(real_aligned_alloc, "aligned_alloc");
        SYM(real_memalign, "memalign");
        SYM(real_valloc, "valloc");
        SYM(real_pvalloc, "pvalloc");
        SYM(real_mmap, "mmap");
        SYM(real_munmap, "munmap");
        SYM(real_mremap, "mremap");
        SYM(real_mprotect, "mprotect");
        SYM(real_sigaction, "sigaction");
        SYM(real_sigprocmask, "sigprocmask");
        SYM(real_pthread_sigmask, "pthread_sigmask");
        SYM(real_read, "read");
        SYM(real_write, "write");
        SYM(real_pread, "pread");
        SYM(real_pwrite, "pwrite");
        SYM(real_readv, "readv");
        SYM(real_writev, "writev");
        SYM(real_preadv, "preadv");
        SYM(real_pwritev, "pwritev");
        SYM(real_preadv2, "preadv2");
        SYM(real_pwritev2, "pwritev2");
        SYM(real_recv, "recv");
        SYM(real_recvfrom, "recvfrom");
        SYM(real_recvmsg, "recvmsg");
        SYM(real_send, "send");
        SYM(real_sendto, "sendto");
        SYM(real_sendmsg, "sendmsg");
        SYM(real_fread, "fread");
        SYM(real_fwrite, "fwrite");
        SYM(real_fread_unlocked, "fread_unlocked");
        SYM(real_fwrite_unlocked, "fwrite_unlocked");
        SYM(real___read_chk, "__read_chk");
        SYM(real___pread_chk, "__pread_chk");
        SYM(real___pread64_chk, "__pread64_chk");
        SYM(real___recv_chk, "__recv_chk");
        SYM(real___recvfrom_chk, "__recvfrom_chk");
        SYM(real___fread_chk, "__fread_chk");
        SYM(real___fread_unlocked_chk, "__fread_unlocked_chk");
        SYM(real_getrandom, "getrandom");
        SYM(real_getentropy, "getentropy");
        SYM(real_setvbuf, "setvbuf");
        SYM(real_setbuffer, "setbuffer");
        SYM(real_execve, "execve");
        SYM(real_execv, "execv");
        SYM(real_execvp, "execvp");
        SYM(real_execvpe, "execvpe");
        SYM(real_fexecve, "fexecve");
        SYM(real_posix_spawn, "posix_spawn");
        SYM(real_posix_spawnp, "posix_spawnp");
        SYM(real__exit, "_exit");
        SYM(real__Exit, "_Exit");
        t_resolving = 0;
        atomic_store(&g_resolve_state, 2);
    } else if (exp == 1 && !t_resolving) {
        while (atomic_load(&g_resolve_state) != 2) sched_yield();
    }
}
#define ENSURE(fn) do { if (UNLIKELY(!(fn))) resolve_all(); } while (0)

/* ------------------------------------------------------------------ configuration */
static volatile int g_active;      /* logging on */
static volatile int g_sampling;    /* page-poison sampling configured (and not finished) */
static volatile int g_sig_virtual; /* sigaction/signal are virtualised */
static int g_debug;
static size_t g_threshold = 65536;
static int g_depth = 6;
static size_t g_bufcap = 1 << 20;
static unsigned g_period_ms = 10;
static size_t g_sample_min = 1 << 20;
static unsigned g_sample_pages = 4;
static unsigned g_sample_max_pages = 64;
/* Sampling cost budget, in thousandths of a percent of the program's own CPU time
 * (1000 = 1%); 0 = no budget. See budget_exceeded(). */
static uint64_t g_budget_pcm = 1000;
static uint64_t g_ncpus = 1; /* CPUs the process may use, read at start */
static size_t g_max_objects = 1 << 20;
static uintptr_t g_page = 4096, g_page_mask = ~(uintptr_t)4095;
static uint64_t g_start_ns, g_proc_start;
static pid_t g_log_pid, g_ppid;
static char g_log_pattern[PATH_MAX];
static char g_log_path[PATH_MAX];
static int g_plan_loaded;
static int g_is_fork_child;

#define MAX_DEPTH 32
#define MAX_SPAGES 64

static void dbg(const char *a, const char *b, uint64_t n) {
    if (!g_debug) return;
    char buf[512], *p = buf, *e = buf + sizeof buf - 1;
    p = put_str(p, e, "placer-shim[");
    p = put_u64(p, e, (uint64_t)raw_getpid());
    p = put_str(p, e, "]: ");
    p = put_str(p, e, a);
    if (b) p = put_str(p, e, b);
    if (n != (uint64_t)-1) { p = put_str(p, e, " "); p = put_u64(p, e, n); }
    *p++ = '\n';
    syscall(SYS_write, 2, buf, (size_t)(p - buf));
}

static size_t env_size(const char *name, size_t def, size_t lo, size_t hi) {
    const char *s = getenv(name);
    if (!s || !*s) return def;
    size_t v = 0;
    const char *q = s;
    if (*q < '0' || *q > '9') { dbg("ignoring bad value of ", name, (uint64_t)-1); return def; }
    while (*q >= '0' && *q <= '9') {
        size_t nv = v * 10 + (size_t)(*q - '0');
        if (nv / 10 != v) return hi;
        v = nv;
        q++;
    }
    switch (*q) {
    case 'k': case 'K': v <<= 10; q++; break;
    case 'm': case 'M': v <<= 20; q++; break;
    case 'g': case 'G': v <<= 30; q++; break;
    default: break;
    }
    if (*q == 'i' || *q == 'I') q++;
    if (*q == 'b' || *q == 'B') q++;
    if (*q) { dbg("ignoring bad value of ", name, (uint64_t)-1); return def; }
    if (v < lo) v = lo;
    if (v > hi) v = hi;
    return v;
}

/* A percentage with up to three decimals ("1", "2.5", "0.25") in thousandths of a percent. */
static uint64_t env_percent_milli(const char *name, uint64_t def, uint64_t hi) {
    const char *s = getenv(name);
    if (!s || !*s) return def;
    uint64_t v = 0;
    int frac = -1, digits = 0;
    for (const char *q = s; *q; q++) {
        if (*q == '.' && frac < 0) { frac = 0; continue; }
        if (*q < '0' || *q > '9' || v > 1000000000ull) {
            dbg("ignoring bad value of ", name, (uint64_t)-1);
            return def;
        }
        if (frac >= 3) continue; /* finer than 0.001%: ignored */
        v = v * 10 + (uint64_t)(*q - '0');
        digits++;
        if (frac >= 0) frac++;
    }
    if (!digits) { dbg("ignoring bad value of ", name, (uint64_t)-1); return def; }
    for (int f = frac < 0 ? 0 : frac; f < 3; f++) v *= 10;
    return v > hi ? hi : v;
}

/* ------------------------------------------------------------------ log buffer */
static char *g_buf;
static size_t g_buf_used, g_buf_nrec;
/* Records older than this are written out with the next record appended, and by the
 * sampler thread (when there is one) after half of it, so a program killed by SIGKILL
 * (which no handler sees) loses little of its log. */
#define FLUSH_EVERY_NS 1000000000ull
static uint64_t g_buf_first_ns; /* when the oldest unwritten record was appended */
static int g_fd = -1;
static dev_t g_fd_dev;
static ino_t g_fd_ino;
static volatile int g_log_closed;
static _Atomic uint64_t g_seq = 1;

static void log_write_all(const char *p, size_t n) {
    while (n) {
        long w = syscall(SYS_write, g_fd, p, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            STAT_ADD(ST_LOG_WRITE_ERRORS, 1);
            STAT_ADD(ST_DROPPED_RECORDS, g_buf_nrec);
            return;
        }
        p += w;
        n -= (size_t)w;
    }
}
/* Our fd may have been closed or replaced by the program (daemons close all fds). */
static int log_fd_ok(void) {
    struct stat st;
    if (g_fd >= 0 && syscall(SYS_fstat, g_fd, &st) == 0 && st.st_dev == g_fd_dev &&
        st.st_ino == g_fd_ino)
        return 1;
    int fd = raw_open(g_log_path, O_WRONLY | O_APPEND | O_CLOEXEC, 0);
    if (fd < 0) return 0;
    STAT_ADD(ST_LOG_REOPENS, 1);
    g_fd = fd;
    if (syscall(SYS_fstat, fd, &st) == 0) { g_fd_dev = st.st_dev; g_fd_ino = st.st_ino; }
    return 1;
}
static void log_flush_locked(void) {
    if (!g_buf_used) return;
    if (raw_getpid() != g_log_pid) { /* a child we were not told about (raw clone) */
        g_buf_used = g_buf_nrec = 0;
        return;
    }
    if (log_fd_ok()) log_write_all(g_buf, g_buf_used);
    else STAT_ADD(ST_DROPPED_RECORDS, g_buf_nrec);
    g_buf_used = g_buf_nrec = 0;
}
static void log_append_locked(const void *rec, size_t len) {
    if (g_log_closed || !g_buf) return;
    if (g_buf_used + len > g_bufcap) log_flush_locked();
    if (len > g_bufcap) { STAT_ADD(ST_DROPPED_RECORDS, 1); return; }
    uint64_t now = now_ns();
    if (!g_buf_used) g_buf_first_ns = now;
    memcpy(g_buf + g_buf_used, rec, len);
    g_buf_used += len;
    g_buf_nrec++;
    /* whole records only: the file always ends on a record boundary after a flush. Not
     * while this thread holds the sampling lock: fault handlers would wait on the write. */
    if (now - g_buf_first_ns >= FLUSH_EVERY_NS && !lock_held_by_me(&g_smp_lock))
        log_flush_locked();
}
__attribute__((unused)) static void log_append(const void *rec, size_t len) {
    lock_acquire(&g_log_lock);
    log_append_locked(rec, len);
    lock_release(&g_log_lock);
}
static void log_end_locked(uint32_t reason) {
    if (g_log_closed || !g_buf) return;
    if (raw_getpid() == g_log_pid) log_fd_ok(); /* a reopen shows in the counters */
    char stats[8 + 8 + 8 * ST_COUNT];
    struct rec_hdr *h = (struct rec_hdr *)stats;
    h->type = REC_STATS;
    h->len = sizeof stats;
    uint32_t cnt[2] = {ST_COUNT, 0};
    memcpy(stats + 8, cnt, 8);
    for (int i = 0; i < ST_COUNT; i++) {
        uint64_t v = atomic_load_explicit(&g_stat[i], memory_order_relaxed);
        memcpy(stats + 16 + 8 * i, &v, 8);
    }
    log_append_locked(stats, sizeof stats);
    struct rec_end e = {{REC_END, sizeof e}, now_ns(),
                        atomic_load(&g_stat[ST_DROPPED_RECORDS]), reason, 0};
    log_append_locked(&e, sizeof e);
    log_flush_locked();
}

/* ------------------------------------------------------------------ log file */
static uint64_t read_proc_start_of(pid_t pid) {
    char buf[1024], path[64], *pp = path, *pe = path + sizeof path - 1;
    pp = put_str(pp, pe, "/proc/");
    if (pid) pp = put_u64(pp, pe, (uint64_t)pid);
    else pp = put_str(pp, pe, "self");
    pp = put_str(pp, pe, "/stat");
    *pp = 0;
    int fd = raw_open(path, O_RDONLY | O_CLOEXEC, 0);
    if (fd < 0) return 0;
    ssize_t n = raw_read(fd, buf, sizeof buf - 1);
    raw_close(fd);
    if (n <= 0) return 0;
    buf[n] = 0;
    char *p = NULL;
    for (ssize_t i = n - 1; i >= 0; i--) if (buf[i] == ')') { p = buf + i + 1; break; }
    if (!p) return 0;
    /* p points after "(comm)"; field 3 is next; starttime is field 22 */
    int field = 2;
    while (*p && field < 22) {
        while (*p == ' ') p++;
        field++;
        if (field == 22) break;
        while (*p && *p != ' ') p++;
    }
    uint64_t v = 0;
    while (*p >= '0' && *p <= '9') v = v * 10 + (uint64_t)(*p++ - '0');
    return v;
}
static uint64_t read_proc_start(void) { return read_proc_start_of(0); }

/* Expand %p; `exec_n` > 0 appends ".N" to the pid (an exec'd image of the same process);
 * without %p a forked child inserts ".PID" before the extension. */
static void expand_path(char *out, size_t cap, pid_t pid, unsigned exec_n, int child) {
    char *p = out, *e = out + cap - 1;
    const char *s = g_log_pattern;
    int had_p = 0;
    while (*s && p < e) {
        if (s[0] == '%' && s[1] == 'p') {
            p = put_u64(p, e, (uint64_t)pid);
            if (exec_n) { if (p < e) *p++ = '.'; p = put_u64(p, e, exec_n); }
            s += 2;
            had_p = 1;
        } else {
            *p++ = *s++;
        }
    }
    *p = 0;
    if (had_p || (!child && !exec_n)) return;
    /* no %p: insert ".PID[.N]" before the last extension of the file name */
    char tail[PATH_MAX];
    char *slash = strrchr(out, '/');
    char *dot = strrchr(slash ? slash : out, '.');
    if (!dot || dot == (slash ? slash + 1 : out)) dot = out + cstrlen(out);
    size_t tl = cstrlen(dot);
    if (tl >= sizeof tail) return;
    memcpy(tail, dot, tl + 1);
    p = dot;
    if (p < e) *p++ = '.';
    p = put_u64(p, e, (uint64_t)pid);
    if (exec_n) { if (p < e) *p++ = '.'; p = put_u64(p, e, exec_n); }
    p = put_str(p, e, tail);
    *p = 0;
}

static void write_header(void) {
    struct file_hdr h;
    memset(&h, 0, sizeof h);
    memcpy(h.magic, "PLSHIM01", 8);
    h.version = LOG_VERSION;
    h.hdr_size = sizeof h;
    h.start_ns = g_start_ns;
    h.pid = (uint32_t)g_log_pid;
    h.page_size = (uint32_t)g_page;
    h.depth = (uint32_t)g_depth;
    h.flags = (g_sampling ? HDR_FLAG_SAMPLING : 0) | (g_plan_loaded ? HDR_FLAG_PLAN : 0);
    h.threshold = g_threshold;
    h.period_ms = g_sampling ? g_period_ms : 0;
    h.ppid = (uint32_t)g_ppid;
    h.proc_start = g_proc_start;
    log_write_all((const char *)&h, sizeof h);
}

/* Open this process's log. Never overwrite the log of a process that is still alive:
 * an earlier image of this very process (exec) moves us to NAME.PID.N; another live
 * process (our parent, when the pattern has no %p and we are a forked child that
 * exec'd) moves us to the child's name. Logs of dead processes are stale: overwritten. */
static int open_log(int child) {
    int fd = -1;
    for (unsigned n = 0; n < 64; n++) {
        expand_path(g_log_path, sizeof g_log_path, g_log_pid, n, child);
        int rfd = raw_open(g_log_path, O_RDONLY | O_CLOEXEC, 0);
        if (rfd >= 0) {
            struct file_hdr old;
            ssize_t got = raw_read(rfd, &old, sizeof old);
            raw_close(rfd);
            if (got == (ssize_t)sizeof old && memcmp(old.magic, "PLSHIM01", 8) == 0) {
                if (old.pid == (uint32_t)g_log_pid && old.proc_start == g_proc_start)
                    continue; /* written by this process before an exec: keep it */
                if (old.pid != (uint32_t)g_log_pid && old.proc_start &&
                    read_proc_start_of((pid_t)old.pid) == old.proc_start && !child) {
                    child = 1; /* the log of a live process: take a name of our own */
                    n = (unsigned)-1;
                    continue;
                }
            }
        }
        fd = raw_open(g_log_path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644);
        break;
    }
    if (fd < 0) { dbg("cannot open log ", g_log_path, (uint64_t)-1); return -1; }
    /* keep out of the program's way: a high descriptor number */
    struct rlimit rl;
    int hi = 1024;
    if (syscall(SYS_getrlimit, RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < 1024)
        hi = (int)rl.rlim_cur;
    if (hi > 64) {
        int nfd = (int)syscall(SYS_fcntl, fd, F_DUPFD_CLOEXEC, hi - 48);
        if (nfd >= 0) { raw_close(fd); fd = nfd; }
    }
    struct stat st;
    if (syscall(SYS_fstat, fd, &st) == 0) { g_fd_dev = st.st_dev; g_fd_ino = st.st_ino; }
    g_fd = fd;
    write_header();
    return 0;
}

/* ------------------------------------------------------------------ modules and sites */
typedef struct {
    char path[PATH_MAX];
    uint32_t path_len;
    uint8_t bid[32];
    uint8_t bid_len;
    uint8_t emitted;
} module_t;
typedef struct { uintptr_t lo, hi, bias; uint32_t mod; } mrange_t;
typedef struct { size_t n; mrange_t r[]; } msnap_t;

#define MAX_MODULES 1024
#define MAX_RANGES 4096
static module_t *g_mods;
static _Atomic uint32_t g_nmods;
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
static void modules_rebuild(void) {
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

typedef struct {
    int n;
    uint32_t mod[MAX_DEPTH];
    uint64_t off[MAX_DEPTH];
    uint64_t hash;
} site_t;

/* Top K return addresses above the shim's own frames, as (module, offset). */
static void capture_site(site_t *st) {
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
#define SITESET_CAP (1u << 16)
static uint64_t *g_siteset;
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
static void emit_site_locked(const site_t *st) {
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

/* ------------------------------------------------------------------ plan (issue 5 hook) */
/* Lines: `site node` binds the whole allocation; `site node chunk_index chunk_size` binds
 * that chunk's byte range of each allocation of the site. A site's chunk lines form a list
 * in file order (plan_chunk_t.next), applied after its whole-allocation line, if any. */
typedef struct { uint64_t site; int32_t node; int32_t used; uint32_t chunk_head, chunk_tail; }
    plan_ent_t;
typedef struct { uint64_t size; uint32_t index, next; int32_t node, pad; } plan_chunk_t;
#define PLAN_CAP 4096u
#define PLAN_CHUNK_CAP 65536u
#define PLAN_NONE UINT32_MAX
static plan_ent_t *g_plan;
static plan_chunk_t *g_plan_chunks;
static uint32_t g_plan_nchunks;
static const plan_ent_t *plan_lookup(uint64_t site) {
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
static void load_plan(const char *path) {
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
static int do_mbind(uintptr_t addr, size_t size, int node) {
    uintptr_t lo = (addr + g_page - 1) & g_page_mask, hi = (addr + size) & g_page_mask;
    return mbind_range(lo, hi, node);
}
/* Bind each planned chunk of [addr, addr+size): the whole pages whose first byte lies in
 * the chunk's byte range (and inside the allocation), so the chunks of an allocation tile
 * its whole pages. One BIND record (with the chunk) per chunk the allocation has. */
static void bind_chunks(const plan_ent_t *e, uint64_t seq, uintptr_t addr, size_t size) {
    uintptr_t end_page = (addr + size) & g_page_mask;
    for (uint32_t c = e->chunk_head; c != PLAN_NONE && c < g_plan_nchunks;
         c = g_plan_chunks[c].next) {
        const plan_chunk_t *ch = &g_plan_chunks[c];
        uint64_t off, off_end;
        if (__builtin_mul_overflow((uint64_t)ch->index, ch->size, &off) || off >= size)
            continue; /* this allocation has no such chunk */
        off_end = size - off < ch->size ? size : off + ch->size;
        uintptr_t lo = (addr + off + g_page - 1) & g_page_mask;
        uintptr_t hi = (addr + off_end + g_page - 1) & g_page_mask;
        if (hi > end_page) hi = end_page;
        int err = mbind_range(lo, hi, ch->node);
        STAT_ADD(err ? ST_BINDS_FAILED : ST_BINDS_OK, 1);
        struct rec_bind_chunk br = {{REC_BIND, sizeof br}, seq, (uint32_t)ch->node, err,
                                    ch->index, 0, hi > lo ? lo : 0, hi > lo ? hi - lo : 0};
        lock_acquire(&g_log_lock);
        log_append_locked(&br, sizeof br);
        lock_release(&g_log_lock);
    }
}

/* ------------------------------------------------------------------ object table */
#define OF_SAMPLEABLE 1
#define OF_MMAP 2
#define OF_NOSAMPLE 4
typedef struct {
    uintptr_t addr; /* 0: empty */
    uint64_t size, seq, site, time_ns;
    uint32_t big, slot; /* index in big list; active-sample slot hint */
    uint8_t kind, flags;
} obj_t;
typedef struct { uintptr_t addr; uint64_t size, seq; uint8_t flags; } big_t;

static obj_t *g_tab;
static size_t g_tab_cap, g_tab_n;
static int g_tab_shift;
static big_t *g_big;
static size_t g_big_n, g_big_cap, g_big_cursor;
static uintptr_t *g_mm; /* live mmap objects, for munmap/MAP_FIXED range overlaps */
static size_t g_mm_n, g_mm_cap;
#define BLOOM_BITS 16
static _Atomic uint32_t g_bloom[1u << BLOOM_BITS];

static inline uint32_t bloom_idx(uintptr_t a) {
    return (uint32_t)(((uint64_t)(a >> 4) * 0x9E3779B97F4A7C15ull) >> (64 - BLOOM_BITS));
}
static inline size_t tab_hash(uintptr_t a) {
    return (size_t)(((uint64_t)(a >> 4) * 0x9E3779B97F4A7C15ull) >> g_tab_shift);
}
static obj_t *tab_find(uintptr_t a) {
    if (!g_tab) return NULL;
    size_t m = g_tab_cap - 1;
    for (size_t i = tab_hash(a);; i = (i + 1) & m) {
        if (g_tab[i].addr == a) return &g_tab[i];
        if (!g_tab[i].addr) return NULL;
    }
}
static int tab_grow(void) {
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

/* ------------------------------------------------------------------ page-poison sampling */
enum { PS_IDLE = 0, PS_NONE = 1, PS_READ = 2, PS_DONE = 3 };
typedef struct {
    uint64_t seq; /* 0: dead (object freed) */
    uintptr_t addr;
    uint64_t size, start_ns;
    uint32_t npages, sampled, touched, written;
    uintptr_t page[MAX_SPAGES];
    uint8_t st[MAX_SPAGES];
} asample_t;
typedef struct { uintptr_t page; uint32_t a, p; } pent_t;

static asample_t *g_act;
static uint32_t g_act_n, g_act_cap;
static pent_t *g_pt;
static uint32_t g_pt_cap;
static uint32_t g_interval;
static _Atomic uintptr_t g_plo = UINTPTR_MAX, g_phi = 0;   /* bounds of poisoned pages */
static _Atomic uint64_t g_epoch;                            /* bumped by every unpoison */
static _Atomic uint64_t g_pause_until;                      /* no poisoning before this */
static _Atomic int g_stop, g_sampler_started;
static uint64_t g_rng = 0x853c49e6748fea9bull;

#define IO_SLOTS 256
static struct { _Atomic uintptr_t lo, hi; } g_io[IO_SLOTS];
static _Atomic int g_io_n, g_io_overflow;

static inline uint64_t rng_next(void) {
    uint64_t x = g_rng;
    x ^= x << 13; x ^= x >> 7; x ^= x << 17;
    return g_rng = x;
}
static inline uint32_t pt_hash(uintptr_t page) {
    return (uint32_t)(((uint64_t)(page >> 12) * 0x9E3779B97F4A7C15ull) >> 40) & (g_pt_cap - 1);
}
static pent_t *pt_find(uintptr_t page) {
    if (!g_pt) return NULL;
    for (uint32_t i = pt_hash(page), k = 0; k < g_pt_cap; k++, i = (i + 1) & (g_pt_cap - 1)) {
        if (g_pt[i].page == page) return &g_pt[i];
        if (!g_pt[i].page) return NULL;
    }
    return NULL;
}
static void pt_insert(uintptr_t page, uint32_t a, uint32_t p) {
    for (uint32_t i = pt_hash(page), k = 0; k < g_pt_cap; k++, i = (i + 1) & (g_pt_cap - 1)) {
        if (!g_pt[i].page || g_pt[i].page == page) { g_pt[i] = (pent_t){page, a, p}; return; }
    }
}
static void pt_clear(void) {
    if (g_pt) memset(g_pt, 0, g_pt_cap * sizeof(pent_t));
}
/* Restore one page (smp lock held). */
static void page_restore(asample_t *a, uint32_t i) {
    if (a->st[i] == PS_NONE || a->st[i] == PS_READ) {
        if (raw_mprotect(a->page[i], g_page, PROT_READ | PROT_WRITE) != 0)
            STAT_ADD(ST_MPROTECT_FAILURES, 1);
        atomic_fetch_add(&g_epoch, 1);
    }
    a->st[i] = PS_DONE;
}
static void sample_restore_all(asample_t *a) {
    for (uint32_t i = 0; i < a->npages; i++) page_restore(a, i);
}
static void make_sample_rec(const asample_t *a, uint64_t end, struct rec_sample *r) {
    *r = (struct rec_sample){{REC_SAMPLE, sizeof *r}, a->seq, a->start_ns, end, g_interval,
                             a->sampled, a->touched, a->written};
}
/* End the active sample of object `o` (tab + smp held). 1 if a record was made. */
static int sample_end_for(obj_t *o, struct rec_sample *rec, uint64_t now) {
    if (o->slot >= g_act_n) return 0;
    asample_t *a = &g_act[o->slot];
    if (a->seq != o->seq) return 0;
    sample_restore_all(a);
    int made = a->sampled > 0;
    if (made) make_sample_rec(a, now, rec);
    a->seq = 0;
    return made;
}
/* Restore every poisoned page (smp held), without records. */
static void unpoison_everything_locked(void) {
    for (uint32_t k = 0; k < g_act_n; k++) sample_restore_all(&g_act[k]);
    atomic_store(&g_plo, UINTPTR_MAX);
    atomic_store(&g_phi, 0);
}

static int io_busy(uintptr_t lo, uintptr_t hi) {
    if (atomic_load(&g_io_overflow)) return 1;
    if (!atomic_load(&g_io_n)) return 0;
    for (int i = 0; i < IO_SLOTS; i++) {
        uintptr_t l = atomic_load(&g_io[i].lo);
        if (!l) continue;
        if (l == 1) return 1;
        uintptr_t h = atomic_load(&g_io[i].hi);
        if (lo < h && hi > l) return 1;
    }
    return 0;
}

/* What one poison fault costs besides the handler's own (measured) time: the trap, the
 * signal frame and sigreturn. An estimate (about 2 us on current x86 kernels). */
#define FAULT_KERNEL_NS 2000ull
/* Sampling free of the budget at the start, so short runs still get their intervals. */
#define BUDGET_GRACE_NS 20000000ull
static uint64_t thread_cpu_ns(clockid_t c) {
    struct timespec t;
    if (clock_gettime(c, &t) != 0) return 0;
    return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}
/* CPUs this process may run on (the fastest it can earn budget), at least 1. */
static uint64_t usable_cpus(void) {
    cpu_set_t set;
    CPU_ZERO(&set);
    if (syscall(SYS_sched_getaffinity, 0, sizeof set, &set) <= 0) return 1;
    int n = CPU_COUNT(&set);
    return n > 0 ? (uint64_t)n : 1;
}
/* How far sampling is over its budget, in ns of cost (0: within it): the sampler's CPU
 * time, plus the poison faults (handler time measured, kernel part estimated), against
 * the CPU time the program itself has had. Tied to the program's CPU time, not to the
 * clock, so a program slowed down by other load is not sampled more per unit of its
 * own work. */
static uint64_t budget_exceeded(void) {
    if (!g_budget_pcm) return 0;
    uint64_t cost = atomic_load_explicit(&g_stat[ST_SAMPLER_CPU_NS], memory_order_relaxed) +
                    atomic_load_explicit(&g_stat[ST_FAULT_NS], memory_order_relaxed) +
                    atomic_load_explicit(&g_stat[ST_SAMPLE_FAULTS], memory_order_relaxed) *
                        FAULT_KERNEL_NS;
    uint64_t cpu = thread_cpu_ns(CLOCK_PROCESS_CPUTIME_ID);
    uint64_t work = cpu > cost ? cpu - cost : 0;
    /* work * pcm / 100000, without overflow for any realistic CPU time */
    uint64_t allowed = (work / 100000) * g_budget_pcm + BUDGET_GRACE_NS;
    return cost > allowed ? cost - allowed : 0;
}

/* Pick objects and pages for the next interval and poison them. Returns 0, or, when
 * sampling is over its budget, how long (ns) to wait before trying again: at least as
 * long as the program needs to earn the deficit back running on all its CPUs (waking up
 * every period only to skip would itself cost). */
static uint64_t interval_start(void) {
    uint64_t now = now_ns();
    if (now < atomic_load(&g_pause_until) || atomic_load(&g_stop)) return 0;
    uint64_t deficit = budget_exceeded();
    if (deficit) {
        STAT_ADD(ST_BUDGET_SKIPS, 1);
        uint64_t wait = deficit / g_budget_pcm * 100000 / g_ncpus;
        return wait > 200000000ull ? 200000000ull : wait; /* check again within 0.2 s */
    }
    t_in_hook = 1;
    lock_acquire(&g_tab_lock);
    lock_acquire(&g_smp_lock);
    g_act_n = 0;
    pt_clear();
    atomic_store(&g_plo, UINTPTR_MAX);
    atomic_store(&g_phi, 0);
    /* numbered by time since the log's start (as placer numbers perf samples), strictly
     * increasing; intervals skipped (budget, pauses) leave gaps */
    {
        uint64_t per = (uint64_t)(g_period_ms ? g_period_ms : 1) * 1000000ull;
        uint64_t iv = now > g_start_ns ? (now - g_start_ns) / per : 0;
        g_interval = iv > g_interval && iv < UINT32_MAX ? (uint32_t)iv : g_interval + 1;
    }
    uint32_t budget = g_sample_max_pages;
    size_t n = g_big_n, visited = 0;
    if (g_big_cursor >= n) g_big_cursor = 0;
    while (visited < n && budget > 0 && g_act_n < g_act_cap) {
        big_t *b = &g_big[g_big_cursor];
        g_big_cursor = (g_big_cursor + 1) % n;
        visited++;
        if (!(b->flags & OF_SAMPLEABLE) || (b->flags & OF_NOSAMPLE)) continue;
        uintptr_t first = (b->addr + g_page - 1) & g_page_mask;
        uintptr_t last = (b->addr + b->size) & g_page_mask;
        if (last <= first) continue;
        uint64_t np = (last - first) / g_page;
        uint32_t k = g_sample_pages;
        if (k > budget) k = budget;
        if (np < k) k = (uint32_t)np;
        obj_t *o = tab_find(b->addr);
        if (!o) continue;
        asample_t *a = &g_act[g_act_n];
        a->seq = b->seq;
        a->addr = b->addr;
        a->size = b->size;
        a->start_ns = now;
        a->npages = 0;
        a->sampled = a->touched = a->written = 0;
        for (uint32_t j = 0; j < k; j++) {
            uintptr_t pg;
            int tries = 0;
        again:
            pg = first + (uintptr_t)(np <= k ? j : rng_next() % np) * g_page;
            for (uint32_t q = 0; q < a->npages; q++)
                if (a->page[q] == pg) { if (++tries < 8) goto again; pg = 0; break; }
            if (!pg) continue;
            a->page[a->npages] = pg;
            a->st[a->npages] = PS_IDLE;
            a->npages++;
        }
        budget -= a->npages;
        o->slot = g_act_n;
        g_act_n++;
    }
    lock_release(&g_smp_lock);
    lock_release(&g_tab_lock);
    STAT_ADD(ST_SAMPLE_INTERVALS, 1);
    /* poison page by page, releasing the lock between pages (faulting threads wait less) */
    for (uint32_t k = 0; k < g_act_n; k++) {
        asample_t *a = &g_act[k];
        for (uint32_t j = 0; j < a->npages; j++) {
            lock_acquire(&g_smp_lock);
            if (a->seq && a->st[j] == PS_IDLE && now_ns() >= atomic_load(&g_pause_until) &&
                !atomic_load(&g_stop)) {
                uintptr_t pg = a->page[j];
                if (pg < atomic_load(&g_plo)) atomic_store(&g_plo, pg);
                if (pg + g_page > atomic_load(&g_phi)) atomic_store(&g_phi, pg + g_page);
                if (io_busy(pg, pg + g_page)) {
                    STAT_ADD(ST_BUSY_SKIPS, 1);
                    a->st[j] = PS_DONE;
                } else {
                    pt_insert(pg, k, j);
                    if (raw_mprotect(pg, g_page, PROT_NONE) == 0) {
                        a->st[j] = PS_NONE;
                        a->sampled++;
                    } else {
                        STAT_ADD(ST_MPROTECT_FAILURES, 1);
                        a->st[j] = PS_DONE;
                    }
                }
            }
            lock_release(&g_smp_lock);
        }
    }
    t_in_hook = 0;
    return 0;
}

/* Restore all pages of the interval and write its SAMPLE records. */
static void interval_end(void) {
    if (!g_act_n) return;
    t_in_hook = 1;
    uint64_t now = now_ns();
    /* page by page, releasing the lock in between: a faulting thread waits for one
     * mprotect at most, not for a whole object's */
    for (uint32_t k = 0; k < g_act_n; k++) {
        asample_t *a = &g_act[k];
        for (uint32_t i = 0; i < a->npages; i++) {
            lock_acquire(&g_smp_lock);
            page_restore(a, i);
            lock_release(&g_smp_lock);
        }
    }
    lock_acquire(&g_smp_lock);
    lock_acquire(&g_log_lock);
    for (uint32_t k = 0; k < g_act_n; k++) {
        asample_t *a = &g_act[k];
        if (!a->seq || !a->sampled) continue;
        struct rec_sample r;
        make_sample_rec(a, now, &r);
        log_append_locked(&r, sizeof r);
    }
    lock_release(&g_log_lock);
    g_act_n = 0;
    pt_clear();
    atomic_store(&g_plo, UINTPTR_MAX);
    atomic_store(&g_phi, 0);
    lock_release(&g_smp_lock);
    t_in_hook = 0;
}

static void *sampler_main(void *arg) {
    (void)arg;
    t_in_hook = 1;
    struct timespec next;
    clock_gettime(CLOCK_MONOTONIC, &next);
    while (!atomic_load(&g_stop)) {
        uint64_t wait = 0;
        lock_acquire(&g_col_lock);
        if (!atomic_load(&g_stop)) wait = interval_start();
        lock_release(&g_col_lock);
        uint64_t per = (uint64_t)g_period_ms * 1000000ull;
        if (wait < per) wait = per;
        next.tv_nsec += (long)(wait % 1000000000ull);
        next.tv_sec += (time_t)(wait / 1000000000ull);
        if (next.tv_nsec >= 1000000000L) { next.tv_nsec -= 1000000000L; next.tv_sec++; }
        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, NULL) == EINTR) {}
        struct timespec cur;
        clock_gettime(CLOCK_MONOTONIC, &cur);
        if (cur.tv_sec > next.tv_sec + 1) next = cur; /* we were stopped: do not catch up */
        lock_acquire(&g_col_lock);
        interval_end();
        lock_release(&g_col_lock);
        /* the sampler's own CPU time so far (what sampling costs besides the faults) */
        uint64_t cpu = thread_cpu_ns(CLOCK_THREAD_CPUTIME_ID);
        if (cpu) atomic_store_explicit(&g_stat[ST_SAMPLER_CPU_NS], cpu, memory_order_relaxed);
        /* a program that stops allocating still gets its records out (SIGKILL) */
        lock_acquire(&g_log_lock);
        if (g_buf_used && now_ns() - g_buf_first_ns >= FLUSH_EVERY_NS / 2) log_flush_locked();
        lock_release(&g_log_lock);
    }
    return NULL;
}
static void start_sampler(void) {
    int exp = 0;
    if (!atomic_compare_exchange_strong(&g_sampler_started, &exp, 1)) return;
    if (raw_getpid() != g_log_pid) return;
    pthread_attr_t at;
    pthread_t th;
    sigset_t all, old;
    sigfillset(&all);
    real_pthread_sigmask(SIG_SETMASK, &all, &old);
    pthread_attr_init(&at);
    pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&at, 256 * 1024);
    int r = pthread_create(&th, &at, sampler_main, NULL);
    pthread_attr_destroy(&at);
    real_pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (r != 0) dbg("cannot start the sampler thread", NULL, (uint64_t)r);
}

/* Pause poisoning for a while and restore every page (exec, posix_spawn, exit). */
static void sampling_quiesce(uint64_t pause_ns) {
    if (!g_sampling) return;
    uint64_t until = now_ns() + pause_ns;
    if (until > atomic_load(&g_pause_until)) atomic_store(&g_pause_until, until);
    int saved = t_in_hook;
    t_in_hook = 1;
    if (lock_try_for(&g_smp_lock, 500000000ull)) {
        unpoison_everything_locked();
        lock_release(&g_smp_lock);
    }
    t_in_hook = saved;
}

/* ----- kernel accesses: lift poison on buffers handed to system calls ----- */
typedef struct { uintptr_t lo, hi; } range_t;
static void io_unpoison(const range_t *r, int n, int kwrite) {
    int saved = t_in_hook;
    t_in_hook = 1;
    lock_acquire(&g_smp_lock);
    for (uint32_t k = 0; k < g_act_n; k++) {
        asample_t *a = &g_act[k];
        for (uint32_t j = 0; j < a->npages; j++) {
            if (a->st[j] != PS_NONE && a->st[j] != PS_READ) continue;
            uintptr_t pg = a->page[j];
            int hit = 0;
            for (int q = 0; q < n && !hit; q++) hit = r[q].lo < pg + g_page && r[q].hi > pg;
            if (!hit) continue;
            if (a->st[j] == PS_NONE) a->touched++;
            if (kwrite) a->written++;
            page_restore(a, j);
            STAT_ADD(ST_IO_UNPOISONS, 1);
        }
    }
    lock_release(&g_smp_lock);
    t_in_hook = saved;
}
/* Returns a slot token for io_leave (-1: nothing to release). */
static int io_enter(const range_t *r, int n, int kwrite) {
    if (LIKELY(!g_sampling)) return -1;
    uintptr_t lo = UINTPTR_MAX, hi = 0;
    for (int i = 0; i < n; i++) {
        if (r[i].hi <= r[i].lo) continue;
        if (r[i].lo < lo) lo = r[i].lo;
        if (r[i].hi > hi) hi = r[i].hi;
    }
    if (hi <= lo) return -1;
    if (lo < 2) lo = 2;
    atomic_fetch_add(&g_io_n, 1);
    int slot = -2;
    int start = (int)((unsigned)my_tid() % IO_SLOTS);
    for (int k = 0; k < IO_SLOTS; k++) {
        int i = (start + k) % IO_SLOTS;
        uintptr_t exp = 0;
        if (atomic_load_explicit(&g_io[i].lo, memory_order_relaxed) == 0 &&
            atomic_compare_exchange_strong(&g_io[i].lo, &exp, 1)) {
            atomic_store(&g_io[i].hi, hi);
            atomic_store(&g_io[i].lo, lo);
            slot = i;
            break;
        }
    }
    if (slot == -2) atomic_fetch_add(&g_io_overflow, 1);
    uintptr_t plo = atomic_load(&g_plo), phi = atomic_load(&g_phi);
    if (lo < phi && hi > plo) io_unpoison(r, n, kwrite);
    return slot;
}
static void io_leave(int slot) {
    if (slot == -1) return;
    if (slot == -2) atomic_fetch_sub(&g_io_overflow, 1);
    else atomic_store(&g_io[slot].lo, 0);
    atomic_fetch_sub(&g_io_n, 1);
}
static void io_leave_cleanup(int *slot) { int e = errno; io_leave(*slot); errno = e; }
#define IO_GUARD(name) int name __attribute__((cleanup(io_leave_cleanup)))

/* ----- the fault handler side ----- */
static int fault_is_write(void *uc) {
#if defined(__x86_64__)
    return (int)((((ucontext_t *)uc)->uc_mcontext.gregs[REG_ERR] >> 1) & 1);
#else
    (void)uc;
    return -1; /* unknown: PROT_NONE faults are taken as reads, PROT_READ ones as writes */
#endif
}
/* 1 if the fault was ours and is resolved (retry the access). */
static int poison_fault(siginfo_t *si, void *uc) {
    if (si->si_code != SEGV_ACCERR) return 0;
    uintptr_t page = (uintptr_t)si->si_addr & g_page_mask;
    int w = fault_is_write(uc);
    if (lock_held_by_me(&g_smp_lock)) {
        /* an async signal handler touched a page while this thread was inside the shim */
        pent_t *e = pt_find(page);
        if (e) { raw_mprotect(page, g_page, PROT_READ | PROT_WRITE); return 1; }
        return 0;
    }
    uint64_t t0 = now_ns();
    lock_acquire(&g_smp_lock);
    pent_t *e = pt_find(page);
    int ours = 0;
    if (e && e->a < g_act_n) {
        asample_t *a = &g_act[e->a];
        if (a->page[e->p] == page && (a->st[e->p] == PS_NONE || a->st[e->p] == PS_READ)) {
            ours = 1;
            STAT_ADD(ST_SAMPLE_FAULTS, 1);
            if (a->st[e->p] == PS_NONE) {
                a->touched++;
                if (w == 1) {
                    a->written++;
                    raw_mprotect(page, g_page, PROT_READ | PROT_WRITE);
                    a->st[e->p] = PS_DONE;
                } else {
                    raw_mprotect(page, g_page, PROT_READ);
                    a->st[e->p] = PS_READ;
                }
            } else { /* PROT_READ page: a write */
                a->written++;
                raw_mprotect(page, g_page, PROT_READ | PROT_WRITE);
                a->st[e->p] = PS_DONE;
            }
            atomic_fetch_add(&g_epoch, 1);
        }
    }
    lock_release(&g_smp_lock);
    if (ours) {
        STAT_ADD(ST_FAULT_NS, now_ns() - t0);
        t_last_fault_page = 0;
        return 1;
    }
    /* Not in the table: maybe restored between the fault and now. Retry once per epoch. */
    uint64_t ep = atomic_load(&g_epoch);
    if (t_last_fault_page == page && t_last_fault_epoch == ep) { t_last_fault_page = 0; return 0; }
    t_last_fault_page = page;
    t_last_fault_epoch = ep;
    return 1;
}

/* ------------------------------------------------------------------ tracking */
static void track_site(void *p, size_t size, int kind, int mmap_obj, int sampleable,
                       uint64_t known_site);
static void track(void *p, size_t size, int kind, int mmap_obj, int sampleable) {
    track_site(p, size, kind, mmap_obj, sampleable, 0);
}
static void track_site(void *p, size_t size, int kind, int mmap_obj, int sampleable,
                       uint64_t known_site) {
    uint64_t t = now_ns();
    site_t st;
    if (known_site) { st.n = 0; st.hash = known_site; }
    else capture_site(&st);
    obj_t src;
    memset(&src, 0, sizeof src);
    src.addr = (uintptr_t)p;
    src.size = size;
    src.seq = atomic_fetch_add(&g_seq, 1);
    src.site = st.hash;
    src.time_ns = t;
    src.kind = (uint8_t)kind;
    src.flags = (uint8_t)((mmap_obj ? OF_MMAP : 0) |
                          (sampleable && size >= g_sample_min ? OF_SAMPLEABLE : 0));
    if (g_sampling && size >= g_sample_min && !sampleable) STAT_ADD(ST_UNSAMPLEABLE_OBJECTS, 1);
    lock_acquire(&g_tab_lock);
    obj_t *o = tab_insert_locked(&src);
    int big = o && (o->flags & OF_SAMPLEABLE) && g_sampling;
    lock_release(&g_tab_lock);
    if (!o) { STAT_ADD(ST_UNTRACKED_OBJECTS, 1); return; }
    const plan_ent_t *pe = g_plan_loaded ? plan_lookup(st.hash) : NULL;
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
    lock_release(&g_log_lock);
    if (pe && pe->chunk_head != PLAN_NONE) bind_chunks(pe, src.seq, src.addr, size);
    if (big && !atomic_load_explicit(&g_sampler_started, memory_order_relaxed)) start_sampler();
}

/* Take a live object out of the table (ending its sample). 1 if it was tracked. */
static int take_object(uintptr_t a, obj_t *out, struct rec_sample *srec, int *has_srec) {
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
static void put_back(const obj_t *o) {
    lock_acquire(&g_tab_lock);
    if (!tab_insert_locked(o)) STAT_ADD(ST_UNTRACKED_OBJECTS, 1);
    lock_release(&g_tab_lock);
}
static void log_free(const obj_t *o, int kind, const struct rec_sample *srec, int has_srec) {
    struct rec_free fr = {{REC_FREE, sizeof fr}, o->seq, now_ns(), o->addr, (uint8_t)kind,
                          {0, 0, 0, 0, 0, 0, 0}};
    lock_acquire(&g_log_lock);
    if (has_srec) log_append_locked(srec, sizeof *srec);
    log_append_locked(&fr, sizeof fr);
    lock_release(&g_log_lock);
}
static void untrack_free(void *p, int kind) {
    obj_t o;
    struct rec_sample sr;
    int hs;
    if (take_object((uintptr_t)p, &o, &sr, &hs)) log_free(&o, kind, &sr, hs);
}

/* mmap objects overlapping [lo, hi) are ended; what stays mapped is re-logged. */
static void mmap_range_gone(uintptr_t lo, uintptr_t hi) {
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

/* ------------------------------------------------------------------ allocator wrappers */
#define HOOK_ENTER() do { t_in_hook = 1; } while (0)
#define HOOK_LEAVE() do { t_in_hook = 0; } while (0)

EXPORT void *malloc(size_t n) {
    if (UNLIKELY(!real_malloc)) {
        resolve_all();
        if (!real_malloc) return boot_alloc(n, 16, 0);
    }
    if (LIKELY(!g_active) || t_in_hook) return real_malloc(n);
    HOOK_ENTER();
    void *p = real_malloc(n);
    if (p && n >= g_threshold) { int e = errno; track(p, n, K_MALLOC, 0, 1); errno = e; }
    HOOK_LEAVE();
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
    HOOK_LEAVE();
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
    errno = e;
    void *q;
    if (is_array && real_reallocarray) q = real_reallocarray(p, na, nb);
    else q = real_realloc(p, n);
    e = errno;
    if (p && !n) { /* realloc(p, 0) frees p (glibc, jemalloc) */
        if (had) log_free(&o, F_REALLOC, &sr, hs);
    } else if (!q) {
        if (had) put_back(&o);
    } else {
        if (had) log_free(&o, F_REALLOC, &sr, hs);
        if (n >= g_threshold) track(q, n, K_REALLOC, 0, 1);
    }
    errno = e;
    HOOK_LEAVE();
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
    HOOK_LEAVE();
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
        HOOK_LEAVE();                                                                    \
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
    }
    if (!had) mmap_range_gone(a, a + old_len);
    if (flags & MREMAP_FIXED) mmap_range_gone((uintptr_t)new_addr, (uintptr_t)new_addr + new_len);
    errno = e;
    void *r = real_mremap(old, old_len, new_len, flags, new_addr);
    e = errno;
    if (r == MAP_FAILED) {
        if (had) put_back(&o);
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

/* ------------------------------------------------------------------ I/O wrappers */
#define R1(b, n) range_t rr[1] = {{(uintptr_t)(b), (uintptr_t)(b) + (size_t)(n)}}

EXPORT ssize_t read(int fd, void *b, size_t n) {
    ENSURE(real_read);
    if (LIKELY(!g_sampling)) return real_read(fd, b, n);
    R1(b, n);
    IO_GUARD(s) = io_enter(rr, 1, 1);
    return real_read(fd, b, n);
}
EXPORT ssize_t __read_chk(int fd, void *b, size_t n, size_t bl) {
    ENSURE(real___read_chk);
    if (LIKELY(!g_sampling)) return real___read_chk(fd, b, n, bl);
    R1(b, n);
    IO_GUARD(s) = io_enter(rr, 1, 1);
    return real___read_chk(fd, b, n, bl);
}
EXPORT ssize_t write(int fd, const void *b, size_t n) {
    ENSURE(real_write);
    if (LIKELY(!g_sampling)) return real_write(fd, b, n);
    R1(b, n);
    IO_GUARD(s) = io_enter(rr, 1, 0);
    return real_write(fd, b, n);
}
EXPORT ssize_t pread(int fd, void *b, size_t n, off_t off) {
    ENSURE(real_pread);
    if (LIKELY(!g_sampling)) return real_pread(fd, b, n, off);
    R1(b, n);
    IO_GUARD(s) = io_enter(rr, 1, 1);
    return real_pread(fd, b, n, off);
}
EXPORT ssize_t pread64(int fd, void *b, size_t n, off_t off) __attribute__((alias("pread")));
EXPORT ssize_t __pread_chk(int fd, void *b, size_t n, off_t off, size_t bl) {
    ENSURE(real___pread_chk);
    if (LIKELY(!g_sampling)) return real___pread_chk(fd, b, n, off, bl);
    R1(b, n);
    IO_GUARD(s) = io_enter(rr, 1, 1);
    return real___pread_chk(fd, b, n, off, bl);
}
EXPORT ssize_t __pread64_chk(int fd, void *b, size_t n, off_t off, size_t bl) {
    ENSURE(real___pread64_chk);
    if (LIKELY(!g_sampling)) return real___pread64_chk(fd, b, n, off, bl);
    R1(b, n);
    IO_GUARD(s) = io_enter(rr, 1, 1);
    return real___pread64_chk(fd, b, n, off, bl);
}
EXPORT ssize_t pwrite(int fd, const void *b, size_t n, off_t off) {
    ENSURE(real_pwrite);
    if (LIKELY(!g_sampling)) return real_pwrite(fd, b, n, off);
    R1(b, n);
    IO_GUARD(s) = io_enter(rr, 1, 0);
    return real_pwrite(fd, b, n, off);
}
EXPORT ssize_t pwrite64(int fd, const void *b, size_t n, off_t off) __attribute__((alias("pwrite")));

/* iovec-based calls: the iovec array and every buffer (more than 30 buffers: one bound) */
#define IOV_RANGES 32
static int iov_ranges(range_t *r, const struct iovec *iov, int cnt) {
    int n = 0;
    if (cnt <= 0 || !iov) return 0;
    r[n++] = (range_t){(uintptr_t)iov, (uintptr_t)(iov + cnt)};
    uintptr_t lo = UINTPTR_MAX, hi = 0;
    for (int i = 0; i < cnt; i++) {
        uintptr_t a = (uintptr_t)iov[i].iov_base, b = a + iov[i].iov_len;
        if (!iov[i].iov_len) continue;
        if (n < IOV_RANGES - 1) r[n++] = (range_t){a, b};
        else { if (a < lo) lo = a; if (b > hi) hi = b; }
    }
    if (hi > lo) r[n++] = (range_t){lo, hi};
    return n;
}
#define IOV_CALL(realfn, kw, call)                                  \
    do {                                                            \
        ENSURE(realfn);                                             \
        if (LIKELY(!g_sampling)) return call;                       \
        range_t rr[IOV_RANGES];                                     \
        int nr = iov_ranges(rr, iov, cnt);                          \
        IO_GUARD(s) = io_enter(rr, nr, kw);                         \
        return call;                                                \
    } while (0)

EXPORT ssize_t readv(int fd, const struct iovec *iov, int cnt) {
    IOV_CALL(real_readv, 1, real_readv(fd, iov, cnt));
}
EXPORT ssize_t writev(int fd, const struct iovec *iov, int cnt) {
    IOV_CALL(real_writev, 0, real_writev(fd, iov, cnt));
}
EXPORT ssize_t preadv(int fd, const struct iovec *iov, int cnt, off_t off) {
    IOV_CALL(real_preadv, 1, real_preadv(fd, iov, cnt, off));
}
EXPORT ssize_t preadv64(int fd, const struct iovec *iov, int cnt, off_t off) __attribute__((alias("preadv")));
EXPORT ssize_t pwritev(int fd, const struct iovec *iov, int cnt, off_t off) {
    IOV_CALL(real_pwritev, 0, real_pwritev(fd, iov, cnt, off));
}
EXPORT ssize_t pwritev64(int fd, const struct iovec *iov, int cnt, off_t off) __attribute__((alias("pwritev")));
EXPORT ssize_t preadv2(int fd, const struct iovec *iov, int cnt, off_t off, int fl) {
    IOV_CALL(real_preadv2, 1, real_preadv2(fd, iov, cnt, off, fl));
}
EXPORT ssize_t preadv64v2(int fd, const struct iovec *iov, int cnt, off_t off, int fl) __attribute__((alias("preadv2")));
EXPORT ssize_t pwritev2(int fd, const struct iovec *iov, int cnt, off_t off, int fl) {
    IOV_CALL(real_pwritev2, 0, real_pwritev2(fd, iov, cnt, off, fl));
}
EXPORT ssize_t pwritev64v2(int fd, const struct iovec *iov, int cnt, off_t off, int fl) __attribute__((alias("pwritev2")));

EXPORT ssize_t recv(int fd, void *b, size_t n, int fl) {
    ENSURE(real_recv);
    if (LIKELY(!g_sampling)) return real_recv(fd, b, n, fl);
    R1(b, n);
    IO_GUARD(s) = io_enter(rr, 1, 1);
    return real_recv(fd, b, n, fl);
}
EXPORT ssize_t __recv_chk(int fd, void *b, size_t n, size_t bl, int fl) {
    ENSURE(real___recv_chk);
    if (LIKELY(!g_sampling)) return real___recv_chk(fd, b, n, bl, fl);
    R1(b, n);
    IO_GUARD(s) = io_enter(rr, 1, 1);
    return real___recv_chk(fd, b, n, bl, fl);
}
EXPORT ssize_t recvfrom(int fd, void *b, size_t n, int fl, struct sockaddr *sa, socklen_t *sl) {
    ENSURE(real_recvfrom);
    if (LIKELY(!g_sampling)) return real_recvfrom(fd, b, n, fl, sa, sl);
    range_t rr[3] = {{(uintptr_t)b, (uintptr_t)b + n},
                     {(uintptr_t)sa, sa && sl ? (uintptr_t)sa + *sl : (uintptr_t)sa},
                     {(uintptr_t)sl, sl ? (uintptr_t)(sl + 1) : 0}};
    IO_GUARD(s) = io_enter(rr, 3, 1);
    return real_recvfrom(fd, b, n, fl, sa, sl);
}
EXPORT ssize_t __recvfrom_chk(int fd, void *b, size_t n, size_t bl, int fl, struct sockaddr *sa,
                              socklen_t *sl) {
    ENSURE(real___recvfrom_chk);
    if (LIKELY(!g_sampling)) return real___recvfrom_chk(fd, b, n, bl, fl, sa, sl);
    range_t rr[3] = {{(uintptr_t)b, (uintptr_t)b + n},
                     {(uintptr_t)sa, sa && sl ? (uintptr_t)sa + *sl : (uintptr_t)sa},
                     {(uintptr_t)sl, sl ? (uintptr_t)(sl + 1) : 0}};
    IO_GUARD(s) = io_enter(rr, 3, 1);
    return real___recvfrom_chk(fd, b, n, bl, fl, sa, sl);
}
static int msg_ranges(range_t *r, const struct msghdr *m) {
    int n = 0;
    r[n++] = (range_t){(uintptr_t)m, (uintptr_t)(m + 1)};
    if (m->msg_name) r[n++] = (range_t){(uintptr_t)m->msg_name, (uintptr_t)m->msg_name + m->msg_namelen};
    if (m->msg_control) r[n++] = (range_t){(uintptr_t)m->msg_control, (uintptr_t)m->msg_control + m->msg_controllen};
    n += iov_ranges(r + n, m->msg_iov, (int)m->msg_iovlen);
    return n;
}
EXPORT ssize_t recvmsg(int fd, struct msghdr *m, int fl) {
    ENSURE(real_recvmsg);
    if (LIKELY(!g_sampling) || !m) return real_recvmsg(fd, m, fl);
    range_t rr[IOV_RANGES + 3];
    int nr = msg_ranges(rr, m);
    IO_GUARD(s) = io_enter(rr, nr, 1);
    return real_recvmsg(fd, m, fl);
}
EXPORT ssize_t send(int fd, const void *b, size_t n, int fl) {
    ENSURE(real_send);
    if (LIKELY(!g_sampling)) return real_send(fd, b, n, fl);
    R1(b, n);
    IO_GUARD(s) = io_enter(rr, 1, 0);
    return real_send(fd, b, n, fl);
}
EXPORT ssize_t sendto(int fd, const void *b, size_t n, int fl, const struct sockaddr *sa, socklen_t sl) {
    ENSURE(real_sendto);
    if (LIKELY(!g_sampling)) return real_sendto(fd, b, n, fl, sa, sl);
    range_t rr[2] = {{(uintptr_t)b, (uintptr_t)b + n}, {(uintptr_t)sa, (uintptr_t)sa + (sa ? sl : 0)}};
    IO_GUARD(s) = io_enter(rr, 2, 0);
    return real_sendto(fd, b, n, fl, sa, sl);
}
EXPORT ssize_t sendmsg(int fd, const struct msghdr *m, int fl) {
    ENSURE(real_sendmsg);
    if (LIKELY(!g_sampling) || !m) return real_sendmsg(fd, m, fl);
    range_t rr[IOV_RANGES + 3];
    int nr = msg_ranges(rr, m);
    IO_GUARD(s) = io_enter(rr, nr, 0);
    return real_sendmsg(fd, m, fl);
}

/* stdio: large reads/writes go straight between the kernel and the caller's buffer */
static inline size_t mul_sat(size_t a, size_t b) {
    size_t r;
    return __builtin_mul_overflow(a, b, &r) ? SIZE_MAX : r;
}
#define STDIO_CALL(realfn, kw, buf, bytes, call)                   \
    do {                                                           \
        ENSURE(realfn);                                            \
        if (LIKELY(!g_sampling)) return call;                      \
        size_t nb_ = (bytes);                                      \
        uintptr_t lo_ = (uintptr_t)(buf);                          \
        range_t rr[1] = {{lo_, nb_ > UINTPTR_MAX - lo_ ? UINTPTR_MAX : lo_ + nb_}}; \
        IO_GUARD(s) = io_enter(rr, 1, kw);                         \
        return call;                                               \
    } while (0)

EXPORT size_t fread(void *b, size_t sz, size_t n, FILE *f) {
    STDIO_CALL(real_fread, 1, b, mul_sat(sz, n), real_fread(b, sz, n, f));
}
EXPORT size_t (fread_unlocked)(void *b, size_t sz, size_t n, FILE *f) {
    STDIO_CALL(real_fread_unlocked, 1, b, mul_sat(sz, n), real_fread_unlocked(b, sz, n, f));
}
EXPORT size_t __fread_chk(void *b, size_t bl, size_t sz, size_t n, FILE *f) {
    STDIO_CALL(real___fread_chk, 1, b, mul_sat(sz, n), real___fread_chk(b, bl, sz, n, f));
}
EXPORT size_t __fread_unlocked_chk(void *b, size_t bl, size_t sz, size_t n, FILE *f) {
    STDIO_CALL(real___fread_unlocked_chk, 1, b, mul_sat(sz, n), real___fread_unlocked_chk(b, bl, sz, n, f));
}
EXPORT size_t fwrite(const void *b, size_t sz, size_t n, FILE *f) {
    STDIO_CALL(real_fwrite, 0, b, mul_sat(sz, n), real_fwrite(b, sz, n, f));
}
EXPORT size_t (fwrite_unlocked)(const void *b, size_t sz, size_t n, FILE *f) {
    STDIO_CALL(real_fwrite_unlocked, 0, b, mul_sat(sz, n), real_fwrite_unlocked(b, sz, n, f));
}
EXPORT ssize_t getrandom(void *b, size_t n, unsigned int fl) {
    STDIO_CALL(real_getrandom, 1, b, n, real_getrandom(b, n, fl));
}
EXPORT int getentropy(void *b, size_t n) {
    STDIO_CALL(real_getentropy, 1, b, n, real_getentropy(b, n));
}

/* A stdio buffer inside a sampled object is filled by the kernel behind stdio's back:
 * never sample that object. */
static void exclude_range(uintptr_t lo, uintptr_t hi) {
    if (!g_sampling || hi <= lo) return;
    int saved = t_in_hook;
    t_in_hook = 1;
    lock_acquire(&g_tab_lock);
    lock_acquire(&g_smp_lock);
    for (size_t i = 0; i < g_big_n; i++) {
        big_t *b = &g_big[i];
        if (b->addr < hi && b->addr + b->size > lo) {
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
    t_in_hook = saved;
}
EXPORT int setvbuf(FILE *f, char *buf, int mode, size_t size) {
    ENSURE(real_setvbuf);
    if (buf && size) exclude_range((uintptr_t)buf, (uintptr_t)buf + size);
    return real_setvbuf(f, buf, mode, size);
}
EXPORT void setbuffer(FILE *f, char *buf, size_t size) {
    ENSURE(real_setbuffer);
    if (buf && size) exclude_range((uintptr_t)buf, (uintptr_t)buf + size);
    real_setbuffer(f, buf, size);
}
EXPORT void setbuf(FILE *f, char *buf) {
    ENSURE(real_setvbuf);
    if (buf) exclude_range((uintptr_t)buf, (uintptr_t)buf + BUFSIZ);
    real_setvbuf(f, buf, buf ? _IOFBF : _IONBF, BUFSIZ);
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

static void shim_finish(uint32_t reason, int from_signal);
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

/* ------------------------------------------------------------------ signals */
#define NSIGS 65
static struct sigaction g_app_act[NSIGS]; /* what the program believes is installed */
static uint8_t g_app_set[NSIGS];          /* set through our wrapper */
static uint8_t g_fatal_ours[NSIGS];       /* our flush-and-die handler is installed */
static const int g_fatal_sigs[] = {SIGBUS, SIGFPE, SIGILL, SIGABRT, SIGTERM, SIGINT, SIGHUP,
                                   SIGQUIT, SIGPIPE, SIGXCPU, SIGXFSZ};

static int is_fatal_managed(int sig) {
    for (size_t i = 0; i < sizeof g_fatal_sigs / sizeof g_fatal_sigs[0]; i++)
        if (g_fatal_sigs[i] == sig) return 1;
    return 0;
}
static void raise_default(int sig, siginfo_t *si) {
    struct sigaction d;
    memset(&d, 0, sizeof d);
    d.sa_handler = SIG_DFL;
    real_sigaction(sig, &d, NULL);
    int sync = (sig == SIGSEGV || sig == SIGBUS || sig == SIGFPE || sig == SIGILL) && si &&
               si->si_code > 0;
    if (sync) return; /* the faulting instruction runs again and dies by the default action */
    sigset_t u;
    sigemptyset(&u);
    sigaddset(&u, sig);
    real_pthread_sigmask(SIG_UNBLOCK, &u, NULL);
    syscall(SYS_tgkill, raw_getpid(), (pid_t)syscall(SYS_gettid), sig);
}
static void fatal_handler(int sig, siginfo_t *si, void *uc) {
    (void)uc;
    int e = errno;
    shim_finish((uint32_t)sig, 1);
    raise_default(sig, si);
    errno = e;
}
static void segv_handler(int sig, siginfo_t *si, void *uc) {
    int e = errno;
    if (g_sampling && poison_fault(si, uc)) { errno = e; return; }
    STAT_ADD(ST_FOREIGN_SEGV, 1);
    struct sigaction a = g_app_act[SIGSEGV];
    int user_sent = si->si_code <= 0;
    int dfl = a.sa_handler == SIG_DFL || (a.sa_handler == SIG_IGN && !user_sent) ||
              (t_segv_blocked && !user_sent);
    if (a.sa_handler == SIG_IGN && user_sent) { errno = e; return; }
    if (dfl) {
        shim_finish((uint32_t)sig, 1);
        raise_default(sig, si);
        errno = e;
        return;
    }
    if (a.sa_flags & SA_RESETHAND) {
        memset(&g_app_act[SIGSEGV], 0, sizeof g_app_act[SIGSEGV]);
        g_app_act[SIGSEGV].sa_handler = SIG_DFL;
    }
    sigset_t m = a.sa_mask, old;
    sigdelset(&m, SIGSEGV);
    real_pthread_sigmask(SIG_BLOCK, &m, &old);
    errno = e;
    if (a.sa_flags & SA_SIGINFO) a.sa_sigaction(sig, si, uc);
    else a.sa_handler(sig);
    e = errno;
    real_pthread_sigmask(SIG_SETMASK, &old, NULL);
    errno = e;
}

static void install_ours(int sig) {
    struct sigaction s;
    memset(&s, 0, sizeof s);
    s.sa_sigaction = sig == SIGSEGV ? segv_handler : fatal_handler;
    s.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESTART | (sig == SIGSEGV ? SA_NODEFER : 0);
    sigemptyset(&s.sa_mask);
    real_sigaction(sig, &s, NULL);
}
static int act_is_default(const struct sigaction *a) {
    return (a->sa_flags & SA_SIGINFO) ? a->sa_sigaction == NULL : a->sa_handler == SIG_DFL;
}

EXPORT int sigaction(int sig, const struct sigaction *act, struct sigaction *old) {
    ENSURE(real_sigaction);
    if (!g_sig_virtual || sig <= 0 || sig >= NSIGS || sig == SIGKILL || sig == SIGSTOP)
        return real_sigaction(sig, act, old);
    int locked = lock_try_for(&g_sig_lock, 1000000000ull);
    int r = 0;
    struct sigaction prev = g_app_act[sig];
    if (sig == SIGSEGV || (is_fatal_managed(sig) && (g_fatal_ours[sig] || (act && act_is_default(act))))) {
        /* virtualised: our handler stays (SIGSEGV) or flushes when the program wants SIG_DFL */
        if (act) {
            g_app_act[sig] = *act;
            g_app_set[sig] = 1;
            if (sig != SIGSEGV) {
                if (act_is_default(act)) {
                    install_ours(sig);
                    g_fatal_ours[sig] = 1;
                } else {
                    struct sigaction s = *act;
                    if (g_sampling) sigdelset(&s.sa_mask, SIGSEGV);
                    r = real_sigaction(sig, &s, NULL);
                    if (r == 0) g_fatal_ours[sig] = 0;
                    else g_app_act[sig] = prev;
                }
            }
        }
        if (old && r == 0) *old = prev;
    } else {
        struct sigaction s, cur;
        const struct sigaction *use = act;
        if (act && g_sampling && sigismember(&act->sa_mask, SIGSEGV)) {
            s = *act;
            sigdelset(&s.sa_mask, SIGSEGV);
            use = &s;
        }
        r = real_sigaction(sig, use, &cur);
        if (r == 0) {
            if (old) {
                *old = cur;
                if (g_app_set[sig] && g_app_act[sig].sa_handler == cur.sa_handler)
                    old->sa_mask = g_app_act[sig].sa_mask;
            }
            if (act) { g_app_act[sig] = *act; g_app_set[sig] = 1; }
        }
    }
    if (locked) lock_release(&g_sig_lock);
    return r;
}
static sighandler_t signal_common(int sig, sighandler_t h, int flags, int mask_self) {
    struct sigaction sa, old;
    if (h == SIG_ERR || sig < 1 || sig >= NSIGS) { errno = EINVAL; return SIG_ERR; }
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = h;
    sigemptyset(&sa.sa_mask);
    if (mask_self && sig > 0 && sig < NSIGS) sigaddset(&sa.sa_mask, sig);
    sa.sa_flags = flags;
    if (sigaction(sig, &sa, &old) < 0) return SIG_ERR;
    return old.sa_handler;
}
EXPORT sighandler_t signal(int sig, sighandler_t h) {
    return signal_common(sig, h, SA_RESTART, 1);
}
EXPORT sighandler_t bsd_signal(int sig, sighandler_t h) {
    return signal_common(sig, h, SA_RESTART, 1);
}
EXPORT sighandler_t sysv_signal(int sig, sighandler_t h) {
    return signal_common(sig, h, (int)(SA_RESETHAND | SA_NODEFER), 0);
}
EXPORT sighandler_t __sysv_signal(int sig, sighandler_t h) {
    return signal_common(sig, h, (int)(SA_RESETHAND | SA_NODEFER), 0);
}

/* A thread that blocks SIGSEGV and touches a poisoned page would be killed by the kernel:
 * keep SIGSEGV unblocked for real and remember what the program asked for. */
static int mask_common(int (*fn)(int, const sigset_t *, sigset_t *), int how,
                       const sigset_t *set, sigset_t *old, int *changed) {
    sigset_t s;
    const sigset_t *use = set;
    int prev = t_segv_blocked, nb = prev;
    if (set) {
        s = *set;
        if (sigismember(&s, SIGSEGV)) {
            if (how == SIG_BLOCK || how == SIG_SETMASK) nb = 1;
            else if (how == SIG_UNBLOCK) nb = 0;
            sigdelset(&s, SIGSEGV);
        } else if (how == SIG_SETMASK) {
            nb = 0;
        }
        use = &s;
    }
    int r = fn(how, use, old);
    *changed = 0;
    if (r == 0) {
        if (old && prev) sigaddset(old, SIGSEGV);
        t_segv_blocked = nb;
        *changed = 1;
    }
    return r;
}
EXPORT int pthread_sigmask(int how, const sigset_t *set, sigset_t *old) {
    ENSURE(real_pthread_sigmask);
    if (!g_sampling) return real_pthread_sigmask(how, set, old);
    int c;
    return mask_common(real_pthread_sigmask, how, set, old, &c);
}
EXPORT int sigprocmask(int how, const sigset_t *set, sigset_t *old) {
    ENSURE(real_sigprocmask);
    if (!g_sampling) return real_sigprocmask(how, set, old);
    int c;
    return mask_common(real_sigprocmask, how, set, old, &c);
}

static void signals_setup(void) {
    struct sigaction cur;
    for (int s = 1; s < NSIGS; s++) {
        if (s == SIGKILL || s == SIGSTOP) continue;
        if (real_sigaction(s, NULL, &cur) == 0) g_app_act[s] = cur;
    }
    /* SIGSEGV: always ours (flush on a crash, page-poison faults, chaining to the program) */
    install_ours(SIGSEGV);
    for (size_t i = 0; i < sizeof g_fatal_sigs / sizeof g_fatal_sigs[0]; i++) {
        int s = g_fatal_sigs[i];
        if (act_is_default(&g_app_act[s]) && !(g_app_act[s].sa_flags & SA_SIGINFO && g_app_act[s].sa_sigaction)) {
            install_ours(s);
            g_fatal_ours[s] = 1;
        }
    }
    g_sig_virtual = 1;
}

/* ------------------------------------------------------------------ finish, fork */
static _Atomic int g_finished;
static void shim_finish(uint32_t reason, int from_signal) {
    if (!g_active) return;
    int saved = t_in_hook;
    t_in_hook = 1;
    int exp = 0;
    if (!atomic_compare_exchange_strong(&g_finished, &exp, 1)) { t_in_hook = saved; return; }
    if (g_sampling) {
        atomic_store(&g_stop, 1);
        /* last interval's counts, then restore everything */
        if (!from_signal && lock_try_for(&g_col_lock, 1000000000ull)) {
            interval_end();
            lock_release(&g_col_lock);
        }
        sampling_quiesce(UINT64_MAX / 2);
    }
    if (from_signal) {
        if (lock_try_for(&g_log_lock, 300000000ull)) {
            log_end_locked(reason);
            g_log_closed = 1;
            lock_release(&g_log_lock);
        }
    } else {
        lock_acquire(&g_log_lock);
        log_end_locked(reason);
        g_log_closed = 1;
        lock_release(&g_log_lock);
    }
    g_sampling = 0;
    g_active = 0;
    t_in_hook = saved;
}

static void atfork_prepare(void) {
    if (!g_active) return;
    t_in_hook = 1;
    lock_acquire(&g_col_lock);
    lock_acquire(&g_mod_lock);
    lock_acquire(&g_tab_lock);
    lock_acquire(&g_smp_lock);
    lock_acquire(&g_log_lock);
}
static void atfork_parent(void) {
    if (!g_active) return;
    lock_release(&g_log_lock);
    lock_release(&g_smp_lock);
    lock_release(&g_tab_lock);
    lock_release(&g_mod_lock);
    lock_release(&g_col_lock);
    t_in_hook = 0;
}
static void atfork_child(void) {
    t_tid = 0;
    if (!g_active) return;
    atomic_store(&g_col_lock.owner, 0);
    atomic_store(&g_mod_lock.owner, 0);
    atomic_store(&g_tab_lock.owner, 0);
    atomic_store(&g_smp_lock.owner, 0);
    atomic_store(&g_log_lock.owner, 0);
    atomic_store(&g_sig_lock.owner, 0);
    /* pages poisoned by the parent's sampler: restore them, the sampler thread is gone */
    unpoison_everything_locked();
    g_act_n = 0;
    pt_clear();
    for (int i = 0; i < IO_SLOTS; i++) atomic_store(&g_io[i].lo, 0);
    atomic_store(&g_io_n, 0);
    atomic_store(&g_io_overflow, 0);
    atomic_store(&g_sampler_started, 0);
    g_rng ^= (uint64_t)raw_getpid() * 0x9E3779B97F4A7C15ull;
    /* a log of its own: the parent's unflushed records stay with the parent */
    g_buf_used = g_buf_nrec = 0;
    if (g_fd >= 0) raw_close(g_fd);
    g_fd = -1;
    g_ppid = g_log_pid;
    g_log_pid = raw_getpid();
    g_start_ns = now_ns();
    g_is_fork_child = 1;
    g_proc_start = read_proc_start();
    for (int i = 0; i < ST_COUNT; i++) atomic_store(&g_stat[i], 0);
    if (g_siteset) memset(g_siteset, 0, SITESET_CAP * sizeof(uint64_t));
    uint32_t nm = atomic_load(&g_nmods);
    for (uint32_t i = 0; i < nm; i++) g_mods[i].emitted = 0;
    if (open_log(1) != 0) {
        g_active = 0;
        g_sampling = 0;
    }
    /* large objects inherited from the parent are sampled in the child too */
    if (g_active && g_sampling && g_big_n > 0) start_sampler();
    t_in_hook = 0;
}

static void at_exit_flush(void) {
    if (!g_active) return;
    int saved = t_in_hook;
    t_in_hook = 1;
    lock_acquire(&g_log_lock);
    log_flush_locked();
    lock_release(&g_log_lock);
    t_in_hook = saved;
}

/* ------------------------------------------------------------------ init / fini */
__attribute__((constructor(101))) static void shim_init(void) {
    int e = errno;
    resolve_all();
    const char *logp = getenv("PLACER_SHIM_LOG");
    if (!logp || !*logp) { errno = e; return; }
    t_in_hook = 1;
    const char *dbgv = getenv("PLACER_SHIM_DEBUG");
    g_debug = dbgv && *dbgv && *dbgv != '0';
    long ps = sysconf(_SC_PAGESIZE);
    if (ps > 0) { g_page = (uintptr_t)ps; g_page_mask = ~(uintptr_t)(ps - 1); }
    g_threshold = env_size("PLACER_SHIM_THRESHOLD", 65536, 1, SIZE_MAX);
    g_depth = (int)env_size("PLACER_SHIM_STACK_DEPTH", 6, 1, MAX_DEPTH);
    g_bufcap = env_size("PLACER_SHIM_BUFFER", 1 << 20, 64 << 10, (size_t)1 << 30);
    g_period_ms = (unsigned)env_size("PLACER_SHIM_SAMPLE_PERIOD_MS", 10, 0, 3600000);
    g_sample_min = env_size("PLACER_SHIM_SAMPLE_MIN_SIZE", 1 << 20, 1, SIZE_MAX);
    g_sample_pages = (unsigned)env_size("PLACER_SHIM_SAMPLE_PAGES", 4, 1, MAX_SPAGES);
    g_sample_max_pages = (unsigned)env_size("PLACER_SHIM_SAMPLE_MAX_PAGES", 64, 1, 65536);
    g_budget_pcm = env_percent_milli("PLACER_SHIM_SAMPLE_BUDGET", 1000, 100000);
    g_ncpus = usable_cpus();
    g_max_objects = env_size("PLACER_SHIM_MAX_OBJECTS", 1 << 20, 1024, (size_t)1 << 26);
    if (g_sample_min < 2 * g_page) g_sample_min = 2 * g_page;

    size_t pl = cstrlen(logp);
    if (pl >= sizeof g_log_pattern - 64) { t_in_hook = 0; errno = e; return; }
    if (logp[0] != '/') {
        char cwd[PATH_MAX];
        if (!getcwd(cwd, sizeof cwd) || cstrlen(cwd) + pl + 2 >= sizeof g_log_pattern) {
            t_in_hook = 0; errno = e; return;
        }
        char *p = g_log_pattern, *end = g_log_pattern + sizeof g_log_pattern - 1;
        p = put_str(p, end, cwd);
        p = put_str(p, end, "/");
        p = put_str(p, end, logp);
        *p = 0;
    } else {
        memcpy(g_log_pattern, logp, pl + 1);
    }
    g_log_pid = raw_getpid();
    g_ppid = (pid_t)syscall(SYS_getppid);
    g_start_ns = now_ns();
    g_proc_start = read_proc_start();
    g_rng ^= g_start_ns ^ ((uint64_t)g_log_pid << 32);

    g_buf = raw_map(g_bufcap);
    g_mods = raw_map(MAX_MODULES * sizeof(module_t));
    g_siteset = raw_map(SITESET_CAP * sizeof(uint64_t));
    if (!g_buf || !g_mods || tab_grow() != 0) { t_in_hook = 0; errno = e; return; }

    if (g_period_ms > 0) {
        g_act_cap = g_sample_max_pages;
        g_act = raw_map((size_t)g_act_cap * sizeof(asample_t));
        g_pt_cap = 64;
        while (g_pt_cap < 2 * g_sample_max_pages) g_pt_cap *= 2;
        g_pt = raw_map((size_t)g_pt_cap * sizeof(pent_t));
        if (g_act && g_pt) g_sampling = 1;
    }
    const char *plan = getenv("PLACER_SHIM_PLAN");
    if (plan && *plan) load_plan(plan);

    if (open_log(0) != 0) { g_sampling = 0; t_in_hook = 0; errno = e; return; }

    /* the unwinder loads libgcc_s on its first call: do it now, not inside a hook */
    void *fr[4];
    backtrace(fr, 4);
    modules_rebuild();
    pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
    atexit(at_exit_flush);
    signals_setup();
    g_active = 1;
    dbg("logging to ", g_log_path, (uint64_t)-1);
    t_in_hook = 0;
    errno = e;
}

__attribute__((destructor)) static void shim_fini(void) {
    int e = errno;
    if (g_active && raw_getpid() == g_log_pid) shim_finish(0, 0);
    errno = e;
}
