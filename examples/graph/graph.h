/* Shared graph code of the example suite: options, generators, CSR building, helpers.
 *
 * Every large array is allocated by its own NOINLINE function calling malloc/calloc
 * directly, so each has a distinct allocation site (file:line) that the placer shim
 * reports by name. Do not route allocations through a common wrapper.
 */
#ifndef PLACER_EXAMPLES_GRAPH_H
#define PLACER_EXAMPLES_GRAPH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define NOINLINE __attribute__((noinline))
#define MAX_ROOTS 64

typedef int32_t vid_t;    /* vertex id */
typedef int64_t eid_t;    /* edge (arc) offset */
typedef int32_t weight_t; /* edge weight, 1..255 for generated graphs */

typedef struct {
  vid_t u, v;
} edge_t;

typedef struct {
  vid_t v;
  weight_t w;
} wnode_t; /* weighted CSR entry (array of structs, as GAP does) */

/* The input edge list, kept alive for the whole run like a program keeping its input. */
typedef struct {
  edge_t *edges;
  weight_t *weights; /* NULL unless the kernel needs weights */
  int64_t num_edges;
  vid_t num_vertices;
} edge_list_t;

/* Compressed sparse rows. Undirected graphs store both directions and share the in-CSR
 * with the out-CSR; directed graphs get a separate in-CSR only when a kernel pulls. */
typedef struct {
  vid_t n;
  eid_t m; /* number of stored arcs in the out-CSR */
  bool directed;
  eid_t *out_offsets;
  vid_t *out_neighbors;   /* unweighted graphs */
  wnode_t *out_wneighbors; /* weighted graphs */
  eid_t *in_offsets;
  vid_t *in_neighbors;
} graph_t;

typedef struct {
  const char *kernel;
  int scale;          /* -g / -u */
  bool uniform;       /* -u */
  int degree;         /* -k */
  uint64_t seed;      /* -s */
  const char *file;   /* -f */
  bool directed;      /* -d */
  int trials;         /* -n */
  int threads;        /* -t, 0: OpenMP default */
  vid_t roots[MAX_ROOTS]; /* -r (repeatable for bc) */
  int num_roots;
  int iters;          /* -i */
  double tol;         /* -e */
  const char *out;    /* -o */
  bool weighted;      /* set by the kernel */
  bool need_in;       /* set by the kernel */
} options_t;

/* Parse the common flags plus the kernel-specific ones listed in `extra` (e.g. "ie"). */
void parse_options(int argc, char **argv, const char *kernel, const char *extra,
                   const char *extra_help, options_t *opt);
/* Print "KERNEL: error: ..." on stderr and exit 2 (bad input). */
void die(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));

double now_seconds(void);
uint64_t mix64(uint64_t x);
weight_t edge_weight(uint64_t seed, vid_t u, vid_t v);

/* Generate (-g/-u) or read (-f) the edge list. */
edge_list_t load_edge_list(const options_t *opt);
void free_edge_list(edge_list_t *el);
graph_t build_graph(const edge_list_t *el, const options_t *opt);
void free_graph(graph_t *g);

static inline eid_t out_degree(const graph_t *g, vid_t u) {
  return g->out_offsets[u + 1] - g->out_offsets[u];
}

/* The k-th source: -r if given, else a random vertex with out-degree > 0 from the seed. */
vid_t pick_source(const graph_t *g, const options_t *opt, int k);

/* Timing over trials: report the mean and best kernel time. */
typedef struct {
  double total, best;
  int count;
} trial_times_t;
void trial_add(trial_times_t *t, double seconds);

/* Print "KERNEL: key=value ..." common graph fields; the kernel appends its own. */
void print_result_prefix(const options_t *opt, const graph_t *g);
void print_result_suffix(const options_t *opt, double build_s, const trial_times_t *t);

/* -o FILE: open for writing (dies with a clear message) and close checking errors. */
FILE *open_output(const options_t *opt);
void close_output(FILE *f, const options_t *opt);

/* Sort helpers used when building CSRs. */
void sort_vids(vid_t *a, eid_t n);
void sort_wnodes(wnode_t *a, eid_t n);

#endif
