/*
 * shim_sampling.c - access sampling by page poisoning (docs/shim.md): the sampler
 * thread and its intervals, poison lifted on buffers handed to the kernel, and the
 * SIGSEGV side (a fault on a poisoned page is counted and the page restored).
 */
#include "shim_internal.h"

/* ------------------------------------------------------------------ page-poison sampling */
enum { PS_IDLE = 0, PS_NONE = 1, PS_READ = 2, PS_DONE = 3 };
static TLS uintptr_t t_last_fault_page;
static TLS uint64_t t_last_fault_epoch;

HIDDEN asample_t *g_act;
HIDDEN uint32_t g_act_n, g_act_cap;
HIDDEN pent_t *g_pt;
HIDDEN uint32_t g_pt_cap;
static uint32_t g_interval;
static _Atomic uintptr_t g_plo = UINTPTR_MAX, g_phi = 0;   /* bounds of poisoned pages */
static _Atomic uint64_t g_epoch;                            /* bumped by every unpoison */
static _Atomic uint64_t g_pause_until;                      /* no poisoning before this */
HIDDEN _Atomic int g_stop, g_sampler_started;
HIDDEN uint64_t g_rng = 0x853c49e6748fea9bull;

HIDDEN struct io_slot g_io[IO_SLOTS];
HIDDEN _Atomic int g_io_overflow;

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
HIDDEN void pt_clear(void) {
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
HIDDEN void sample_restore_all(asample_t *a) {
    for (uint32_t i = 0; i < a->npages; i++) page_restore(a, i);
}
static void make_sample_rec(const asample_t *a, uint64_t end, struct rec_sample *r) {
    *r = (struct rec_sample){{REC_SAMPLE, sizeof *r}, a->seq, a->start_ns, end, g_interval,
                             a->sampled, a->touched, a->written};
}
/* End the active sample of object `o` (tab + smp held). 1 if a record was made. */
HIDDEN int sample_end_for(obj_t *o, struct rec_sample *rec, uint64_t now) {
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
HIDDEN void unpoison_everything_locked(void) {
    for (uint32_t k = 0; k < g_act_n; k++) sample_restore_all(&g_act[k]);
    atomic_store(&g_plo, UINTPTR_MAX);
    atomic_store(&g_phi, 0);
}

static int io_busy(uintptr_t lo, uintptr_t hi) {
    if (atomic_load(&g_io_overflow)) return 1;
    /* every slot, each time: a shared count of calls in flight would be one cache line
     * that every thread's clock_gettime, read, futex... writes */
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
HIDDEN uint64_t usable_cpus(void) {
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
    if (!segv_handler_installed()) {
        /* an inline rt_sigaction replaced the shim's SIGSEGV handler: a poison fault would
         * reach the program's handler (or kill it), so poison nothing while it lasts */
        STAT_ADD(ST_HANDLER_SKIPS, 1);
        return 0;
    }
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
        uint64_t cpu = g_sample_cpu ? process_cpu_ns() : 0;
        uint64_t iv = g_sample_cpu ? (cpu > g_start_cpu_ns ? (cpu - g_start_cpu_ns) / per : 0)
                                   : (now > g_start_ns ? (now - g_start_ns) / per : 0);
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
HIDDEN void interval_end(void) {
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

/* Write the CPU-time timeline and flush records that waited long enough. */
static void sampler_flush(void) {
    lock_acquire(&g_log_lock);
    log_clock_locked(); /* the CPU-time timeline lifetimes are priced on */
    /* a program that stops allocating still gets its records out (SIGKILL) */
    if (g_buf_used && now_ns() - g_buf_first_ns >= FLUSH_EVERY_NS / 2) log_flush_locked();
    lock_release(&g_log_lock);
}

/* Sleep until the process has used ``ns`` more CPU time (all threads): an interval then
 * holds the same work however busy the host is. Polled on the wall clock, no sooner than
 * the program could get there on all its CPUs, and at least every 0.1 s (stop, flush). */
static void wait_cpu(uint64_t ns) {
    uint64_t target = process_cpu_ns() + ns, last_flush = now_ns();
    for (;;) {
        uint64_t cpu = process_cpu_ns();
        if (cpu >= target || atomic_load(&g_stop)) return;
        uint64_t step = (target - cpu) / (g_ncpus ? g_ncpus : 1);
        if (step < 1000000ull) step = 1000000ull;
        if (step > 100000000ull) step = 100000000ull;
        struct timespec ts = {(time_t)(step / 1000000000ull), (long)(step % 1000000000ull)};
        while (clock_nanosleep(CLOCK_MONOTONIC, 0, &ts, &ts) == EINTR) {}
        if (now_ns() - last_flush >= FLUSH_EVERY_NS / 2) {
            lock_acquire(&g_log_lock);
            if (g_buf_used && now_ns() - g_buf_first_ns >= FLUSH_EVERY_NS / 2) log_flush_locked();
            lock_release(&g_log_lock);
            last_flush = now_ns();
        }
    }
}

/* The sampler parks on this word until the first large object (g_sampler_go = 1). */
static _Atomic int g_sampler_go;
HIDDEN _Atomic int g_sampler_want;
static void sampler_park(void) {
    while (!atomic_load(&g_sampler_go) && !atomic_load(&g_stop))
        syscall(SYS_futex, &g_sampler_go, FUTEX_WAIT_PRIVATE, 0, NULL, NULL, 0);
}
static void *sampler_main(void *arg) {
    (void)arg;
    t_in_hook = 1;
    sampler_park();
    struct timespec next;
    clock_gettime(CLOCK_MONOTONIC, &next);
    while (!atomic_load(&g_stop)) {
        uint64_t wait = 0;
        lock_acquire(&g_col_lock);
        if (!atomic_load(&g_stop)) wait = interval_start();
        lock_release(&g_col_lock);
        uint64_t per = (uint64_t)g_period_ms * 1000000ull;
        if (wait < per) wait = per;
        if (g_sample_cpu) {
            /* a budget wait is wall time on all CPUs: in CPU time it is that many times more */
            wait_cpu(wait > per ? wait * g_ncpus : wait);
        } else {
            next.tv_nsec += (long)(wait % 1000000000ull);
            next.tv_sec += (time_t)(wait / 1000000000ull);
            if (next.tv_nsec >= 1000000000L) { next.tv_nsec -= 1000000000L; next.tv_sec++; }
            while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, NULL) == EINTR) {}
            struct timespec cur;
            clock_gettime(CLOCK_MONOTONIC, &cur);
            if (cur.tv_sec > next.tv_sec + 1) next = cur; /* we were stopped: do not catch up */
        }
        lock_acquire(&g_col_lock);
        interval_end();
        lock_release(&g_col_lock);
        /* the sampler's own CPU time so far (what sampling costs besides the faults) */
        uint64_t cpu = thread_cpu_ns(CLOCK_THREAD_CPUTIME_ID);
        if (cpu) atomic_store_explicit(&g_stat[ST_SAMPLER_CPU_NS], cpu, memory_order_relaxed);
        sampler_flush();
    }
    return NULL;
}
/* A hook met a large object: wake the sampler, and ask for it to be created at the next
 * safe point when there is none yet. Allocates nothing, takes no lock: hooks run inside
 * the host allocator (jemalloc calls mmap holding its own mutex). */
HIDDEN void sampler_wanted(void) {
    if (!atomic_load_explicit(&g_sampler_go, memory_order_relaxed)) {
        atomic_store(&g_sampler_go, 1);
        syscall(SYS_futex, &g_sampler_go, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
    }
    if (!atomic_load_explicit(&g_sampler_started, memory_order_relaxed))
        atomic_store(&g_sampler_want, 1);
}
/* Called where this thread holds no allocator lock: on the way out of the program's own
 * call of one of the shim's allocator wrappers (the real allocator has returned), and in
 * the constructor. pthread_create allocates (its DTV) through the host allocator. */
HIDDEN void sampler_safe_point(void) {
    if (LIKELY(!atomic_load_explicit(&g_sampler_want, memory_order_relaxed))) return;
    atomic_store(&g_sampler_want, 0);
    int e = errno;
    start_sampler();
    errno = e;
}
HIDDEN void start_sampler(void) {
    if (!g_sampling) return;
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

/* The sampler is to stop: wake it if it is parked. */
HIDDEN void sampler_stop(void) {
    atomic_store(&g_stop, 1);
    syscall(SYS_futex, &g_sampler_go, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}
/* A fork child: no sampler thread; it is wanted again when the child holds large objects. */
HIDDEN void sampler_after_fork(int wanted) {
    atomic_store(&g_sampler_started, 0);
    atomic_store(&g_sampler_go, wanted);
    atomic_store(&g_sampler_want, wanted);
}

/* Pause poisoning for a while and restore every page (exec, posix_spawn, exit). */
HIDDEN void sampling_quiesce(uint64_t pause_ns) {
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
static void io_unpoison(const range_t *r, int n, int kwrite) {
    int saved = t_in_hook;
    t_in_hook = 1;
    if (lock_held_by_me(&g_smp_lock)) {
        /* a signal handler calls into the kernel while its thread is inside the shim: lift
         * the pages without the lock (the interrupted code restores them again, harmless) */
        for (uint32_t k = 0; k < g_act_n; k++) {
            asample_t *a = &g_act[k];
            for (uint32_t j = 0; j < a->npages; j++) {
                uintptr_t pg = a->page[j];
                for (int q = 0; q < n; q++)
                    if (r[q].lo < pg + g_page && r[q].hi > pg) {
                        raw_mprotect(pg, g_page, PROT_READ | PROT_WRITE);
                        break;
                    }
            }
        }
        t_in_hook = saved;
        return;
    }
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
/* A slot for [lo, hi): its index, or -2 when all are taken (io_busy then refuses every
 * page until the call returns). */
static int io_take_slot(uintptr_t lo, uintptr_t hi) {
    if (lo < 2) lo = 2;
    int start = (int)((unsigned)my_tid() % IO_SLOTS);
    for (int k = 0; k < IO_SLOTS; k++) {
        int i = (start + k) % IO_SLOTS;
        uintptr_t exp = 0;
        if (atomic_load_explicit(&g_io[i].lo, memory_order_relaxed) == 0 &&
            atomic_compare_exchange_strong(&g_io[i].lo, &exp, 1)) {
            atomic_store(&g_io[i].hi, hi);
            atomic_store(&g_io[i].lo, lo);
            return i;
        }
    }
    atomic_fetch_add(&g_io_overflow, 1);
    return -2;
}
/* A call's ranges take up to IO_GROUPS slots (the first ranges one each, the rest their
 * hull), so a blocked call with a heap buffer and a timeout on its stack (futex, ppoll,
 * epoll_pwait) keeps the sampler off those two places, not off everything in between.
 * The token for io_leave holds 9 bits per slot (0 none, 1..IO_SLOTS the slot + 1,
 * IO_SLOTS + 1 an overflow); -1: nothing to release. */
#define IO_GROUPS 3
#define IO_TOKEN_OVERFLOW (IO_SLOTS + 1)
_Static_assert(IO_TOKEN_OVERFLOW < 512 && IO_GROUPS * 9 < 31, "io token");
HIDDEN int io_enter(const range_t *r, int n, int kwrite) {
    if (LIKELY(!g_sampling)) return -1;
    range_t g[IO_GROUPS];
    int ng = 0;
    uintptr_t lo = UINTPTR_MAX, hi = 0;
    for (int i = 0; i < n; i++) {
        if (r[i].hi <= r[i].lo) continue;
        if (r[i].lo < lo) lo = r[i].lo;
        if (r[i].hi > hi) hi = r[i].hi;
        if (ng < IO_GROUPS) {
            g[ng++] = r[i];
        } else {
            if (r[i].lo < g[IO_GROUPS - 1].lo) g[IO_GROUPS - 1].lo = r[i].lo;
            if (r[i].hi > g[IO_GROUPS - 1].hi) g[IO_GROUPS - 1].hi = r[i].hi;
        }
    }
    if (!ng) return -1;
    int token = 0;
    for (int k = 0; k < ng; k++) {
        int slot = io_take_slot(g[k].lo, g[k].hi);
        token |= (slot == -2 ? IO_TOKEN_OVERFLOW : slot + 1) << (9 * k);
    }
    uintptr_t plo = atomic_load(&g_plo), phi = atomic_load(&g_phi);
    if (lo < phi && hi > plo) io_unpoison(r, n, kwrite);
    return token;
}
static void io_leave(int token) {
    if (token == -1) return;
    for (int k = 0; k < IO_GROUPS; k++) {
        int v = (token >> (9 * k)) & 511;
        if (v == IO_TOKEN_OVERFLOW) atomic_fetch_sub(&g_io_overflow, 1);
        else if (v) atomic_store(&g_io[v - 1].lo, 0);
    }
}
HIDDEN void io_leave_cleanup(int *slot) { int e = errno; io_leave(*slot); errno = e; }

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
HIDDEN int poison_fault(siginfo_t *si, void *uc) {
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
