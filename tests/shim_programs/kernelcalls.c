/*
 * kernelcalls.c - a program that hands large heap buffers to the kernel through calls the
 * shim did not wrap (issue 16, items 5-7), for tests/test_shim_kernel_calls.py.
 *
 *   kernelcalls calls FILE DIR ROUNDS [wait]
 *       Each round, for each call: (with `wait`) wait until the shim has poisoned a page
 *       of the buffer (seen in /proc/self/maps, never by touching it), then give exactly
 *       that page to the call. Prints one line per call and round with its result; the
 *       output is the same natively and under the shim unless a call failed.
 *   kernelcalls rawsegv ROUNDS [wait]
 *       Installs a SIGSEGV handler with a raw rt_sigaction system call through syscall(),
 *       touches poisoned pages, then faults for real: the handler must see only that fault
 *       (it exits 7); a poison fault reaching it exits 42.
 *   kernelcalls inlinesegv ROUNDS [wait]
 *       The same, with the handler installed by an inline `syscall` instruction (x86-64):
 *       the shim must then stop poisoning (waits 3 s at most per page).
 *   kernelcalls big
 *       Allocates and frees large buffers (the sampler starts) and prints "big done".
 *   kernelcalls forkbig FILE N [wait]
 *       Forks N children (one at a time) that wait for a poisoned page of the buffer they
 *       inherited (their own sampler) and read FILE into it with a raw system call.
 *
 * Waiting is bounded (30 s, then the call is made anyway and later calls do not wait), so
 * a shim that never poisons cannot hang the test; the tests check the shim's counters to
 * see that poisoned pages were met.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define BUF (8u << 20)
#define PAGE 4096u

/* A page of [lo, lo+len) that is protected right now (PROT_NONE or read-only), or 0. */
static uintptr_t poisoned_page(uintptr_t lo, size_t len) {
    char buf[1 << 16];
    int fd = open("/proc/self/maps", O_RDONLY);
    if (fd < 0) return 0;
    size_t n = 0;
    ssize_t r;
    while (n < sizeof buf - 1 && (r = read(fd, buf + n, sizeof buf - 1 - n)) > 0) n += (size_t)r;
    close(fd);
    buf[n] = 0;
    for (char *line = buf; line && *line;) {
        char *next = strchr(line, '\n');
        if (next) *next++ = 0;
        unsigned long a, b;
        char perm[8];
        if (sscanf(line, "%lx-%lx %7s", &a, &b, perm) == 3 && a >= lo && b <= lo + len &&
            perm[1] != 'w')
            return a;
        line = next;
    }
    return 0;
}
static int g_wait_s = 30; /* longest wait for a poisoned page */
static uintptr_t wait_page(char *buf, int wait) {
    uintptr_t lo = (uintptr_t)buf, first = (lo + PAGE - 1) & ~(uintptr_t)(PAGE - 1);
    if (!wait) return first + 7 * PAGE;
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        uintptr_t p = poisoned_page(lo, BUF);
        if (p) return p;
        clock_gettime(CLOCK_MONOTONIC, &t);
        if (t.tv_sec - t0.tv_sec >= g_wait_s) {
            g_wait_s = 0; /* nothing is poisoned here (not sampled): stop waiting */
            return first + 7 * PAGE;
        }
        struct timespec d = {0, 200000};
        nanosleep(&d, NULL);
    }
}

static int calls(const char *file, const char *dir, int rounds, int wait) {
    char *buf = malloc(BUF);
    if (!buf) return 1;
    memset(buf, 0, BUF);
    struct pollfd *pbuf = malloc(BUF);
    if (!pbuf) return 1;
    int fd = open(file, O_RDONLY), efd = eventfd(1, 0), ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = 77};
    if (fd < 0 || efd < 0 || ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, efd, &ev) != 0) return 1;
    for (size_t i = 0; i < BUF / sizeof *pbuf; i++) pbuf[i] = (struct pollfd){efd, POLLIN, 0};
    int bad = 0;
    for (int r = 0; r < rounds; r++) {
        long got;
        char *p;
        /* raw syscall(SYS_read): the kernel writes a whole page */
        p = (char *)wait_page(buf, wait);
        got = syscall(SYS_pread64, fd, p, (size_t)PAGE, (off_t)0);
        printf("sys_pread %d %ld %s\n", r, got, got < 0 ? strerror(errno) : "");
        bad += got != PAGE;
        /* raw syscall(SYS_readv) with the iovec on the stack, the buffer on the page */
        p = (char *)wait_page(buf, wait);
        struct iovec iov = {p, PAGE};
        got = syscall(SYS_preadv, fd, &iov, 1, (off_t)0, 0);
        printf("sys_preadv %d %ld %s\n", r, got, got < 0 ? strerror(errno) : "");
        bad += got != PAGE;
        /* epoll_wait into an events array on the page */
        p = (char *)wait_page(buf, wait);
        got = epoll_wait(ep, (struct epoll_event *)p, (int)(PAGE / sizeof ev), 0);
        printf("epoll_wait %d %ld %s\n", r, got, got < 0 ? strerror(errno) : "");
        bad += got != 1;
        /* getdents64, the libc function and the raw call */
        p = (char *)wait_page(buf, wait);
        int dfd = open(dir, O_RDONLY | O_DIRECTORY);
        got = getdents64(dfd, p, PAGE);
        printf("getdents64 %d %s\n", r, got > 0 ? "ok" : strerror(errno));
        bad += got <= 0;
        p = (char *)wait_page(buf, wait);
        lseek(dfd, 0, SEEK_SET);
        got = syscall(SYS_getdents64, dfd, p, (size_t)PAGE);
        printf("sys_getdents64 %d %s\n", r, got > 0 ? "ok" : strerror(errno));
        bad += got <= 0;
        close(dfd);
        /* clock_gettime of a CPU clock: the system call writes the timespec */
        p = (char *)wait_page(buf, wait);
        got = clock_gettime(CLOCK_PROCESS_CPUTIME_ID, (struct timespec *)p);
        printf("clock_gettime %d %ld %s\n", r, got, got < 0 ? strerror(errno) : "");
        bad += got != 0;
        /* poll reads and writes a page of pollfd (the buffer was filled with them) */
        p = (char *)wait_page((char *)pbuf, wait);
        got = poll((struct pollfd *)p, PAGE / sizeof(struct pollfd), 0);
        printf("poll %d %ld %s\n", r, got, got < 0 ? strerror(errno) : "");
        bad += got != PAGE / sizeof(struct pollfd);
        /* fstat and stat with the struct stat on the page */
        p = (char *)wait_page(buf, wait);
        got = fstat(fd, (struct stat *)p);
        printf("fstat %d %ld %s\n", r, got, got < 0 ? strerror(errno) : "");
        bad += got != 0;
        p = (char *)wait_page(buf, wait);
        got = syscall(SYS_newfstatat, AT_FDCWD, file, (struct stat *)p, 0);
        printf("sys_fstatat %d %ld %s\n", r, got, got < 0 ? strerror(errno) : "");
        bad += got != 0;
    }
    fflush(stdout);
    free(buf);
    free(pbuf);
    return bad ? 1 : 0;
}

/* ----- SIGSEGV handlers installed without sigaction() ----- */
struct ksigaction {
    void (*handler)(int);
    unsigned long flags;
    void (*restorer)(void);
    unsigned long mask;
};
static volatile int g_real_fault;
static void on_segv(int sig) {
    (void)sig;
    if (g_real_fault) _exit(7);
    _exit(42); /* a fault on a poisoned page of the shim reached the program */
}
#if defined(__x86_64__)
__asm__(".text\n.globl kc_restore_rt\nkc_restore_rt:\n movq $15, %rax\n syscall\n");
void kc_restore_rt(void);
#define KSA_RESTORER 0x04000000ul
#endif

static long inline_rt_sigaction(int sig, const struct ksigaction *a, struct ksigaction *o) {
#if defined(__x86_64__)
    long ret;
    register long r10 __asm__("r10") = 8;
    __asm__ volatile("syscall"
                     : "=a"(ret)
                     : "a"((long)SYS_rt_sigaction), "D"((long)sig), "S"(a), "d"(o), "r"(r10)
                     : "rcx", "r11", "memory");
    return ret;
#else
    (void)sig; (void)a; (void)o;
    return -ENOSYS;
#endif
}

static int segv(int rounds, int wait, int inline_call) {
#if !defined(__x86_64__)
    (void)rounds; (void)wait; (void)inline_call;
    puts("skip: x86-64 only");
    return 0;
#else
    struct ksigaction a = {on_segv, KSA_RESTORER | SA_NODEFER, kc_restore_rt, 0}, o, q;
    memset(&o, 0xff, sizeof o);
    long r = inline_call ? inline_rt_sigaction(SIGSEGV, &a, &o)
                         : syscall(SYS_rt_sigaction, SIGSEGV, &a, &o, 8);
    printf("install %ld old_default %d\n", r, o.handler == SIG_DFL);
    r = inline_call ? inline_rt_sigaction(SIGSEGV, NULL, &q)
                    : syscall(SYS_rt_sigaction, SIGSEGV, NULL, &q, 8);
    printf("query %ld ours %d\n", r, q.handler == on_segv);
    fflush(stdout);
    char *buf = malloc(BUF);
    if (!buf) return 1;
    memset(buf, 1, BUF);
    long sum = 0;
    for (int i = 0; i < rounds; i++) {
        volatile char *p = (volatile char *)wait_page(buf, wait);
        sum += p[5]; /* a poison fault here must not reach on_segv */
        p[6] = 2;
    }
    printf("touched %ld\n", sum);
    fflush(stdout);
    free(buf);
    g_real_fault = 1;
    *(volatile int *)16 = 1; /* a real fault: on_segv exits 7 */
    return 1;
#endif
}

/* Children of fork sample the buffer they inherit: each waits for a poisoned page of it
 * (the child's own sampler), reads a file into that page with a raw system call, exits. */
static int forkbig(const char *file, int n, int wait) {
    char *buf = malloc(BUF);
    if (!buf) return 1;
    memset(buf, 3, BUF);
    for (int i = 0; i < n; i++) {
        pid_t pid = fork();
        if (pid < 0) return 1;
        if (pid == 0) {
            free(malloc(64)); /* the shim's allocator wrapper: a safe point */
            int fd = open(file, O_RDONLY);
            char *p = (char *)wait_page(buf, wait);
            long got = syscall(SYS_pread64, fd, p, (size_t)PAGE, (off_t)0);
            _exit(got == PAGE ? 0 : 10);
        }
        int st = 0;
        if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st)) return 1;
        printf("child %d exit %d\n", i, WEXITSTATUS(st));
    }
    free(buf);
    return 0;
}

static int big(void) {
    for (int i = 0; i < 4; i++) {
        char *p = malloc((size_t)(4 + i) << 20);
        if (!p) return 1;
        memset(p, i, (size_t)(4 + i) << 20);
        free(p);
    }
    puts("big done");
    return 0;
}

int main(int argc, char **argv) {
    if (argc >= 5 && !strcmp(argv[1], "calls"))
        return calls(argv[2], argv[3], atoi(argv[4]), argc > 5 && !strcmp(argv[5], "wait"));
    if (argc >= 3 && !strcmp(argv[1], "rawsegv"))
        return segv(atoi(argv[2]), argc > 3 && !strcmp(argv[3], "wait"), 0);
    if (argc >= 3 && !strcmp(argv[1], "inlinesegv")) {
        g_wait_s = 3; /* with the fix no page is ever poisoned: do not wait long */
        return segv(atoi(argv[2]), argc > 3 && !strcmp(argv[3], "wait"), 1);
    }
    if (argc >= 2 && !strcmp(argv[1], "big")) return big();
    if (argc >= 4 && !strcmp(argv[1], "forkbig"))
        return forkbig(argv[2], atoi(argv[3]), argc > 4 && !strcmp(argv[4], "wait"));
    fprintf(stderr, "usage: kernelcalls calls FILE DIR ROUNDS [wait] | rawsegv N [wait] | "
                    "inlinesegv N [wait] | big | forkbig FILE N [wait]\n");
    return 2;
}
