/* Breadth-first search (top-down, level-synchronous, parallel over the frontier).
 *
 * Result: BFS depth of every vertex from the source (-1 if unreached); the checksum is
 * the sum of depths of reached vertices, which does not depend on the thread schedule
 * (parents do, depths do not).
 */
#include <inttypes.h>
#include <omp.h>
#include <stdlib.h>

#include "graph.h"

#define LOCAL_QUEUE 256

NOINLINE static vid_t *alloc_bfs_parents(vid_t n) {
  vid_t *p = malloc((size_t)n * sizeof *p);
  if (!p) die("cannot allocate BFS parents");
  return p;
}

NOINLINE static int32_t *alloc_bfs_depths(vid_t n) {
  int32_t *p = malloc((size_t)n * sizeof *p);
  if (!p) die("cannot allocate BFS depths");
  return p;
}

NOINLINE static vid_t *alloc_bfs_frontier(vid_t n) {
  vid_t *p = malloc((size_t)n * sizeof *p);
  if (!p) die("cannot allocate the BFS frontier");
  return p;
}

NOINLINE static vid_t *alloc_bfs_next_frontier(vid_t n) {
  vid_t *p = malloc((size_t)n * sizeof *p);
  if (!p) die("cannot allocate the next BFS frontier");
  return p;
}

static void bfs(const graph_t *g, vid_t source, vid_t *parent, int32_t *depth) {
  const vid_t n = g->n;
  vid_t *frontier = alloc_bfs_frontier(n);
  vid_t *next = alloc_bfs_next_frontier(n);
#pragma omp parallel for schedule(static)
  for (vid_t v = 0; v < n; v++) {
    parent[v] = -1;
    depth[v] = -1;
  }
  parent[source] = source;
  depth[source] = 0;
  frontier[0] = source;
  int64_t size = 1;
  for (int32_t d = 0; size > 0; d++) {
    int64_t next_size = 0;
#pragma omp parallel
    {
      vid_t local[LOCAL_QUEUE];
      int nlocal = 0;
#pragma omp for schedule(dynamic, 64)
      for (int64_t i = 0; i < size; i++) {
        vid_t u = frontier[i];
        for (eid_t e = g->out_offsets[u]; e < g->out_offsets[u + 1]; e++) {
          vid_t v = g->out_neighbors[e], unseen = -1;
          if (__atomic_load_n(&parent[v], __ATOMIC_RELAXED) != -1) continue;
          if (!__atomic_compare_exchange_n(&parent[v], &unseen, u, false, __ATOMIC_RELAXED,
                                           __ATOMIC_RELAXED))
            continue;
          depth[v] = d + 1;
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
    vid_t *t = frontier;
    frontier = next;
    next = t;
    size = next_size;
  }
  free(frontier);
  free(next);
}

int main(int argc, char **argv) {
  options_t opt = {0};
  parse_options(argc, argv, "bfs", NULL, NULL, &opt);
  double t0 = now_seconds();
  edge_list_t el = load_edge_list(&opt);
  graph_t g = build_graph(&el, &opt);
  double build_s = now_seconds() - t0;
  vid_t *parent = alloc_bfs_parents(g.n);
  int32_t *depth = alloc_bfs_depths(g.n);
  trial_times_t times = {0};
  vid_t source = pick_source(&g, &opt, 0);
  for (int trial = 0; trial < opt.trials; trial++) {
    double s = now_seconds();
    bfs(&g, source, parent, depth);
    trial_add(&times, now_seconds() - s);
  }
  int64_t reached = 0, checksum = 0;
  int32_t max_depth = 0;
  for (vid_t v = 0; v < g.n; v++) {
    if (depth[v] < 0) continue;
    reached++;
    checksum += depth[v];
    if (depth[v] > max_depth) max_depth = depth[v];
  }
  if (opt.out) {
    FILE *f = open_output(&opt);
    for (vid_t v = 0; v < g.n; v++) fprintf(f, "%d %d\n", v, depth[v]);
    close_output(f, &opt);
  }
  print_result_prefix(&opt, &g);
  printf(" source=%d reached=%" PRId64 " max_depth=%d checksum=%" PRId64, source, reached,
         max_depth, checksum);
  print_result_suffix(&opt, build_s, &times);
  free(parent);
  free(depth);
  free_graph(&g);
  free_edge_list(&el);
  return 0;
}
