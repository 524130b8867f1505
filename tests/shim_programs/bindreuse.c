/* Test program for the shim's plan binding: a bound object's policy must not outlive it.
 * Site A (the plan binds it) allocates ~100 KiB and lets it go; unplanned site B then
 * allocates the same size and, the allocator reusing the memory, gets (part of) A's pages.
 * For A and for B this prints `X <address> <numa_maps line of the VMA holding the object's
 * first whole page>`. Built and run by tests/test_shim_bind_reset.py.
 *   bindreuse free      A is freed with free()
 *   bindreuse realloc   A is shrunk in place by realloc() (at an unplanned site) */
#define _GNU_SOURCE
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define KiB 1024ul
#define SIZE (100 * KiB)

static void *__attribute__((noinline)) site_a(size_t n) { return malloc(n); }
static void *__attribute__((noinline)) site_b(size_t n) { return malloc(n); }
static void *__attribute__((noinline)) site_shrink(void *p, size_t n) { return realloc(p, n); }

/* The numa_maps line of the VMA that holds the first whole page of [p, p+n). */
static void show(const char *tag, void *p) {
    uintptr_t page = ((uintptr_t)p + 4095) & ~(uintptr_t)4095;
    char line[4096], best[4096] = "";
    uintptr_t best_start = 0;
    FILE *f = fopen("/proc/self/numa_maps", "r");
    while (f && fgets(line, sizeof line, f)) {
        uintptr_t start = (uintptr_t)strtoull(line, NULL, 16);
        if (start <= page && start >= best_start) {
            best_start = start;
            memcpy(best, line, sizeof best);
        }
    }
    if (f) fclose(f);
    best[strcspn(best, "\n")] = 0;
    printf("%s %p %s\n", tag, p, best);
    fflush(stdout);
}

int main(int argc, char **argv) {
    int shrink = argc > 1 && !strcmp(argv[1], "realloc");
    /* keep everything in the brk heap, and the heap's top in place when A is freed */
    mallopt(M_MMAP_THRESHOLD, 64 << 20);
    mallopt(M_TRIM_THRESHOLD, 256 << 20);
    void *warm = malloc(100); /* the heap exists before A */
    char *a = site_a(shrink ? 2 * SIZE : SIZE);
    void *guard = malloc(100); /* A is not the top chunk */
    memset(a, 0x5a, shrink ? 2 * SIZE : SIZE);
    show("A", a);
    void *kept = NULL;
    if (shrink) kept = site_shrink(a, 1000); /* in place: the rest goes back to the heap */
    else free(a);
    char *b = site_b(SIZE);
    memset(b, 0x5b, SIZE);
    show("B", b);
    free(b);
    free(kept);
    free(guard);
    free(warm);
    return 0;
}
