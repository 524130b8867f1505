#include <stdlib.h>
#include <string.h>
static double *mk(size_t n){ return malloc(n*sizeof(double)); }
int main(){ double *a=mk(100000); double *b=calloc(50000,8); memset(a,0,800000); for(int i=0;i<50000;i++) b[i]+=a[i]; free(a); return (int)b[7]; }
