/*
 * The ready-made progress bar: a parmap_progress_fn that draws a line in
 * the style of tqdm on a FILE the caller chose.
 *
 * Everything a line shows is computed from the parmap_progress snapshot,
 * including the time that decides whether a line is due (its `elapsed`,
 * the call's own clock), so the same updates always give the same output
 * and the tests can feed made-up snapshots.
 *
 * No lock: parmap never runs two progress callbacks of one call at once
 * and orders them (and the call's return) with its own synchronisation,
 * and the header asks that a bar serve one call at a time. So every field
 * below is used by one thread at a time: the creator, then each progress
 * callback in turn, then the thread that destroys the bar.
 */
#include "internal.h"

#include <langinfo.h>
#include <locale.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

/* Bytes of the label that are kept: a label is a name, not a message. */
#define LABEL_MAX 200
/* Widest line drawn, in columns. */
#define WIDTH_MAX 1024
/* Fewer bar cells than this say nothing; the bar is dropped instead. */
#define CELLS_MIN 4
/* The default intervals: ten redraws a second keep a terminal lively at
 * no measurable cost; a log gets a line every few seconds, not thousands. */
#define TTY_INTERVAL 0.1
#define LOG_INTERVAL 5.0
/* parmap throttles its progress calls with an integer nanosecond clock,
 * the bar with `elapsed` in seconds: allow for the rounding between the
 * two, so that a call made exactly one interval later is not skipped. */
#define INTERVAL_SLACK 1e-3
/* A line, its carriage return, its padding and its newline: the bar's
 * cells take up to 3 bytes each in UTF-8, the label up to LABEL_MAX. */
#define BUF_BYTES (3 * WIDTH_MAX + LABEL_MAX + WIDTH_MAX + 256)

struct parmap_bar {
    /* Set at create, then read-only. */
    FILE *out;
    int tty;
    int unicode;
    double interval;
    int width;     /* fixed width, or 0: the terminal's */
    int env_width; /* COLUMNS at create, or 80 */
    char label[LABEL_MAX + 3]; /* "label: ", or "" */
    size_t label_cols;

    /* State of the call being drawn. */
    parmap_progress last; /* the last snapshot given */
    int seen;             /* `last` holds a snapshot of this call */
    int pending;          /* `last` was not drawn */
    int drawn;            /* a line was drawn for this call */
    int final_drawn;      /* ... and it was the final one */
    size_t open_cols;     /* terminal: columns of the line left open */
    double last_draw;     /* `elapsed` of the last line drawn */
    size_t drawn_done;    /* ... and its counts */
    size_t drawn_failed;

    char buf[BUF_BYTES]; /* the output being composed */
};

/* Columns of UTF-8 text: one per character. Wide characters (CJK) count
 * as one too; a label is the only place they could come from. */
static size_t text_cols(const char *s, size_t len)
{
    size_t cols = 0;
    for (size_t i = 0; i < len; i++)
        if (((unsigned char)s[i] & 0xc0) != 0x80)
            cols++;
    return cols;
}

/* Bytes of the longest prefix of s (len bytes) that fits in `cols`
 * columns, ending on a character boundary. */
static size_t text_cut(const char *s, size_t len, size_t cols)
{
    size_t seen = 0;
    for (size_t i = 0; i < len; i++)
        if (((unsigned char)s[i] & 0xc0) != 0x80 && seen++ == cols)
            return i;
    return len;
}

/* 1 when the program chose a locale (setlocale) whose codeset is UTF-8.
 * A program that never called setlocale() runs in the "C" locale, where
 * the terminal's encoding is unknown, so it gets ASCII. */
static int locale_is_utf8(void)
{
    const char *name = setlocale(LC_CTYPE, NULL);
    if (name == NULL || strcmp(name, "C") == 0 || strcmp(name, "POSIX") == 0)
        return 0;
    const char *codeset = nl_langinfo(CODESET);
    return codeset != NULL &&
           (strcmp(codeset, "UTF-8") == 0 || strcmp(codeset, "utf8") == 0);
}

/* COLUMNS when it holds a positive number, else 80. */
static int columns_from_env(void)
{
    const char *s = getenv("COLUMNS");
    if (s != NULL && *s != '\0') {
        char *end;
        long v = strtol(s, &end, 10);
        if (*end == '\0' && v > 0)
            return v > WIDTH_MAX ? WIDTH_MAX : (int)v;
    }
    return 80;
}

/* The width a line may take now, in columns. */
static size_t line_width(const parmap_bar *b)
{
    int w = b->width;
    if (w == 0) {
        struct winsize ws;
        int fd = fileno(b->out);
        w = b->env_width;
        /* A terminal can be resized at any time: ask it at every redraw. */
        if (b->tty && fd >= 0 && ioctl(fd, TIOCGWINSZ, &ws) == 0 &&
            ws.ws_col > 0)
            w = ws.ws_col;
    }
    if (w > WIDTH_MAX)
        w = WIDTH_MAX;
    /* Writing into a terminal's last column leaves the cursor waiting to
     * wrap, and some terminals then wrap on the carriage return. */
    if (b->tty && w > 1)
        w--;
    return (size_t)w;
}

int parmap_bar_create(parmap_bar **bar, FILE *out, const parmap_bar_opts *opts)
{
    static const parmap_bar_opts defaults = {0};
    const unsigned known = PARMAP_BAR_ASCII | PARMAP_BAR_UNICODE |
                           PARMAP_BAR_FORCE_TTY | PARMAP_BAR_NO_TTY;
    parmap_bar *b;

    if (opts == NULL)
        opts = &defaults;
    if (bar == NULL || out == NULL || (opts->flags & ~known) != 0 ||
        ((opts->flags & PARMAP_BAR_ASCII) &&
         (opts->flags & PARMAP_BAR_UNICODE)) ||
        ((opts->flags & PARMAP_BAR_FORCE_TTY) &&
         (opts->flags & PARMAP_BAR_NO_TTY)) ||
        !(opts->interval >= 0.0) || opts->width < 0)
        return -EINVAL;

    b = parmap__calloc(1, sizeof *b);
    if (b == NULL)
        return -ENOMEM;
    b->out = out;
    if (opts->flags & PARMAP_BAR_FORCE_TTY)
        b->tty = 1;
    else if (opts->flags & PARMAP_BAR_NO_TTY)
        b->tty = 0;
    else
        b->tty = fileno(out) >= 0 && isatty(fileno(out));
    if (opts->flags & PARMAP_BAR_UNICODE)
        b->unicode = 1;
    else if (opts->flags & PARMAP_BAR_ASCII)
        b->unicode = 0;
    else
        b->unicode = locale_is_utf8();
    b->interval = opts->interval != 0.0 ? opts->interval
                  : b->tty              ? TTY_INTERVAL
                                        : LOG_INTERVAL;
    b->width = opts->width;
    b->env_width = columns_from_env();

    if (opts->label != NULL && opts->label[0] != '\0') {
        size_t len = strlen(opts->label);
        /* Cut on a character boundary: back up over continuation bytes. */
        if (len > LABEL_MAX) {
            len = LABEL_MAX;
            while (len > 0 && ((unsigned char)opts->label[len] & 0xc0) == 0x80)
                len--;
        }
        memcpy(b->label, opts->label, len);
        /* A control character would break the one-line display. */
        for (size_t i = 0; i < len; i++)
            if ((unsigned char)b->label[i] < 0x20 || b->label[i] == 0x7f)
                b->label[i] = '?';
        memcpy(b->label + len, ": ", 3);
        b->label_cols = text_cols(b->label, len + 2);
    }
    *bar = b;
    return 0;
}

/* mm:ss, or h:mm:ss from an hour on, like tqdm; "?" when unknown. */
static void format_time(char *s, size_t size, double seconds)
{
    if (!(seconds >= 0.0) || seconds >= 1e7) {
        snprintf(s, size, "?");
        return;
    }
    unsigned long t = (unsigned long)seconds;
    if (t >= 3600)
        snprintf(s, size, "%lu:%02lu:%02lu", t / 3600, t / 60 % 60, t % 60);
    else
        snprintf(s, size, "%02lu:%02lu", t / 60, t % 60);
}

/* Items per second, or seconds per item when it takes longer than one. */
static void format_rate(char *s, size_t size, double rate)
{
    if (!(rate > 0.0) || !isfinite(rate))
        snprintf(s, size, "? it/s");
    else if (rate < 1.0)
        snprintf(s, size, "%.2f s/it", 1.0 / rate);
    else if (rate < 1e6)
        snprintf(s, size, "%.1f it/s", rate);
    else if (rate < 1e9)
        snprintf(s, size, "%.2fM it/s", rate / 1e6);
    else
        snprintf(s, size, "%.2fG it/s", rate / 1e9);
}

/* Appends the bar's cells: done/total of them filled, in eighths with
 * Unicode blocks, whole cells with ASCII. Returns the bytes written. */
static size_t put_cells(char *s, size_t cells, const parmap_progress *p,
                        int unicode)
{
    /* The eighth blocks, U+258F (one eighth) to U+2589 (seven eighths). */
    static const char *const eighths[8] = {"",
                                           "\xe2\x96\x8f",
                                           "\xe2\x96\x8e",
                                           "\xe2\x96\x8d",
                                           "\xe2\x96\x8c",
                                           "\xe2\x96\x8b",
                                           "\xe2\x96\x8a",
                                           "\xe2\x96\x89"};
    static const char full[] = "\xe2\x96\x88"; /* U+2588 */
    double frac = p->done >= p->total ? 1.0 : (double)p->done / p->total;
    size_t units = (size_t)(frac * (double)cells * (unicode ? 8 : 1));
    size_t whole = unicode ? units / 8 : units;
    size_t part = unicode ? units % 8 : 0;
    size_t len = 0, used = 0;

    /* Only a finished call fills the last cell. */
    if (p->done < p->total && whole >= cells) {
        whole = cells - 1;
        part = unicode ? 7 : 0;
    }
    for (; used < whole; used++) {
        if (unicode) {
            memcpy(s + len, full, 3);
            len += 3;
        } else {
            s[len++] = '#';
        }
    }
    if (part != 0) {
        memcpy(s + len, eighths[part], 3);
        len += 3;
        used++;
    }
    for (; used < cells; used++)
        s[len++] = ' ';
    return len;
}

/* Composes the line for `p` into b->buf (without \r, padding or \n) and
 * returns its length in bytes; *cols receives its width in columns, at
 * most `width`. */
static size_t compose(parmap_bar *b, const parmap_progress *p, size_t width,
                      size_t *cols)
{
    char left[16], right[160], el[32], rem[32], rate[32], failed[48];
    size_t left_len = 0, right_len, label_len = strlen(b->label);
    double r = p->elapsed > 0.0 ? (double)p->done / p->elapsed : 0.0;
    char *s = b->buf;
    size_t len = 0;

    format_time(el, sizeof el, p->elapsed);
    format_rate(rate, sizeof rate, r);
    failed[0] = '\0';
    if (p->failed != 0)
        snprintf(failed, sizeof failed, ", %zu failed", p->failed);

    if (p->total != 0) {
        /* The percentage is rounded down, so 100% means every item. */
        unsigned pct = p->done >= p->total
                           ? 100
                           : (unsigned)((double)p->done * 100.0 / p->total);
        if (pct > 99 && p->done < p->total)
            pct = 99;
        if (p->done >= p->total)
            format_time(rem, sizeof rem, 0.0);
        else
            format_time(rem, sizeof rem,
                        r > 0.0 ? (double)(p->total - p->done) / r : -1.0);
        left_len = (size_t)snprintf(left, sizeof left, "%3u%%", pct);
        right_len = (size_t)snprintf(right, sizeof right,
                                     " %zu/%zu [%s<%s, %s%s]", p->done,
                                     p->total, el, rem, rate, failed);
    } else {
        right_len = (size_t)snprintf(right, sizeof right, "%zu it [%s, %s%s]",
                                     p->done, el, rate, failed);
    }
    if (right_len >= sizeof right)
        right_len = sizeof right - 1;

    memcpy(s, b->label, label_len);
    len = label_len;
    memcpy(s + len, left, left_len);
    len += left_len;

    /* The bar takes whatever the text leaves, "|" on either side. */
    size_t text = b->label_cols + left_len + right_len;
    if (p->total != 0 && text + 2 + CELLS_MIN <= width) {
        size_t cells = width - text - 2;
        s[len++] = '|';
        len += put_cells(s + len, cells, p, b->unicode);
        s[len++] = '|';
        memcpy(s + len, right, right_len);
        len += right_len;
        *cols = width;
        return len;
    }

    /* No room for a bar: the text alone, cut to the width if need be. */
    memcpy(s + len, right, right_len);
    len += right_len;
    *cols = text_cols(s, len);
    if (*cols > width) {
        len = text_cut(s, len, width);
        *cols = width;
    }
    return len;
}

/* Draws b->last; `final` ends the line. */
static void draw(parmap_bar *b, int final)
{
    size_t width = line_width(b), cols, len, total;
    char *s = b->buf;

    if (b->tty) {
        /* The carriage return goes first: compose into the buffer one
         * byte in. */
        len = compose(b, &b->last, width, &cols);
        memmove(s + 1, s, len);
        s[0] = '\r';
        total = len + 1;
        /* Spaces wipe what is left of a longer previous line; no escape
         * sequence, so even a dumb terminal shows a clean line. */
        for (size_t c = cols; c < b->open_cols && c < width; c++)
            s[total++] = ' ';
        b->open_cols = final ? 0 : cols;
    } else {
        total = compose(b, &b->last, width, &cols);
    }
    if (final || !b->tty)
        s[total++] = '\n';
    /* One write per line, so a line reaches the terminal whole. */
    fwrite(s, 1, total, b->out);
    fflush(b->out);

    b->pending = 0;
    b->drawn = 1;
    b->final_drawn = final;
    b->last_draw = b->last.elapsed;
    b->drawn_done = b->last.done;
    b->drawn_failed = b->last.failed;
}

/* Ends the current call's display with its last snapshot, if that was not
 * drawn as a final line yet. */
static void finish(parmap_bar *b)
{
    if (!b->seen || b->final_drawn)
        return;
    if (b->pending) {
        draw(b, 1);
    } else if (b->tty && b->open_cols != 0) {
        fputc('\n', b->out);
        fflush(b->out);
        b->open_cols = 0;
    }
    b->final_drawn = 1;
}

static int is_final(const parmap_progress *p)
{
    return p->total != 0 && p->done >= p->total;
}

int parmap_bar_update(void *bar, const parmap_progress *p)
{
    parmap_bar *b = bar;

    if (b == NULL || p == NULL)
        return 0;
    if (b->seen) {
        const parmap_progress *q = &b->last;
        int back = p->done < q->done || p->failed < q->failed ||
                   p->elapsed < q->elapsed || p->total != q->total;
        int changed = p->done != q->done || p->failed != q->failed;
        if (back || (b->final_drawn && changed)) {
            /* A new call on the same bar. */
            finish(b);
            b->seen = 0;
            b->drawn = 0;
            b->final_drawn = 0;
        } else if (b->final_drawn) {
            /* The final counts again (parmap's own last call). */
            return 0;
        }
    }
    b->last = *p;
    b->seen = 1;
    if (is_final(p)) {
        draw(b, 1);
        return 0;
    }
    /* In a log, a line whose counts did not change says nothing new (for
     * a stream, parmap's last call repeats the last counts); a terminal
     * redraws it in place to keep the clock going. */
    if (!b->tty && b->drawn && p->done == b->drawn_done &&
        p->failed == b->drawn_failed) {
        b->pending = 0;
        return 0;
    }
    b->pending = 1;
    if (!b->drawn ||
        p->elapsed - b->last_draw + INTERVAL_SLACK >= b->interval)
        draw(b, 0);
    return 0;
}

void parmap_bar_attach(parmap_bar *bar, parmap_opts *opts)
{
    if (bar == NULL || opts == NULL)
        return;
    opts->progress = parmap_bar_update;
    opts->progress_ctx = bar;
    opts->progress_interval = bar->interval;
}

void parmap_bar_destroy(parmap_bar *bar)
{
    if (bar == NULL)
        return;
    finish(bar);
    free(bar);
}
