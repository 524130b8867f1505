/* Pointer chase: dependent loads through a random cyclic permutation of cache lines.
 *
 * The working set is an array of 64-byte nodes; Sattolo's algorithm links them into one
 * random cycle, so every load's address comes from the previous load (memory-level
 * parallelism 1) and consecutive loads land on unrelated lines and pages (no prefetching,
 * TLB misses once the set exceeds the TLB reach). One read per access, no writes.
 * This measures load-to-use latency of whatever tier holds the nodes. Single-threaded.
 */
#include "micro.h"

typedef struct {
  uint64_t next;
  uint64_t pad[7];
} node_t;

NOINLINE static node_t *alloc_chase_nodes(uint64_t count) {
  node_t *p = malloc(count * sizeof *p);
  if (!p) die("cannot allocate %" PRIu64 " chase nodes", count);
  return p;
}

int main(int argc, char **argv) {
  micro_opts_t o = {.name = "chase", .bytes = 256ULL << 20, .iters = 20000000, .seed = 1};
  parse_micro(argc, argv, &o,
              "  -m SIZE    working set (default 256M), in 64-byte nodes\n"
              "  -i ITERS   dependent loads (default 20000000)\n"
              "  -s SEED    permutation seed (default 1)\n");
  uint64_t n = o.bytes / sizeof(node_t);
  double tf = now_seconds();
  node_t *nodes = alloc_chase_nodes(n);
  for (uint64_t i = 0; i < n; i++) {
    nodes[i].next = i;
    for (int k = 0; k < 7; k++) nodes[i].pad[k] = 0;
  }
  double ts = now_seconds();
  o.fill_s = ts - tf;
  uint64_t st = mix64(o.seed);
  for (uint64_t i = n - 1; i > 0; i--) { /* Sattolo: j < i gives a single cycle */
    uint64_t j = (uint64_t)(((unsigned __int128)xorshift64s(&st) * i) >> 64);
    uint64_t t = nodes[i].next;
    nodes[i].next = nodes[j].next;
    nodes[j].next = t;
  }
  double t0 = now_seconds();
  o.setup_s = t0 - ts;
  uint64_t p = 0;
  for (int64_t k = 0; k < o.iters; k++) p = nodes[p].next;
  double secs = now_seconds() - t0;
  print_micro(&o, o.iters, (uint64_t)o.iters * sizeof(node_t), 1, 0, secs, p);
  free(nodes);
  return 0;
}
