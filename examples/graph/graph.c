/* Graph generation (Kronecker/RMAT, uniform), edge-list reading and CSR building.
 *
 * Generators are counter-based (each edge draws from its own stream derived from the
 * seed and the edge index), so a graph depends only on (-g|-u, -k, -s), never on the
 * number of threads. Neighbor lists are sorted and deduplicated, self loops dropped,
 * so every kernel's answer is deterministic.
 */
#include "graph.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <omp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define GOLDEN 0x9E3779B97F4A7C15ULL

static const char *g_kernel = "graph";

void die(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "%s: error: ", g_kernel);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  exit(2);
}

double now_seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* splitmix64 finalizer: a good 64-bit mixing function. */
uint64_t mix64(uint64_t x) {
  x += GOLDEN;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
  return x ^ (x >> 31);
}

/* Weight of the undirected edge {u, v}: the same for both directions and duplicates. */
weight_t edge_weight(uint64_t seed, vid_t u, vid_t v) {
  uint64_t a = (uint64_t)(u < v ? u : v), b = (uint64_t)(u < v ? v : u);
  return (weight_t)(1 + mix64(mix64(seed ^ 0x5EEDULL) ^ ((a << 32) | b)) % 255);
}

/* ---------------------------------------------------------------- options */

static long long parse_int(const char *flag, const char *s, long long lo, long long hi) {
  char *end = NULL;
  errno = 0;
  long long x = strtoll(s, &end, 10);
  if (errno || end == s || *end != '\0' || x < lo || x > hi)
    die("-%s expects an integer in [%lld, %lld], got '%s'", flag, lo, hi, s);
  return x;
}

static void usage(const char *kernel, const char *extra_help) {
  printf("usage: %s (-g SCALE | -u SCALE | -f FILE) [options]\n"
         "  -g SCALE   Kronecker (RMAT, Graph500 a=0.57 b=0.19 c=0.19) graph, 2^SCALE vertices\n"
         "  -u SCALE   uniform random graph, 2^SCALE vertices\n"
         "  -f FILE    edge list file: one 'SRC DST [WEIGHT]' per line, '#' comments\n"
         "  -k DEGREE  generated edges per vertex (default 16)\n"
         "  -s SEED    generator / source-picking seed (default 1)\n"
         "  -d         directed graph (default: undirected, both directions stored)\n"
         "  -n TRIALS  kernel repetitions (default 1)\n"
         "  -t THREADS OpenMP threads (default: OMP_NUM_THREADS or all cores)\n"
         "  -r ROOT    source vertex (default: random non-isolated vertex from the seed)\n"
         "  -o FILE    write per-vertex results, one 'VERTEX VALUE' per line\n"
         "%s",
         kernel, extra_help ? extra_help : "");
}

void parse_options(int argc, char **argv, const char *kernel, const char *extra,
                   const char *extra_help, options_t *opt) {
  g_kernel = kernel;
  opt->kernel = kernel;
  opt->scale = -1;
  opt->uniform = false;
  opt->degree = 16;
  opt->seed = 1;
  opt->file = NULL;
  opt->directed = false;
  opt->trials = 1;
  opt->threads = 0;
  opt->num_roots = 0;
  opt->out = NULL;
  char spec[64];
  snprintf(spec, sizeof spec, ":g:u:k:s:f:dn:t:r:o:h%s", extra ? extra : "");
  int sources = 0, c;
  opterr = 0;
  while ((c = getopt(argc, argv, spec)) != -1) {
    switch (c) {
    case 'g':
    case 'u':
      opt->scale = (int)parse_int(c == 'g' ? "g" : "u", optarg, 1, 30);
      opt->uniform = c == 'u';
      sources++;
      break;
    case 'k': opt->degree = (int)parse_int("k", optarg, 1, 1024); break;
    case 's': opt->seed = (uint64_t)parse_int("s", optarg, 0, LLONG_MAX); break;
    case 'f': opt->file = optarg; sources++; break;
    case 'd': opt->directed = true; break;
    case 'n': opt->trials = (int)parse_int("n", optarg, 1, 1000000); break;
    case 't': opt->threads = (int)parse_int("t", optarg, 1, 4096); break;
    case 'r':
      if (opt->num_roots == MAX_ROOTS) die("at most %d roots (-r)", MAX_ROOTS);
      opt->roots[opt->num_roots++] = (vid_t)parse_int("r", optarg, 0, INT32_MAX - 1);
      break;
    case 'o': opt->out = optarg; break;
    case 'i': opt->iters = (int)parse_int("i", optarg, 1, 1000000); break;
    case 'e': {
      char *end = NULL;
      errno = 0;
      opt->tol = strtod(optarg, &end);
      if (errno || end == optarg || *end || !(opt->tol >= 0) || !isfinite(opt->tol))
        die("-e expects a non-negative number, got '%s'", optarg);
      break;
    }
    case 'h': usage(kernel, extra_help); exit(0);
    case ':': die("option -%c needs a value (see -h)", optopt);
    default: die("unknown option -%c (see -h)", optopt);
    }
  }
  if (optind < argc) die("unexpected argument '%s' (see -h)", argv[optind]);
  if (sources != 1) die("give exactly one graph source: -g SCALE, -u SCALE or -f FILE");
  if (opt->scale > 0 && ((int64_t)opt->degree << opt->scale) > (INT64_C(1) << 34))
    die("2^%d vertices x degree %d is too many edges", opt->scale, opt->degree);
  if (opt->threads > 0) omp_set_num_threads(opt->threads);
}

/* ------------------------------------------------------------ allocations */

NOINLINE static edge_t *alloc_edge_list(int64_t count) {
  edge_t *p = malloc((size_t)count * sizeof *p);
  if (!p) die("cannot allocate the edge list (%" PRId64 " edges)", count);
  return p;
}

NOINLINE static weight_t *alloc_edge_weights(int64_t count) {
  weight_t *p = malloc((size_t)count * sizeof *p);
  if (!p) die("cannot allocate edge weights (%" PRId64 " edges)", count);
  return p;
}

NOINLINE static edge_t *grow_edge_list(edge_t *old, int64_t count) {
  edge_t *p = realloc(old, (size_t)count * sizeof *p);
  if (!p) die("cannot grow the edge list to %" PRId64 " edges", count);
  return p;
}

NOINLINE static weight_t *grow_edge_weights(weight_t *old, int64_t count) {
  weight_t *p = realloc(old, (size_t)count * sizeof *p);
  if (!p) die("cannot grow edge weights to %" PRId64 " edges", count);
  return p;
}

NOINLINE static vid_t *alloc_vertex_permutation(vid_t n) {
  vid_t *p = malloc((size_t)n * sizeof *p);
  if (!p) die("cannot allocate the vertex permutation (%d vertices)", n);
  return p;
}

NOINLINE static eid_t *build_csr_degrees(vid_t n) {
  eid_t *p = calloc((size_t)n, sizeof *p);
  if (!p) die("cannot allocate CSR degrees (%d vertices)", n);
  return p;
}

NOINLINE static eid_t *build_csr_offsets(vid_t n) {
  eid_t *p = malloc(((size_t)n + 1) * sizeof *p);
  if (!p) die("cannot allocate CSR offsets (%d vertices)", n);
  return p;
}

NOINLINE static vid_t *build_csr_neighbors(eid_t m) {
  vid_t *p = malloc((size_t)m * sizeof *p);
  if (!p) die("cannot allocate CSR neighbors (%" PRId64 " arcs)", m);
  return p;
}

NOINLINE static wnode_t *build_csr_weighted_neighbors(eid_t m) {
  wnode_t *p = malloc((size_t)m * sizeof *p);
  if (!p) die("cannot allocate weighted CSR neighbors (%" PRId64 " arcs)", m);
  return p;
}

NOINLINE static void *shrink_csr_neighbors(void *old, size_t bytes) {
  void *p = realloc(old, bytes ? bytes : 1);
  return p ? p : old; /* shrinking never needs to move; keep the old block if it fails */
}

NOINLINE static eid_t *build_in_csr_degrees(vid_t n) {
  eid_t *p = calloc((size_t)n, sizeof *p);
  if (!p) die("cannot allocate in-CSR degrees (%d vertices)", n);
  return p;
}

NOINLINE static eid_t *build_in_csr_offsets(vid_t n) {
  eid_t *p = malloc(((size_t)n + 1) * sizeof *p);
  if (!p) die("cannot allocate in-CSR offsets (%d vertices)", n);
  return p;
}

NOINLINE static vid_t *build_in_csr_neighbors(eid_t m) {
  vid_t *p = malloc((size_t)m * sizeof *p);
  if (!p) die("cannot allocate in-CSR neighbors (%" PRId64 " arcs)", m);
  return p;
}

/* ------------------------------------------------------------ generators */

/* Random permutation of vertex ids (Graph500 and GAP relabel so that the RMAT
 * structure does not leave the high-degree vertices at low ids). */
static vid_t *make_permutation(vid_t n, uint64_t seed) {
  vid_t *perm = alloc_vertex_permutation(n);
  for (vid_t i = 0; i < n; i++) perm[i] = i;
  uint64_t st = mix64(seed ^ 0x7E57ULL);
  for (vid_t i = n - 1; i > 0; i--) {
    st += GOLDEN;
    uint64_t r = mix64(st);
    vid_t j = (vid_t)(((unsigned __int128)r * (uint64_t)(i + 1)) >> 64);
    vid_t t = perm[i];
    perm[i] = perm[j];
    perm[j] = t;
  }
  return perm;
}

static void generate(edge_list_t *el, const options_t *opt) {
  const int scale = opt->scale;
  const vid_t n = (vid_t)1 << scale;
  const int64_t m = (int64_t)n * opt->degree;
  const uint64_t key = mix64(opt->seed * GOLDEN + (opt->uniform ? 2 : 1));
  edge_t *e = alloc_edge_list(m);
  if (opt->uniform) {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < m; i++) {
      uint64_t r = mix64(key ^ mix64((uint64_t)i));
      e[i].u = (vid_t)(r & (uint64_t)(n - 1));
      e[i].v = (vid_t)((r >> 32) & (uint64_t)(n - 1));
    }
  } else {
    const uint32_t A = (uint32_t)(0.57 * 4294967296.0);
    const uint32_t AB = (uint32_t)(0.76 * 4294967296.0);
    const uint32_t ABC = (uint32_t)(0.95 * 4294967296.0);
    vid_t *perm = make_permutation(n, opt->seed);
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < m; i++) {
      uint64_t st = mix64(key ^ mix64((uint64_t)i)), r = 0;
      uint32_t u = 0, v = 0;
      for (int d = 0; d < scale; d++) {
        uint32_t x;
        if ((d & 1) == 0) {
          st += GOLDEN;
          r = mix64(st);
          x = (uint32_t)r;
        } else {
          x = (uint32_t)(r >> 32);
        }
        uint32_t bu = x >= AB, bv = (x >= A && x < AB) || x >= ABC;
        u = (u << 1) | bu;
        v = (v << 1) | bv;
      }
      e[i].u = perm[u];
      e[i].v = perm[v];
    }
    free(perm);
  }
  el->edges = e;
  el->num_edges = m;
  el->num_vertices = n;
  el->weights = NULL;
  if (opt->weighted) {
    weight_t *w = alloc_edge_weights(m);
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < m; i++) w[i] = edge_weight(opt->seed, e[i].u, e[i].v);
    el->weights = w;
  }
}

static void read_file(edge_list_t *el, const options_t *opt) {
  FILE *f = fopen(opt->file, "r");
  if (!f) die("cannot open %s: %s", opt->file, strerror(errno));
  int64_t cap = 1 << 16, count = 0, lineno = 0;
  edge_t *e = alloc_edge_list(cap);
  weight_t *w = opt->weighted ? alloc_edge_weights(cap) : NULL;
  vid_t maxid = -1;
  char *line = NULL;
  size_t len = 0;
  while (getline(&line, &len, f) != -1) {
    lineno++;
    char *p = line;
    while (*p == ' ' || *p == '\t') p++;
    if (*p == '#' || *p == '%' || *p == '\n' || *p == '\r' || *p == '\0') continue;
    long long vals[3];
    int nv = 0;
    while (nv < 3) {
      char *end;
      errno = 0;
      long long x = strtoll(p, &end, 10);
      if (end == p) break;
      if (errno) nv = -1;
      if (nv < 0) break;
      vals[nv++] = x;
      p = end;
    }
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') p++;
    if (nv < 2 || *p != '\0')
      die("%s:%" PRId64 ": expected 'SRC DST [WEIGHT]' with integers", opt->file, lineno);
    if (vals[0] < 0 || vals[1] < 0 || vals[0] >= INT32_MAX || vals[1] >= INT32_MAX)
      die("%s:%" PRId64 ": vertex ids must be in [0, %d)", opt->file, lineno, INT32_MAX);
    if (nv == 3 && (vals[2] < 1 || vals[2] > 1000000))
      die("%s:%" PRId64 ": weight must be in [1, 1000000]", opt->file, lineno);
    if (count == cap) {
      cap *= 2;
      e = grow_edge_list(e, cap);
      if (w) w = grow_edge_weights(w, cap);
    }
    e[count].u = (vid_t)vals[0];
    e[count].v = (vid_t)vals[1];
    if (w) w[count] = nv == 3 ? (weight_t)vals[2] : edge_weight(opt->seed, e[count].u, e[count].v);
    if (e[count].u > maxid) maxid = e[count].u;
    if (e[count].v > maxid) maxid = e[count].v;
    count++;
  }
  int read_error = ferror(f);
  free(line);
  fclose(f);
  if (read_error) die("cannot read %s", opt->file);
  if (count == 0) die("%s has no edges", opt->file);
  el->edges = e;
  el->weights = w;
  el->num_edges = count;
  el->num_vertices = maxid + 1;
}

edge_list_t load_edge_list(const options_t *opt) {
  edge_list_t el;
  if (opt->file)
    read_file(&el, opt);
  else
    generate(&el, opt);
  return el;
}

void free_edge_list(edge_list_t *el) {
  free(el->edges);
  free(el->weights);
  el->edges = NULL;
  el->weights = NULL;
}

/* ------------------------------------------------------------------ sort */

#define VID_LESS(a, b) ((a) < (b))
#define WNODE_LESS(a, b) ((a).v < (b).v || ((a).v == (b).v && (a).w < (b).w))

/* Quicksort (median-of-three Hoare partition, insertion sort below 24 items),
 * recursing on the smaller side so the stack stays O(log n). */
#define DEFINE_SORT(NAME, T, LESS)                                                      \
  void NAME(T *a, eid_t n) {                                                           \
    while (n > 24) {                                                                   \
      T x = a[0], y = a[n / 2], z = a[n - 1], p;                                       \
      if (LESS(x, y))                                                                  \
        p = LESS(y, z) ? y : (LESS(x, z) ? z : x);                                     \
      else                                                                             \
        p = LESS(x, z) ? x : (LESS(y, z) ? z : y);                                     \
      eid_t i = 0, j = n - 1;                                                          \
      for (;;) {                                                                       \
        while (LESS(a[i], p)) i++;                                                     \
        while (LESS(p, a[j])) j--;                                                     \
        if (i >= j) break;                                                             \
        T t = a[i];                                                                    \
        a[i] = a[j];                                                                   \
        a[j] = t;                                                                      \
        i++;                                                                           \
        j--;                                                                           \
      }                                                                                \
      if (j + 1 < n - j - 1) {                                                         \
        NAME(a, j + 1);                                                                \
        a += j + 1;                                                                    \
        n -= j + 1;                                                                    \
      } else {                                                                         \
        NAME(a + j + 1, n - j - 1);                                                    \
        n = j + 1;                                                                     \
      }                                                                                \
    }                                                                                  \
    for (eid_t i = 1; i < n; i++) {                                                    \
      T x = a[i];                                                                      \
      eid_t j = i;                                                                     \
      while (j > 0 && LESS(x, a[j - 1])) {                                             \
        a[j] = a[j - 1];                                                               \
        j--;                                                                           \
      }                                                                                \
      a[j] = x;                                                                        \
    }                                                                                  \
  }

DEFINE_SORT(sort_vids, vid_t, VID_LESS)
DEFINE_SORT(sort_wnodes, wnode_t, WNODE_LESS)

/* ------------------------------------------------------------------- CSR */

static eid_t prefix_sum(const eid_t *deg, eid_t *off, vid_t n) {
  eid_t total = 0;
  for (vid_t i = 0; i < n; i++) {
    off[i] = total;
    total += deg[i];
  }
  off[n] = total;
  return total;
}

static void build_in_csr(graph_t *g) {
  const vid_t n = g->n;
  eid_t *cursor = build_in_csr_degrees(n);
#pragma omp parallel for schedule(dynamic, 1024)
  for (vid_t u = 0; u < n; u++)
    for (eid_t e = g->out_offsets[u]; e < g->out_offsets[u + 1]; e++)
      __atomic_fetch_add(&cursor[g->out_neighbors[e]], 1, __ATOMIC_RELAXED);
  eid_t *off = build_in_csr_offsets(n);
  eid_t m = prefix_sum(cursor, off, n);
  memcpy(cursor, off, (size_t)n * sizeof *off);
  vid_t *nb = build_in_csr_neighbors(m);
#pragma omp parallel for schedule(dynamic, 1024)
  for (vid_t u = 0; u < n; u++)
    for (eid_t e = g->out_offsets[u]; e < g->out_offsets[u + 1]; e++)
      nb[__atomic_fetch_add(&cursor[g->out_neighbors[e]], 1, __ATOMIC_RELAXED)] = u;
#pragma omp parallel for schedule(dynamic, 256)
  for (vid_t v = 0; v < n; v++) sort_vids(nb + off[v], off[v + 1] - off[v]);
  free(cursor);
  g->in_offsets = off;
  g->in_neighbors = nb;
}

graph_t build_graph(const edge_list_t *el, const options_t *opt) {
  graph_t g = {0};
  const vid_t n = el->num_vertices;
  const int64_t ne = el->num_edges;
  const edge_t *e = el->edges;
  const bool undirected = !opt->directed;
  g.n = n;
  g.directed = opt->directed;
  eid_t *deg = build_csr_degrees(n);
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < ne; i++) {
    if (e[i].u == e[i].v) continue;
    __atomic_fetch_add(&deg[e[i].u], 1, __ATOMIC_RELAXED);
    if (undirected) __atomic_fetch_add(&deg[e[i].v], 1, __ATOMIC_RELAXED);
  }
  eid_t *off = build_csr_offsets(n);
  eid_t m_raw = prefix_sum(deg, off, n);
  memcpy(deg, off, (size_t)n * sizeof *off); /* deg becomes the fill cursor */
  vid_t *nb = NULL;
  wnode_t *wn = NULL;
  if (opt->weighted) {
    wn = build_csr_weighted_neighbors(m_raw);
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < ne; i++) {
      vid_t u = e[i].u, v = e[i].v;
      if (u == v) continue;
      weight_t w = el->weights[i];
      wn[__atomic_fetch_add(&deg[u], 1, __ATOMIC_RELAXED)] = (wnode_t){v, w};
      if (undirected) wn[__atomic_fetch_add(&deg[v], 1, __ATOMIC_RELAXED)] = (wnode_t){u, w};
    }
  } else {
    nb = build_csr_neighbors(m_raw);
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < ne; i++) {
      vid_t u = e[i].u, v = e[i].v;
      if (u == v) continue;
      nb[__atomic_fetch_add(&deg[u], 1, __ATOMIC_RELAXED)] = v;
      if (undirected) nb[__atomic_fetch_add(&deg[v], 1, __ATOMIC_RELAXED)] = u;
    }
  }
  /* Sort each list and drop duplicates (keeping the lightest parallel edge); deg[u]
   * becomes the deduplicated degree. */
#pragma omp parallel for schedule(dynamic, 256)
  for (vid_t u = 0; u < n; u++) {
    eid_t start = off[u], len = off[u + 1] - off[u], k = 0;
    if (wn) {
      sort_wnodes(wn + start, len);
      for (eid_t i = 0; i < len; i++)
        if (k == 0 || wn[start + i].v != wn[start + k - 1].v) wn[start + k++] = wn[start + i];
    } else {
      sort_vids(nb + start, len);
      for (eid_t i = 0; i < len; i++)
        if (k == 0 || nb[start + i] != nb[start + k - 1]) nb[start + k++] = nb[start + i];
    }
    deg[u] = k;
  }
  eid_t pos = 0; /* compact left in place; new offsets never exceed old ones */
  for (vid_t u = 0; u < n; u++) {
    eid_t start = off[u];
    off[u] = pos;
    if (wn)
      memmove(wn + pos, wn + start, (size_t)deg[u] * sizeof *wn);
    else
      memmove(nb + pos, nb + start, (size_t)deg[u] * sizeof *nb);
    pos += deg[u];
  }
  off[n] = pos;
  free(deg);
  if (pos < m_raw) {
    if (wn)
      wn = shrink_csr_neighbors(wn, (size_t)pos * sizeof *wn);
    else
      nb = shrink_csr_neighbors(nb, (size_t)pos * sizeof *nb);
  }
  g.m = pos;
  g.out_offsets = off;
  g.out_neighbors = nb;
  g.out_wneighbors = wn;
  if (opt->need_in) {
    if (opt->weighted) die("internal: in-CSR is only built for unweighted graphs");
    if (g.directed) {
      build_in_csr(&g);
    } else {
      g.in_offsets = g.out_offsets;
      g.in_neighbors = g.out_neighbors;
    }
  }
  return g;
}

void free_graph(graph_t *g) {
  if (g->in_offsets != g->out_offsets) {
    free(g->in_offsets);
    free(g->in_neighbors);
  }
  free(g->out_offsets);
  free(g->out_neighbors);
  free(g->out_wneighbors);
  memset(g, 0, sizeof *g);
}

/* ------------------------------------------------------------- utilities */

vid_t pick_source(const graph_t *g, const options_t *opt, int k) {
  if (opt->num_roots > 0) {
    vid_t r = opt->roots[k % opt->num_roots];
    if (r >= g->n) die("root %d is not a vertex (the graph has %d)", r, g->n);
    return r;
  }
  uint64_t st = mix64(opt->seed ^ 0x50u ^ ((uint64_t)k << 40));
  for (int tries = 0; tries < 1000000; tries++) {
    st += GOLDEN;
    vid_t v = (vid_t)(mix64(st) % (uint64_t)g->n);
    if (out_degree(g, v) > 0) return v;
  }
  die("found no vertex with outgoing edges to start from");
}

void trial_add(trial_times_t *t, double seconds) {
  if (t->count == 0 || seconds < t->best) t->best = seconds;
  t->total += seconds;
  t->count++;
}

void print_result_prefix(const options_t *opt, const graph_t *g) {
  printf("%s: vertices=%d arcs=%" PRId64 " directed=%d", opt->kernel, g->n, g->m,
         g->directed ? 1 : 0);
}

void print_result_suffix(const options_t *opt, double build_s, const trial_times_t *t) {
  printf(" trials=%d threads=%d build_s=%.6f time_s=%.6f best_s=%.6f\n", t->count,
         omp_get_max_threads(), build_s, t->count ? t->total / t->count : 0.0, t->best);
  (void)opt;
  fflush(stdout);
}

FILE *open_output(const options_t *opt) {
  FILE *f = fopen(opt->out, "w");
  if (!f) die("cannot write %s: %s", opt->out, strerror(errno));
  return f;
}

void close_output(FILE *f, const options_t *opt) {
  if (ferror(f) | fclose(f)) die("cannot write %s", opt->out);
}
