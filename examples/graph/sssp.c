/* Single-source shortest paths: Bellman-Ford driven by a frontier of improved vertices.
 *
 * Each round relaxes the out-arcs of every vertex whose distance dropped in the previous
 * round (atomic min on the distance array); a vertex enters the next frontier at most once
 * per round. Weights are 1..255 for generated graphs (hashed from the edge and the seed),
 * or the third column of an edge-list file. Distances are exact, so deterministic.
 */
#include <inttypes.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "graph.h"

#define INF INT64_MAX
#define LOCAL_QUEUE 256

NOINLINE static int64_t *alloc_sssp_distances(vid_t n) {
  int64_t *p = malloc((size_t)n * sizeof *p);
  if (!p) die("cannot allocate SSSP distances");
  return p;
}

NOINLINE static vid_t *alloc_sssp_frontier(vid_t n) {
  vid_t *p = malloc((size_t)n * sizeof *p);
  if (!p) die("cannot allocate the SSSP frontier");
  return p;
}

NOINLINE static vid_t *alloc_sssp_next_frontier(vid_t n) {
  vid_t *p = malloc((size_t)n * sizeof *p);
  if (!p) die("cannot allocate the next SSSP frontier");
  return p;
}

NOINLINE static uint8_t *alloc_sssp_in_frontier(vid_t n) {
  uint8_t *p = calloc((size_t)n, sizeof *p);
  if (!p) die("cannot allocate SSSP frontier flags");
  return p;
}

static int sssp(const graph_t *g, vid_t source, int64_t *dist) {
  const vid_t n = g->n;
  vid_t *frontier = alloc_sssp_frontier(n);
  vid_t *next = alloc_sssp_next_frontier(n);
  uint8_t *queued = alloc_sssp_in_frontier(n);
#pragma omp parallel for schedule(static)
  for (vid_t v = 0; v < n; v++) dist[v] = INF;
  dist[source] = 0;
  frontier[0] = source;
  int64_t size = 1;
  int rounds = 0;
  while (size > 0) {
    rounds++;
    int64_t next_size = 0;
#pragma omp parallel
    {
      vid_t local[LOCAL_QUEUE];
      int nlocal = 0;
#pragma omp for schedule(dynamic, 64)
      for (int64_t i = 0; i < size; i++) {
        vid_t u = frontier[i];
        int64_t du = __atomic_load_n(&dist[u], __ATOMIC_RELAXED);
        for (eid_t e = g->out_offsets[u]; e < g->out_offsets[u + 1]; e++) {
          vid_t v = g->out_wneighbors[e].v;
          int64_t nd = du + g->out_wneighbors[e].w;
          int64_t old = __atomic_load_n(&dist[v], __ATOMIC_RELAXED);
          bool improved = false;
          while (nd < old) {
            if (__atomic_compare_exchange_n(&dist[v], &old, nd, true, __ATOMIC_RELAXED,
                                            __ATOMIC_RELAXED)) {
              improved = true;
              break;
            }
          }
          if (!improved || __atomic_exchange_n(&queued[v], 1, __ATOMIC_RELAXED)) continue;
          local[nlocal++] = v;
          if (nlocal == LOCAL_QUEUE) {
            int64_t at = __atomic_fetch_add(&next_size, nlocal, __ATOMIC_RELAXED);
            for (int k = 0; k < nlocal; k++) next[at + k] = local[k];
            nlocal = 0;
          }
        }
      }
      int64_t at = __atomic_fetch_add(&next_size, nlocal, __ATOMIC_RELAXED);
      for (int k = 0; k < nlocal; k++) next[at + k] = local[k];
    }
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < next_size; i++) queued[next[i]] = 0;
    vid_t *t = frontier;
    frontier = next;
    next = t;
    size = next_size;
  }
  free(queued);
  free(frontier);
  free(next);
  return rounds;
}

int main(int argc, char **argv) {
  options_t opt = {.weighted = true};
  parse_options(argc, argv, "sssp", NULL, NULL, &opt);
  double t0 = now_seconds();
  edge_list_t el = load_edge_list(&opt);
  graph_t g = build_graph(&el, &opt);
  double build_s = now_seconds() - t0;
  int64_t *dist = alloc_sssp_distances(g.n);
  trial_times_t times = {0};
  vid_t source = pick_source(&g, &opt, 0);
  int rounds = 0;
  for (int trial = 0; trial < opt.trials; trial++) {
    double s = now_seconds();
    rounds = sssp(&g, source, dist);
    trial_add(&times, now_seconds() - s);
  }
  int64_t reached = 0, checksum = 0, max_dist = 0;
  for (vid_t v = 0; v < g.n; v++) {
    if (dist[v] == INF) continue;
    reached++;
    checksum += dist[v];
    if (dist[v] > max_dist) max_dist = dist[v];
  }
  if (opt.out) {
    FILE *f = open_output(&opt);
    for (vid_t v = 0; v < g.n; v++)
      fprintf(f, "%d %" PRId64 "\n", v, dist[v] == INF ? (int64_t)-1 : dist[v]);
    close_output(f, &opt);
  }
  print_result_prefix(&opt, &g);
  printf(" source=%d rounds=%d reached=%" PRId64 " max_dist=%" PRId64 " checksum=%" PRId64,
         source, rounds, reached, max_dist, checksum);
  print_result_suffix(&opt, build_s, &times);
  free(dist);
  free_graph(&g);
  free_edge_list(&el);
  return 0;
}
