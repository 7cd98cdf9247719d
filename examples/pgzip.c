/*
 * pgzip.c: a parallel gzip compressor built on parmap_map().
 *
 * The input is cut into blocks (128 KiB by default) that are deflated in
 * parallel, then written in input order as ONE gzip member, which any
 * gzip-compatible tool decompresses (`gzip -dc`, `gzip -t`, zcat, zlib's
 * gzread). This is pigz's technique:
 *
 *   - every block is compressed by its own raw deflate stream (no zlib or
 *     gzip wrapper). A block that is not the last ends with Z_SYNC_FLUSH,
 *     which closes its deflate data on a byte boundary with an empty
 *     non-final stored block, so the next block's data may simply follow
 *     it; the last block ends with Z_FINISH, which sets the final-block bit.
 *     The concatenation is one valid deflate stream.
 *   - to keep the ratio close to serial gzip's, each block's stream is
 *     primed with the last 32 KiB of the block before it as a preset
 *     dictionary (deflateSetDictionary), so matches may reach back across
 *     the cut. The input is in memory, so blocks still compress in any
 *     order. -i turns this off and makes blocks fully independent.
 *   - the gzip trailer needs the CRC-32 of the whole input: every block
 *     computes its own CRC, and the main thread chains them in order with
 *     crc32_combine(), which needs only the lengths.
 *
 * Memory stays bounded however large the input: the main thread reads a
 * batch of blocks, runs one parmap_map() over the batch, writes the
 * results, and reads the next batch. Each thread taking part in a map
 * borrows a deflate state from a small free list, so at most one state per
 * thread is ever allocated.
 *
 * Usage: pgzip [-i] [-p threads] [-b block_size] [-l level] [-o output] [file]
 *
 * Reads `file` (or standard input when it is absent or "-") and writes the
 * gzip stream to `output` (or standard output, which must not be a
 * terminal). Check a result with `gzip -t out.gz` or `gzip -dc out.gz`.
 *
 * Build against an installed parmap:
 *     cc -std=c11 -O2 pgzip.c $(pkg-config --cflags --libs parmap zlib)
 */
#define _POSIX_C_SOURCE 200809L

#include <parmap.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

/* Deflate's window: the most a match can reach back, so the most of the
 * previous block worth giving a block as its dictionary. */
#define DICT_SIZE 32768u

/* ------------------------------------------------------------------------ */
/* A free list of deflate states, one per thread at most                    */
/* ------------------------------------------------------------------------ */

/* A callback runs on whichever thread parmap picks, so states are not tied
 * to threads: a callback takes any idle state and gives it back. No more
 * callbacks run at once than the pool has threads, so no more states are
 * ever created. The lock is held only to push or pop a pointer. */
typedef struct zstate {
    z_stream strm;
    struct zstate *next;
} zstate;

typedef struct zpool {
    pthread_mutex_t lock;
    zstate *idle; /* protected by lock */
    int level;
} zpool;

static zstate *zpool_get(zpool *zp)
{
    pthread_mutex_lock(&zp->lock);
    zstate *z = zp->idle;
    if (z)
        zp->idle = z->next;
    pthread_mutex_unlock(&zp->lock);

    if (z) {
        if (deflateReset(&z->strm) != Z_OK)
            abort(); /* only fails on a corrupt state: a bug here */
        return z;
    }
    z = calloc(1, sizeof *z);
    if (!z)
        return NULL;
    /* windowBits -15: a raw deflate stream, with no zlib header or trailer,
     * since the gzip header and trailer are written by the main thread. */
    if (deflateInit2(&z->strm, zp->level, Z_DEFLATED, -15, 8,
                     Z_DEFAULT_STRATEGY) != Z_OK) {
        free(z);
        return NULL;
    }
    return z;
}

static void zpool_put(zpool *zp, zstate *z)
{
    pthread_mutex_lock(&zp->lock);
    z->next = zp->idle;
    zp->idle = z;
    pthread_mutex_unlock(&zp->lock);
}

static void zpool_free(zpool *zp)
{
    zstate *z = zp->idle;
    while (z) {
        zstate *next = z->next;
        deflateEnd(&z->strm);
        free(z);
        z = next;
    }
    zp->idle = NULL;
}

/* ------------------------------------------------------------------------ */
/* Compressing one block: the parmap_fn                                     */
/* ------------------------------------------------------------------------ */

/* One block of a batch: its input, and the compressed output it produces.
 * The output buffer belongs to the slot and is reused from batch to batch,
 * growing when a block needs more. */
typedef struct block_in {
    const unsigned char *data; /* the block's bytes, inside the batch buffer */
    size_t len;
    const unsigned char *dict; /* up to DICT_SIZE bytes before it, or NULL */
    size_t dict_len;
    int last; /* 1 for the final block of the whole input: Z_FINISH */
} block_in;

typedef struct block_out {
    unsigned char *buf; /* compressed bytes */
    size_t cap;         /* allocated size of buf */
    size_t len;         /* bytes of buf in use */
    uLong crc;          /* CRC-32 of the block's input */
} block_out;

/* Compresses one block. Runs on the calling thread or a pool worker, many
 * at once, each on its own slot: it reads only its input (and the shared,
 * read-only batch buffer) and writes only its own block_out. */
static int compress_block(void *ctx, size_t index, const void *in, void *out)
{
    zpool *zp = ctx;
    const block_in *bi = in;
    block_out *bo = out;
    (void)index;

    bo->crc = crc32(crc32(0L, Z_NULL, 0), bi->data, (uInt)bi->len);

    zstate *z = zpool_get(zp);
    if (!z)
        return -ENOMEM;
    z_stream *s = &z->strm;
    int rc = 0;

    if (bi->dict_len > 0 &&
        deflateSetDictionary(s, bi->dict, (uInt)bi->dict_len) != Z_OK) {
        rc = -EINVAL;
        goto done;
    }

    /* deflateBound() covers Z_FINISH; a sync flush adds at most an empty
     * stored block (5 bytes) plus the bits that close the last code. */
    size_t need = deflateBound(s, (uLong)bi->len) + 16;
    if (bo->cap < need) {
        unsigned char *p = realloc(bo->buf, need);
        if (!p) {
            rc = -ENOMEM;
            goto done;
        }
        bo->buf = p;
        bo->cap = need;
    }

    s->next_in = (Bytef *)bi->data; /* zlib's API is not const-correct */
    s->avail_in = (uInt)bi->len;
    s->next_out = bo->buf;
    s->avail_out = (uInt)bo->cap;
    int flush = bi->last ? Z_FINISH : Z_SYNC_FLUSH;
    int zrc = deflate(s, flush);
    /* With room for the bound, one call consumes everything: Z_STREAM_END
     * after Z_FINISH, Z_OK with all input taken and room left after a sync
     * flush. Anything else means the bound was wrong: fail the block. */
    if (bi->last ? zrc != Z_STREAM_END
                 : (zrc != Z_OK || s->avail_in != 0 || s->avail_out == 0)) {
        rc = -EIO;
        goto done;
    }
    bo->len = bo->cap - s->avail_out;

done:
    zpool_put(zp, z);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Input, output and the gzip wrapper                                       */
/* ------------------------------------------------------------------------ */

/* Reads up to len bytes, retrying short reads, so that only the end of the
 * input gives fewer. Returns the count, or -1 with errno set. */
static ssize_t read_full(int fd, unsigned char *buf, size_t len)
{
    size_t got = 0;
    while (got < len) {
        ssize_t r = read(fd, buf + got, len - got);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (r == 0)
            break;
        got += (size_t)r;
    }
    return (ssize_t)got;
}

static int write_all(FILE *f, const void *buf, size_t len)
{
    return fwrite(buf, 1, len, f) == len ? 0 : -1;
}

/* The 10-byte gzip header (RFC 1952): no file name and a zero time stamp,
 * like `gzip -n`, so the output depends only on the input and the level. */
static int write_header(FILE *f, int level)
{
    /* ID1 ID2, CM = 8 (deflate), FLG = 0, MTIME = 0, XFL, OS = 3 (Unix). */
    unsigned char h[10] = {0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3};
    h[8] = level >= 9 ? 2 : level == 1 ? 4 : 0; /* slowest / fastest */
    return write_all(f, h, sizeof h);
}

/* The 8-byte trailer: CRC-32 and input length modulo 2^32, little-endian. */
static int write_trailer(FILE *f, uLong crc, uint64_t total)
{
    unsigned char t[8];
    uint32_t isize = (uint32_t)total;
    for (int i = 0; i < 4; i++) {
        t[i] = (unsigned char)(crc >> (8 * i));
        t[4 + i] = (unsigned char)(isize >> (8 * i));
    }
    return write_all(f, t, sizeof t);
}

/* Parses a size such as 131072, 128k or 1M (powers of 1024). */
static int parse_size(const char *s, size_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || s[0] == '-')
        return -1;
    unsigned long long mul = 1;
    if (*end == 'k' || *end == 'K')
        mul = 1024, end++;
    else if (*end == 'm' || *end == 'M')
        mul = 1024 * 1024, end++;
    if (*end != '\0' || v > SIZE_MAX / mul)
        return -1;
    *out = (size_t)(v * mul);
    return 0;
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: pgzip [-i] [-p threads] [-b block_size] [-l level] "
            "[-o output] [file]\n"
            "Compresses file (or standard input) into one gzip stream, "
            "deflating blocks in parallel.\n"
            "  -p N   threads, counting the main one (default: one per CPU)\n"
            "  -b N   block size in bytes, k/M suffixes allowed "
            "(default 128k, at least 32k)\n"
            "  -l N   compression level 0-9 (default 6)\n"
            "  -o F   output file (default: standard output)\n"
            "  -i     independent blocks: no dictionary from the previous "
            "block\n");
}

/* ------------------------------------------------------------------------ */
/* main: read a batch, compress it with parmap_map(), write it, repeat      */
/* ------------------------------------------------------------------------ */

int main(int argc, char **argv)
{
    size_t nthreads = 0, block_size = 128 * 1024;
    int level = Z_DEFAULT_COMPRESSION, independent = 0;
    const char *out_path = NULL;
    int opt;

    while ((opt = getopt(argc, argv, "ip:b:l:o:h")) != -1) {
        switch (opt) {
        case 'i':
            independent = 1;
            break;
        case 'p':
            if (parse_size(optarg, &nthreads) != 0) {
                fprintf(stderr, "pgzip: bad thread count '%s'\n", optarg);
                return 2;
            }
            break;
        case 'b':
            /* The lower bound keeps per-block overhead (a flush marker and
             * a fresh deflate state) small; the upper bound keeps lengths
             * within zlib's uInt. */
            if (parse_size(optarg, &block_size) != 0 ||
                block_size < DICT_SIZE || block_size > (size_t)1 << 30) {
                fprintf(stderr, "pgzip: bad block size '%s' (32k to 1G)\n",
                        optarg);
                return 2;
            }
            break;
        case 'l':
            if (optarg[0] < '0' || optarg[0] > '9' || optarg[1] != '\0') {
                fprintf(stderr, "pgzip: bad level '%s' (0 to 9)\n", optarg);
                return 2;
            }
            level = optarg[0] - '0';
            break;
        case 'o':
            out_path = optarg;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (argc - optind > 1) {
        usage(stderr);
        return 2;
    }
    const char *in_path = optind < argc ? argv[optind] : "-";

    int in_fd = STDIN_FILENO;
    if (strcmp(in_path, "-") != 0) {
        in_fd = open(in_path, O_RDONLY);
        if (in_fd < 0) {
            fprintf(stderr, "pgzip: %s: %s\n", in_path, strerror(errno));
            return 1;
        }
    }
    FILE *out = stdout;
    if (out_path) {
        out = fopen(out_path, "wb");
        if (!out) {
            fprintf(stderr, "pgzip: %s: %s\n", out_path, strerror(errno));
            return 1;
        }
    } else if (isatty(STDOUT_FILENO)) {
        fprintf(stderr, "pgzip: compressed data not written to a terminal; "
                        "use -o or redirect standard output\n");
        return 1;
    }

    parmap_pool *pool;
    int rc = parmap_pool_create(&pool, nthreads, NULL);
    if (rc != 0) {
        fprintf(stderr, "pgzip: cannot create the pool: %s\n",
                parmap_strerror(rc));
        return 1;
    }

    /* Each batch is one parmap_map(), and each map ends with a join: the
     * batch must be large enough that the join and the worker wake-ups at
     * the start of the next map are rare next to the work itself (on a
     * loaded machine a woken worker may also wait for a CPU). 16 blocks
     * per thread (2 MiB each with 128 KiB blocks) keeps that overhead small
     * while memory stays at a few MiB per thread. */
    size_t nblocks = 16 * parmap_pool_size(pool);
    size_t batch_bytes = nblocks * block_size;

    /* The batch buffer keeps DICT_SIZE bytes in front of the data: the tail
     * of the previous batch, which the first block uses as its dictionary. */
    unsigned char *buf = malloc(DICT_SIZE + batch_bytes);
    block_in *bin = calloc(nblocks, sizeof *bin);
    block_out *bout = calloc(nblocks, sizeof *bout);
    zpool zp = {.idle = NULL, .level = level};
    int status_code = 1;
    int lock_ok = pthread_mutex_init(&zp.lock, NULL) == 0;
    if (!buf || !bin || !bout || !lock_ok) {
        fprintf(stderr, "pgzip: out of memory\n");
        goto out_free;
    }

    if (write_header(out, level) != 0)
        goto write_error;

    uLong crc = crc32(0L, Z_NULL, 0);
    uint64_t total = 0;
    size_t dict_len = 0; /* bytes of dictionary in front of this batch */
    unsigned char *data = buf + DICT_SIZE;
    /* To mark the final block, the reader must know that the input ends
     * after it: a full batch is followed by a one-byte look-ahead read, and
     * that byte, if any, starts the next batch. */
    size_t carried = 0;

    for (;;) {
        ssize_t got = read_full(in_fd, data + carried, batch_bytes - carried);
        if (got < 0) {
            fprintf(stderr, "pgzip: %s: %s\n", in_path, strerror(errno));
            goto out_free;
        }
        size_t len = carried + (size_t)got;
        unsigned char next_byte;
        int at_end = 1;
        if (len == batch_bytes) {
            ssize_t r = read_full(in_fd, &next_byte, 1);
            if (r < 0) {
                fprintf(stderr, "pgzip: %s: %s\n", in_path, strerror(errno));
                goto out_free;
            }
            at_end = r == 0;
        }

        /* Cut the batch into blocks. An empty input still gets one empty
         * final block, so the deflate stream is properly terminated. */
        size_t n = len == 0 ? 1 : (len + block_size - 1) / block_size;
        for (size_t i = 0; i < n; i++) {
            size_t off = i * block_size;
            bin[i].data = data + off;
            bin[i].len = len - off < block_size ? len - off : block_size;
            /* Block i's dictionary is the 32 KiB just before it: from this
             * batch, or for block 0 from the previous batch's tail. */
            size_t avail =
                off > 0 ? (off < DICT_SIZE ? off : DICT_SIZE) : dict_len;
            bin[i].dict_len = independent ? 0 : avail;
            bin[i].dict = data + off - bin[i].dict_len;
            bin[i].last = at_end && i == n - 1;
        }

        parmap_summary sum;
        parmap_opts opts = {.summary = &sum};
        rc = parmap_map(pool, n, bin, sizeof *bin, bout, sizeof *bout,
                        compress_block, &zp, &opts);
        if (rc == PARMAP_EFAILED) {
            /* The block's own code: -ENOMEM, or -EIO for a zlib failure. */
            fprintf(stderr, "pgzip: block %zu of the batch: %s\n",
                    sum.first_failed, strerror(-sum.first_error));
            goto out_free;
        } else if (rc != 0) {
            fprintf(stderr, "pgzip: %s\n", parmap_strerror(rc));
            goto out_free;
        }

        /* Results are in input order by construction: slot i is block i. */
        for (size_t i = 0; i < n; i++) {
            if (write_all(out, bout[i].buf, bout[i].len) != 0)
                goto write_error;
            crc = crc32_combine(crc, bout[i].crc, (z_off_t)bin[i].len);
            total += bin[i].len;
        }
        if (at_end)
            break;

        /* Move the last 32 KiB in front of the data for the next batch's
         * first block, and put the look-ahead byte at the start. */
        dict_len = len < DICT_SIZE ? len : DICT_SIZE;
        memmove(data - dict_len, data + len - dict_len, dict_len);
        data[0] = next_byte;
        carried = 1;
    }

    if (write_trailer(out, crc, total) != 0 || fflush(out) != 0)
        goto write_error;
    status_code = 0;
    goto out_free;

write_error:
    fprintf(stderr, "pgzip: %s: %s\n", out_path ? out_path : "standard output",
            strerror(errno));
out_free:
    if (out != stdout && fclose(out) != 0 && status_code == 0) {
        fprintf(stderr, "pgzip: %s: %s\n", out_path, strerror(errno));
        status_code = 1;
    }
    if (in_fd != STDIN_FILENO)
        close(in_fd);
    parmap_pool_destroy(pool);
    zpool_free(&zp);
    if (lock_ok)
        pthread_mutex_destroy(&zp.lock);
    if (bout)
        for (size_t i = 0; i < nblocks; i++)
            free(bout[i].buf);
    free(bout);
    free(bin);
    free(buf);
    return status_code;
}
