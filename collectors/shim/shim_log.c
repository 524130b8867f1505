/*
 * shim_log.c - the binary log (format: docs/shim-log.md): the record buffer, the
 * log file and its name, the header, and the STATS and END records.
 */
#include "shim_internal.h"

HIDDEN _Atomic uint64_t g_stat[ST_COUNT];

/* ------------------------------------------------------------------ log buffer */
HIDDEN char *g_buf;
HIDDEN size_t g_buf_used, g_buf_nrec;
HIDDEN uint64_t g_buf_first_ns; /* when the oldest unwritten record was appended */
HIDDEN int g_fd = -1;
static dev_t g_fd_dev;
static ino_t g_fd_ino;
HIDDEN volatile int g_log_closed;
HIDDEN _Atomic uint64_t g_seq = 1;

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
HIDDEN void log_flush_locked(void) {
    if (!g_buf_used) return;
    if (raw_getpid() != g_log_pid) { /* a child we were not told about (raw clone) */
        g_buf_used = g_buf_nrec = 0;
        return;
    }
    if (log_fd_ok()) log_write_all(g_buf, g_buf_used);
    else STAT_ADD(ST_DROPPED_RECORDS, g_buf_nrec);
    g_buf_used = g_buf_nrec = 0;
}
HIDDEN void log_append_locked(const void *rec, size_t len) {
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
HIDDEN int g_clock_started;
HIDDEN void log_clock_locked(void) {
    if (!g_clock_started) {
        struct rec_clock c0 = {{REC_CLOCK, sizeof c0}, g_start_ns, g_start_cpu_ns};
        log_append_locked(&c0, sizeof c0);
        g_clock_started = 1;
    }
    struct rec_clock c = {{REC_CLOCK, sizeof c}, now_ns(), process_cpu_ns()};
    log_append_locked(&c, sizeof c);
}
HIDDEN void log_end_locked(uint32_t reason) {
    if (g_log_closed || !g_buf) return;
    log_clock_locked();
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
HIDDEN uint64_t read_proc_start(void) { return read_proc_start_of(0); }

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
    h.flags = (g_sampling ? HDR_FLAG_SAMPLING : 0) | (g_plan_loaded ? HDR_FLAG_PLAN : 0) |
              (g_sampling && g_sample_cpu ? HDR_FLAG_CPU_INTERVALS : 0);
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
HIDDEN int open_log(int child) {
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
