/* Shared helpers of the memory microbenchmarks: flag parsing, sizes, timing, RNG.
 *
 * Every benchmark takes -m SIZE (working set, bytes with optional K/M/G suffix), -i ITERS,
 * -s SEED and -t THREADS where it parallelizes, and prints one line
 *   NAME: bytes=WORKING_SET accesses=N bytes_touched=B reads_per_access=R writes_per_access=W
 *         time_s=T ns_per_access=X gb_per_s=Y checksum=C fill_s=F setup_s=U
 * where time_s covers only the measured loop (initialization excluded), fill_s the initial
 * front-to-back fill of the working set (first touch: page faults included) and setup_s
 * what runs between the fill and the loop (the chase's shuffle; 0 where there is none),
 * so the emulator's calibration can charge every phase (docs/emulator.md, Calibration).
 */
#ifndef PLACER_EXAMPLES_MICRO_H
#define PLACER_EXAMPLES_MICRO_H

#include <errno.h>
#include <inttypes.h>
#include <omp.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define NOINLINE __attribute__((noinline))

typedef struct {
  const char *name;
  uint64_t bytes; /* -m */
  int64_t iters;  /* -i */
  uint64_t seed;  /* -s */
  int threads;    /* -t */
  double fill_s;  /* initial fill of the working set (reported, not part of time_s) */
  double setup_s; /* between the fill and the timed loop (reported, not part of time_s) */
} micro_opts_t;

static const char *micro_name = "micro";

__attribute__((noreturn, format(printf, 1, 2))) static void die(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "%s: error: ", micro_name);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  exit(2);
}

static inline double now_seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static inline uint64_t mix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ULL;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
  return x ^ (x >> 31);
}

/* xorshift64*: a fast stream for index generation inside timed loops. */
static inline uint64_t xorshift64s(uint64_t *s) {
  uint64_t x = *s;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  *s = x;
  return x * 0x2545F4914F6CDD1DULL;
}

static uint64_t parse_size(const char *s) {
  char *end = NULL;
  errno = 0;
  double x = strtod(s, &end);
  uint64_t mult = 1;
  if (end && *end) {
    switch (*end) {
    case 'k': case 'K': mult = 1ULL << 10; break;
    case 'm': case 'M': mult = 1ULL << 20; break;
    case 'g': case 'G': mult = 1ULL << 30; break;
    default: mult = 0;
    }
    if (mult && end[1] != '\0' && !((end[1] == 'B' || end[1] == 'b') && end[2] == '\0'))
      mult = 0;
  }
  if (errno || end == s || mult == 0 || !(x * (double)mult >= 4096.0) || x * (double)mult > 1e12)
    die("-m expects a size >= 4096 bytes such as 64M or 1G, got '%s'", s);
  return (uint64_t)(x * (double)mult);
}

static int64_t parse_count(const char *flag, const char *s, int64_t lo, int64_t hi) {
  char *end = NULL;
  errno = 0;
  long long x = strtoll(s, &end, 10);
  if (errno || end == s || *end || x < lo || x > hi)
    die("-%s expects an integer in [%" PRId64 ", %" PRId64 "], got '%s'", flag, lo, hi, s);
  return x;
}

/* Defaults come in through *o; flags override them. */
static void parse_micro(int argc, char **argv, micro_opts_t *o, const char *help) {
  micro_name = o->name;
  int c;
  opterr = 0;
  while ((c = getopt(argc, argv, ":m:i:s:t:h")) != -1) {
    switch (c) {
    case 'm': o->bytes = parse_size(optarg); break;
    case 'i': o->iters = parse_count("i", optarg, 1, INT64_C(1) << 40); break;
    case 's': o->seed = (uint64_t)parse_count("s", optarg, 0, INT64_MAX); break;
    case 't': o->threads = (int)parse_count("t", optarg, 1, 4096); break;
    case 'h':
      printf("usage: %s [-m SIZE] [-i ITERS] [-s SEED] [-t THREADS]\n%s", o->name, help);
      exit(0);
    case ':': die("option -%c needs a value (see -h)", optopt);
    default: die("unknown option -%c (see -h)", optopt);
    }
  }
  if (optind < argc) die("unexpected argument '%s' (see -h)", argv[optind]);
  if (o->threads > 0) omp_set_num_threads(o->threads);
}

static void print_micro(const micro_opts_t *o, int64_t accesses, uint64_t bytes_touched,
                        double reads, double writes, double seconds, uint64_t checksum) {
  printf("%s: bytes=%" PRIu64 " accesses=%" PRId64 " bytes_touched=%" PRIu64
         " reads_per_access=%g writes_per_access=%g threads=%d time_s=%.6f ns_per_access=%.3f"
         " gb_per_s=%.3f checksum=%016" PRIx64 " fill_s=%.6f setup_s=%.6f\n",
         o->name, o->bytes, accesses, bytes_touched, reads, writes, omp_get_max_threads(),
         seconds, seconds * 1e9 / (double)accesses, (double)bytes_touched / seconds / 1e9,
         checksum, o->fill_s, o->setup_s);
  fflush(stdout);
}

#endif
