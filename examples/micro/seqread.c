/* Sequential read: sum a 64-bit array front to back, -i passes.
 *
 * Pure streaming loads (one read per byte, no writes), fully predictable, so hardware
 * prefetchers keep many lines in flight: high memory-level parallelism, bandwidth-bound.
 * Threads split the array into contiguous blocks (OpenMP static schedule).
 */
#include "micro.h"

NOINLINE static uint64_t *alloc_seqread_buffer(uint64_t count) {
  uint64_t *p = malloc(count * sizeof *p);
  if (!p) die("cannot allocate %" PRIu64 " words to read", count);
  return p;
}

int main(int argc, char **argv) {
  micro_opts_t o = {.name = "seqread", .bytes = 256ULL << 20, .iters = 10, .seed = 1};
  parse_micro(argc, argv, &o,
              "  -m SIZE    working set (default 256M)\n"
              "  -i ITERS   passes over the buffer (default 10)\n"
              "  -s SEED    fill seed (default 1)\n"
              "  -t THREADS OpenMP threads\n");
  int64_t n = (int64_t)(o.bytes / sizeof(uint64_t));
  double tf = now_seconds();
  uint64_t *a = alloc_seqread_buffer((uint64_t)n);
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; i++) a[i] = mix64(o.seed + (uint64_t)i);
  uint64_t sum = 0;
  double t0 = now_seconds();
  o.fill_s = t0 - tf;
  for (int64_t pass = 0; pass < o.iters; pass++) {
#pragma omp parallel for schedule(static) reduction(+ : sum)
    for (int64_t i = 0; i < n; i++) sum += a[i];
  }
  double secs = now_seconds() - t0;
  int64_t accesses = n * o.iters;
  print_micro(&o, accesses, (uint64_t)accesses * 8, 1, 0, secs, sum);
  free(a);
  return 0;
}
