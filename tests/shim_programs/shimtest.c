/* Test program for the allocation shim: one binary, one scenario per argv[1].
 * Built by tests/test_shim_runtime.py into a temporary directory. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define KiB 1024ul
#define MiB (1024ul * 1024ul)

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}
static void touch(void *p, size_t n) { memset(p, 0x5a, n); }

/* every allocation entry point, below and above a 64 KiB threshold */
static int sizes(void) {
    void *p;
    void *small[9], *large[9];
    small[0] = malloc(1000);
    large[0] = malloc(100 * KiB);
    small[1] = calloc(10, 100);
    large[1] = calloc(100, KiB);
    small[2] = realloc(NULL, 1000);
    large[2] = realloc(NULL, 100 * KiB);
    posix_memalign(&p, 64, 1000); small[3] = p;
    posix_memalign(&p, 4096, 100 * KiB); large[3] = p;
    small[4] = aligned_alloc(64, 1024);
    large[4] = aligned_alloc(4096, 100 * KiB);
    small[5] = memalign(64, 1000);
    large[5] = memalign(4096, 100 * KiB);
    small[6] = valloc(1000);
    large[6] = valloc(100 * KiB);
    small[7] = pvalloc(1000);
    large[7] = pvalloc(100 * KiB);
    small[8] = mmap(NULL, 8 * KiB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    large[8] = mmap(NULL, 1 * MiB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    for (int i = 0; i < 9; i++) {
        printf("%d %p %p\n", i, small[i], large[i]);
        if (i < 8) { free(small[i]); free(large[i]); }
    }
    munmap(small[8], 8 * KiB);
    munmap(large[8], 1 * MiB);
    return 0;
}

/* realloc chains, realloc to 0, mremap, partial munmap */
static int pairs(void) {
    char *a = malloc(100 * KiB);
    a = realloc(a, 300 * KiB);   /* FREE(realloc) + ALLOC(realloc) */
    a = realloc(a, 10 * KiB);    /* FREE(realloc); too small to log */
    a = realloc(a, 200 * KiB);   /* ALLOC(realloc) */
    free(a);
    char *b = malloc(150 * KiB);
    b = realloc(b, 0);           /* frees */
    free(b);
    char *m = mmap(NULL, 4 * MiB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    m = mremap(m, 4 * MiB, 8 * MiB, MREMAP_MAYMOVE);
    munmap(m + 6 * MiB, 2 * MiB); /* tail: the object is ended, 6 MiB stay logged */
    munmap(m, 6 * MiB);
    puts("pairs done");
    return 0;
}

static void *thread_body(void *arg) {
    long id = (long)arg;
    void *keep[16] = {0};
    for (int i = 0; i < 300; i++) {
        size_t sz = (size_t)(64 * KiB + (size_t)(id * 4096 + i % 7 * 512));
        void *p = malloc(sz);
        touch(p, 256);
        void *q = malloc(100 + (size_t)i);
        int k = i % 16;
        free(keep[k]);
        keep[k] = p;
        free(q);
        if (i % 50 == 0) {
            void *r = calloc(1, 80 * KiB);
            r = realloc(r, 160 * KiB);
            free(r);
        }
    }
    for (int k = 0; k < 16; k++) free(keep[k]);
    return NULL;
}
static int threads(int n) {
    pthread_t th[64];
    for (long i = 0; i < n; i++) pthread_create(&th[i], NULL, thread_body, (void *)i);
    for (int i = 0; i < n; i++) pthread_join(th[i], NULL);
    puts("threads done");
    return 0;
}

/* fork while other threads allocate; children allocate and exit */
static volatile int stop_threads;
static void *alloc_loop(void *arg) {
    (void)arg;
    while (!stop_threads) { void *p = malloc(100 * KiB); touch(p, 64); free(p); }
    return NULL;
}
static int forks(int n) {
    pthread_t th[2];
    for (int i = 0; i < 2; i++) pthread_create(&th[i], NULL, alloc_loop, NULL);
    void *parent_obj = malloc(200 * KiB);
    for (int i = 0; i < n; i++) {
        pid_t pid = fork();
        if (pid == 0) {
            void *c = malloc(300 * KiB);
            touch(c, 300 * KiB);
            free(c);
            free(parent_obj); /* inherited from the parent */
            exit(0);
        }
        int st;
        waitpid(pid, &st, 0);
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) { fprintf(stderr, "child failed\n"); return 1; }
    }
    stop_threads = 1;
    for (int i = 0; i < 2; i++) pthread_join(th[i], NULL);
    free(parent_obj);
    printf("forked %d\n", n);
    return 0;
}

static int segv(void) {
    void *p = malloc(500 * KiB);
    touch(p, 500 * KiB);
    fflush(stdout);
    *(volatile int *)16 = 1;
    return 0;
}

static int sleeper(void) {
    void *p = malloc(500 * KiB);
    touch(p, 500 * KiB);
    puts("ready");
    fflush(stdout);
    for (;;) pause();
    return 0;
}

/* deterministic allocation-heavy work whose output must not change */
static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}
static int output(int rounds) {
    uint64_t s = 88172645463325252ull, total = 0;
    for (int r = 0; r < rounds; r++) {
        size_t n = (size_t)(20000 + (r * 7919) % 300000);
        uint64_t *v = malloc(n * sizeof *v);
        for (size_t i = 0; i < n; i++) { s ^= s << 13; s ^= s >> 7; s ^= s << 17; v[i] = s; }
        qsort(v, n, sizeof *v, cmp_u64);
        char *txt = malloc(n / 4 + 64);
        snprintf(txt, n / 4 + 64, "round %d n %zu min %llu median %llu", r, n,
                 (unsigned long long)v[0], (unsigned long long)v[n / 2]);
        puts(txt);
        total += v[n / 3] >> 32;
        free(txt);
        free(v);
    }
    printf("total %llu\n", (unsigned long long)total);
    return 0;
}

/* large buffers filled and drained by the kernel: read, pread, readv, fread, write, fwrite */
static int io(const char *path, int rounds) {
    size_t n = 6 * MiB;
    unsigned char *buf = malloc(n), *buf2 = malloc(n);
    uint64_t h = 1469598103934665603ull;
    for (int r = 0; r < rounds; r++) {
        int fd = open(path, O_RDONLY);
        if (fd < 0) { perror("open"); return 3; }
        ssize_t got = 0, k;
        while ((k = read(fd, buf + got, n - got)) > 0) got += k;
        if (k < 0) { perror("read"); return 3; }
        if (pread(fd, buf2, n, 0) != got) { perror("pread"); return 3; }
        struct iovec iov[3] = {{buf2, 4096}, {buf2 + 4096, n / 2}, {buf2 + 4096 + n / 2, n / 2 - 4096}};
        lseek(fd, 0, SEEK_SET);
        if (readv(fd, iov, 3) != got) { perror("readv"); return 3; }
        close(fd);
        FILE *f = fopen(path, "rb");
        size_t fr = fread(buf2, 1, n, f);
        fclose(f);
        if (fr != (size_t)got || memcmp(buf, buf2, (size_t)got)) { fputs("mismatch\n", stderr); return 4; }
        for (ssize_t i = 0; i < got; i += 64) h = (h ^ buf[i]) * 1099511628211ull;
        buf[r % got] ^= 1; /* a write from user space too */
        if (r % 4 == 0) {
            if (fwrite(buf, 1, 64 * KiB, stdout) != 64 * KiB) return 5;
            fflush(stdout);
            if (write(1, buf2 + 4096, 128 * KiB) != (ssize_t)(128 * KiB)) { perror("write"); return 6; }
        }
    }
    fprintf(stderr, "hash %llx\n", (unsigned long long)h);
    return 0;
}

/* the program installs its own SIGSEGV handler (after the shim) and recovers from a fault */
static sigjmp_buf jb;
static volatile sig_atomic_t caught;
static void on_segv(int sig, siginfo_t *si, void *uc) {
    (void)sig; (void)uc;
    caught++;
    if (si->si_addr == (void *)24) siglongjmp(jb, 1);
    _exit(99);
}
static int handler(double secs) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_segv;
    sa.sa_flags = SA_SIGINFO;
    sigfillset(&sa.sa_mask);
    sigaction(SIGSEGV, &sa, NULL);
    struct sigaction back;
    sigaction(SIGSEGV, NULL, &back);
    if (back.sa_sigaction != on_segv) { puts("handler not reported back"); return 2; }
    size_t n = 16 * MiB;
    unsigned char *a = malloc(n);
    touch(a, n);
    uint64_t sum = 0;
    double t0 = now();
    int faults = 0;
    while (now() - t0 < secs) {
        for (size_t i = 0; i < n; i += 4096) sum += a[i]++;
        if (sigsetjmp(jb, 1) == 0) *(volatile int *)24 = 1;
        else faults++;
    }
    printf("faults recovered %d, caught %d, sum>0 %d\n", faults > 0, caught == faults, sum > 0);
    return 0;
}

/* worker threads block every signal (SIGSEGV included) and touch sampled memory */
static unsigned char *shared;
static size_t shared_n;
static double until;
static void *blocked_body(void *arg) {
    (void)arg;
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL);
    sigset_t cur;
    pthread_sigmask(SIG_BLOCK, NULL, &cur);
    if (!sigismember(&cur, SIGSEGV)) { puts("mask not reported back"); exit(2); }
    uint64_t s = 0;
    while (now() < until)
        for (size_t i = 0; i < shared_n; i += 4096) s += shared[i]++;
    return (void *)(uintptr_t)(s > 0);
}
static int blocked(double secs) {
    shared_n = 16 * MiB;
    shared = malloc(shared_n);
    touch(shared, shared_n);
    until = now() + secs;
    pthread_t th[2];
    for (int i = 0; i < 2; i++) pthread_create(&th[i], NULL, blocked_body, NULL);
    for (int i = 0; i < 2; i++) pthread_join(th[i], NULL);
    puts("blocked done");
    return 0;
}

/* one site, for the site-hash stability check */
static void *__attribute__((noinline)) site_a(size_t n) { return malloc(n); }
static int site(void) {
    void *p = site_a(123 * KiB);
    printf("%p\n", p);
    free(p);
    return 0;
}

/* a hot and a cold object, for a fixed amount of work */
static int hotcold(double secs) {
    size_t n = 32 * MiB;
    unsigned char *hot = malloc(n), *cold = malloc(n);
    touch(hot, n);
    touch(cold, n);
    uint64_t s = 0;
    double t0 = now();
    while (now() - t0 < secs)
        for (size_t i = 0; i < n; i += 4096) { s += hot[i]; hot[i + 64]++; }
    printf("%p %p %d\n", (void *)hot, (void *)cold, s > 0);
    free(hot);
    free(cold);
    return 0;
}

/* an object allocated at a fixed site, then this process's numa_maps */
static void *__attribute__((noinline)) numa_site(size_t n) { return malloc(n); }
static int numa(void) {
    size_t n = 8 * MiB;
    unsigned char *p = numa_site(n);
    touch(p, n);
    printf("%p\n", (void *)p);
    FILE *f = fopen("/proc/self/numa_maps", "r");
    char line[4096];
    while (f && fgets(line, sizeof line, f)) fputs(line, stdout);
    if (f) fclose(f);
    free(p);
    return 0;
}

static int execself(const char *self) {
    void *p = malloc(100 * KiB);
    touch(p, 100 * KiB);
    fflush(stdout);
    execl(self, self, "site", (char *)NULL);
    perror("execl");
    return 1;
}

/* a daemon-like program: closes every descriptor, then reuses them all for /dev/null */
static int closefds(void) {
    void *a = malloc(100 * KiB);
    touch(a, 100 * KiB);
    for (int fd = 3; fd < 1024; fd++) close(fd);
    int nul = open("/dev/null", O_WRONLY);
    for (int fd = 3; fd < 1024; fd++)
        if (fd != nul) dup2(nul, fd);
    for (int i = 0; i < 50; i++) {
        void *b = malloc(200 * KiB);
        touch(b, 1024);
        free(b);
    }
    free(a);
    puts("closed");
    return 0;
}

/* fork, and the child execs this program again */
static int forkexec(const char *self) {
    void *q = malloc(200 * KiB);
    touch(q, 200 * KiB);
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        execl(self, self, "site", (char *)NULL);
        _exit(127);
    }
    int st;
    waitpid(pid, &st, 0);
    free(q);
    return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : 1;
}

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    const char *m = argv[1];
    int k = argc > 2 ? atoi(argv[2]) : 0;
    double x = argc > 2 ? atof(argv[2]) : 0.5;
    if (!strcmp(m, "sizes")) return sizes();
    if (!strcmp(m, "pairs")) return pairs();
    if (!strcmp(m, "threads")) return threads(k ? k : 8);
    if (!strcmp(m, "fork")) return forks(k ? k : 3);
    if (!strcmp(m, "segv")) return segv();
    if (!strcmp(m, "sleep")) return sleeper();
    if (!strcmp(m, "output")) return output(k ? k : 50);
    if (!strcmp(m, "io")) return io(argv[2], argc > 3 ? atoi(argv[3]) : 20);
    if (!strcmp(m, "handler")) return handler(x);
    if (!strcmp(m, "blocked")) return blocked(x);
    if (!strcmp(m, "site")) return site();
    if (!strcmp(m, "hotcold")) return hotcold(x);
    if (!strcmp(m, "exec")) return execself(argv[0]);
    if (!strcmp(m, "numa")) return numa();
    if (!strcmp(m, "forkexec")) return forkexec(argv[0]);
    if (!strcmp(m, "closefds")) return closefds();
    return 2;
}
