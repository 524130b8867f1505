/* Sequential write: store to every 64-bit word front to back, -i passes.
 *
 * Streaming stores, one write per byte and no program reads; on write-allocate caches each
 * line is also read for ownership unless the CPU elides it, and dirty lines are written
 * back on eviction. High memory-level parallelism, bandwidth-bound, and the case where
 * slow tiers with asymmetric write bandwidth (Optane) hurt most.
 */
#include "micro.h"

NOINLINE static uint64_t *alloc_seqwrite_buffer(uint64_t count) {
  uint64_t *p = malloc(count * sizeof *p);
  if (!p) die("cannot allocate %" PRIu64 " words to write", count);
  return p;
}

int main(int argc, char **argv) {
  micro_opts_t o = {.name = "seqwrite", .bytes = 256ULL << 20, .iters = 10, .seed = 1};
  parse_micro(argc, argv, &o,
              "  -m SIZE    working set (default 256M)\n"
              "  -i ITERS   passes over the buffer (default 10)\n"
              "  -s SEED    value seed (default 1)\n"
              "  -t THREADS OpenMP threads\n");
  int64_t n = (int64_t)(o.bytes / sizeof(uint64_t));
  double tf = now_seconds();
  uint64_t *a = alloc_seqwrite_buffer((uint64_t)n);
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; i++) a[i] = 0; /* fault pages in before timing */
  double t0 = now_seconds();
  o.fill_s = t0 - tf;
  for (int64_t pass = 0; pass < o.iters; pass++) {
    const uint64_t v = o.seed + (uint64_t)pass;
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) a[i] = v + (uint64_t)i;
  }
  double secs = now_seconds() - t0;
  uint64_t check = 0;
  for (int64_t i = 0; i < n; i += 4099) check ^= mix64(a[i] + (uint64_t)i);
  int64_t accesses = n * o.iters;
  print_micro(&o, accesses, (uint64_t)accesses * 8, 0, 1, secs, check);
  free(a);
  return 0;
}
