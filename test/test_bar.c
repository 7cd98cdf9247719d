/*
 * Tests of lib/bar.c, the ready-made progress bar: what it writes for given
 * progress snapshots, on a terminal (redrawn in place) and in a log (plain
 * lines, throttled), with known and unknown totals, in ASCII and Unicode,
 * within the width; its argument errors and allocation failure; and its
 * output for a real map and a real stream.
 *
 * The bar decides everything from the snapshots it is given (their
 * `elapsed` included), so most tests feed it made-up snapshots and compare
 * the exact text. Output goes to an open_memstream() buffer; the terminal
 * behaviour is forced with PARMAP_BAR_FORCE_TTY. test/bar_tmux.sh checks
 * the same bar in a real terminal.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* open_memstream, setenv */
#endif
#include <criterion/criterion.h>
#include <locale.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "common.h"
#include "fault.h"

TestSuite(bar, .timeout = 30.);

/* ------------------------------------------------------------------------ */
/* Helpers                                                                  */
/* ------------------------------------------------------------------------ */

/* An in-memory FILE whose contents the test reads back. */
struct sink {
    FILE *f;
    char *buf;
    size_t len;
};

static void sink_open(struct sink *s)
{
    s->buf = NULL;
    s->len = 0;
    s->f = open_memstream(&s->buf, &s->len);
    cr_assert_not_null(s->f);
}

/* Everything written so far, NUL-terminated. */
static const char *sink_text(struct sink *s)
{
    cr_assert_eq(fflush(s->f), 0);
    return s->buf != NULL ? s->buf : "";
}

static void sink_close(struct sink *s)
{
    fclose(s->f);
    free(s->buf);
}

static parmap_bar *make_bar(FILE *f, const char *label, unsigned flags,
                            double interval, int width)
{
    parmap_bar_opts o = {
        .label = label, .flags = flags, .interval = interval, .width = width};
    parmap_bar *b = NULL;
    int rc = parmap_bar_create(&b, f, &o);
    cr_assert_eq(rc, 0, "parmap_bar_create = %d (%s)", rc,
                 parmap_strerror(rc));
    cr_assert_not_null(b);
    return b;
}

static void update(parmap_bar *b, size_t done, size_t failed, size_t total,
                   double elapsed)
{
    parmap_progress p = {
        .done = done, .failed = failed, .total = total, .elapsed = elapsed};
    cr_assert_eq(parmap_bar_update(b, &p), 0);
}

/* Columns of UTF-8 text: one per character. */
static size_t cols(const char *s, size_t len)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++)
        n += ((unsigned char)s[i] & 0xc0) != 0x80;
    return n;
}

static size_t count_char(const char *s, char c)
{
    size_t n = 0;
    for (; *s != '\0'; s++)
        n += *s == c;
    return n;
}

/* The pieces of `text` between carriage returns and newlines, in order.
 * Empty pieces are dropped. Returns how many were stored in seg (each
 * NUL-terminated, at most 4095 bytes). */
#define MAX_SEGS 4096
static char seg[MAX_SEGS][4096];

static size_t split(const char *text)
{
    size_t n = 0;
    const char *p = text;
    while (*p != '\0') {
        size_t len = strcspn(p, "\r\n");
        if (len > 0) {
            cr_assert_lt(n, (size_t)MAX_SEGS);
            cr_assert_lt(len, sizeof seg[0]);
            memcpy(seg[n], p, len);
            seg[n][len] = '\0';
            n++;
        }
        p += len;
        if (*p != '\0')
            p++;
    }
    return n;
}

/* The widest piece of `text`, in columns. */
static size_t widest(const char *text)
{
    size_t n = split(text), w = 0;
    for (size_t i = 0; i < n; i++) {
        size_t c = cols(seg[i], strlen(seg[i]));
        if (c > w)
            w = c;
    }
    return w;
}

/* The "done" count of a known-total line: the number before the '/'. */
static size_t line_done(const char *line)
{
    const char *slash = strchr(line, '/');
    cr_assert_not_null(slash, "no count in '%s'", line);
    const char *p = slash;
    while (p > line && p[-1] >= '0' && p[-1] <= '9')
        p--;
    return (size_t)strtoull(p, NULL, 10);
}

/* ------------------------------------------------------------------------ */
/* The line                                                                 */
/* ------------------------------------------------------------------------ */

Test(bar, draws_percentage_bar_counts_times_rate_and_failures_like_tqdm)
{
    struct sink s;
    const char *right = " 4500/10000 [00:01<00:01, 4500.0 it/s, 3 failed]";
    /* Room for exactly 10 cells: "NNN%" "|" cells "|" right. */
    int width = (int)(4 + 2 + 10 + strlen(right));
    sink_open(&s);
    parmap_bar *b =
        make_bar(s.f, NULL, PARMAP_BAR_NO_TTY | PARMAP_BAR_UNICODE, 0, width);
    update(b, 4500, 3, 10000, 1.0);
    /* 4.5 cells: four full blocks and a half block, then five spaces. */
    cr_assert_str_eq(sink_text(&s), " 45%|████▌     | 4500/10000 "
                                    "[00:01<00:01, 4500.0 it/s, 3 failed]\n");
    parmap_bar_destroy(b);
    cr_assert_str_eq(sink_text(&s), " 45%|████▌     | 4500/10000 "
                                    "[00:01<00:01, 4500.0 it/s, 3 failed]\n",
                     "destroy must not repeat a line already drawn");
    sink_close(&s);
}

Test(bar, shows_failures_only_when_there_are_some)
{
    struct sink s;
    const char *right = " 4500/10000 [00:01<00:01, 4500.0 it/s]";
    int width = (int)(5 + 4 + 2 + 10 + strlen(right));
    sink_open(&s);
    parmap_bar *b =
        make_bar(s.f, "job", PARMAP_BAR_NO_TTY | PARMAP_BAR_ASCII, 0, width);
    update(b, 4500, 0, 10000, 1.0);
    cr_assert_str_eq(sink_text(&s), "job:  45%|####      | 4500/10000 "
                                    "[00:01<00:01, 4500.0 it/s]\n");
    cr_assert_null(strstr(sink_text(&s), "failed"));
    parmap_bar_destroy(b);
    sink_close(&s);
}

Test(bar, ascii_uses_hashes_and_unicode_uses_blocks)
{
    struct sink a, u;
    sink_open(&a);
    sink_open(&u);
    parmap_bar *ba =
        make_bar(a.f, "x", PARMAP_BAR_NO_TTY | PARMAP_BAR_ASCII, 0, 60);
    parmap_bar *bu =
        make_bar(u.f, "x", PARMAP_BAR_NO_TTY | PARMAP_BAR_UNICODE, 0, 60);
    update(ba, 60, 0, 100, 1.0);
    update(bu, 60, 0, 100, 1.0);
    const char *ta = sink_text(&a), *tu = sink_text(&u);
    cr_assert_not_null(strstr(ta, "###"), "%s", ta);
    for (const char *p = ta; *p != '\0'; p++)
        cr_assert_lt((unsigned char)*p, 0x80, "non-ASCII byte in '%s'", ta);
    cr_assert_not_null(strstr(tu, "███"), "%s", tu);
    cr_assert_null(strchr(tu, '#'), "%s", tu);
    /* Same layout, same width in columns. */
    cr_assert_eq(cols(ta, strlen(ta)), cols(tu, strlen(tu)));
    parmap_bar_destroy(ba);
    parmap_bar_destroy(bu);
    sink_close(&a);
    sink_close(&u);
}

Test(bar, percentage_rounds_down_so_only_a_finished_call_shows_100)
{
    struct sink a, u;
    const char *right = " 999/1000 [00:01<00:00, 999.0 it/s]";
    int width = (int)(4 + 2 + 10 + strlen(right));
    sink_open(&a);
    sink_open(&u);
    parmap_bar *ba =
        make_bar(a.f, NULL, PARMAP_BAR_NO_TTY | PARMAP_BAR_ASCII, 0, width);
    parmap_bar *bu =
        make_bar(u.f, NULL, PARMAP_BAR_NO_TTY | PARMAP_BAR_UNICODE, 0, width);
    update(ba, 999, 0, 1000, 1.0);
    update(bu, 999, 0, 1000, 1.0);
    cr_assert_str_eq(sink_text(&a),
                     " 99%|######### | 999/1000 [00:01<00:00, 999.0 it/s]\n");
    /* 9.99 cells: nine full blocks and a seven-eighths block, never a tenth
     * full one. */
    cr_assert_str_eq(sink_text(&u),
                     " 99%|█████████▉| 999/1000 [00:01<00:00, 999.0 it/s]\n");
    parmap_bar_destroy(ba);
    parmap_bar_destroy(bu);
    sink_close(&a);
    sink_close(&u);
}

Test(bar, unknown_total_shows_count_elapsed_and_rate)
{
    struct sink s;
    sink_open(&s);
    parmap_bar *b = make_bar(s.f, "stream", PARMAP_BAR_NO_TTY, 1.0, 80);
    update(b, 4500, 0, 0, 1.0);
    update(b, 9000, 2, 0, 2.0);
    cr_assert_str_eq(sink_text(&s), "stream: 4500 it [00:01, 4500.0 it/s]\n"
                                    "stream: 9000 it [00:02, 4500.0 it/s, "
                                    "2 failed]\n");
    cr_assert_null(strchr(sink_text(&s), '%'));
    cr_assert_null(strchr(sink_text(&s), '|'));
    parmap_bar_destroy(b);
    sink_close(&s);
}

Test(bar, shows_hours_seconds_per_item_and_unknowns)
{
    struct sink s;
    sink_open(&s);
    parmap_bar *b = make_bar(s.f, NULL, PARMAP_BAR_NO_TTY, 1.0, 80);
    /* Nothing done yet: no rate, no remaining time. */
    update(b, 0, 0, 10, 0.0);
    /* 3 items in 3725 s: 1241.67 s each; 1:02:05 elapsed. */
    update(b, 3, 0, 10, 3725.0);
    const char *t = sink_text(&s);
    cr_assert_not_null(strstr(t, "0/10 [00:00<?, ? it/s]\n"), "%s", t);
    cr_assert_not_null(strstr(t, "3/10 [1:02:05<2:24:51, 1241.67 s/it]\n"),
                       "%s", t);
    parmap_bar_destroy(b);
    sink_close(&s);
}

Test(bar, scales_large_rates)
{
    struct sink s;
    sink_open(&s);
    parmap_bar *b = make_bar(s.f, NULL, PARMAP_BAR_NO_TTY, 1.0, 80);
    update(b, 2500000, 0, 0, 1.0);
    update(b, 6000000000, 0, 0, 2.0);
    cr_assert_str_eq(sink_text(&s), "2500000 it [00:01, 2.50M it/s]\n"
                                    "6000000000 it [00:02, 3.00G it/s]\n");
    parmap_bar_destroy(b);
    sink_close(&s);
}

Test(bar, label_control_characters_become_question_marks)
{
    struct sink s;
    sink_open(&s);
    parmap_bar *b = make_bar(s.f, "a\tb\nc\r", PARMAP_BAR_NO_TTY, 0, 80);
    update(b, 1, 0, 0, 1.0);
    cr_assert_str_eq(sink_text(&s), "a?b?c?: 1 it [00:01, 1.0 it/s]\n");
    parmap_bar_destroy(b);
    sink_close(&s);
}

Test(bar, a_long_label_is_cut_on_a_character_boundary)
{
    struct sink s;
    char label[400];
    /* "é" is two bytes; 199 of them end mid-character at byte 200. */
    label[0] = 'x';
    for (size_t i = 0; i < 199; i++)
        memcpy(label + 1 + 2 * i, "\xc3\xa9", 2);
    label[399] = '\0';
    sink_open(&s);
    parmap_bar *b = make_bar(s.f, label, PARMAP_BAR_NO_TTY, 0, 1024);
    update(b, 1, 0, 0, 1.0);
    const char *t = sink_text(&s);
    const char *colon = strstr(t, ": 1 it [");
    cr_assert_not_null(colon, "%s", t);
    /* x and 99 whole "é": 199 bytes, the 200th would split a character. */
    cr_assert_eq((size_t)(colon - t), (size_t)199);
    parmap_bar_destroy(b);
    sink_close(&s);
}

/* ------------------------------------------------------------------------ */
/* Width                                                                    */
/* ------------------------------------------------------------------------ */

Test(bar, no_line_is_wider_than_the_width)
{
    static const char *const labels[] = {NULL, "ünïcödé label of thirty cols",
                                         "a-label-that-is-longer-than-forty-"
                                         "columns-by-far"};
    for (int w = 1; w <= 130; w++)
        for (unsigned mode = 0; mode < 8; mode++)
            for (size_t l = 0; l < 3; l++) {
                struct sink s;
                unsigned flags =
                    ((mode & 1) ? PARMAP_BAR_FORCE_TTY : PARMAP_BAR_NO_TTY) |
                    ((mode & 2) ? PARMAP_BAR_UNICODE : PARMAP_BAR_ASCII);
                size_t total = (mode & 4) ? 0 : 123456;
                size_t limit = (mode & 1) && w > 1 ? (size_t)w - 1 : (size_t)w;
                sink_open(&s);
                parmap_bar *b = make_bar(s.f, labels[l], flags, 1e-9, w);
                update(b, 0, 0, total, 0.0);
                update(b, 61728, 17, total, 3.5);
                update(b, 100000, 1000, total, 3725.0);
                parmap_bar_destroy(b);
                const char *t = sink_text(&s);
                cr_assert_leq(widest(t), limit,
                              "width %d mode %u label %zu: a line of %zu "
                              "columns in '%s'",
                              w, mode, l, widest(t), t);
                cr_assert_gt(strlen(t), 0);
                sink_close(&s);
            }
}

Test(bar, a_bar_line_fills_the_width)
{
    for (int w = 50; w <= 200; w += 7) {
        struct sink s;
        sink_open(&s);
        parmap_bar *b = make_bar(s.f, "fill", PARMAP_BAR_NO_TTY, 0, w);
        update(b, 5, 0, 17, 1.0);
        const char *t = sink_text(&s);
        cr_assert_eq(cols(t, strlen(t)), (size_t)w + 1, /* the newline */
                     "width %d: '%s'", w, t);
        parmap_bar_destroy(b);
        sink_close(&s);
    }
}

Test(bar, width_defaults_to_columns_then_80)
{
    static const struct {
        const char *columns; /* NULL: unset */
        size_t want;
    } cases[] = {{"50", 50}, {NULL, 80}, {"junk", 80}, {"0", 80}, {"-3", 80}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct sink s;
        if (cases[i].columns != NULL)
            setenv("COLUMNS", cases[i].columns, 1);
        else
            unsetenv("COLUMNS");
        sink_open(&s);
        /* FORCE_TTY on a stream with no terminal behind it: the width
         * comes from COLUMNS, less the column a terminal line leaves. */
        parmap_bar *b = make_bar(s.f, NULL, PARMAP_BAR_NO_TTY, 0, 0);
        parmap_bar *bt = make_bar(s.f, NULL, PARMAP_BAR_FORCE_TTY, 0, 0);
        update(b, 5, 0, 17, 1.0);
        cr_assert_eq(widest(sink_text(&s)), cases[i].want, "COLUMNS=%s: '%s'",
                     cases[i].columns ? cases[i].columns : "(unset)",
                     sink_text(&s));
        parmap_bar_destroy(b);
        update(bt, 5, 0, 17, 1.0);
        cr_assert_eq(widest(sink_text(&s)), cases[i].want, "%s",
                     sink_text(&s));
        const char *t = sink_text(&s);
        cr_assert_eq(cols(strrchr(t, '\r') + 1, strlen(strrchr(t, '\r') + 1)),
                     cases[i].want - 1);
        parmap_bar_destroy(bt);
        sink_close(&s);
    }
    unsetenv("COLUMNS");
}

/* ------------------------------------------------------------------------ */
/* Terminal: one line, redrawn                                              */
/* ------------------------------------------------------------------------ */

Test(bar, terminal_redraws_one_line_in_place_and_ends_it_with_a_newline)
{
    struct sink s;
    sink_open(&s);
    parmap_bar *b =
        make_bar(s.f, "t", PARMAP_BAR_FORCE_TTY | PARMAP_BAR_ASCII, 0, 60);
    cr_assert_str_eq(sink_text(&s), "", "nothing before the first update");
    for (size_t k = 0; k <= 10; k++)
        update(b, 10 * k, 0, 100, 0.2 * (double)k);
    const char *t = sink_text(&s);
    /* Every update is 0.2 s after the last, past the default 0.1 s. */
    cr_assert_eq(count_char(t, '\r'), (size_t)11, "%s", t);
    cr_assert_eq(count_char(t, '\n'), (size_t)1, "%s", t);
    cr_assert_eq(t[0], '\r');
    cr_assert_eq(t[strlen(t) - 1], '\n');
    cr_assert_null(strchr(t, '\033'), "no escape sequences");
    size_t n = split(t);
    cr_assert_eq(n, (size_t)11);
    for (size_t i = 0; i < n; i++) {
        cr_assert_eq(cols(seg[i], strlen(seg[i])), (size_t)59,
                     "segment %zu: '%s'", i, seg[i]);
        cr_assert_eq(line_done(seg[i]), 10 * i);
    }
    /* 59 columns: "t: 100%|", 17 cells, "| 100/100 [...]". */
    cr_assert_str_eq(seg[10], "t: 100%|#################| "
                              "100/100 [00:02<00:00, 50.0 it/s]");
    parmap_bar_destroy(b);
    cr_assert_eq(count_char(sink_text(&s), '\n'), (size_t)1,
                 "destroy after a final line writes nothing");
    sink_close(&s);
}

Test(bar, terminal_redraws_at_most_once_per_interval)
{
    struct sink s;
    sink_open(&s);
    parmap_bar *b = make_bar(s.f, NULL, PARMAP_BAR_FORCE_TTY, 0, 60);
    /* Every 0.04 s for 1 s: the default 0.1 s keeps one in three. */
    for (size_t k = 0; k < 25; k++)
        update(b, k, 0, 100, 0.04 * (double)k);
    size_t draws = count_char(sink_text(&s), '\r');
    cr_assert(draws >= 8 && draws <= 10, "%zu redraws", draws);
    parmap_bar_destroy(b);
    sink_close(&s);
}

Test(bar, a_shorter_redraw_is_padded_over_the_longer_one)
{
    struct sink s;
    sink_open(&s);
    parmap_bar *b = make_bar(s.f, NULL, PARMAP_BAR_FORCE_TTY, 0, 80);
    update(b, 999999, 0, 0, 1.0);
    update(b, 2000000, 0, 0, 1.5);
    cr_assert_str_eq(sink_text(&s), "\r999999 it [00:01, 999999.0 it/s]"
                                    "\r2000000 it [00:01, 1.33M it/s]  ");
    /* The total is unknown, so destroy ends the line. */
    parmap_bar_destroy(b);
    cr_assert_str_eq(sink_text(&s), "\r999999 it [00:01, 999999.0 it/s]"
                                    "\r2000000 it [00:01, 1.33M it/s]  \n");
    sink_close(&s);
}

Test(bar, destroy_draws_the_last_state_when_it_was_not_drawn)
{
    struct sink s;
    sink_open(&s);
    parmap_bar *b = make_bar(s.f, NULL, PARMAP_BAR_FORCE_TTY, 0, 80);
    update(b, 10, 0, 0, 0.20);
    update(b, 11, 0, 0, 0.25); /* within the interval: not drawn */
    cr_assert_null(strstr(sink_text(&s), "11 it"));
    parmap_bar_destroy(b);
    const char *t = sink_text(&s);
    size_t n = split(t);
    cr_assert_eq(n, (size_t)2);
    cr_assert_str_eq(seg[1], "11 it [00:00, 44.0 it/s]");
    cr_assert_eq(t[strlen(t) - 1], '\n');
    cr_assert_eq(count_char(t, '\n'), (size_t)1);
    sink_close(&s);
}

Test(bar, a_stopped_call_keeps_its_last_line_and_gets_a_newline)
{
    struct sink s;
    sink_open(&s);
    parmap_bar *b = make_bar(s.f, NULL, PARMAP_BAR_FORCE_TTY, 0, 80);
    update(b, 40, 1, 100, 1.0); /* cancelled: never reaches 100 */
    parmap_bar_destroy(b);
    const char *t = sink_text(&s);
    cr_assert_eq(count_char(t, '\r'), (size_t)1, "%s", t);
    cr_assert_eq(t[strlen(t) - 1], '\n');
    cr_assert_not_null(strstr(t, " 40/100 "));
    sink_close(&s);
}

/* ------------------------------------------------------------------------ */
/* Logs: plain lines, throttled                                             */
/* ------------------------------------------------------------------------ */

Test(bar, plain_lines_hold_no_control_characters)
{
    struct sink s;
    sink_open(&s);
    parmap_bar *b = make_bar(s.f, "log", PARMAP_BAR_NO_TTY, 1.0, 70);
    for (size_t k = 0; k <= 20; k++)
        update(b, 5 * k, k / 4, 100, 0.5 * (double)k);
    parmap_bar_destroy(b);
    const char *t = sink_text(&s);
    cr_assert_null(strchr(t, '\r'));
    for (const char *p = t; *p != '\0'; p++)
        cr_assert(*p == '\n' || (unsigned char)*p >= 0x20,
                  "control byte 0x%02x", (unsigned char)*p);
    cr_assert_eq(t[strlen(t) - 1], '\n');
    size_t n = split(t);
    /* Lines at 0, 1, ..., 10 s: eleven, the last one final. */
    cr_assert_eq(n, (size_t)11, "%s", t);
    cr_assert_eq(count_char(t, '\n'), (size_t)11);
    for (size_t i = 0; i < n; i++) {
        cr_assert_eq(strncmp(seg[i], "log: ", 5), 0);
        cr_assert_eq(line_done(seg[i]), 10 * i);
    }
    sink_close(&s);
}

Test(bar, plain_lines_are_throttled_to_the_interval)
{
    struct sink s;
    sink_open(&s);
    parmap_bar *b = make_bar(s.f, NULL, PARMAP_BAR_NO_TTY, 5.0, 80);
    for (size_t t = 0; t <= 20; t++)
        update(b, 10 * t, 0, 1000, (double)t);
    parmap_bar_destroy(b);
    size_t n = split(sink_text(&s));
    cr_assert_eq(n, (size_t)5, "%s", sink_text(&s));
    for (size_t i = 0; i < n; i++)
        cr_assert_eq(line_done(seg[i]), 50 * i, "%s", seg[i]);
    sink_close(&s);

    /* The last state, not yet due, is written by destroy. */
    sink_open(&s);
    b = make_bar(s.f, NULL, PARMAP_BAR_NO_TTY, 5.0, 80);
    for (size_t t = 0; t <= 7; t++)
        update(b, 10 * t, 0, 1000, (double)t);
    cr_assert_eq(split(sink_text(&s)), (size_t)2);
    parmap_bar_destroy(b);
    n = split(sink_text(&s));
    cr_assert_eq(n, (size_t)3, "%s", sink_text(&s));
    cr_assert_eq(line_done(seg[0]), (size_t)0);
    cr_assert_eq(line_done(seg[1]), (size_t)50);
    cr_assert_eq(line_done(seg[2]), (size_t)70);
    sink_close(&s);
}

Test(bar, a_log_gets_a_line_every_5_seconds_by_default)
{
    struct sink s;
    sink_open(&s);
    parmap_bar *b = make_bar(s.f, NULL, PARMAP_BAR_NO_TTY, 0, 80);
    for (size_t k = 0; k <= 40; k++)
        update(b, k, 0, 1000, 0.25 * (double)k); /* 0 to 10 s */
    cr_assert_eq(split(sink_text(&s)), (size_t)3, "%s", sink_text(&s));
    parmap_bar_destroy(b);
    sink_close(&s);
}

Test(bar, the_final_line_is_drawn_at_once_and_only_once)
{
    struct sink s;
    sink_open(&s);
    parmap_bar *b = make_bar(s.f, NULL, PARMAP_BAR_NO_TTY, 1000.0, 80);
    update(b, 1, 0, 3, 0.0); /* first: drawn */
    update(b, 2, 0, 3, 1.0); /* not due */
    update(b, 3, 1, 3, 2.0); /* final: drawn at once */
    update(b, 3, 1, 3, 2.1); /* parmap's last call repeats it */
    parmap_bar_destroy(b);
    const char *t = sink_text(&s);
    cr_assert_eq(split(t), (size_t)2, "%s", t);
    /* 80 columns: "100%|", 36 cells, "| 3/3 [...]". */
    cr_assert_str_eq(seg[1], "100%|####################################"
                             "| 3/3 [00:02<00:00, 1.5 it/s, 1 failed]");
    sink_close(&s);
}

Test(bar, a_second_call_on_the_same_bar_gets_its_own_line)
{
    struct sink s;
    sink_open(&s);
    parmap_bar *b = make_bar(s.f, NULL, PARMAP_BAR_NO_TTY, 0, 80);
    update(b, 10, 0, 10, 1.0);
    update(b, 10, 0, 10, 1.1);
    update(b, 5, 0, 20, 0.5); /* counts go back: a new call */
    update(b, 20, 0, 20, 1.0);
    parmap_bar_destroy(b);
    cr_assert_eq(split(sink_text(&s)), (size_t)3, "%s", sink_text(&s));
    cr_assert_not_null(strstr(seg[0], " 10/10 "));
    cr_assert_not_null(strstr(seg[1], " 5/20 "));
    cr_assert_not_null(strstr(seg[2], " 20/20 "));
    sink_close(&s);

    /* On a terminal, a call that stopped part-way has its line ended
     * before the next call draws. */
    sink_open(&s);
    b = make_bar(s.f, NULL, PARMAP_BAR_FORCE_TTY, 0, 80);
    update(b, 5, 0, 10, 1.0);
    update(b, 1, 0, 10, 0.1);
    parmap_bar_destroy(b);
    const char *t = sink_text(&s);
    cr_assert_eq(count_char(t, '\n'), (size_t)2, "%s", t);
    cr_assert_not_null(strstr(t, " 5/10 ["));
    cr_assert_not_null(strstr(t, "\n\r"));
    sink_close(&s);
}

/* ------------------------------------------------------------------------ */
/* Glyphs from the locale                                                   */
/* ------------------------------------------------------------------------ */

static int draws_unicode(void)
{
    struct sink s;
    sink_open(&s);
    parmap_bar *b = make_bar(s.f, NULL, PARMAP_BAR_NO_TTY, 0, 60);
    update(b, 50, 0, 100, 1.0);
    int unicode = strstr(sink_text(&s), "█") != NULL;
    int ascii = strchr(sink_text(&s), '#') != NULL;
    parmap_bar_destroy(b);
    sink_close(&s);
    cr_assert_neq(unicode, ascii);
    return unicode;
}

Test(bar, defaults_to_unicode_only_in_a_utf8_locale_the_program_set)
{
    cr_assert_not_null(setlocale(LC_ALL, "C"));
    cr_assert_eq(draws_unicode(), 0, "ASCII in the C locale");
    cr_assert_not_null(setlocale(LC_ALL, "C.UTF-8"),
                       "the C.UTF-8 locale is missing");
    cr_assert_eq(draws_unicode(), 1, "Unicode in C.UTF-8");
    cr_assert_not_null(setlocale(LC_ALL, "POSIX"));
    cr_assert_eq(draws_unicode(), 0, "ASCII in the POSIX locale");
}

/* ------------------------------------------------------------------------ */
/* Arguments, errors, attach                                                */
/* ------------------------------------------------------------------------ */

static parmap_bar *const SENTINEL = (parmap_bar *)(uintptr_t)0xba7;

Test(bar, rejects_bad_arguments_with_einval)
{
    static const parmap_bar_opts bad[] = {
        {.flags = PARMAP_BAR_ASCII | PARMAP_BAR_UNICODE},
        {.flags = PARMAP_BAR_FORCE_TTY | PARMAP_BAR_NO_TTY},
        {.flags = 1u << 4},
        {.flags = 1u << 31},
        {.interval = -1.0},
        {.interval = -1e-300},
        {.width = -1},
    };
    parmap_bar *b = SENTINEL;
    parmap_bar_opts nan_interval = {.interval = NAN};

    cr_assert_eq(parmap_bar_create(NULL, stderr, NULL), PARMAP_EINVAL);
    cr_assert_eq(parmap_bar_create(&b, NULL, NULL), PARMAP_EINVAL);
    cr_assert_eq(b, SENTINEL);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cr_assert_eq(parmap_bar_create(&b, stderr, &bad[i]), PARMAP_EINVAL,
                     "case %zu", i);
        cr_assert_eq(b, SENTINEL, "case %zu wrote the out-pointer", i);
    }
    cr_assert_eq(parmap_bar_create(&b, stderr, &nan_interval), PARMAP_EINVAL);
    cr_assert_eq(b, SENTINEL);
    /* The edges that are fine. */
    parmap_bar_opts inf = {.interval = INFINITY, .width = 100000};
    cr_assert_eq(parmap_bar_create(&b, stderr, &inf), 0);
    parmap_bar_destroy(b);
}

Test(bar, reports_enomem_when_its_allocation_fails)
{
    parmap_bar *b = SENTINEL;
    parmap__fault_arm(0);
    cr_assert_eq(parmap_bar_create(&b, stderr, NULL), PARMAP_ENOMEM);
    cr_assert_eq(parmap__fault_fired(), 1);
    cr_assert_eq(b, SENTINEL);
    parmap__fault_arm(-1);
    cr_assert_eq(parmap_bar_create(&b, stderr, NULL), 0);
    cr_assert_neq(b, SENTINEL);
    parmap_bar_destroy(b);
}

Test(bar, attach_sets_the_progress_fields_and_nothing_else)
{
    struct sink s;
    int status[1];
    sink_open(&s);
    parmap_bar *tty = make_bar(s.f, NULL, PARMAP_BAR_FORCE_TTY, 0, 0);
    parmap_bar *log = make_bar(s.f, NULL, PARMAP_BAR_NO_TTY, 0, 0);
    parmap_bar *own = make_bar(s.f, NULL, PARMAP_BAR_NO_TTY, 2.5, 0);
    parmap_opts o = {.flags = PARMAP_FAIL_FAST, .status = status,
                     .progress_interval = 99.0, .timeout = 7.0};

    parmap_bar_attach(tty, &o);
    cr_assert_eq(o.progress, parmap_bar_update);
    cr_assert_eq(o.progress_ctx, tty);
    cr_assert_float_eq(o.progress_interval, 0.1, 1e-12);
    parmap_bar_attach(log, &o);
    cr_assert_eq(o.progress_ctx, log);
    cr_assert_float_eq(o.progress_interval, 5.0, 1e-12);
    parmap_bar_attach(own, &o);
    cr_assert_float_eq(o.progress_interval, 2.5, 1e-12);
    cr_assert_eq(o.flags, PARMAP_FAIL_FAST);
    cr_assert_eq(o.status, status);
    cr_assert_float_eq(o.timeout, 7.0, 1e-12);

    parmap_opts before = o;
    parmap_bar_attach(NULL, &o);
    cr_assert_eq(memcmp(&before, &o, sizeof o), 0);
    parmap_bar_attach(tty, NULL);

    parmap_bar_destroy(tty);
    parmap_bar_destroy(log);
    parmap_bar_destroy(own);
    cr_assert_str_eq(sink_text(&s), "", "a bar never updated writes nothing");
    sink_close(&s);
}

Test(bar, null_arguments_are_harmless)
{
    struct sink s;
    parmap_progress p = {.done = 1, .total = 2, .elapsed = 1.0};
    sink_open(&s);
    parmap_bar *b = make_bar(s.f, NULL, PARMAP_BAR_NO_TTY, 0, 0);
    cr_assert_eq(parmap_bar_update(NULL, &p), 0);
    cr_assert_eq(parmap_bar_update(b, NULL), 0);
    parmap_bar_destroy(b);
    parmap_bar_destroy(NULL);
    cr_assert_str_eq(sink_text(&s), "");
    sink_close(&s);
}

Test(bar, never_cancels_even_when_writes_fail)
{
    FILE *f = fopen("/dev/null", "r"); /* every write fails */
    cr_assert_not_null(f);
    parmap_bar *b = make_bar(f, NULL, PARMAP_BAR_FORCE_TTY, 1e-9, 0);
    for (size_t k = 0; k <= 10; k++)
        update(b, k, 0, 10, (double)k); /* update() asserts the 0 */
    parmap_bar_destroy(b);
    cr_assert(ferror(f));
    fclose(f);
}

/* ------------------------------------------------------------------------ */
/* With real calls                                                          */
/* ------------------------------------------------------------------------ */

static int item(void *ctx, size_t i, const void *in, void *out)
{
    (void)ctx;
    (void)in;
    uint64_t h = i;
    for (int r = 0; r < 200; r++)
        h = pt_mix(h);
    *(uint64_t *)out = h;
    return i % 100 == 7 ? -EIO : 0;
}

Test(bar, draws_a_real_map_to_its_final_line)
{
    static const size_t threads[] = {1, 2, 3, 8};
    for (size_t c = 0; c < sizeof threads / sizeof threads[0]; c++) {
        enum { N = 1223 };
        static uint64_t out[N];
        struct sink s;
        parmap_pool *pool;
        cr_assert_eq(parmap_pool_create(&pool, threads[c], NULL), 0);
        sink_open(&s);
        parmap_bar *b =
            make_bar(s.f, "map", PARMAP_BAR_FORCE_TTY | PARMAP_BAR_ASCII,
                     1e-9, 70);
        parmap_opts o = {0};
        parmap_bar_attach(b, &o);
        o.progress_interval = 0; /* a call after every chunk */
        int rc = parmap_map(pool, N, NULL, 0, out, sizeof *out, item, NULL,
                            &o);
        cr_assert_eq(rc, PARMAP_EFAILED);
        parmap_bar_destroy(b);
        cr_assert_eq(parmap_pool_destroy(pool), 0);

        const char *t = sink_text(&s);
        size_t n = split(t);
        cr_assert_geq(n, (size_t)1);
        cr_assert_eq(t[0], '\r');
        cr_assert_eq(count_char(t, '\n'), (size_t)1, "%s", t);
        cr_assert_eq(t[strlen(t) - 1], '\n');
        cr_assert_leq(widest(t), (size_t)69);
        size_t prev = 0;
        for (size_t i = 0; i < n; i++) {
            size_t d = line_done(seg[i]);
            cr_assert_geq(d, prev, "done went back: '%s'", seg[i]);
            prev = d;
        }
        cr_assert_eq(strncmp(seg[n - 1], "map: 100%|####", 14), 0, "%s",
                     seg[n - 1]);
        cr_assert_not_null(strstr(seg[n - 1], "| 1223/1223 ["),
                           "%s", seg[n - 1]);
        cr_assert_not_null(strstr(seg[n - 1], " it/s, 13 failed]"), "%s",
                           seg[n - 1]);
        sink_close(&s);
    }
}

struct gen {
    size_t n;
};

static int produce(void *ctx, size_t index, void *in)
{
    struct gen *g = ctx;
    if (index == g->n)
        return 0;
    *(uint64_t *)in = index;
    return 1;
}

Test(bar, draws_a_real_stream_with_an_unknown_total)
{
    struct gen g = {.n = 500};
    struct sink s;
    parmap_pool *pool;
    parmap_stream *st;
    parmap_stream_item it;
    size_t got = 0;
    int rc;

    cr_assert_eq(parmap_pool_create(&pool, 3, NULL), 0);
    sink_open(&s);
    parmap_bar *b = make_bar(s.f, "stream", PARMAP_BAR_NO_TTY, 1e-9, 60);
    parmap_opts o = {0};
    parmap_bar_attach(b, &o);
    cr_assert_eq(parmap_stream_create(&st, pool, produce, &g,
                                      sizeof(uint64_t), item, NULL,
                                      sizeof(uint64_t), &o),
                 0);
    while ((rc = parmap_stream_next(st, &it)) == 1)
        got++;
    cr_assert_eq(rc, 0);
    cr_assert_eq(got, g.n);
    cr_assert_eq(parmap_stream_destroy(st), 0);
    parmap_bar_destroy(b);
    cr_assert_eq(parmap_pool_destroy(pool), 0);

    const char *t = sink_text(&s);
    size_t n = split(t);
    cr_assert_geq(n, (size_t)1);
    cr_assert_null(strchr(t, '\r'));
    cr_assert_null(strchr(t, '%'));
    cr_assert_leq(widest(t), (size_t)60);
    cr_assert_eq(strncmp(seg[n - 1], "stream: 500 it [", 16), 0, "%s",
                 seg[n - 1]);
    cr_assert_not_null(strstr(seg[n - 1], " it/s, 5 failed]"), "%s",
                       seg[n - 1]);
    /* Each state is drawn once: the final count appears on one line. */
    size_t finals = 0;
    for (size_t i = 0; i < n; i++)
        finals += strncmp(seg[i], "stream: 500 it", 14) == 0;
    cr_assert_eq(finals, (size_t)1, "%s", t);
    sink_close(&s);
}
