/*
 * shim_kcalls.c - the other ways a program hands memory to the kernel (issue 16 item 5):
 * syscall() itself, decoded by call number, and the libc calls beyond plain I/O whose
 * buffers, structs or paths the kernel reads or fills (epoll, poll, select, getdents64,
 * clock_gettime, stat, paths, wait...). The kernel does not fault and retry on a protected
 * user page: it fails the call (EFAULT) or stops short. So each wrapper lifts the poison
 * on what the kernel may touch and keeps the sampler off it until the call returns
 * (io_enter, shim_sampling.c). Where only the kernel knows the extent (a path, an ioctl
 * argument), that is the rest of the sampled object the pointer lies in (obj_tail).
 * The shim's own system calls use shim_syscall, a raw trap that never comes back here.
 */
#include "shim_internal.h"
#undef clock_gettime
#undef clock_nanosleep

#include <dirent.h>
#include <sys/sendfile.h>
#include <sys/time.h>
#include <sys/timerfd.h>

/* ------------------------------------------------------------------ raw system calls */
#if defined(__x86_64__) || defined(__aarch64__)
#define SHIM_WRAPS_SYSCALL 1
static inline long sys6(long n, long a, long b, long c, long d, long e, long f) {
#if defined(__x86_64__)
    long ret;
    register long r10 __asm__("r10") = d, r8 __asm__("r8") = e, r9 __asm__("r9") = f;
    __asm__ volatile("syscall"
                     : "=a"(ret)
                     : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
                     : "rcx", "r11", "memory");
    return ret;
#else
    register long x8 __asm__("x8") = n, x0 __asm__("x0") = a, x1 __asm__("x1") = b,
                  x2 __asm__("x2") = c, x3 __asm__("x3") = d, x4 __asm__("x4") = e,
                  x5 __asm__("x5") = f;
    __asm__ volatile("svc 0"
                     : "+r"(x0)
                     : "r"(x8), "r"(x1), "r"(x2), "r"(x3), "r"(x4), "r"(x5)
                     : "memory");
    return x0;
#endif
}
static inline long sys_ret(long r) {
    if ((unsigned long)r > -4096ul) { errno = (int)-r; return -1; }
    return r;
}
/* Like libc's syscall(): reads six arguments whatever the call takes (as libc does). */
HIDDEN long shim_syscall(long nr, ...) {
    va_list ap;
    va_start(ap, nr);
    long a = va_arg(ap, long), b = va_arg(ap, long), c = va_arg(ap, long);
    long d = va_arg(ap, long), e = va_arg(ap, long), f = va_arg(ap, long);
    va_end(ap);
    return sys_ret(sys6(nr, a, b, c, d, e, f));
}
#else
#undef syscall
HIDDEN long shim_syscall(long nr, ...) { /* elsewhere: libc's, and no syscall() wrapper */
    va_list ap;
    va_start(ap, nr);
    long a = va_arg(ap, long), b = va_arg(ap, long), c = va_arg(ap, long);
    long d = va_arg(ap, long), e = va_arg(ap, long), f = va_arg(ap, long);
    va_end(ap);
    return syscall(nr, a, b, c, d, e, f);
}
#define syscall(...) shim_syscall(__VA_ARGS__)
#endif

/* ------------------------------------------------------------------ ranges */
static inline range_t rg(const volatile void *p, size_t n) {
    uintptr_t lo = (uintptr_t)p;
    if (!lo || !n) return (range_t){0, 0};
    return (range_t){lo, n > UINTPTR_MAX - lo ? UINTPTR_MAX : lo + n};
}
static inline size_t ms(size_t a, size_t b) {
    size_t r;
    return __builtin_mul_overflow(a, b, &r) ? SIZE_MAX : r;
}
static inline size_t nz(long n) { return n > 0 ? (size_t)n : 0; }
#define RO(p) obj_tail((uintptr_t)(p))
#define FDS(n) ((size_t)((n) > 0 ? ((size_t)(n) + 63) / 64 * 8 : 0)) /* bytes of an fd_set */
#define SOCKADDR_MAX 128 /* the kernel never writes more than a sockaddr_storage */
#define KSIGSET 8        /* the kernel's sigset_t */

/* ------------------------------------------------------------------ syscall() */
#ifdef SHIM_WRAPS_SYSCALL
/* Calls that take no pointer: straight through, no lookup. */
static int no_pointers(long nr) {
    switch (nr) {
    case SYS_gettid: case SYS_getpid: case SYS_getppid: case SYS_getuid: case SYS_geteuid:
    case SYS_getgid: case SYS_getegid: case SYS_sched_yield: case SYS_close: case SYS_kill:
    case SYS_tgkill: case SYS_tkill: case SYS_exit: case SYS_exit_group: case SYS_dup:
    case SYS_dup3: case SYS_lseek: case SYS_fsync: case SYS_fdatasync: case SYS_madvise:
    case SYS_membarrier: case SYS_eventfd2: case SYS_epoll_create1: case SYS_timerfd_create:
    case SYS_setpgid: case SYS_getpgid: case SYS_getsid: case SYS_setsid: case SYS_umask:
    case SYS_sync: case SYS_syncfs: case SYS_personality: case SYS_getpriority:
    case SYS_setpriority: case SYS_fchmod: case SYS_fchown: case SYS_ftruncate:
    case SYS_fallocate: case SYS_fadvise64: case SYS_shutdown: case SYS_listen:
    case SYS_socket: case SYS_fchdir: case SYS_flock: case SYS_readahead:
    case SYS_sched_getscheduler: case SYS_pidfd_open: case SYS_pidfd_send_signal:
    case SYS_close_range: case SYS_set_tid_address: case SYS_set_robust_list:
    case SYS_rseq: case SYS_restart_syscall:
#ifdef SYS_dup2
    case SYS_dup2:
#endif
#ifdef SYS_alarm
    case SYS_alarm: case SYS_pause: case SYS_getpgrp: case SYS_fork: case SYS_vfork:
#endif
        return 1;
    default:
        return 0;
    }
}
/* What one call may touch. Returns the number of ranges, or -1: every page (too many). */
static int decode(long nr, const long *v, range_t *r) {
    int n = 0;
    switch (nr) {
    case SYS_getrandom:
        r[n++] = rg((void *)v[0], (size_t)v[1]);
        return n;
    case SYS_read: case SYS_pread64: case SYS_getdents64:
#ifdef SYS_getdents
    case SYS_getdents:
#endif
    case SYS_write: case SYS_pwrite64:
        r[n++] = rg((void *)v[1], (size_t)v[2]);
        return n;
    case SYS_recvfrom: case SYS_sendto:
        r[n++] = rg((void *)v[1], (size_t)v[2]);
        r[n++] = rg((void *)v[4], SOCKADDR_MAX);
        r[n++] = rg((void *)v[5], sizeof(socklen_t));
        return n;
    case SYS_readv: case SYS_writev: case SYS_preadv: case SYS_pwritev: case SYS_preadv2:
    case SYS_pwritev2: case SYS_vmsplice:
        return iov_ranges(r, (const struct iovec *)v[1], (int)v[2]);
    case SYS_process_vm_readv: case SYS_process_vm_writev:
        return iov_ranges(r, (const struct iovec *)v[1], (int)v[2]);
    case SYS_recvmsg: case SYS_sendmsg:
        if (!v[1]) return 0;
        return msg_ranges(r, (const struct msghdr *)v[1]);
    case SYS_recvmmsg: case SYS_sendmmsg:
        return -1; /* an array of msghdr, each with its iovecs: pause for the call */
    case SYS_epoll_wait: case SYS_epoll_pwait:
#ifdef SYS_epoll_pwait2
    case SYS_epoll_pwait2:
#endif
        r[n++] = rg((void *)v[1], ms(nz(v[2]), sizeof(struct epoll_event)));
        if (nr != SYS_epoll_wait) r[n++] = rg((void *)v[4], KSIGSET);
        if (nr != SYS_epoll_wait) r[n++] = rg((void *)v[3], sizeof(struct timespec));
        return n;
    case SYS_ppoll:
#ifdef SYS_poll
    case SYS_poll:
#endif
        r[n++] = rg((void *)v[0], ms((size_t)v[1], sizeof(struct pollfd)));
        if (nr == SYS_ppoll) {
            r[n++] = rg((void *)v[2], sizeof(struct timespec));
            r[n++] = rg((void *)v[3], KSIGSET);
        }
        return n;
    case SYS_futex: /* the word, the timeout (or val2) and the second word */
        r[n++] = rg((void *)v[0], sizeof(uint32_t));
        r[n++] = rg((void *)v[3], sizeof(struct timespec));
        r[n++] = rg((void *)v[4], sizeof(uint32_t));
        return n;
    default: /* each argument that points into a sampled object: the rest of it */
        for (int i = 0; i < 6; i++) {
            if ((unsigned long)v[i] < 65536) continue;
            range_t t = RO(v[i]);
            if (t.hi > t.lo) r[n++] = t;
        }
        return n;
    }
}
EXPORT long(syscall)(long nr, ...) {
    va_list ap;
    va_start(ap, nr);
    long v[6];
    for (int i = 0; i < 6; i++) v[i] = va_arg(ap, long);
    va_end(ap);
    if (LIKELY(!g_sampling && !g_sig_virtual) || no_pointers(nr))
        return sys_ret(sys6(nr, v[0], v[1], v[2], v[3], v[4], v[5]));
    long ret;
    switch (nr) { /* the program's view of signals and mappings, as with the libc calls */
    case SYS_rt_sigaction:
        if (raw_sigaction_call(v[0], (void *)v[1], (void *)v[2], v[3], &ret)) return ret;
        break;
    case SYS_rt_sigprocmask:
        if (raw_sigmask_call(v[0], (void *)v[1], (void *)v[2], v[3], &ret)) return ret;
        break;
    case SYS_mmap:
        return (long)mmap((void *)v[0], (size_t)v[1], (int)v[2], (int)v[3], (int)v[4],
                          (off_t)v[5]);
    case SYS_munmap:
        return munmap((void *)v[0], (size_t)v[1]);
    case SYS_mprotect:
        return mprotect((void *)v[0], (size_t)v[1], (int)v[2]);
    case SYS_mremap:
        return (long)mremap((void *)v[0], (size_t)v[1], (size_t)v[2], (int)v[3], (void *)v[4]);
    default:
        break;
    }
    if (LIKELY(!g_sampling)) return sys_ret(sys6(nr, v[0], v[1], v[2], v[3], v[4], v[5]));
    range_t rr[IOV_RANGES + 8];
    int n = decode(nr, v, rr);
    if (n < 0) { rr[0] = (range_t){2, UINTPTR_MAX}; n = 1; }
    int kwrite = nr != SYS_write && nr != SYS_pwrite64 && nr != SYS_writev &&
                 nr != SYS_pwritev && nr != SYS_sendto && nr != SYS_sendmsg;
    IO_GUARD(s) = io_enter(rr, n, kwrite);
    return sys_ret(sys6(nr, v[0], v[1], v[2], v[3], v[4], v[5]));
}
#endif

/* ------------------------------------------------------------------ libc calls */
/* X(ret, name, params, args, kernel_writes, ranges...): each becomes an exported wrapper
 * that forwards to the next definition (dlsym RTLD_NEXT, resolved with the others). */
#define KCALLS(X)                                                                            \
    X(int, epoll_wait, (int ep, struct epoll_event *ev, int n, int t), (ep, ev, n, t), 1,     \
      rg(ev, ms(nz(n), sizeof *ev)))                                                         \
    X(int, epoll_pwait, (int ep, struct epoll_event *ev, int n, int t, const sigset_t *ss),   \
      (ep, ev, n, t, ss), 1, rg(ev, ms(nz(n), sizeof *ev)), rg(ss, sizeof *ss))              \
    X(int, epoll_ctl, (int ep, int op, int fd, struct epoll_event *ev), (ep, op, fd, ev), 0,  \
      rg(ev, sizeof *ev))                                                                    \
    X(int, poll, (struct pollfd *f, nfds_t n, int t), (f, n, t), 1, rg(f, ms(n, sizeof *f)))  \
    X(int, __poll_chk, (struct pollfd *f, nfds_t n, int t, size_t fl), (f, n, t, fl), 1,      \
      rg(f, ms(n, sizeof *f)))                                                               \
    X(int, ppoll, (struct pollfd *f, nfds_t n, const struct timespec *ts, const sigset_t *ss), \
      (f, n, ts, ss), 1, rg(f, ms(n, sizeof *f)), rg(ts, sizeof *ts), rg(ss, sizeof *ss))    \
    X(int, __ppoll_chk,                                                                      \
      (struct pollfd *f, nfds_t n, const struct timespec *ts, const sigset_t *ss, size_t fl), \
      (f, n, ts, ss, fl), 1, rg(f, ms(n, sizeof *f)), rg(ts, sizeof *ts), rg(ss, sizeof *ss)) \
    X(int, select, (int n, fd_set *r, fd_set *w, fd_set *e, struct timeval *tv),             \
      (n, r, w, e, tv), 1, rg(r, FDS(n)), rg(w, FDS(n)), rg(e, FDS(n)), rg(tv, sizeof *tv))  \
    X(int, pselect,                                                                          \
      (int n, fd_set *r, fd_set *w, fd_set *e, const struct timespec *ts, const sigset_t *ss), \
      (n, r, w, e, ts, ss), 1, rg(r, FDS(n)), rg(w, FDS(n)), rg(e, FDS(n)),                 \
      rg(ts, sizeof *ts), rg(ss, sizeof *ss))                                                \
    X(ssize_t, getdents64, (int fd, void *b, size_t n), (fd, b, n), 1, rg(b, n))             \
    X(int, clock_gettime, (clockid_t c, struct timespec *ts), (c, ts), 1, rg(ts, sizeof *ts)) \
    X(int, clock_getres, (clockid_t c, struct timespec *ts), (c, ts), 1, rg(ts, sizeof *ts))  \
    X(int, gettimeofday, (struct timeval *tv, void *tz), (tv, tz), 1, rg(tv, sizeof *tv),     \
      rg(tz, 8))                                                                             \
    X(int, clock_nanosleep,                                                                  \
      (clockid_t c, int f, const struct timespec *q, struct timespec *m), (c, f, q, m), 1,    \
      rg(q, sizeof *q), rg(m, sizeof *m))                                                    \
    X(int, nanosleep, (const struct timespec *q, struct timespec *m), (q, m), 1,             \
      rg(q, sizeof *q), rg(m, sizeof *m))                                                    \
    X(int, stat, (const char *p, struct stat *st), (p, st), 1, RO(p), rg(st, sizeof *st))    \
    X(int, lstat, (const char *p, struct stat *st), (p, st), 1, RO(p), rg(st, sizeof *st))   \
    X(int, fstat, (int fd, struct stat *st), (fd, st), 1, rg(st, sizeof *st))                \
    X(int, fstatat, (int d, const char *p, struct stat *st, int fl), (d, p, st, fl), 1,      \
      RO(p), rg(st, sizeof *st))                                                             \
    X(int, stat64, (const char *p, struct stat64 *st), (p, st), 1, RO(p), rg(st, sizeof *st)) \
    X(int, lstat64, (const char *p, struct stat64 *st), (p, st), 1, RO(p),                   \
      rg(st, sizeof *st))                                                                    \
    X(int, fstat64, (int fd, struct stat64 *st), (fd, st), 1, rg(st, sizeof *st))            \
    X(int, fstatat64, (int d, const char *p, struct stat64 *st, int fl), (d, p, st, fl), 1,  \
      RO(p), rg(st, sizeof *st))                                                             \
    /* what binaries built against glibc < 2.33 call for the stat family */                 \
    X(int, __xstat, (int v, const char *p, struct stat *st), (v, p, st), 1, RO(p),           \
      rg(st, sizeof *st))                                                                    \
    X(int, __lxstat, (int v, const char *p, struct stat *st), (v, p, st), 1, RO(p),          \
      rg(st, sizeof *st))                                                                    \
    X(int, __fxstat, (int v, int fd, struct stat *st), (v, fd, st), 1, rg(st, sizeof *st))   \
    X(int, __fxstatat, (int v, int d, const char *p, struct stat *st, int fl),               \
      (v, d, p, st, fl), 1, RO(p), rg(st, sizeof *st))                                       \
    X(int, __xstat64, (int v, const char *p, struct stat64 *st), (v, p, st), 1, RO(p),       \
      rg(st, sizeof *st))                                                                    \
    X(int, __lxstat64, (int v, const char *p, struct stat64 *st), (v, p, st), 1, RO(p),      \
      rg(st, sizeof *st))                                                                    \
    X(int, __fxstat64, (int v, int fd, struct stat64 *st), (v, fd, st), 1,                   \
      rg(st, sizeof *st))                                                                    \
    X(int, __fxstatat64, (int v, int d, const char *p, struct stat64 *st, int fl),           \
      (v, d, p, st, fl), 1, RO(p), rg(st, sizeof *st))                                       \
    X(int, statx, (int d, const char *p, int fl, unsigned m, struct statx *sx),              \
      (d, p, fl, m, sx), 1, RO(p), rg(sx, sizeof *sx))                                       \
    X(int, statfs, (const char *p, struct statfs *b), (p, b), 1, RO(p), rg(b, sizeof *b))    \
    X(int, fstatfs, (int fd, struct statfs *b), (fd, b), 1, rg(b, sizeof *b))                \
    X(ssize_t, readlink, (const char *p, char *b, size_t n), (p, b, n), 1, RO(p), rg(b, n))  \
    X(ssize_t, readlinkat, (int d, const char *p, char *b, size_t n), (d, p, b, n), 1,       \
      RO(p), rg(b, n))                                                                       \
    X(ssize_t, __readlink_chk, (const char *p, char *b, size_t n, size_t bl), (p, b, n, bl), \
      1, RO(p), rg(b, n))                                                                    \
    X(ssize_t, __readlinkat_chk, (int d, const char *p, char *b, size_t n, size_t bl),       \
      (d, p, b, n, bl), 1, RO(p), rg(b, n))                                                  \
    X(int, accept, (int fd, struct sockaddr *sa, socklen_t *sl), (fd, sa, sl), 1,            \
      rg(sa, SOCKADDR_MAX), rg(sl, sizeof *sl))                                              \
    X(int, accept4, (int fd, struct sockaddr *sa, socklen_t *sl, int fl), (fd, sa, sl, fl), 1, \
      rg(sa, SOCKADDR_MAX), rg(sl, sizeof *sl))                                              \
    X(int, getsockname, (int fd, struct sockaddr *sa, socklen_t *sl), (fd, sa, sl), 1,       \
      rg(sa, SOCKADDR_MAX), rg(sl, sizeof *sl))                                              \
    X(int, getpeername, (int fd, struct sockaddr *sa, socklen_t *sl), (fd, sa, sl), 1,       \
      rg(sa, SOCKADDR_MAX), rg(sl, sizeof *sl))                                              \
    X(int, getsockopt, (int fd, int l, int o, void *v, socklen_t *sl), (fd, l, o, v, sl), 1, \
      RO(v), rg(sl, sizeof *sl))                                                             \
    X(int, setsockopt, (int fd, int l, int o, const void *v, socklen_t sl),                  \
      (fd, l, o, v, sl), 0, rg(v, sl))                                                       \
    X(int, connect, (int fd, const struct sockaddr *sa, socklen_t sl), (fd, sa, sl), 0,      \
      rg(sa, sl))                                                                            \
    X(int, bind, (int fd, const struct sockaddr *sa, socklen_t sl), (fd, sa, sl), 0,         \
      rg(sa, sl))                                                                            \
    X(int, pipe, (int f[2]), (f), 1, rg(f, 2 * sizeof *f))                                     \
    X(int, pipe2, (int f[2], int fl), (f, fl), 1, rg(f, 2 * sizeof *f))                        \
    X(int, socketpair, (int d, int t, int p, int sv[2]), (d, t, p, sv), 1, rg(sv, 2 * sizeof *sv)) \
    X(pid_t, wait, (int *st), (st), 1, rg(st, sizeof *st))                                   \
    X(pid_t, waitpid, (pid_t p, int *st, int o), (p, st, o), 1, rg(st, sizeof *st))          \
    X(pid_t, wait3, (int *st, int o, struct rusage *ru), (st, o, ru), 1, rg(st, sizeof *st), \
      rg(ru, sizeof *ru))                                                                    \
    X(pid_t, wait4, (pid_t p, int *st, int o, struct rusage *ru), (p, st, o, ru), 1,         \
      rg(st, sizeof *st), rg(ru, sizeof *ru))                                                \
    X(int, waitid, (idtype_t t, id_t id, siginfo_t *si, int o), (t, id, si, o), 1,           \
      rg(si, sizeof *si))                                                                    \
    X(int, getrusage, (__rusage_who_t w, struct rusage *ru), (w, ru), 1, rg(ru, sizeof *ru)) \
    X(clock_t, times, (struct tms *b), (b), 1, rg(b, sizeof *b))                             \
    X(int, sysinfo, (struct sysinfo *i), (i), 1, rg(i, sizeof *i))                           \
    X(int, uname, (struct utsname *u), (u), 1, rg(u, sizeof *u))                             \
    X(int, getrlimit, (__rlimit_resource_t r, struct rlimit *l), (r, l), 1, rg(l, sizeof *l)) \
    X(int, setrlimit, (__rlimit_resource_t r, const struct rlimit *l), (r, l), 0,            \
      rg(l, sizeof *l))                                                                      \
    X(int, prlimit, (pid_t p, __rlimit_resource_t r, const struct rlimit *n, struct rlimit *o), \
      (p, r, n, o), 1, rg(n, sizeof *n), rg(o, sizeof *o))                                   \
    X(int, sched_getaffinity, (pid_t p, size_t n, cpu_set_t *s), (p, n, s), 1, rg(s, n))     \
    X(int, sched_setaffinity, (pid_t p, size_t n, const cpu_set_t *s), (p, n, s), 0, rg(s, n)) \
    X(int, sigtimedwait, (const sigset_t *s, siginfo_t *i, const struct timespec *t),         \
      (s, i, t), 1, rg(s, sizeof *s), rg(i, sizeof *i), rg(t, sizeof *t))                    \
    X(int, sigwaitinfo, (const sigset_t *s, siginfo_t *i), (s, i), 1, rg(s, sizeof *s),      \
      rg(i, sizeof *i))                                                                      \
    X(int, sigpending, (sigset_t *s), (s), 1, rg(s, sizeof *s))                              \
    X(int, sigsuspend, (const sigset_t *s), (s), 0, rg(s, sizeof *s))                        \
    X(int, getgroups, (int n, gid_t *g), (n, g), 1, rg(g, ms(nz(n), sizeof *g)))             \
    X(int, timerfd_gettime, (int fd, struct itimerspec *c), (fd, c), 1, rg(c, sizeof *c))    \
    X(int, timerfd_settime, (int fd, int fl, const struct itimerspec *n, struct itimerspec *o), \
      (fd, fl, n, o), 1, rg(n, sizeof *n), rg(o, sizeof *o))                                 \
    X(int, getitimer, (__itimer_which_t w, struct itimerval *v), (w, v), 1, rg(v, sizeof *v)) \
    X(int, setitimer, (__itimer_which_t w, const struct itimerval *n, struct itimerval *o),   \
      (w, n, o), 1, rg(n, sizeof *n), rg(o, sizeof *o))                                      \
    X(ssize_t, sendfile, (int o, int i, off_t *off, size_t n), (o, i, off, n), 1,            \
      rg(off, sizeof *off))                                                                  \
    X(ssize_t, copy_file_range, (int i, off_t *oi, int o, off_t *oo, size_t n, unsigned f),  \
      (i, oi, o, oo, n, f), 1, rg(oi, sizeof *oi), rg(oo, sizeof *oo))                       \
    X(ssize_t, splice, (int i, loff_t *oi, int o, loff_t *oo, size_t n, unsigned f),         \
      (i, oi, o, oo, n, f), 1, rg(oi, sizeof *oi), rg(oo, sizeof *oo))                       \
    X(int, creat, (const char *p, mode_t m), (p, m), 0, RO(p))                               \
    X(int, access, (const char *p, int m), (p, m), 0, RO(p))                                 \
    X(int, faccessat, (int d, const char *p, int m, int f), (d, p, m, f), 0, RO(p))          \
    X(int, unlink, (const char *p), (p), 0, RO(p))                                           \
    X(int, unlinkat, (int d, const char *p, int f), (d, p, f), 0, RO(p))                     \
    X(int, rmdir, (const char *p), (p), 0, RO(p))                                            \
    X(int, mkdir, (const char *p, mode_t m), (p, m), 0, RO(p))                               \
    X(int, mkdirat, (int d, const char *p, mode_t m), (d, p, m), 0, RO(p))                   \
    X(int, rename, (const char *a, const char *b), (a, b), 0, RO(a), RO(b))                  \
    X(int, renameat, (int da, const char *a, int db, const char *b), (da, a, db, b), 0,      \
      RO(a), RO(b))                                                                          \
    X(int, renameat2, (int da, const char *a, int db, const char *b, unsigned f),            \
      (da, a, db, b, f), 0, RO(a), RO(b))                                                    \
    X(int, link, (const char *a, const char *b), (a, b), 0, RO(a), RO(b))                    \
    X(int, symlink, (const char *a, const char *b), (a, b), 0, RO(a), RO(b))                 \
    X(int, chdir, (const char *p), (p), 0, RO(p))                                            \
    X(int, chmod, (const char *p, mode_t m), (p, m), 0, RO(p))                               \
    X(int, fchmodat, (int d, const char *p, mode_t m, int f), (d, p, m, f), 0, RO(p))        \
    X(int, chown, (const char *p, uid_t u, gid_t g), (p, u, g), 0, RO(p))                    \
    X(int, lchown, (const char *p, uid_t u, gid_t g), (p, u, g), 0, RO(p))                   \
    X(int, fchownat, (int d, const char *p, uid_t u, gid_t g, int f), (d, p, u, g, f), 0,    \
      RO(p))                                                                                 \
    X(int, truncate, (const char *p, off_t n), (p, n), 0, RO(p))                             \
    X(int, utimensat, (int d, const char *p, const struct timespec t[2], int f), (d, p, t, f), \
      0, RO(p), rg(t, 2 * sizeof *t))                                                        \
    X(int, mkstemp, (char *t), (t), 0, RO(t))

#define KC_PTR(ret, name, params, args, kw, ...) static ret(*real_k_##name) params;
#define KC_SYM(ret, name, params, args, kw, ...) \
    real_k_##name = (__typeof__(real_k_##name))dlsym(RTLD_NEXT, #name);
#define KC_DEF(ret, name, params, args, kw, ...)                                             \
    EXPORT ret name params {                                                                 \
        if (UNLIKELY(!real_k_##name)) {                                                      \
            resolve_all();                                                                   \
            if (!real_k_##name) { errno = ENOSYS; return (ret)-1; }                          \
        }                                                                                    \
        if (LIKELY(!g_sampling)) return real_k_##name args;                                  \
        range_t rr[] = {__VA_ARGS__};                                                        \
        IO_GUARD(kc_guard_) = io_enter(rr, (int)(sizeof rr / sizeof rr[0]), kw);             \
        return real_k_##name args;                                                           \
    }
KCALLS(KC_PTR)
KCALLS(KC_DEF)

/* ----- the ones that do not fit the table: variadic, pointer results, iovecs ----- */
static int (*real_k_open)(const char *, int, ...), (*real_k_openat)(int, const char *, int, ...);
static int (*real_k_ioctl)(int, unsigned long, ...), (*real_k_fcntl)(int, int, ...);
static char *(*real_k_getcwd)(char *, size_t), *(*real_k___getcwd_chk)(char *, size_t, size_t);
static FILE *(*real_k_fopen)(const char *, const char *);
static DIR *(*real_k_opendir)(const char *);
static int (*real_k_recvmmsg)(int, struct mmsghdr *, unsigned, int, struct timespec *);
static int (*real_k_sendmmsg)(int, struct mmsghdr *, unsigned, int);
static int (*real_k_sigaltstack)(const stack_t *, stack_t *);
static int (*real_k_pthread_attr_setstack)(pthread_attr_t *, void *, size_t);

HIDDEN int shim_clock_gettime(clockid_t c, struct timespec *ts) {
    if (LIKELY(real_k_clock_gettime != NULL)) return real_k_clock_gettime(c, ts);
    return (int)syscall(SYS_clock_gettime, c, ts);
}
HIDDEN int shim_clock_nanosleep(clockid_t c, int fl, const struct timespec *q,
                                struct timespec *m) {
    if (LIKELY(real_k_clock_nanosleep != NULL)) return real_k_clock_nanosleep(c, fl, q, m);
    long r = syscall(SYS_clock_nanosleep, c, fl, q, m);
    return r == -1 ? errno : 0;
}

static mode_t open_mode(int fl, va_list ap) {
    return (fl & O_CREAT) || (fl & __O_TMPFILE) == __O_TMPFILE ? (mode_t)va_arg(ap, int) : 0;
}
#define OPEN_BODY(realfn, call_args)                                                         \
    do {                                                                                     \
        va_list ap;                                                                          \
        va_start(ap, fl);                                                                    \
        mode_t m = open_mode(fl, ap);                                                        \
        va_end(ap);                                                                          \
        if (UNLIKELY(!realfn)) { resolve_all(); if (!realfn) { errno = ENOSYS; return -1; } } \
        if (LIKELY(!g_sampling)) return realfn call_args;                                    \
        range_t rr[1] = {RO(p)};                                                             \
        IO_GUARD(s) = io_enter(rr, 1, 0);                                                    \
        return realfn call_args;                                                             \
    } while (0)
EXPORT int open(const char *p, int fl, ...) { OPEN_BODY(real_k_open, (p, fl, m)); }
EXPORT int open64(const char *p, int fl, ...) { OPEN_BODY(real_k_open, (p, fl, m)); }
EXPORT int openat(int d, const char *p, int fl, ...) { OPEN_BODY(real_k_openat, (d, p, fl, m)); }
EXPORT int openat64(int d, const char *p, int fl, ...) {
    OPEN_BODY(real_k_openat, (d, p, fl, m));
}

/* ioctl and fcntl: an argument that points into a sampled object is lifted to its end. */
EXPORT int ioctl(int fd, unsigned long req, ...) {
    va_list ap;
    va_start(ap, req);
    void *arg = va_arg(ap, void *);
    va_end(ap);
    ENSURE(real_k_ioctl);
    if (LIKELY(!g_sampling)) return real_k_ioctl(fd, req, arg);
    range_t rr[1] = {RO(arg)};
    IO_GUARD(s) = io_enter(rr, 1, 1);
    return real_k_ioctl(fd, req, arg);
}
static int fcntl_common(int fd, int cmd, void *arg) {
    ENSURE(real_k_fcntl);
    if (LIKELY(!g_sampling)) return real_k_fcntl(fd, cmd, arg);
    range_t rr[1] = {{0, 0}};
    switch (cmd) {
    case F_GETLK: case F_SETLK: case F_SETLKW: case F_OFD_GETLK: case F_OFD_SETLK:
    case F_OFD_SETLKW:
        rr[0] = rg(arg, sizeof(struct flock));
        break;
    case F_GETOWN_EX: case F_SETOWN_EX:
        rr[0] = rg(arg, sizeof(struct f_owner_ex));
        break;
    default:
        return real_k_fcntl(fd, cmd, arg);
    }
    IO_GUARD(s) = io_enter(rr, 1, 1);
    return real_k_fcntl(fd, cmd, arg);
}
EXPORT int fcntl(int fd, int cmd, ...) {
    va_list ap;
    va_start(ap, cmd);
    void *arg = va_arg(ap, void *);
    va_end(ap);
    return fcntl_common(fd, cmd, arg);
}
EXPORT int fcntl64(int fd, int cmd, ...) {
    va_list ap;
    va_start(ap, cmd);
    void *arg = va_arg(ap, void *);
    va_end(ap);
    return fcntl_common(fd, cmd, arg);
}

EXPORT char *getcwd(char *b, size_t n) {
    ENSURE(real_k_getcwd);
    if (LIKELY(!g_sampling) || !b) return real_k_getcwd(b, n);
    range_t rr[1] = {rg(b, n)};
    IO_GUARD(s) = io_enter(rr, 1, 1);
    return real_k_getcwd(b, n);
}
EXPORT char *__getcwd_chk(char *b, size_t n, size_t bl) {
    ENSURE(real_k___getcwd_chk);
    if (LIKELY(!g_sampling) || !b) return real_k___getcwd_chk(b, n, bl);
    range_t rr[1] = {rg(b, n)};
    IO_GUARD(s) = io_enter(rr, 1, 1);
    return real_k___getcwd_chk(b, n, bl);
}
/* libc opens these paths with its internal calls, out of our reach: lift them here */
EXPORT FILE *fopen(const char *p, const char *m) {
    ENSURE(real_k_fopen);
    if (LIKELY(!g_sampling)) return real_k_fopen(p, m);
    range_t rr[1] = {RO(p)};
    IO_GUARD(s) = io_enter(rr, 1, 0);
    return real_k_fopen(p, m);
}
EXPORT FILE *fopen64(const char *p, const char *m) __attribute__((alias("fopen")));
EXPORT DIR *opendir(const char *p) {
    ENSURE(real_k_opendir);
    if (LIKELY(!g_sampling)) return real_k_opendir(p);
    range_t rr[1] = {RO(p)};
    IO_GUARD(s) = io_enter(rr, 1, 0);
    return real_k_opendir(p);
}
/* An array of messages, each with its iovecs: no page is poisoned during the call. */
EXPORT int recvmmsg(int fd, struct mmsghdr *v, unsigned n, int fl, struct timespec *t) {
    ENSURE(real_k_recvmmsg);
    if (LIKELY(!g_sampling)) return real_k_recvmmsg(fd, v, n, fl, t);
    range_t rr[1] = {{2, UINTPTR_MAX}};
    IO_GUARD(s) = io_enter(rr, 1, 1);
    return real_k_recvmmsg(fd, v, n, fl, t);
}
EXPORT int sendmmsg(int fd, struct mmsghdr *v, unsigned n, int fl) {
    ENSURE(real_k_sendmmsg);
    if (LIKELY(!g_sampling)) return real_k_sendmmsg(fd, v, n, fl);
    range_t rr[1] = {{2, UINTPTR_MAX}};
    IO_GUARD(s) = io_enter(rr, 1, 0);
    return real_k_sendmmsg(fd, v, n, fl);
}
/* Stacks the kernel writes signal frames (and a thread's exit futex) on: a poisoned page
 * there would kill the process or hang pthread_join. Never sample them. */
EXPORT int sigaltstack(const stack_t *ss, stack_t *old) {
    ENSURE(real_k_sigaltstack);
    if (g_sampling && ss && !(ss->ss_flags & SS_DISABLE))
        exclude_range((uintptr_t)ss->ss_sp, (uintptr_t)ss->ss_sp + ss->ss_size);
    if (LIKELY(!g_sampling)) return real_k_sigaltstack(ss, old);
    range_t rr[2] = {rg(ss, sizeof *ss), rg(old, sizeof *old)};
    IO_GUARD(s) = io_enter(rr, 2, 1);
    return real_k_sigaltstack(ss, old);
}
EXPORT int pthread_attr_setstack(pthread_attr_t *a, void *st, size_t n) {
    ENSURE(real_k_pthread_attr_setstack);
    if (g_sampling) exclude_range((uintptr_t)st, (uintptr_t)st + n);
    return real_k_pthread_attr_setstack(a, st, n);
}

HIDDEN void kcalls_resolve(void) {
    KCALLS(KC_SYM)
    real_k_open = (__typeof__(real_k_open))dlsym(RTLD_NEXT, "open");
    real_k_openat = (__typeof__(real_k_openat))dlsym(RTLD_NEXT, "openat");
    real_k_ioctl = (__typeof__(real_k_ioctl))dlsym(RTLD_NEXT, "ioctl");
    real_k_fcntl = (__typeof__(real_k_fcntl))dlsym(RTLD_NEXT, "fcntl");
    real_k_getcwd = (__typeof__(real_k_getcwd))dlsym(RTLD_NEXT, "getcwd");
    real_k___getcwd_chk = (__typeof__(real_k___getcwd_chk))dlsym(RTLD_NEXT, "__getcwd_chk");
    real_k_fopen = (__typeof__(real_k_fopen))dlsym(RTLD_NEXT, "fopen");
    real_k_opendir = (__typeof__(real_k_opendir))dlsym(RTLD_NEXT, "opendir");
    real_k_recvmmsg = (__typeof__(real_k_recvmmsg))dlsym(RTLD_NEXT, "recvmmsg");
    real_k_sendmmsg = (__typeof__(real_k_sendmmsg))dlsym(RTLD_NEXT, "sendmmsg");
    real_k_sigaltstack = (__typeof__(real_k_sigaltstack))dlsym(RTLD_NEXT, "sigaltstack");
    real_k_pthread_attr_setstack =
        (__typeof__(real_k_pthread_attr_setstack))dlsym(RTLD_NEXT, "pthread_attr_setstack");
}
