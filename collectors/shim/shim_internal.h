/*
 * libplacer_shim.so - the preloaded allocation shim of placer (LD_PRELOAD).
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
 *   - No thread is ever created inside a hook: a hook may run inside the host allocator
 *     (jemalloc calls mmap holding its mutex) and pthread_create allocates through it.
 *     Hooks only ask for the sampler (sampler_wanted); it is created at a safe point
 *     (sampler_safe_point), or in the constructor when the allocator precedes the shim.
 *   - The kernel never meets a poisoned page on the program's behalf: every exported call
 *     that hands memory to the kernel (shim_io.c, shim_kcalls.c, syscall() included)
 *     lifts the poison on it first (io_enter). The one way around: an inline syscall.
 *   - The shim's own system calls are raw (shim_syscall) and its clocks libc's
 *     (shim_clock_gettime): they never enter its own exported wrappers.
 *   - A plan binding never outlives its object: the shim resets the ranges it bound to the
 *     default policy before handing the memory back (OF_BOUND), so an unplanned site that
 *     reuses the memory keeps the default policy.
 *
 * Lock order: col (sampler phases) -> mod (module registry) -> tab (object table)
 *             -> smp (poisoned pages) -> log (record buffer).  sig is a leaf.
 * A wrapper that calls into the kernel takes tab (obj_tail) and then smp (io_enter) one
 * after the other, never nested; both give way to a signal handler on a thread that
 * already holds them (lock_held_by_me), never waiting on themselves.
 *
 * One file per concern (collectors/shim/build.py compiles them all into one library); this
 * header holds what they share. Everything shared is HIDDEN (the library is also built with
 * -fvisibility=hidden): the library exports only the EXPORT wrappers.
 *   shim_init.c      real functions (dlsym), settings, constructor/destructor, finish, fork
 *   shim_log.c       the binary log (docs/shim-log.md): buffer, file, header, END + STATS
 *   shim_sites.c     module registry and call sites: stack walk, site hash, MODULE/SITE records
 *   shim_binding.c   the placement plan (PLACER_SHIM_PLAN) and its mbind, BIND records
 *   shim_objects.c   the live-object table; tracking allocations and frees (ALLOC/FREE)
 *   shim_sampling.c  page-poison sampler thread, kernel-access unpoisoning, poison faults
 *   shim_signals.c   sigaction/signal/sigmask virtualisation: SIGSEGV chaining, crash flush
 *   shim_wrappers.c  allocator, mmap-family, exec/spawn/_exit wrappers; bootstrap allocator
 *   shim_io.c        I/O wrappers: buffers handed to the kernel lose their poison first
 *   shim_kcalls.c    syscall() and the other libc calls that hand memory to the kernel
 *                    (epoll, poll, getdents64, clock_gettime, stat, paths...): the same
 */
#ifndef PLACER_SHIM_INTERNAL_H
#define PLACER_SHIM_INTERNAL_H
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
#include <poll.h>
#include <linux/futex.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/sysinfo.h>
#include <sys/times.h>
#include <sys/utsname.h>
#include <sys/wait.h>
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

/* The shim's own system calls never go through its exported syscall() wrapper
 * (shim_kcalls.c): every syscall(...) in the shim is this raw one. */
HIDDEN long shim_syscall(long nr, ...);
#define syscall(...) shim_syscall(__VA_ARGS__)
/* Likewise the clocks the shim reads and sleeps on: libc's, not the exported wrappers. */
HIDDEN int shim_clock_gettime(clockid_t c, struct timespec *ts);
HIDDEN int shim_clock_nanosleep(clockid_t c, int fl, const struct timespec *q, struct timespec *m);
#define clock_gettime(...) shim_clock_gettime(__VA_ARGS__)
#define clock_nanosleep(...) shim_clock_nanosleep(__VA_ARGS__)

/* ------------------------------------------------------------------ log format */
enum { REC_MODULE = 1, REC_SITE = 2, REC_ALLOC = 3, REC_FREE = 4, REC_SAMPLE = 5,
       REC_END = 6, REC_BIND = 7, REC_STATS = 8, REC_CLOCK = 9 };
enum { K_MALLOC = 0, K_CALLOC = 1, K_REALLOC = 2, K_POSIX_MEMALIGN = 3, K_ALIGNED_ALLOC = 4,
       K_MEMALIGN = 5, K_MMAP = 6, K_VALLOC = 7 };
enum { F_FREE = 0, F_REALLOC = 1, F_MUNMAP = 2 };
#define END_EXEC 256u
#define LOG_VERSION 1u
#define HDR_FLAG_SAMPLING 1u
#define HDR_FLAG_PLAN 2u
#define HDR_FLAG_CPU_INTERVALS 4u /* sampling intervals count the process's CPU time */

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
/* The process's CPU time (all threads) at a CLOCK_MONOTONIC time: labels are priced on the
 * program's CPU time, which other load on the host does not stretch (docs/emulator.md). */
struct rec_clock {
    struct rec_hdr h;
    uint64_t time_ns, cpu_ns;
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
_Static_assert(sizeof(struct rec_clock) == 24, "clock");
_Static_assert(sizeof(struct rec_bind_chunk) == 48, "bind chunk");

/* Counters written in the STATS record, in this order (docs/shim-log.md). */
enum {
    ST_DROPPED_RECORDS, ST_UNTRACKED_OBJECTS, ST_LOG_WRITE_ERRORS, ST_LOG_REOPENS,
    ST_SAMPLE_INTERVALS, ST_SAMPLE_FAULTS, ST_IO_UNPOISONS, ST_BUSY_SKIPS, ST_FOREIGN_SEGV,
    ST_MPROTECT_FAILURES, ST_BINDS_OK, ST_BINDS_FAILED, ST_STALE_OBJECTS, ST_MODULE_REBUILDS,
    ST_UNSAMPLEABLE_OBJECTS, ST_SAMPLER_CPU_NS, ST_FAULT_NS, ST_BUDGET_SKIPS,
    ST_PLAN_BAD_LINES, ST_HANDLER_SKIPS, ST_COUNT
};
HIDDEN extern _Atomic uint64_t g_stat[ST_COUNT];
#define STAT_ADD(i, n) atomic_fetch_add_explicit(&g_stat[i], (uint64_t)(n), memory_order_relaxed)

/* ------------------------------------------------------------------ raw helpers */
HIDDEN extern TLS int t_in_hook; /* set while a hook runs: nested allocations pass through */
HIDDEN extern TLS pid_t t_tid;

static inline pid_t my_tid(void) {
    if (UNLIKELY(!t_tid)) t_tid = (pid_t)syscall(SYS_gettid);
    return t_tid;
}
static inline uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}
static inline uint64_t process_cpu_ns(void) {
    struct timespec ts;
    if (clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts) != 0) return 0;
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}
static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}
static inline void *raw_map(size_t len) {
    long r = syscall(SYS_mmap, 0, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return r == -1 ? NULL : (void *)r;
}
static inline void raw_unmap(void *p, size_t len) { syscall(SYS_munmap, p, len); }
static inline int raw_mprotect(uintptr_t p, size_t len, int prot) {
    return (int)syscall(SYS_mprotect, p, len, prot);
}
static inline int raw_open(const char *p, int fl, int mode) {
    return (int)syscall(SYS_openat, AT_FDCWD, p, fl, mode);
}
static inline void raw_close(int fd) { syscall(SYS_close, fd); }
static inline ssize_t raw_read(int fd, void *b, size_t n) { return syscall(SYS_read, fd, b, n); }
static inline pid_t raw_getpid(void) { return (pid_t)syscall(SYS_getpid); }

static inline size_t cstrlen(const char *s) { size_t n = 0; while (s[n]) n++; return n; }
static inline char *put_str(char *p, char *end, const char *s) {
    while (*s && p < end) *p++ = *s++;
    return p;
}
static inline char *put_u64(char *p, char *end, uint64_t v) {
    char tmp[24];
    int n = 0;
    do { tmp[n++] = (char)('0' + v % 10); v /= 10; } while (v);
    while (n && p < end) *p++ = tmp[--n];
    return p;
}

/* A spin lock that knows its owner (signal handlers must not wait on themselves). */
typedef struct { _Atomic int owner; } lock_t;
static inline void lock_acquire(lock_t *l) {
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
static inline int lock_try_for(lock_t *l, uint64_t max_ns) {
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

HIDDEN extern lock_t g_col_lock, g_mod_lock, g_tab_lock, g_smp_lock, g_log_lock, g_sig_lock;

/* ------------------------------------------------------------------ real functions (shim_init.c) */
/* Declared here once; shim_init.c (SHIM_DEFINE_REAL) holds the definitions. */
#ifdef SHIM_DEFINE_REAL
#define REAL HIDDEN
#else
#define REAL HIDDEN extern
#endif
REAL void *(*real_malloc)(size_t);
REAL void *(*real_calloc)(size_t, size_t);
REAL void *(*real_realloc)(void *, size_t);
REAL void *(*real_reallocarray)(void *, size_t, size_t);
REAL void (*real_free)(void *);
REAL int (*real_posix_memalign)(void **, size_t, size_t);
REAL void *(*real_aligned_alloc)(size_t, size_t);
REAL void *(*real_memalign)(size_t, size_t);
REAL void *(*real_valloc)(size_t);
REAL void *(*real_pvalloc)(size_t);
REAL void *(*real_mmap)(void *, size_t, int, int, int, off_t);
REAL int (*real_munmap)(void *, size_t);
REAL void *(*real_mremap)(void *, size_t, size_t, int, ...);
REAL int (*real_mprotect)(void *, size_t, int);
REAL int (*real_sigaction)(int, const struct sigaction *, struct sigaction *);
REAL int (*real_sigprocmask)(int, const sigset_t *, sigset_t *);
REAL int (*real_pthread_sigmask)(int, const sigset_t *, sigset_t *);
REAL ssize_t (*real_read)(int, void *, size_t);
REAL ssize_t (*real_write)(int, const void *, size_t);
REAL ssize_t (*real_pread)(int, void *, size_t, off_t);
REAL ssize_t (*real_pwrite)(int, const void *, size_t, off_t);
REAL ssize_t (*real_readv)(int, const struct iovec *, int);
REAL ssize_t (*real_writev)(int, const struct iovec *, int);
REAL ssize_t (*real_preadv)(int, const struct iovec *, int, off_t);
REAL ssize_t (*real_pwritev)(int, const struct iovec *, int, off_t);
REAL ssize_t (*real_preadv2)(int, const struct iovec *, int, off_t, int);
REAL ssize_t (*real_pwritev2)(int, const struct iovec *, int, off_t, int);
REAL ssize_t (*real_recv)(int, void *, size_t, int);
REAL ssize_t (*real_recvfrom)(int, void *, size_t, int, struct sockaddr *, socklen_t *);
REAL ssize_t (*real_recvmsg)(int, struct msghdr *, int);
REAL ssize_t (*real_send)(int, const void *, size_t, int);
REAL ssize_t (*real_sendto)(int, const void *, size_t, int, const struct sockaddr *, socklen_t);
REAL ssize_t (*real_sendmsg)(int, const struct msghdr *, int);
REAL size_t (*real_fread)(void *, size_t, size_t, FILE *);
REAL size_t (*real_fwrite)(const void *, size_t, size_t, FILE *);
REAL size_t (*real_fread_unlocked)(void *, size_t, size_t, FILE *);
REAL size_t (*real_fwrite_unlocked)(const void *, size_t, size_t, FILE *);
REAL ssize_t (*real___read_chk)(int, void *, size_t, size_t);
REAL ssize_t (*real___pread_chk)(int, void *, size_t, off_t, size_t);
REAL ssize_t (*real___pread64_chk)(int, void *, size_t, off_t, size_t);
REAL ssize_t (*real___recv_chk)(int, void *, size_t, size_t, int);
REAL ssize_t (*real___recvfrom_chk)(int, void *, size_t, size_t, int, struct sockaddr *,
                                    socklen_t *);
REAL size_t (*real___fread_chk)(void *, size_t, size_t, size_t, FILE *);
REAL size_t (*real___fread_unlocked_chk)(void *, size_t, size_t, size_t, FILE *);
REAL ssize_t (*real_getrandom)(void *, size_t, unsigned int);
REAL int (*real_getentropy)(void *, size_t);
REAL int (*real_setvbuf)(FILE *, char *, int, size_t);
REAL void (*real_setbuffer)(FILE *, char *, size_t);
REAL int (*real_execve)(const char *, char *const[], char *const[]);
REAL int (*real_execv)(const char *, char *const[]);
REAL int (*real_execvp)(const char *, char *const[]);
REAL int (*real_execvpe)(const char *, char *const[], char *const[]);
REAL int (*real_fexecve)(int, char *const[], char *const[]);
REAL int (*real_posix_spawn)(pid_t *, const char *, const posix_spawn_file_actions_t *,
                             const posix_spawnattr_t *, char *const[], char *const[]);
REAL int (*real_posix_spawnp)(pid_t *, const char *, const posix_spawn_file_actions_t *,
                              const posix_spawnattr_t *, char *const[], char *const[]);
REAL void (*real__exit)(int);
REAL void (*real__Exit)(int);

HIDDEN extern _Atomic int g_resolve_state; /* 0 none, 1 running, 2 done */
HIDDEN void resolve_all(void);
#define ENSURE(fn) do { if (UNLIKELY(!(fn))) resolve_all(); } while (0)

/* ------------------------------------------------------------------ configuration (shim_init.c) */
HIDDEN extern volatile int g_active;      /* logging on */
HIDDEN extern volatile int g_sampling;    /* page-poison sampling configured (and not finished) */
HIDDEN extern volatile int g_sig_virtual; /* sigaction/signal are virtualised */
HIDDEN extern int g_debug;
HIDDEN extern size_t g_threshold;
HIDDEN extern int g_depth;
HIDDEN extern size_t g_bufcap;
HIDDEN extern unsigned g_period_ms;
HIDDEN extern int g_sample_cpu; /* intervals of CPU time (1, default) or of wall time (0) */
HIDDEN extern size_t g_sample_min;
HIDDEN extern unsigned g_sample_pages;
HIDDEN extern unsigned g_sample_max_pages;
/* Sampling cost budget, in thousandths of a percent of the program's own CPU time
 * (1000 = 1%); 0 = no budget. See budget_exceeded(). */
HIDDEN extern uint64_t g_budget_pcm;
HIDDEN extern uint64_t g_ncpus; /* CPUs the process may use, read at start */
HIDDEN extern size_t g_max_objects;
HIDDEN extern uintptr_t g_page, g_page_mask;
HIDDEN extern uint64_t g_start_ns, g_start_cpu_ns, g_proc_start;
HIDDEN extern pid_t g_log_pid, g_ppid;
HIDDEN extern char g_log_pattern[PATH_MAX];
HIDDEN extern char g_log_path[PATH_MAX];
HIDDEN extern int g_plan_loaded;
HIDDEN extern int g_is_fork_child;

#define MAX_DEPTH 32
#define MAX_SPAGES 64

HIDDEN void dbg(const char *a, const char *b, uint64_t n);

/* ------------------------------------------------------------------ shim_log.c */
HIDDEN extern char *g_buf;
HIDDEN extern size_t g_buf_used, g_buf_nrec;
/* Records older than this are written out with the next record appended, and by the
 * sampler thread (when there is one) after half of it, so a program killed by SIGKILL
 * (which no handler sees) loses little of its log. */
#define FLUSH_EVERY_NS 1000000000ull
HIDDEN extern uint64_t g_buf_first_ns; /* when the oldest unwritten record was appended */
HIDDEN extern int g_fd;
HIDDEN extern volatile int g_log_closed;
HIDDEN extern _Atomic uint64_t g_seq;
HIDDEN void log_flush_locked(void);
HIDDEN void log_append_locked(const void *rec, size_t len);
HIDDEN void log_end_locked(uint32_t reason);
/* CLOCK records: the first call also logs the start point (g_start_ns, g_start_cpu_ns). */
HIDDEN void log_clock_locked(void);
HIDDEN extern int g_clock_started;
HIDDEN uint64_t read_proc_start(void);
HIDDEN int open_log(int child);

/* ------------------------------------------------------------------ shim_sites.c */
typedef struct {
    char path[PATH_MAX];
    uint32_t path_len;
    uint8_t bid[32];
    uint8_t bid_len;
    uint8_t emitted;
} module_t;
#define MAX_MODULES 1024
HIDDEN extern module_t *g_mods;
HIDDEN extern _Atomic uint32_t g_nmods;
typedef struct {
    int n;
    uint32_t mod[MAX_DEPTH];
    uint64_t off[MAX_DEPTH];
    uint64_t hash;
} site_t;
/* Sites already written to this log (open addressing; full: write again, harmless). */
#define SITESET_CAP (1u << 16)
HIDDEN extern uint64_t *g_siteset;
HIDDEN void modules_rebuild(void);
HIDDEN void capture_site(site_t *st);
HIDDEN void emit_site_locked(const site_t *st);

/* ------------------------------------------------------------------ shim_binding.c */
/* One planned site: its whole-allocation node (-1: none) and its list of chunk lines. */
typedef struct { uint64_t site; int32_t node; int32_t used; uint32_t chunk_head, chunk_tail; }
    plan_ent_t;
#define PLAN_NONE UINT32_MAX
HIDDEN const plan_ent_t *plan_lookup(uint64_t site);
HIDDEN void load_plan(const char *path);
HIDDEN int do_mbind(uintptr_t addr, size_t size, int node);
HIDDEN void bind_chunks(const plan_ent_t *e, uint64_t seq, uintptr_t addr, size_t size);
HIDDEN int plan_binds(const plan_ent_t *e);
HIDDEN void plan_policy(uint64_t site, uintptr_t addr, size_t size, uintptr_t clo,
                        uintptr_t chi, int reset);

/* ------------------------------------------------------------------ shim_objects.c */
#define OF_SAMPLEABLE 1
#define OF_MMAP 2
#define OF_NOSAMPLE 4
/* The plan binds this object's site: before the allocator gets its memory back (free,
 * realloc, mremap) the ranges bound are reset to the default policy (plan_policy). */
#define OF_BOUND 8
typedef struct {
    uintptr_t addr; /* 0: empty */
    uint64_t size, seq, site, time_ns;
    uint32_t big, slot; /* index in big list; active-sample slot hint */
    uint8_t kind, flags;
} obj_t;
typedef struct { uintptr_t addr; uint64_t size, seq; uint8_t flags; } big_t;
HIDDEN extern big_t *g_big;
HIDDEN extern size_t g_big_n, g_big_cursor;
#define BLOOM_BITS 16
HIDDEN extern _Atomic uint32_t g_bloom[1u << BLOOM_BITS];
static inline uint32_t bloom_idx(uintptr_t a) {
    return (uint32_t)(((uint64_t)(a >> 4) * 0x9E3779B97F4A7C15ull) >> (64 - BLOOM_BITS));
}
HIDDEN obj_t *tab_find(uintptr_t a);
HIDDEN int tab_grow(void);
HIDDEN void track(void *p, size_t size, int kind, int mmap_obj, int sampleable);
HIDDEN int take_object(uintptr_t a, obj_t *out, struct rec_sample *srec, int *has_srec);
HIDDEN void put_back(const obj_t *o);
HIDDEN void log_free(const obj_t *o, int kind, const struct rec_sample *srec, int has_srec);
HIDDEN void untrack_free(void *p, int kind);
HIDDEN void unbind_object(const obj_t *o);
HIDDEN void rebind_object(const obj_t *o);
HIDDEN void mmap_range_gone(uintptr_t lo, uintptr_t hi);

/* ------------------------------------------------------------------ shim_sampling.c */
typedef struct {
    uint64_t seq; /* 0: dead (object freed) */
    uintptr_t addr;
    uint64_t size, start_ns;
    uint32_t npages, sampled, touched, written;
    uintptr_t page[MAX_SPAGES];
    uint8_t st[MAX_SPAGES];
} asample_t;
typedef struct { uintptr_t page; uint32_t a, p; } pent_t;
HIDDEN extern asample_t *g_act;
HIDDEN extern uint32_t g_act_n, g_act_cap;
HIDDEN extern pent_t *g_pt;
HIDDEN extern uint32_t g_pt_cap;
HIDDEN extern _Atomic int g_stop, g_sampler_started;
HIDDEN extern uint64_t g_rng;
#define IO_SLOTS 256
/* One call in flight per slot, a cache line each (a thread's slot is tid % IO_SLOTS). */
struct io_slot { _Alignas(64) _Atomic uintptr_t lo; _Atomic uintptr_t hi; };
HIDDEN extern struct io_slot g_io[IO_SLOTS];
HIDDEN extern _Atomic int g_io_overflow;
HIDDEN void pt_clear(void);
HIDDEN void sample_restore_all(asample_t *a);
HIDDEN int sample_end_for(obj_t *o, struct rec_sample *rec, uint64_t now);
HIDDEN void unpoison_everything_locked(void);
HIDDEN uint64_t usable_cpus(void);
HIDDEN void interval_end(void);
HIDDEN void start_sampler(void);
HIDDEN void sampler_stop(void);
HIDDEN void sampler_after_fork(int wanted);
HIDDEN void sampling_quiesce(uint64_t pause_ns);
typedef struct { uintptr_t lo, hi; } range_t;
HIDDEN int io_enter(const range_t *r, int n, int kwrite);
/* The rest of the sampleable object that holds p, [p, end), for a pointer whose extent the
 * kernel alone knows (a path, an ioctl argument); {0, 0} when p lies in none. */
HIDDEN range_t obj_tail(uintptr_t p);
/* Sampler start (docs/shim.md, "Never crash"): hooks only ask for it (sampler_wanted);
 * the thread is created at a safe point, outside the host allocator. */
HIDDEN void sampler_wanted(void);
HIDDEN void sampler_safe_point(void);
HIDDEN extern _Atomic int g_sampler_want;
HIDDEN extern int g_alloc_first; /* the host allocator precedes the shim in the lookup order */
HIDDEN void exclude_range(uintptr_t lo, uintptr_t hi);
#define IOV_RANGES 32
HIDDEN int iov_ranges(range_t *r, const struct iovec *iov, int cnt);
HIDDEN int msg_ranges(range_t *r, const struct msghdr *m);
HIDDEN void io_leave_cleanup(int *slot);
#define IO_GUARD(name) int name __attribute__((cleanup(io_leave_cleanup)))
HIDDEN int poison_fault(siginfo_t *si, void *uc);

/* ------------------------------------------------------------------ shim_signals.c, shim_init.c */
HIDDEN void signals_setup(void);
/* SIGSEGV is still the shim's in the kernel (an inline rt_sigaction may have replaced it). */
HIDDEN int segv_handler_installed(void);
/* rt_sigaction / rt_sigprocmask made through syscall(): 1 if handled, result in *ret. */
HIDDEN int raw_sigaction_call(long sig, const void *act, void *old, long sz, long *ret);
HIDDEN int raw_sigmask_call(long how, const void *set, void *old, long sz, long *ret);
HIDDEN void kcalls_resolve(void);
HIDDEN void shim_finish(uint32_t reason, int from_signal);

#endif /* PLACER_SHIM_INTERNAL_H */
