/* Write the generated edge list ('SRC DST WEIGHT' per line) so other tools, and the tests'
 * reference implementations, can use exactly the graph the kernels build from a seed. The
 * checksum (FNV-1a over the edges) shows whether two runs generated the same graph.
 */
#include <inttypes.h>
#include <stdlib.h>

#include "graph.h"

int main(int argc, char **argv) {
  options_t opt = {.weighted = true};
  parse_options(argc, argv, "gen", NULL, NULL, &opt);
  if (!opt.out) die("gen needs -o FILE to write the edge list to");
  double t0 = now_seconds();
  edge_list_t el = load_edge_list(&opt);
  double gen_s = now_seconds() - t0;
  uint64_t h = 0xcbf29ce484222325ULL;
  FILE *f = open_output(&opt);
  for (int64_t i = 0; i < el.num_edges; i++) {
    uint32_t vals[3] = {(uint32_t)el.edges[i].u, (uint32_t)el.edges[i].v,
                        (uint32_t)el.weights[i]};
    for (int k = 0; k < 3; k++)
      for (int b = 0; b < 4; b++) h = (h ^ ((vals[k] >> (8 * b)) & 0xff)) * 0x100000001b3ULL;
    fprintf(f, "%d %d %d\n", el.edges[i].u, el.edges[i].v, el.weights[i]);
  }
  close_output(f, &opt);
  printf("gen: vertices=%d edges=%" PRId64 " checksum=%016" PRIx64 " gen_s=%.6f\n",
         el.num_vertices, el.num_edges, h, gen_s);
  free_edge_list(&el);
  return 0;
}
