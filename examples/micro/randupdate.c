/* Random update (GUPS-like): table[r % size] ^= r for a stream of random r.
 *
 * Each access is a read-modify-write of one 64-bit word on a random line: one read and one
 * write per access, no spatial locality, but the updates are independent, so the core
 * keeps many misses in flight (high memory-level parallelism, unlike the pointer chase).
 * Thread t only updates words whose index is congruent to t modulo the thread count, so
 * there are no races and the checksum is deterministic for a given seed and -t.
 */
#include "micro.h"

NOINLINE static uint64_t *alloc_update_table(uint64_t count) {
  uint64_t *p = malloc(count * sizeof *p);
  if (!p) die("cannot allocate the %" PRIu64 "-word update table", count);
  return p;
}

int main(int argc, char **argv) {
  micro_opts_t o = {.name = "randupdate", .bytes = 256ULL << 20, .iters = 20000000, .seed = 1};
  parse_micro(argc, argv, &o,
              "  -m SIZE    table size (default 256M)\n"
              "  -i ITERS   updates in total (default 20000000)\n"
              "  -s SEED    stream seed (default 1)\n"
              "  -t THREADS OpenMP threads\n");
  uint64_t n = o.bytes / sizeof(uint64_t);
  double tf = now_seconds();
  uint64_t *table = alloc_update_table(n);
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < (int64_t)n; i++) table[i] = (uint64_t)i;
  double t0 = now_seconds();
  o.fill_s = t0 - tf;
#pragma omp parallel
  {
    const uint64_t nt = (uint64_t)omp_get_num_threads(), t = (uint64_t)omp_get_thread_num();
    const uint64_t slots = n / nt;
    uint64_t st = mix64(o.seed * 0x100000001b3ULL + t) | 1;
    const int64_t mine = o.iters / (int64_t)nt + ((int64_t)t < o.iters % (int64_t)nt);
    for (int64_t k = 0; k < mine; k++) {
      uint64_t r = xorshift64s(&st);
      uint64_t idx = (uint64_t)(((unsigned __int128)r * slots) >> 64) * nt + t;
      table[idx] ^= r;
    }
  }
  double secs = now_seconds() - t0;
  uint64_t check = 0;
  for (uint64_t i = 0; i < n; i++) check ^= table[i] * (i | 1);
  print_micro(&o, o.iters, (uint64_t)o.iters * 8, 1, 1, secs, check);
  free(table);
  return 0;
}
