/*
 * psha256sum.c: a parallel `sha256sum` built on parmap_map().
 *
 * Each file named on the command line is one item of a parmap_map(): the
 * callbacks read and hash files on the pool's threads, each writing only
 * its own result slot, and the main thread prints the slots in argument
 * order, so the output is exactly what GNU sha256sum prints:
 *
 *     <64 hex digits><space><space><file name>
 *
 * including sha256sum's escaping of names that hold a backslash, a newline
 * or a carriage return (the line then starts with a backslash and those
 * characters are written as \\, \n and \r). A file that cannot be read is
 * reported on standard error as "psha256sum: NAME: reason" at its place in
 * the order, the other files are still hashed, and the exit status is 1.
 *
 * "-" (or no file at all) reads standard input. Standard input is hashed on
 * the main thread before the map, since two items must not read it at once;
 * like sha256sum, a second "-" sees the input already consumed.
 *
 * Hashing uses OpenSSL 3's EVP interface. The SHA-256 implementation is
 * fetched once (EVP_MD_fetch) and shared: a fetched EVP_MD is read-only
 * and safe to use from many threads, each with its own EVP_MD_CTX.
 *
 * Usage: psha256sum [-b|-t] [-p threads] [file...]
 *
 * Build against an installed parmap:
 *     cc -std=c11 -O2 psha256sum.c \
 *         $(pkg-config --cflags --libs parmap libcrypto)
 */
#define _POSIX_C_SOURCE 200809L

#include <parmap.h>

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Read size per read(2): large enough that system call overhead is small
 * next to hashing, small enough to stay in the L2 cache. */
#define READ_SIZE (128 * 1024)

/* One result slot: the hex digest, or the errno value that stopped it. */
typedef struct digest {
    char hex[2 * 32 + 1];
    int err; /* 0, or the errno value of the failed open or read */
} digest;

/* Hashes everything readable from fd into d. Returns 0 or a negated errno
 * value; in both cases d->err says what to report. */
static int hash_fd(const EVP_MD *md, int fd, digest *d)
{
    unsigned char *buf = malloc(READ_SIZE);
    EVP_MD_CTX *mdctx = EVP_MD_CTX_new();
    int err = 0;

    if (!buf || !mdctx || !EVP_DigestInit_ex2(mdctx, md, NULL)) {
        err = ENOMEM;
        goto out;
    }
    for (;;) {
        ssize_t r = read(fd, buf, READ_SIZE);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            err = errno;
            goto out;
        }
        if (r == 0)
            break;
        if (!EVP_DigestUpdate(mdctx, buf, (size_t)r)) {
            err = EIO;
            goto out;
        }
    }

    unsigned char raw[EVP_MAX_MD_SIZE];
    unsigned int raw_len = 0;
    if (!EVP_DigestFinal_ex(mdctx, raw, &raw_len) || raw_len != 32) {
        err = EIO;
        goto out;
    }
    static const char hexdigits[] = "0123456789abcdef";
    for (unsigned i = 0; i < raw_len; i++) {
        d->hex[2 * i] = hexdigits[raw[i] >> 4];
        d->hex[2 * i + 1] = hexdigits[raw[i] & 15];
    }
    d->hex[2 * raw_len] = '\0';

out:
    EVP_MD_CTX_free(mdctx);
    free(buf);
    d->err = err;
    return -err;
}

/* The parmap_fn: hashes the file named by *in into *out. Runs on the
 * calling thread or a pool worker, many at once, each on its own slot.
 * A file that cannot be read is not a failure of the program's logic, but
 * returning the error lets the map's summary count such files. */
static int hash_file(void *ctx, size_t index, const void *in, void *out)
{
    const EVP_MD *md = ctx;
    const char *path = *(const char *const *)in;
    digest *d = out;
    (void)index;

    if (strcmp(path, "-") == 0)
        return -d->err; /* standard input: already hashed by main() */

    int fd = open(path, O_RDONLY);
    if (fd < 0) {
        d->err = errno;
        return -d->err;
    }
    int rc = hash_fd(md, fd, d);
    close(fd);
    return rc;
}

/* Prints one line the way GNU sha256sum (coreutils 9.1) does. */
static void print_line(const digest *d, const char *name, char mode)
{
    int escape = strpbrk(name, "\\\n\r") != NULL;
    if (escape)
        putchar('\\');
    fputs(d->hex, stdout);
    putchar(' ');
    putchar(mode);
    for (const char *p = name; *p; p++) {
        if (escape && *p == '\\')
            fputs("\\\\", stdout);
        else if (escape && *p == '\n')
            fputs("\\n", stdout);
        else if (escape && *p == '\r')
            fputs("\\r", stdout);
        else
            putchar(*p);
    }
    putchar('\n');
}

/* Writes a file name to stderr the way coreutils quotes names in its
 * messages: as is when it holds only characters that need no shell
 * quoting; in double quotes when it holds a single quote but nothing
 * special inside double quotes; otherwise in single quotes (a quote
 * inside becomes '\''). Names with control characters, which coreutils
 * writes as $'...', are the one case this does not copy. */
static void print_quoted_name(const char *name)
{
    static const char safe[] = "abcdefghijklmnopqrstuvwxyz"
                               "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                               "0123456789%+,-./:=@_";
    if (name[0] != '\0' && name[strspn(name, safe)] == '\0') {
        fputs(name, stderr);
        return;
    }
    if (strchr(name, '\'') && !strpbrk(name, "\"$`\\")) {
        fprintf(stderr, "\"%s\"", name);
        return;
    }
    fputc('\'', stderr);
    for (const char *p = name; *p; p++) {
        if (*p == '\'')
            fputs("'\\''", stderr);
        else
            fputc(*p, stderr);
    }
    fputc('\'', stderr);
}

static void usage(FILE *f)
{
    fprintf(f, "usage: psha256sum [-b|-t] [-p threads] [file...]\n"
               "Prints the SHA-256 digest of each file, like sha256sum, "
               "hashing files in parallel.\n"
               "  -p N   threads, counting the main one (default: one per "
               "CPU)\n"
               "  -b     mark lines as binary mode (' *name'), like "
               "sha256sum -b\n"
               "  -t     mark lines as text mode (' name', the default)\n"
               "With no file, or when file is -, reads standard input.\n");
}

int main(int argc, char **argv)
{
    size_t nthreads = 0;
    char mode = ' ';
    int opt;

    while ((opt = getopt(argc, argv, "btp:h")) != -1) {
        switch (opt) {
        case 'b':
            mode = '*';
            break;
        case 't':
            mode = ' ';
            break;
        case 'p': {
            char *end;
            errno = 0;
            unsigned long v = strtoul(optarg, &end, 10);
            if (errno || end == optarg || *end || optarg[0] == '-') {
                fprintf(stderr, "psha256sum: bad thread count '%s'\n", optarg);
                return 2;
            }
            nthreads = v;
            break;
        }
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }

    static char *const stdin_only[] = {"-"};
    char *const *files = optind < argc ? argv + optind : stdin_only;
    size_t n = optind < argc ? (size_t)(argc - optind) : 1;

    EVP_MD *md = EVP_MD_fetch(NULL, "SHA256", NULL);
    digest *digests = calloc(n, sizeof *digests);
    if (!md || !digests) {
        fprintf(stderr, "psha256sum: cannot set up SHA-256\n");
        EVP_MD_free(md);
        free(digests);
        return 1;
    }

    /* Standard input first, in argument order, on this thread. */
    for (size_t i = 0; i < n; i++)
        if (strcmp(files[i], "-") == 0)
            hash_fd(md, STDIN_FILENO, &digests[i]);

    parmap_pool *pool;
    int rc = parmap_pool_create(&pool, nthreads, NULL);
    if (rc == 0) {
        /* Unreadable files make the map return PARMAP_EFAILED; each slot
         * says which and why, so that code needs no handling of its own. */
        rc = parmap_map(pool, n, files, sizeof *files, digests, sizeof *digests,
                        hash_file, md, NULL);
        parmap_pool_destroy(pool);
    }
    if (rc != 0 && rc != PARMAP_EFAILED) {
        fprintf(stderr, "psha256sum: %s\n", parmap_strerror(rc));
        EVP_MD_free(md);
        free(digests);
        return 1;
    }

    int status = 0;
    for (size_t i = 0; i < n; i++) {
        if (digests[i].err) {
            /* Flush first so that, on a shared terminal, the message
             * appears between the lines it falls between. */
            fflush(stdout);
            fputs("psha256sum: ", stderr);
            print_quoted_name(files[i]);
            fprintf(stderr, ": %s\n", strerror(digests[i].err));
            status = 1;
        } else {
            print_line(&digests[i], files[i], mode);
        }
    }
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "psha256sum: write error: %s\n", strerror(errno));
        status = 1;
    }
    EVP_MD_free(md);
    free(digests);
    return status;
}
