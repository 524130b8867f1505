/* Triangle counting on the ordered graph (as GAP's tc OrderedCount).
 *
 * Each triangle u > v > w is counted once: for each arc u -> v with v < u, intersect the
 * sorted lists of u and v below v. Needs an undirected graph.
 */
#include <inttypes.h>
#include <omp.h>
#include <stdlib.h>

#include "graph.h"

static int64_t ordered_count(const graph_t *g) {
  int64_t total = 0;
#pragma omp parallel for schedule(dynamic, 64) reduction(+ : total)
  for (vid_t u = 0; u < g->n; u++) {
    const vid_t *nu = g->out_neighbors + g->out_offsets[u];
    const vid_t *nu_end = g->out_neighbors + g->out_offsets[u + 1];
    for (const vid_t *pv = nu; pv < nu_end && *pv < u; pv++) {
      vid_t v = *pv;
      const vid_t *it = nu;
      for (eid_t e = g->out_offsets[v]; e < g->out_offsets[v + 1]; e++) {
        vid_t w = g->out_neighbors[e];
        if (w >= v) break;
        while (*it < w) it++;
        if (*it == w) total++;
      }
    }
  }
  return total;
}

int main(int argc, char **argv) {
  options_t opt = {0};
  parse_options(argc, argv, "tc", NULL, NULL, &opt);
  if (opt.directed) die("triangle counting needs an undirected graph (drop -d)");
  if (opt.out) die("tc has no per-vertex results (-o)");
  double t0 = now_seconds();
  edge_list_t el = load_edge_list(&opt);
  graph_t g = build_graph(&el, &opt);
  double build_s = now_seconds() - t0;
  trial_times_t times = {0};
  int64_t triangles = 0;
  for (int trial = 0; trial < opt.trials; trial++) {
    double s = now_seconds();
    triangles = ordered_count(&g);
    trial_add(&times, now_seconds() - s);
  }
  print_result_prefix(&opt, &g);
  printf(" triangles=%" PRId64 " checksum=%" PRId64, triangles, triangles);
  print_result_suffix(&opt, build_s, &times);
  free_graph(&g);
  free_edge_list(&el);
  return 0;
}
