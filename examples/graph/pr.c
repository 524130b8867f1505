/* PageRank, pull direction (each vertex sums its in-neighbors' contributions).
 *
 * score'(v) = (1 - d) / n + d * sum_{u -> v} score(u) / outdeg(u), d = 0.85, scores start at
 * 1/n; stops after -i iterations (default 20) or when the L1 change drops below -e
 * (default 1e-4). Vertices without out-edges contribute nothing (their mass is lost, as in
 * GAP). Each vertex's sum runs over its sorted in-list, so scores do not depend on threads.
 */
#include <math.h>
#include <omp.h>
#include <stdlib.h>

#include "graph.h"

#define DAMPING 0.85f

NOINLINE static float *alloc_pr_scores(vid_t n) {
  float *p = malloc((size_t)n * sizeof *p);
  if (!p) die("cannot allocate PageRank scores");
  return p;
}

NOINLINE static float *alloc_pr_contrib(vid_t n) {
  float *p = malloc((size_t)n * sizeof *p);
  if (!p) die("cannot allocate PageRank contributions");
  return p;
}

static int pagerank(const graph_t *g, int max_iters, double tol, float *scores,
                    float *contrib) {
  const vid_t n = g->n;
  const float init = 1.0f / (float)n, base = (1.0f - DAMPING) / (float)n;
#pragma omp parallel for schedule(static)
  for (vid_t v = 0; v < n; v++) scores[v] = init;
  int iter = 0;
  while (iter < max_iters) {
    iter++;
#pragma omp parallel for schedule(static)
    for (vid_t u = 0; u < n; u++) {
      eid_t deg = out_degree(g, u);
      contrib[u] = deg ? scores[u] / (float)deg : 0.0f;
    }
    double error = 0.0;
#pragma omp parallel for schedule(dynamic, 1024) reduction(+ : error)
    for (vid_t v = 0; v < n; v++) {
      float sum = 0.0f;
      for (eid_t e = g->in_offsets[v]; e < g->in_offsets[v + 1]; e++)
        sum += contrib[g->in_neighbors[e]];
      float next = base + DAMPING * sum;
      error += fabs((double)next - (double)scores[v]);
      scores[v] = next;
    }
    if (error < tol) break;
  }
  return iter;
}

int main(int argc, char **argv) {
  options_t opt = {.iters = 20, .tol = 1e-4, .need_in = true};
  parse_options(argc, argv, "pr", "i:e:",
                "  -i ITERS   maximum iterations (default 20)\n"
                "  -e TOL     stop when the L1 change of scores is below TOL (default 1e-4)\n",
                &opt);
  double t0 = now_seconds();
  edge_list_t el = load_edge_list(&opt);
  graph_t g = build_graph(&el, &opt);
  double build_s = now_seconds() - t0;
  trial_times_t times = {0};
  float *scores = NULL;
  int iters = 0;
  for (int trial = 0; trial < opt.trials; trial++) {
    free(scores);
    double s = now_seconds();
    scores = alloc_pr_scores(g.n);
    float *contrib = alloc_pr_contrib(g.n);
    iters = pagerank(&g, opt.iters, opt.tol, scores, contrib);
    free(contrib);
    trial_add(&times, now_seconds() - s);
  }
  double total = 0.0, top = -1.0;
  vid_t top_vertex = 0;
  for (vid_t v = 0; v < g.n; v++) {
    total += scores[v];
    if (scores[v] > top) {
      top = scores[v];
      top_vertex = v;
    }
  }
  if (opt.out) {
    FILE *f = open_output(&opt);
    for (vid_t v = 0; v < g.n; v++) fprintf(f, "%d %.9e\n", v, (double)scores[v]);
    close_output(f, &opt);
  }
  print_result_prefix(&opt, &g);
  printf(" iterations=%d top_vertex=%d top_score=%.6e checksum=%.9e", iters, top_vertex, top,
         total);
  print_result_suffix(&opt, build_s, &times);
  free(scores);
  free_graph(&g);
  free_edge_list(&el);
  return 0;
}
