/*
 * shim_init.c - the shim's start and end: the real functions (dlsym), its settings,
 * the constructor and destructor, the final log records, and the fork handlers.
 */
#define SHIM_DEFINE_REAL /* the real_* pointers are defined here */
#include "shim_internal.h"

#ifndef PLACER_SHIM_SOURCE_HASH
#define PLACER_SHIM_SOURCE_HASH "unknown"
#endif
/* Found by collectors.shim.build (a byte search in the .so): tells a stale build. */
__attribute__((used)) static const char shim_source_marker[] =
    "PLACER_SHIM_SOURCE_SHA256=" PLACER_SHIM_SOURCE_HASH ";";

HIDDEN TLS int t_in_hook;
static TLS int t_resolving;     /* this thread is inside dlsym at bootstrap */
HIDDEN TLS pid_t t_tid;

HIDDEN lock_t g_col_lock, g_mod_lock, g_tab_lock, g_smp_lock, g_log_lock, g_sig_lock;

/* ------------------------------------------------------------------ real functions */
HIDDEN _Atomic int g_resolve_state; /* 0 none, 1 running, 2 done */
#define SYM(var, name) (var = (__typeof__(var))dlsym(RTLD_NEXT, name))
HIDDEN void resolve_all(void) {
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
        kcalls_resolve();
        t_resolving = 0;
        atomic_store(&g_resolve_state, 2);
    } else if (exp == 1 && !t_resolving) {
        while (atomic_load(&g_resolve_state) != 2) sched_yield();
    }
}

/* ------------------------------------------------------------------ configuration */
HIDDEN volatile int g_active;      /* logging on */
HIDDEN volatile int g_sampling;    /* page-poison sampling configured (and not finished) */
HIDDEN volatile int g_sig_virtual; /* sigaction/signal are virtualised */
HIDDEN int g_debug;
HIDDEN size_t g_threshold = 65536;
HIDDEN int g_depth = 6;
HIDDEN size_t g_bufcap = 1 << 20;
HIDDEN unsigned g_period_ms = 10;
HIDDEN int g_sample_cpu = 1;
HIDDEN size_t g_sample_min = 1 << 20;
HIDDEN unsigned g_sample_pages = 4;
HIDDEN unsigned g_sample_max_pages = 64;
/* Sampling cost budget, in thousandths of a percent of the program's own CPU time
 * (1000 = 1%); 0 = no budget. See budget_exceeded(). */
HIDDEN uint64_t g_budget_pcm = 1000;
HIDDEN uint64_t g_ncpus = 1; /* CPUs the process may use, read at start */
HIDDEN size_t g_max_objects = 1 << 20;
HIDDEN uintptr_t g_page = 4096, g_page_mask = ~(uintptr_t)4095;
HIDDEN uint64_t g_start_ns, g_start_cpu_ns, g_proc_start;
HIDDEN pid_t g_log_pid, g_ppid;
HIDDEN char g_log_pattern[PATH_MAX];
HIDDEN char g_log_path[PATH_MAX];
HIDDEN int g_plan_loaded;
HIDDEN int g_is_fork_child;
HIDDEN int g_alloc_first;

HIDDEN void dbg(const char *a, const char *b, uint64_t n) {
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

/* ------------------------------------------------------------------ finish, fork */
static _Atomic int g_finished;
HIDDEN void shim_finish(uint32_t reason, int from_signal) {
    if (!g_active) return;
    int saved = t_in_hook;
    t_in_hook = 1;
    int exp = 0;
    if (!atomic_compare_exchange_strong(&g_finished, &exp, 1)) { t_in_hook = saved; return; }
    if (g_sampling) {
        sampler_stop();
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
    atomic_store(&g_io_overflow, 0);
    g_rng ^= (uint64_t)raw_getpid() * 0x9E3779B97F4A7C15ull;
    /* a log of its own: the parent's unflushed records stay with the parent */
    g_buf_used = g_buf_nrec = 0;
    if (g_fd >= 0) raw_close(g_fd);
    g_fd = -1;
    g_ppid = g_log_pid;
    g_log_pid = raw_getpid();
    g_start_ns = now_ns();
    g_start_cpu_ns = process_cpu_ns();
    g_clock_started = 0;
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
    /* large objects inherited from the parent are sampled in the child too: the sampler
     * is started at the next safe point; with the allocator before the shim, now, parked
     * as in the constructor (this handler was registered after the allocator's, which has
     * released its locks by now) */
    sampler_after_fork(g_active && g_sampling && g_big_n > 0);
    if (g_alloc_first && g_active && g_sampling) {
        atomic_store(&g_sampler_want, 1);
        sampler_safe_point();
    }
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
    {
        const char *clk = getenv("PLACER_SHIM_SAMPLE_CLOCK");
        g_sample_cpu = !(clk && clk[0] == 'w'); /* "wall": intervals of wall time */
    }
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
    g_start_cpu_ns = process_cpu_ns();
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
    /* The host allocator before the shim (LD_PRELOAD="libjemalloc.so.2 shim", or a program
     * with its own malloc): the shim's allocator wrappers never run, only its mmap hook,
     * called inside the allocator with its locks held, where no thread may be created. So
     * the sampler is created now, parked until the first large object. This also makes the
     * allocator initialise (and register its fork handlers) before the shim's below. */
    {
        Dl_info host, self;
        void *host_malloc = dlsym(RTLD_DEFAULT, "malloc");
        g_alloc_first = host_malloc && dladdr(host_malloc, &host) &&
                        dladdr((void *)&resolve_all, &self) && host.dli_fbase != self.dli_fbase;
    }
    if (g_alloc_first && g_sampling) {
        atomic_store(&g_sampler_want, 1);
        sampler_safe_point();
    }
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
