/*
 * shim_signals.c - the program's view of signals, virtualised: SIGSEGV stays ours
 * (poison faults first, then the program's handler or a flush-and-die), fatal signals
 * flush the log first, and a thread never really blocks SIGSEGV.
 */
#include "shim_internal.h"

static TLS int t_segv_blocked;  /* the program believes SIGSEGV is blocked in this thread */

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

HIDDEN void signals_setup(void) {
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

/* ----- the same calls made as raw system calls through syscall() (issue 16 item 7) ----- */
/* The kernel's struct sigaction on x86-64 and arm64 (both have SA_RESTORER). */
struct ksigaction {
    void *handler;
    unsigned long flags;
    void *restorer;
    uint64_t mask;
};
#define KSIGSET_SIZE 8
static struct sigaction from_kernel(const struct ksigaction *k) {
    struct sigaction a;
    memset(&a, 0, sizeof a);
    a.sa_handler = (sighandler_t)k->handler;
    a.sa_flags = (int)k->flags;
    a.sa_restorer = (void (*)(void))k->restorer;
    memcpy(&a.sa_mask, &k->mask, sizeof k->mask);
    return a;
}
static struct ksigaction to_kernel(const struct sigaction *a) {
    struct ksigaction k;
    k.handler = (void *)a->sa_handler;
    k.flags = (unsigned long)(unsigned)a->sa_flags;
    k.restorer = (void *)a->sa_restorer;
    memcpy(&k.mask, &a->sa_mask, sizeof k.mask);
    return k;
}
HIDDEN int segv_handler_installed(void) {
    struct ksigaction cur;
    if (syscall(SYS_rt_sigaction, SIGSEGV, NULL, &cur, KSIGSET_SIZE) != 0) return 1;
    return cur.handler == (void *)segv_handler;
}
/* rt_sigaction through syscall(): SIGSEGV stays the shim's and the program's handler is
 * recorded (as sigaction() does); other signals go to the kernel, and the shim's record
 * of them follows. */
HIDDEN int raw_sigaction_call(long sig, const void *act, void *old, long sz, long *ret) {
    if (!g_sig_virtual || sz != KSIGSET_SIZE || sig <= 0 || sig >= NSIGS || sig == SIGKILL ||
        sig == SIGSTOP)
        return 0; /* the kernel answers (EINVAL where it should) */
    const struct ksigaction *ka = act;
    struct ksigaction *ko = old;
    if (sig == SIGSEGV) {
        struct sigaction a, prev;
        if (ka) a = from_kernel(ka);
        int r = sigaction(SIGSEGV, ka ? &a : NULL, &prev);
        if (r == 0 && ko) *ko = to_kernel(&prev);
        *ret = r;
        return 1;
    }
    int locked = lock_try_for(&g_sig_lock, 1000000000ull);
    struct ksigaction k, kold;
    if (ka) {
        k = *ka;
        if (g_sampling) k.mask &= ~(1ull << (SIGSEGV - 1)); /* never really block SIGSEGV */
    }
    int virt_old = g_fatal_ours[sig]; /* the kernel holds the shim's flush handler */
    long r = syscall(SYS_rt_sigaction, sig, ka ? &k : NULL, virt_old ? &kold : ko, sz);
    if (r == 0) {
        if (virt_old && ko) *ko = to_kernel(&g_app_act[sig]);
        if (ka) {
            g_app_act[sig] = from_kernel(ka);
            g_app_set[sig] = 1;
            g_fatal_ours[sig] = 0;
        }
    }
    if (locked) lock_release(&g_sig_lock);
    *ret = r;
    return 1;
}
static int raw_mask_fn(int how, const sigset_t *set, sigset_t *old) {
    return (int)syscall(SYS_rt_sigprocmask, how, set, old, KSIGSET_SIZE);
}
/* rt_sigprocmask through syscall(): SIGSEGV kept out of the real mask, as sigprocmask(). */
HIDDEN int raw_sigmask_call(long how, const void *set, void *old, long sz, long *ret) {
    if (!g_sampling || sz != KSIGSET_SIZE) return 0;
    sigset_t s, o;
    sigemptyset(&s);
    sigemptyset(&o);
    if (set) memcpy(&s, set, KSIGSET_SIZE);
    int c;
    int r = mask_common(raw_mask_fn, (int)how, set ? &s : NULL, old ? &o : NULL, &c);
    if (r == 0 && old) memcpy(old, &o, KSIGSET_SIZE);
    *ret = r;
    return 1;
}
