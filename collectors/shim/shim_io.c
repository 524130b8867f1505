/*
 * shim_io.c - the exported I/O wrappers: a buffer handed to the kernel (read, recv,
 * stdio, getrandom...) loses its poison for the call, so the kernel never meets a
 * poisoned page; stdio buffers inside sampled objects end those objects' sampling.
 */
#include "shim_internal.h"

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
HIDDEN int iov_ranges(range_t *r, const struct iovec *iov, int cnt) {
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
HIDDEN int msg_ranges(range_t *r, const struct msghdr *m) {
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
HIDDEN void exclude_range(uintptr_t lo, uintptr_t hi) {
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
