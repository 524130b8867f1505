/* Allocation churn: N allocations of SIZE bytes spread over S call sites, K alive at once.
 *
 * The workload of issue 17 (cost that grows with allocations): a long job that allocates
 * and frees large buffers for hours has many allocations but few sites and few live
 * objects. Allocation i comes from site i % S and replaces the buffer allocated K
 * allocations earlier (a ring of K slots), so at most K buffers are alive and every site
 * allocates N / S times. One byte per page of each buffer is written, so the buffers are
 * real memory but the program stays cheap.
 *
 * Sites are distinct call stacks, not one call in a loop: four nested levels of ten-way
 * switches (10,000 distinct return-address chains, within the shim's default stack depth
 * of 6), so S may be 1..10000. Each case bumps its own counter after its call, which
 * keeps the compiler from merging the calls (and from turning them into tail calls).
 *
 *   churn -n N -b SIZE -S SITES -k ALIVE [-t SECONDS]
 * -t paces the allocations evenly over SECONDS of wall time (a long job's steady rate, for
 * the daemon's growth benchmark); without it they run as fast as they can.
 * prints one line: churn: allocations=N size=SIZE sites=S alive=K time_s=T checksum=C
 */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define NOINLINE __attribute__((noinline))
#define MAX_SITES 10000

static volatile uint64_t hits[4][10];
static size_t g_size;

NOINLINE static char *leaf(int d) {
  char *p = NULL;
  switch (d) {
#define LEAF(k)              \
  case k:                    \
    p = malloc(g_size);      \
    hits[3][k]++;            \
    break;
    LEAF(0) LEAF(1) LEAF(2) LEAF(3) LEAF(4) LEAF(5) LEAF(6) LEAF(7) LEAF(8) LEAF(9)
#undef LEAF
  }
  return p;
}

#define LEVEL(name, next, lvl)                                                           \
  NOINLINE static char *name(int s) {                                                    \
    char *p = NULL;                                                                      \
    int d = s % 10, rest = s / 10;                                                       \
    switch (d) {                                                                         \
    case 0: p = next(rest); hits[lvl][0]++; break;                                       \
    case 1: p = next(rest); hits[lvl][1]++; break;                                       \
    case 2: p = next(rest); hits[lvl][2]++; break;                                       \
    case 3: p = next(rest); hits[lvl][3]++; break;                                       \
    case 4: p = next(rest); hits[lvl][4]++; break;                                       \
    case 5: p = next(rest); hits[lvl][5]++; break;                                       \
    case 6: p = next(rest); hits[lvl][6]++; break;                                       \
    case 7: p = next(rest); hits[lvl][7]++; break;                                       \
    case 8: p = next(rest); hits[lvl][8]++; break;                                       \
    default: p = next(rest); hits[lvl][9]++; break;                                      \
    }                                                                                    \
    return p;                                                                            \
  }

LEVEL(level2, leaf, 2)
LEVEL(level1, level2, 1)
LEVEL(level0, level1, 0)

/* Site s: the digits of s pick the case at each level (lowest digit outermost). */
static char *alloc_at(int s) { return level0(s); }

static uint64_t parse_size(const char *s) {
  char *end;
  uint64_t v = strtoull(s, &end, 10);
  switch (*end) {
  case 'k': case 'K': v <<= 10; break;
  case 'm': case 'M': v <<= 20; break;
  case 'g': case 'G': v <<= 30; break;
  default: break;
  }
  return v;
}

static double now_seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void usage(void) {
  fprintf(stderr,
          "usage: churn [-n ALLOCATIONS] [-b SIZE] [-S SITES (1..%d)] [-k ALIVE] [-t SECONDS]\n",
          MAX_SITES);
  exit(2);
}

int main(int argc, char **argv) {
  uint64_t n = 100000, k = 64;
  int sites = 8;
  double pace_s = 0.0;
  g_size = 64 << 10;
  for (int i = 1; i < argc; i++) {
    if (i + 1 >= argc) usage();
    const char *v = argv[++i];
    if (!strcmp(argv[i - 1], "-n")) n = parse_size(v);
    else if (!strcmp(argv[i - 1], "-b")) g_size = (size_t)parse_size(v);
    else if (!strcmp(argv[i - 1], "-S")) sites = atoi(v);
    else if (!strcmp(argv[i - 1], "-k")) k = parse_size(v);
    else if (!strcmp(argv[i - 1], "-t")) pace_s = atof(v);
    else usage();
  }
  if (sites < 1 || sites > MAX_SITES || k < 1 || g_size < 1 || pace_s < 0) usage();
  char **ring = calloc(k, sizeof *ring);
  if (!ring) return 1;
  uint64_t sum = 0;
  double t0 = now_seconds();
  for (uint64_t i = 0; i < n; i++) {
    if (pace_s > 0 && i % 1024 == 0) { /* sleep until allocation i is due */
      double due = t0 + pace_s * (double)i / (double)n, wait = due - now_seconds();
      if (wait > 0) {
        struct timespec ts = {(time_t)wait, (long)((wait - (double)(time_t)wait) * 1e9)};
        nanosleep(&ts, NULL);
      }
    }
    uint64_t slot = i % k;
    free(ring[slot]);
    char *p = alloc_at((int)(i % (uint64_t)sites));
    if (!p) {
      fprintf(stderr, "churn: out of memory at allocation %" PRIu64 "\n", i);
      return 1;
    }
    for (size_t off = 0; off < g_size; off += 4096) p[off] = (char)i;
    sum += (uint64_t)(unsigned char)p[0];
    ring[slot] = p;
  }
  for (uint64_t i = 0; i < k; i++) free(ring[i]);
  free(ring);
  double secs = now_seconds() - t0;
  printf("churn: allocations=%" PRIu64 " size=%zu sites=%d alive=%" PRIu64
         " time_s=%.3f checksum=%" PRIu64 "\n",
         n, g_size, sites, k, secs, sum);
  return 0;
}
