/* Betweenness centrality, Brandes' algorithm from a few sources (as GAP's bc).
 *
 * Per source: a level-synchronous BFS counts shortest paths (sigma), then dependencies
 * (delta) are pulled from successors level by level back to the source. Scores are the
 * raw sums of dependencies over the sources (not normalized). Path counts are integers
 * (exact in double), and each delta sums over a sorted neighbor list, so results do not
 * depend on the thread schedule.
 */
#include <inttypes.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "graph.h"

#define LOCAL_QUEUE 256

NOINLINE static double *alloc_bc_scores(vid_t n) {
  double *p = calloc((size_t)n, sizeof *p);
  if (!p) die("cannot allocate BC scores");
  return p;
}

NOINLINE static double *alloc_bc_path_counts(vid_t n) {
  double *p = malloc((size_t)n * sizeof *p);
  if (!p) die("cannot allocate BC path counts");
  return p;
}

NOINLINE static double *alloc_bc_deltas(vid_t n) {
  double *p = malloc((size_t)n * sizeof *p);
  if (!p) die("cannot allocate BC dependencies");
  return p;
}

NOINLINE static int32_t *alloc_bc_depths(vid_t n) {
  int32_t *p = malloc((size_t)n * sizeof *p);
  if (!p) die("cannot allocate BC depths");
  return p;
}

NOINLINE static vid_t *alloc_bc_order(vid_t n) {
  vid_t *p = malloc((size_t)n * sizeof *p);
  if (!p) die("cannot allocate the BC visit order");
  return p;
}

NOINLINE static int64_t *alloc_bc_level_starts(vid_t n) {
  int64_t *p = malloc(((size_t)n + 2) * sizeof *p);
  if (!p) die("cannot allocate BC level starts");
  return p;
}

typedef struct {
  double *sigma, *delta;
  int32_t *depth;
  vid_t *order;
  int64_t *level;
} bc_work_t;

static void brandes_from(const graph_t *g, vid_t s, bc_work_t *w, double *scores) {
  const vid_t n = g->n;
  double *sigma = w->sigma, *delta = w->delta;
  int32_t *depth = w->depth;
  vid_t *order = w->order;
  int64_t *level = w->level;
#pragma omp parallel for schedule(static)
  for (vid_t v = 0; v < n; v++) {
    sigma[v] = 0.0;
    delta[v] = 0.0;
    depth[v] = -1;
  }
  depth[s] = 0;
  sigma[s] = 1.0;
  order[0] = s;
  level[0] = 0;
  level[1] = 1;
  int levels = 1;
  int64_t tail = 1;
  while (level[levels] > level[levels - 1]) {
    const int32_t d = levels - 1;
    const int64_t lo = level[d], hi = level[d + 1];
#pragma omp parallel
    {
      vid_t local[LOCAL_QUEUE];
      int nlocal = 0;
#pragma omp for schedule(dynamic, 64)
      for (int64_t i = lo; i < hi; i++) {
        vid_t u = order[i];
        for (eid_t e = g->out_offsets[u]; e < g->out_offsets[u + 1]; e++) {
          vid_t v = g->out_neighbors[e];
          int32_t dv = __atomic_load_n(&depth[v], __ATOMIC_RELAXED);
          if (dv == -1) {
            if (__atomic_compare_exchange_n(&depth[v], &dv, d + 1, false, __ATOMIC_RELAXED,
                                            __ATOMIC_RELAXED)) {
              dv = d + 1;
              local[nlocal++] = v;
              if (nlocal == LOCAL_QUEUE) {
                int64_t at = __atomic_fetch_add(&tail, nlocal, __ATOMIC_RELAXED);
                memcpy(order + at, local, (size_t)nlocal * sizeof *local);
                nlocal = 0;
              }
            }
          }
          if (dv == d + 1) {
#pragma omp atomic
            sigma[v] += sigma[u];
          }
        }
      }
      int64_t at = __atomic_fetch_add(&tail, nlocal, __ATOMIC_RELAXED);
      memcpy(order + at, local, (size_t)nlocal * sizeof *local);
    }
    level[++levels] = tail;
  }
  /* levels-1 is the first empty level; walk back from the deepest non-empty one. */
  for (int32_t d = levels - 2; d >= 0; d--) {
#pragma omp parallel for schedule(dynamic, 64)
    for (int64_t i = level[d]; i < level[d + 1]; i++) {
      vid_t u = order[i];
      double acc = 0.0;
      for (eid_t e = g->out_offsets[u]; e < g->out_offsets[u + 1]; e++) {
        vid_t v = g->out_neighbors[e];
        if (depth[v] == d + 1) acc += sigma[u] / sigma[v] * (1.0 + delta[v]);
      }
      delta[u] = acc;
      if (u != s) scores[u] += acc;
    }
  }
}

int main(int argc, char **argv) {
  options_t opt = {.iters = 0};
  parse_options(argc, argv, "bc", "i:",
                "  -i SOURCES number of random sources (default 4); -r may instead be given\n"
                "             several times to name the sources\n",
                &opt);
  if (opt.iters && opt.num_roots) die("give either -r (sources) or -i (number of sources)");
  const int num_sources = opt.num_roots ? opt.num_roots : (opt.iters ? opt.iters : 4);
  double t0 = now_seconds();
  edge_list_t el = load_edge_list(&opt);
  graph_t g = build_graph(&el, &opt);
  double build_s = now_seconds() - t0;
  vid_t sources[256];
  int shown = num_sources < 256 ? num_sources : 256;
  for (int k = 0; k < shown; k++) sources[k] = pick_source(&g, &opt, k);
  bc_work_t w = {alloc_bc_path_counts(g.n), alloc_bc_deltas(g.n), alloc_bc_depths(g.n),
                 alloc_bc_order(g.n), alloc_bc_level_starts(g.n)};
  trial_times_t times = {0};
  double *scores = NULL;
  for (int trial = 0; trial < opt.trials; trial++) {
    free(scores);
    double s = now_seconds();
    scores = alloc_bc_scores(g.n);
    for (int k = 0; k < num_sources; k++)
      brandes_from(&g, k < shown ? sources[k] : pick_source(&g, &opt, k), &w, scores);
    trial_add(&times, now_seconds() - s);
  }
  double checksum = 0.0, top = -1.0;
  vid_t top_vertex = 0;
  for (vid_t v = 0; v < g.n; v++) {
    checksum += scores[v];
    if (scores[v] > top) {
      top = scores[v];
      top_vertex = v;
    }
  }
  if (opt.out) {
    FILE *f = open_output(&opt);
    for (vid_t v = 0; v < g.n; v++) fprintf(f, "%d %.12e\n", v, scores[v]);
    close_output(f, &opt);
  }
  print_result_prefix(&opt, &g);
  printf(" sources=");
  for (int k = 0; k < shown; k++) printf(k ? ",%d" : "%d", sources[k]);
  printf(" top_vertex=%d top_score=%.6e checksum=%.9e", top_vertex, top, checksum);
  print_result_suffix(&opt, build_s, &times);
  free(scores);
  free(w.sigma);
  free(w.delta);
  free(w.depth);
  free(w.order);
  free(w.level);
  free_graph(&g);
  free_edge_list(&el);
  return 0;
}
