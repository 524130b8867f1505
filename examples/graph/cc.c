/* Connected components, Shiloach-Vishkin (hooking + pointer jumping, as GAP's cc_sv).
 *
 * Directed graphs give weakly connected components. Roots only ever hook to smaller ids,
 * so every component ends labeled by its smallest vertex id: labels are deterministic.
 */
#include <inttypes.h>
#include <omp.h>
#include <stdbool.h>
#include <stdlib.h>

#include "graph.h"

NOINLINE static vid_t *alloc_cc_component_ids(vid_t n) {
  vid_t *p = malloc((size_t)n * sizeof *p);
  if (!p) die("cannot allocate component ids");
  return p;
}

NOINLINE static int64_t *alloc_cc_component_sizes(vid_t n) {
  int64_t *p = calloc((size_t)n, sizeof *p);
  if (!p) die("cannot allocate component sizes");
  return p;
}

#define LOAD(x) __atomic_load_n(&(x), __ATOMIC_RELAXED)
#define STORE(x, v) __atomic_store_n(&(x), (v), __ATOMIC_RELAXED)

static void shiloach_vishkin(const graph_t *g, vid_t *comp) {
  const vid_t n = g->n;
#pragma omp parallel for schedule(static)
  for (vid_t v = 0; v < n; v++) comp[v] = v;
  bool change = true;
  while (change) {
    change = false;
#pragma omp parallel for schedule(dynamic, 1024) reduction(|| : change)
    for (vid_t u = 0; u < n; u++) {
      for (eid_t e = g->out_offsets[u]; e < g->out_offsets[u + 1]; e++) {
        vid_t v = g->out_neighbors[e];
        vid_t cu = LOAD(comp[u]), cv = LOAD(comp[v]);
        if (cu == cv) continue;
        vid_t high = cu > cv ? cu : cv, low = cu > cv ? cv : cu;
        if (LOAD(comp[high]) == high) {
          change = true;
          STORE(comp[high], low);
        }
      }
    }
#pragma omp parallel for schedule(static)
    for (vid_t v = 0; v < n; v++)
      while (LOAD(comp[v]) != LOAD(comp[LOAD(comp[v])])) STORE(comp[v], LOAD(comp[LOAD(comp[v])]));
  }
}

int main(int argc, char **argv) {
  options_t opt = {0};
  parse_options(argc, argv, "cc", NULL, NULL, &opt);
  double t0 = now_seconds();
  edge_list_t el = load_edge_list(&opt);
  graph_t g = build_graph(&el, &opt);
  double build_s = now_seconds() - t0;
  trial_times_t times = {0};
  vid_t *comp = alloc_cc_component_ids(g.n);
  for (int trial = 0; trial < opt.trials; trial++) {
    double s = now_seconds();
    shiloach_vishkin(&g, comp);
    trial_add(&times, now_seconds() - s);
  }
  int64_t *sizes = alloc_cc_component_sizes(g.n);
  int64_t components = 0, largest = 0, checksum = 0;
  for (vid_t v = 0; v < g.n; v++) {
    if (sizes[comp[v]]++ == 0) components++;
    checksum += comp[v];
  }
  for (vid_t v = 0; v < g.n; v++)
    if (sizes[v] > largest) largest = sizes[v];
  if (opt.out) {
    FILE *f = open_output(&opt);
    for (vid_t v = 0; v < g.n; v++) fprintf(f, "%d %d\n", v, comp[v]);
    close_output(f, &opt);
  }
  print_result_prefix(&opt, &g);
  printf(" components=%" PRId64 " largest=%" PRId64 " checksum=%" PRId64, components, largest,
         checksum);
  print_result_suffix(&opt, build_s, &times);
  free(sizes);
  free(comp);
  free_graph(&g);
  free_edge_list(&el);
  return 0;
}
