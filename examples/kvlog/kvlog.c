/* kvlog: an in-memory key-value store with an append-only write log.
 *
 * Every put appends a record (key, length, value) to the log, made of fixed-size segments
 * allocated as it grows; an open-addressing hash index maps each key to its newest
 * record. Gets hash, probe the index (random access into a large table) and read the value
 * from the log (random access into old segments); puts stream at the log's tail. The mix
 * gives a placement problem with a hot index, a cold log and a hot tail.
 *
 *   kvlog [-k KEYS] [-o OPS] [-v VALUE_BYTES] [-r READ_PERCENT] [-z SKEW] [-s SEED]
 *
 * Prints one `key=value` line: keys, ops, log size, a checksum of the values read.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define SEGMENT_BYTES (4u << 20)

typedef struct {
    uint64_t key;  /* 0: empty slot */
    uint32_t seg;  /* segment of the newest record */
    uint32_t off;  /* offset of the record in it */
} Slot;

typedef struct {
    unsigned char **segs;
    size_t nsegs, cap;
    size_t tail; /* bytes used in the last segment */
    size_t bytes;
} Log;

static uint64_t rng_state;
static uint64_t next_rand(void) { /* splitmix64 */
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
static uint64_t mix(uint64_t k) {
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdull;
    k ^= k >> 33;
    return k;
}

static void die(const char *msg) {
    fprintf(stderr, "kvlog: error: %s\n", msg);
    exit(2);
}

static unsigned char *log_append(Log *log, size_t len, uint32_t *seg, uint32_t *off) {
    if (log->nsegs == 0 || log->tail + len > SEGMENT_BYTES) {
        if (log->nsegs == log->cap) {
            log->cap = log->cap ? 2 * log->cap : 64;
            log->segs = realloc(log->segs, log->cap * sizeof *log->segs);
            if (!log->segs) die("out of memory");
        }
        log->segs[log->nsegs] = malloc(SEGMENT_BYTES);
        if (!log->segs[log->nsegs]) die("out of memory");
        log->nsegs++;
        log->tail = 0;
    }
    *seg = (uint32_t)(log->nsegs - 1);
    *off = (uint32_t)log->tail;
    unsigned char *p = log->segs[log->nsegs - 1] + log->tail;
    log->tail += len;
    log->bytes += len;
    return p;
}

static Slot *find(Slot *index, size_t mask, uint64_t key) {
    size_t i = mix(key) & mask;
    while (index[i].key != 0 && index[i].key != key) i = (i + 1) & mask;
    return &index[i];
}

static void put(Slot *index, size_t mask, Log *log, uint64_t key, unsigned vlen) {
    uint32_t seg, off;
    unsigned char *rec = log_append(log, 12 + vlen, &seg, &off);
    memcpy(rec, &key, 8);
    memcpy(rec + 8, &vlen, 4);
    uint64_t x = key * 0x2545f4914f6cdd1dull + log->bytes;
    for (unsigned i = 0; i < vlen; i++) rec[12 + i] = (unsigned char)(x >> (8 * (i & 7)));
    Slot *s = find(index, mask, key);
    s->key = key;
    s->seg = seg;
    s->off = off;
}

int main(int argc, char **argv) {
    long keys = 1000000, ops = 4000000, vbytes = 64, readpct = 70, seed = 1;
    double skew = 0.8; /* fraction of ops that go to the hottest 20% of keys */
    int c;
    while ((c = getopt(argc, argv, "k:o:v:r:z:s:h")) != -1) {
        switch (c) {
        case 'k': keys = atol(optarg); break;
        case 'o': ops = atol(optarg); break;
        case 'v': vbytes = atol(optarg); break;
        case 'r': readpct = atol(optarg); break;
        case 'z': skew = atof(optarg); break;
        case 's': seed = atol(optarg); break;
        case 'h':
            puts("kvlog [-k KEYS] [-o OPS] [-v VALUE_BYTES] [-r READ_PERCENT] [-z SKEW] [-s SEED]");
            return 0;
        default: die("unknown flag (-h for help)");
        }
    }
    if (keys < 1 || ops < 0 || vbytes < 1 || vbytes > 65536 || readpct < 0 || readpct > 100 ||
        skew < 0 || skew > 1)
        die("bad argument (-h for help)");
    rng_state = (uint64_t)seed;
    size_t cap = 1;
    while (cap < (size_t)keys * 2) cap <<= 1;
    Slot *index = calloc(cap, sizeof *index);
    if (!index) die("out of memory");
    Log log = {0};
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (long k = 1; k <= keys; k++) put(index, cap - 1, &log, (uint64_t)k, (unsigned)vbytes);
    uint64_t sum = 0;
    long hits = 0, hot = keys / 5 > 0 ? keys / 5 : 1;
    for (long i = 0; i < ops; i++) {
        uint64_t r = next_rand();
        int hotpick = (double)(r >> 11) / 9007199254740992.0 < skew;
        uint64_t key = 1 + (next_rand() % (uint64_t)(hotpick ? hot : keys));
        if ((long)(r % 100) < readpct) {
            Slot *s = find(index, cap - 1, key);
            if (s->key == key) {
                const unsigned char *rec = log.segs[s->seg] + s->off;
                unsigned vlen;
                memcpy(&vlen, rec + 8, 4);
                for (unsigned j = 0; j < vlen; j += 8) sum += rec[12 + j];
                hits++;
            }
        } else {
            put(index, cap - 1, &log, key, (unsigned)vbytes);
        }
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    printf("kvlog: keys=%ld ops=%ld hits=%ld log_mib=%.1f segments=%zu index_mib=%.1f "
           "checksum=%llu time_s=%.2f\n",
           keys, ops, hits, (double)log.bytes / 1048576.0, log.nsegs,
           (double)(cap * sizeof *index) / 1048576.0, (unsigned long long)sum, secs);
    for (size_t i = 0; i < log.nsegs; i++) free(log.segs[i]);
    free(log.segs);
    free(index);
    return 0;
}
