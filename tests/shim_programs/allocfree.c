/* Three allocations the shim logs (malloc, calloc, realloc) and their frees: a small real
 * shim log for the hostile-input and fuzz tests. */
#include <stdlib.h>
#include <string.h>
int main(void) {
    char *a = malloc(300000), *b = calloc(1, 200000);
    memset(a, 1, 300000);
    char *c = realloc(a, 600000);
    free(b);
    free(c);
    return 0;
}
