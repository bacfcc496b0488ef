/* The deadline scheduler against bare libuv timers (bench/deadlines.sh builds
 * and runs it; docs/PERFORMANCE.md has the figures).
 *
 *   bench_deadlines arm [-n N]
 *       arms N pending deadlines into the scheduler's heap (wh_heap_push)
 *       and, beside it, starts N uv_timer_t; time and resident memory each.
 *   bench_deadlines rearm [-n N] [-d DIR]
 *       makes a database holding N deadline rows, then times wh_engine_open
 *       (which loads every row into the heap) against a bare
 *       `SELECT id, due_at FROM deadlines` loop.
 *   bench_deadlines late -p PORT -D DB [-s SECONDS] [-r RATE] [-l LABEL]
 *       raises RATE tickets a second for SECONDS on a running `whistle serve`
 *       (workflow load-2s: a 2 s state deadline), watches the daemon's
 *       database every millisecond and takes the moment each deadline row
 *       disappears (the breach commits in the transaction that deletes it)
 *       minus its due time as the lateness; beside it, in the same process
 *       and at the same time, a bare uv loop starts 2 s timers at the same
 *       rate and measures their lateness with uv_hrtime.
 *
 * Each mode prints rows of the table in docs/PERFORMANCE.md.
 */
#include <curl/curl.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "engine/calendar.h"
#include "engine/engine.h"
#include "engine/heap.h"
#include "engine/workflow.h"
#include "src/config.h"

#ifndef WH_SOURCE_DIR
#define WH_SOURCE_DIR "."
#endif

static void die(const char *what, const char *why)
{
    fprintf(stderr, "bench_deadlines: %s: %s\n", what, why ? why : "failed");
    exit(1);
}

static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double real_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static long rss_bytes(void)
{
    long size = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f == NULL || fscanf(f, "%ld %ld", &size, &resident) != 2)
        die("/proc/self/statm", "unreadable");
    fclose(f);
    return resident * sysconf(_SC_PAGESIZE);
}

/* Due times spread over 30 days from now, in a fixed pseudo-random order. */
static int64_t due_of(int64_t base, long i)
{
    uint64_t x = (uint64_t)i * 6364136223846793005u + 1442695040888963407u;
    return base + 60 + (int64_t)((x >> 33) % (30 * 86400));
}

/* ---- arm: heap entries against uv timers ---- */

/* One machine-readable line per headline figure, for bench/run's table:
 * RESULT, metric, whistle, reference, ratio, target, met (tab-separated).
 * Every figure here is lower-is-better, so the ratio is reference/whistle. */
static void result(const char *metric, const char *w, const char *ref, double ratio,
                   const char *target, const char *met)
{
    char r[32] = "-";
    if (ratio > 0)
        snprintf(r, sizeof(r), "%.2fx", ratio);
    printf("RESULT\t%s\t%s\t%s\t%s\t%s\t%s\n", metric, w, ref, r, target, met);
}

static void noop_timer(uv_timer_t *t)
{
    (void)t;
}

static void arm(long n)
{
    wh_heap_t heap = { 0 };
    int64_t base = (int64_t)time(NULL);
    uv_loop_t loop;
    uv_timer_t *timers;
    long rss0, rss1, rss2, rss3;
    double t0, heap_s, uv_s;

    rss0 = rss_bytes();
    t0 = mono_s();
    for (long i = 0; i < n; i++)
        if (wh_heap_push(&heap, due_of(base, i), i + 1) != 0)
            die("wh_heap_push", "out of memory");
    heap_s = mono_s() - t0;
    rss1 = rss_bytes();
    size_t cap = heap.cap;
    wh_heap_clear(&heap);

    if (uv_loop_init(&loop) != 0)
        die("uv_loop_init", NULL);
    rss2 = rss_bytes();
    t0 = mono_s();
    /* The array is part of the cost: a uv timer lives in memory its owner
     * provides, one uv_timer_t per pending due time. */
    if ((timers = malloc((size_t)n * sizeof(*timers))) == NULL)
        die("malloc", "out of memory");
    for (long i = 0; i < n; i++) {
        uv_timer_init(&loop, &timers[i]);
        uv_timer_start(&timers[i], noop_timer, (uint64_t)(due_of(base, i) - base) * 1000, 0);
    }
    uv_s = mono_s() - t0;
    rss3 = rss_bytes();
    for (long i = 0; i < n; i++)
        uv_close((uv_handle_t *)&timers[i], NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    free(timers);

    printf("| arm %ld pending deadlines | %.3f s (wh_heap_push) | %.3f s (uv_timer_init+start) "
           "| |\n",
           n, heap_s, uv_s);
    printf("| RAM per pending deadline | %zu B entry; %.1f B allocated (capacity %zu); %.1f B "
           "RSS delta | %zu B sizeof(uv_timer_t); %.1f B RSS delta | ≤ 64 B |\n",
           sizeof(wh_heap_entry_t), (double)(cap * sizeof(wh_heap_entry_t)) / (double)n, cap,
           (double)(rss1 - rss0) / (double)n, sizeof(uv_timer_t),
           (double)(rss3 - rss2) / (double)n);

    char metric[128], w[128], ref[128];
    double wb = (double)(rss1 - rss0) / (double)n, ub = (double)(rss3 - rss2) / (double)n;
    snprintf(metric, sizeof(metric), "deadlines: arm %ld, s (lower is better)", n);
    snprintf(w, sizeof(w), "%.3f s", heap_s);
    snprintf(ref, sizeof(ref), "%.3f s (uv_timer_start)", uv_s);
    result(metric, w, ref, uv_s / heap_s, "-", "-");
    snprintf(metric, sizeof(metric),
             "deadlines: RAM per pending deadline, B (RSS growth over %ld; "
             "lower is better)",
             n);
    snprintf(w, sizeof(w), "%.1f B", wb);
    snprintf(ref, sizeof(ref), "%.1f B (uv_timer_t)", ub);
    result(metric, w, ref, wb > 0 ? ub / wb : 0, "≤ 64 B",
           n < 1000000 ? "n/a (< 1e6)"
           : wb <= 64  ? "met"
                       : "missed");
}

/* ---- rearm: wh_engine_open against a SELECT loop ---- */

typedef struct {
    uv_loop_t loop;
    wh_config_t *cfg;
    wh_workflow_t *wf;
    wh_calendar_t *cal;
    wh_tz_t *tz;
    wh_engine_calendar_t cals[1];
    const wh_workflow_t *wfs[1];
    wh_engine_t *eng;
} eng_t;

static void engine_load(eng_t *b)
{
    wh_diag_t *diag = wh_diag_new();
    if (wh_config_load(WH_SOURCE_DIR "/examples/whistle.yaml", diag, &b->cfg) != 0 ||
        wh_workflow_load(WH_SOURCE_DIR "/workflows/street-whistle.yaml", &b->cfg->dir, diag,
                         &b->wf) != 0 ||
        wh_calendar_load(WH_SOURCE_DIR "/examples/calendars/cn.yaml", NULL, diag, &b->cal) != 0 ||
        wh_tz_load("Asia/Shanghai", &b->tz) != 0) {
        wh_diag_print(diag, stderr);
        die("loading the example config", "see above");
    }
    wh_diag_free(diag);
    b->cals[0] = (wh_engine_calendar_t){ "workdays", b->cal };
    b->wfs[0] = b->wf;
}

/* Opens the engine (the real clock: every row is in the future) and returns
 * the seconds wh_engine_open took. */
static double engine_open(eng_t *b, const char *db)
{
    char err[256] = "";
    if (uv_loop_init(&b->loop) != 0)
        die("uv_loop_init", NULL);
    wh_engine_options_t opt = { .loop = &b->loop,
                                .db_path = db,
                                .durability_full = true,
                                .dir = &b->cfg->dir,
                                .workflows = b->wfs,
                                .nworkflows = 1,
                                .calendars = b->cals,
                                .ncalendars = 1,
                                .tz = b->tz };
    double t0 = mono_s();
    if (wh_engine_open(&opt, &b->eng, err, sizeof(err)) != 0)
        die(db, err);
    return mono_s() - t0;
}

static void engine_close(eng_t *b)
{
    wh_engine_close(b->eng);
    uv_run(&b->loop, UV_RUN_DEFAULT);
    uv_loop_close(&b->loop);
}

static void exec(sqlite3 *db, const char *sql)
{
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK)
        die(sql, msg);
}

static void fill(const char *path, long n)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    int64_t base = (int64_t)time(NULL);
    char key[64];

    if (sqlite3_open(path, &db) != SQLITE_OK)
        die(path, sqlite3_errmsg(db));
    exec(db, "BEGIN");
    if (sqlite3_prepare_v2(db,
                           "INSERT INTO deadlines(ticket,key,due_at,kind,ref,step,repeat) "
                           "VALUES(?1,?2,?3,0,'whistled',?4,0)",
                           -1, &st, NULL) != SQLITE_OK)
        die("prepare", sqlite3_errmsg(db));
    /* Keys shaped like the engine's: ticket, kind, state, visit, step. */
    for (long i = 0; i < n; i++) {
        snprintf(key, sizeof(key), "%ld:s:whistled:1:%ld", i / 3 + 1, i % 3);
        sqlite3_bind_int64(st, 1, i / 3 + 1);
        sqlite3_bind_text(st, 2, key, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int64(st, 3, due_of(base, i));
        sqlite3_bind_int64(st, 4, i % 3);
        if (sqlite3_step(st) != SQLITE_DONE)
            die("insert", sqlite3_errmsg(db));
        sqlite3_reset(st);
    }
    sqlite3_finalize(st);
    exec(db, "COMMIT");
    sqlite3_close(db);
}

/* The floor: reading the same rows with nothing done to them. */
static double select_loop(const char *path, long *rows)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    int64_t sum = 0;
    double t0 = mono_s();

    *rows = 0;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(db, "SELECT id, due_at FROM deadlines", -1, &st, NULL) != SQLITE_OK)
        die(path, sqlite3_errmsg(db));
    while (sqlite3_step(st) == SQLITE_ROW) {
        sum += sqlite3_column_int64(st, 0) ^ sqlite3_column_int64(st, 1);
        (*rows)++;
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
    if (sum == 42)
        fputc(' ', stderr); /* keeps the loop's reads alive */
    return mono_s() - t0;
}

static void rearm(long n, const char *dir)
{
    char path[512], cmd[1700];
    eng_t b = { 0 };
    double open_empty = 1e9, open_full = 1e9, sel = 1e9, t;
    long rows = 0;

    snprintf(path, sizeof(path), "%s/bench-deadlines.db", dir);
    snprintf(cmd, sizeof(cmd), "rm -f '%s' '%s-wal' '%s-shm'", path, path, path);
    if (system(cmd) != 0)
        die(cmd, NULL);
    engine_load(&b);
    engine_open(&b, path); /* makes the schema */
    engine_close(&b);
    for (int round = 0; round < 3; round++) {
        if ((t = engine_open(&b, path)) < open_empty)
            open_empty = t;
        engine_close(&b);
    }
    t = mono_s();
    fill(path, n);
    fprintf(stderr, "bench_deadlines: %ld rows written in %.1f s\n", n, mono_s() - t);
    /* Best of three each, alternating, on a warm page cache. */
    for (int round = 0; round < 3; round++) {
        if ((t = select_loop(path, &rows)) < sel)
            sel = t;
        if ((t = engine_open(&b, path)) < open_full)
            open_full = t;
        engine_close(&b);
    }
    if (rows != n)
        die("the SELECT loop", "read a wrong number of rows");
    printf("| re-arm %ld deadlines after a restart | %.3f s (wh_engine_open; %.3f s with no "
           "rows) | %.3f s (bare SELECT id, due_at loop) | ≤ 2 s |\n",
           n, open_full, open_empty, sel);
    char metric[128], w[64], ref[64];
    snprintf(metric, sizeof(metric), "deadlines: re-arm %ld after a restart, s (lower is better)",
             n);
    snprintf(w, sizeof(w), "%.3f s", open_full);
    snprintf(ref, sizeof(ref), "%.3f s (bare SELECT loop)", sel);
    result(metric, w, ref, sel / open_full, "≤ 2 s",
           n < 1000000        ? "n/a (< 1e6)"
           : open_full <= 2.0 ? "met"
                              : "missed");
    wh_workflow_free(b.wf);
    wh_calendar_free(b.cal);
    wh_tz_free(b.tz);
    wh_config_free(b.cfg);
    if (system(cmd) != 0)
        die(cmd, NULL);
}

/* ---- late: lateness of the daemon's timer, and of a bare uv loop ---- */

typedef struct {
    double *v;
    size_t n, cap;
} samples_t;

static void add(samples_t *s, double x)
{
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 1024;
        if ((s->v = realloc(s->v, s->cap * sizeof(double))) == NULL)
            die("realloc", "out of memory");
    }
    s->v[s->n++] = x;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void stats(samples_t *s, char *out, size_t len)
{
    if (s->n == 0) {
        snprintf(out, len, "no samples");
        return;
    }
    qsort(s->v, s->n, sizeof(double), cmp_double);
    size_t p99 = (s->n * 99 + 99) / 100 - 1;
    snprintf(out, len, "%.0f / %.0f / %.0f ms (n = %zu)", s->v[(s->n - 1) / 2], s->v[p99],
             s->v[s->n - 1], s->n);
}

typedef struct {
    int port;
    const char *db;
    double seconds, rate;
    volatile int raising; /* the raiser has not finished yet */
    long raised, refused;
    samples_t late_ms, uv_ms;
} late_t;

static size_t discard(char *p, size_t size, size_t n, void *arg)
{
    (void)p;
    (void)arg;
    return size * n;
}

/* Raises load-2s tickets at a steady rate (absolute schedule, so a slow
 * answer does not lower the rate). */
static void *raiser(void *arg)
{
    late_t *l = arg;
    static const char body[] = "{\"workflow\":\"load-2s\",\"category\":\"late\",\"title\":\"t\"}";
    char url[128];
    struct curl_slist *h = curl_slist_append(NULL, "Authorization: Bearer tok-xintan");
    h = curl_slist_append(h, "Content-Type: application/json");
    CURL *c = curl_easy_init();
    long total = (long)(l->seconds * l->rate);
    double t0 = mono_s();

    snprintf(url, sizeof(url), "http://127.0.0.1:%d/v1/tickets", l->port);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard);
    for (long i = 0; i < total; i++) {
        long status = 0;
        double wait = t0 + (double)i / l->rate - mono_s();
        if (wait > 0)
            usleep((useconds_t)(wait * 1e6));
        if (curl_easy_perform(c) == CURLE_OK &&
            curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status) == CURLE_OK && status == 201)
            l->raised++;
        else
            l->refused++;
    }
    curl_easy_cleanup(c);
    curl_slist_free_all(h);
    l->raising = 0;
    return NULL;
}

/* The id of every pending deadline row is tracked from when it is first
 * seen; when it has gone, its breach committed (load-2s has no ladder and
 * no way out of the state but `close`, which nobody fires here). */
typedef struct {
    int64_t *due;    /* by deadline id; 0 = never seen */
    uint8_t *seen;   /* 1 = pending at the last look, 2 = fired */
    uint8_t *now_in; /* present in this look */
    size_t cap;
} track_t;

static void watch(late_t *l)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    track_t tr = { 0 };
    size_t pending = 0, lo = 1, hi = 0;
    double give_up = 0;

    tr.cap = 1u << 22;
    tr.due = calloc(tr.cap, sizeof(int64_t));
    tr.seen = calloc(tr.cap, 1);
    tr.now_in = calloc(tr.cap, 1);
    if (tr.due == NULL || tr.seen == NULL || tr.now_in == NULL)
        die("calloc", "out of memory");
    if (sqlite3_open_v2(l->db, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(db, "SELECT id, due_at FROM deadlines", -1, &st, NULL) != SQLITE_OK)
        die(l->db, sqlite3_errmsg(db));
    sqlite3_busy_timeout(db, 1000);
    for (;;) {
        size_t n = 0;
        while (sqlite3_step(st) == SQLITE_ROW) {
            int64_t id = sqlite3_column_int64(st, 0);
            if (id <= 0 || (size_t)id >= tr.cap)
                continue;
            tr.now_in[id] = 1;
            if (tr.seen[id] == 0) {
                tr.seen[id] = 1;
                tr.due[id] = sqlite3_column_int64(st, 1);
                pending++;
                if ((size_t)id > hi)
                    hi = (size_t)id;
            }
            n++;
        }
        sqlite3_reset(st);
        double t = real_ms();
        /* Only the ids from the oldest pending one up are looked at. */
        for (size_t id = lo; id <= hi; id++) {
            if (tr.seen[id] == 1 && !tr.now_in[id]) {
                tr.seen[id] = 2;
                pending--;
                add(&l->late_ms, t - (double)tr.due[id] * 1e3);
            }
            tr.now_in[id] = 0;
        }
        while (lo <= hi && tr.seen[lo] != 1)
            lo++;
        if (!l->raising && pending == 0 && n == 0)
            break;
        if (!l->raising && give_up == 0)
            give_up = mono_s() + 15;
        if (give_up > 0 && mono_s() > give_up) {
            fprintf(stderr,
                    "bench_deadlines: %zu deadlines had not fired 15 s after the last "
                    "raise\n",
                    pending);
            break;
        }
        usleep(1000);
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
    free(tr.due);
    free(tr.seen);
    free(tr.now_in);
}

/* The baseline: a bare loop starting one 2 s timer every 1/rate s. */
typedef struct {
    uv_timer_t t;
    uint64_t started;
    late_t *l;
} bare_timer_t;

typedef struct {
    uv_loop_t loop;
    uv_timer_t tick;
    bare_timer_t *timers;
    long n, total;
    late_t *l;
} bare_t;

static void bare_fired(uv_timer_t *h)
{
    bare_timer_t *b = (bare_timer_t *)h;
    add(&b->l->uv_ms, (double)(uv_hrtime() - b->started) / 1e6 - 2000.0);
    uv_close((uv_handle_t *)h, NULL);
}

static void bare_tick(uv_timer_t *h)
{
    bare_t *b = h->data;
    bare_timer_t *t = &b->timers[b->n++];
    t->l = b->l;
    uv_timer_init(&b->loop, &t->t);
    t->started = uv_hrtime();
    uv_update_time(&b->loop);
    uv_timer_start(&t->t, bare_fired, 2000, 0);
    if (b->n == b->total)
        uv_close((uv_handle_t *)&b->tick, NULL);
}

static void *bare_main(void *arg)
{
    bare_t *b = arg;
    uint64_t every = (uint64_t)(1000.0 / b->l->rate);
    b->total = (long)(b->l->seconds * b->l->rate);
    if ((b->timers = calloc((size_t)b->total, sizeof(*b->timers))) == NULL)
        die("calloc", "out of memory");
    uv_loop_init(&b->loop);
    uv_timer_init(&b->loop, &b->tick);
    b->tick.data = b;
    uv_timer_start(&b->tick, bare_tick, 0, every ? every : 1);
    uv_run(&b->loop, UV_RUN_DEFAULT);
    uv_loop_close(&b->loop);
    free(b->timers);
    return NULL;
}

/* The 99th percentile of samples stats() has sorted. */
static double p99_of(const samples_t *s)
{
    return s->n ? s->v[(s->n * 99 + 99) / 100 - 1] : -1;
}

static void late(late_t *l, const char *label)
{
    pthread_t r, u;
    bare_t bare = { .l = l };
    char a[128], b[128];

    curl_global_init(CURL_GLOBAL_DEFAULT);
    l->raising = 1;
    if (pthread_create(&r, NULL, raiser, l) != 0 || pthread_create(&u, NULL, bare_main, &bare) != 0)
        die("pthread_create", NULL);
    watch(l);
    pthread_join(r, NULL);
    pthread_join(u, NULL);
    curl_global_cleanup();
    stats(&l->late_ms, a, sizeof(a));
    stats(&l->uv_ms, b, sizeof(b));
    printf("| lateness p50 / p99 / max, %s (%.1f raises/s, %ld raised, %ld refused) | %s | %s | "
           "p99 ≤ 20 ms |\n",
           label, l->rate, l->raised, l->refused, a, b);
    char metric[200], w[64], ref[64];
    double wp = p99_of(&l->late_ms), up = p99_of(&l->uv_ms);
    snprintf(metric, sizeof(metric),
             "deadlines: lateness p99, %s (%.1f raises/s), ms (lower is "
             "better)",
             label, l->rate);
    snprintf(w, sizeof(w), "%.1f ms (n = %zu)", wp, l->late_ms.n);
    snprintf(ref, sizeof(ref), "%.1f ms (bare uv timer)", up);
    result(metric, w, ref, wp > 0 ? up / wp : 0, "≤ 20 ms",
           l->late_ms.n > 0 && wp <= 20 ? "met" : "missed");
    free(l->late_ms.v);
    free(l->uv_ms.v);
}

/* ---- main ---- */

static void usage(void)
{
    fprintf(stderr, "usage: bench_deadlines arm [-n N]\n"
                    "       bench_deadlines rearm [-n N] [-d DIR]\n"
                    "       bench_deadlines late -p PORT -D DB [-s SECONDS] [-r RATE] "
                    "[-l LABEL]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    long n = 1000000;
    const char *dir = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp", *label = "under load";
    late_t l = { .seconds = 10, .rate = 50 };
    int opt;

    if (argc < 2)
        usage();
    optind = 2;
    while ((opt = getopt(argc, argv, "n:d:p:D:s:r:l:")) != -1) {
        switch (opt) {
        case 'n':
            n = atol(optarg);
            break;
        case 'd':
            dir = optarg;
            break;
        case 'p':
            l.port = atoi(optarg);
            break;
        case 'D':
            l.db = optarg;
            break;
        case 's':
            l.seconds = atof(optarg);
            break;
        case 'r':
            l.rate = atof(optarg);
            break;
        case 'l':
            label = optarg;
            break;
        default:
            usage();
        }
    }
    if (n < 1 || l.seconds <= 0 || l.rate <= 0)
        usage();
    if (strcmp(argv[1], "arm") == 0)
        arm(n);
    else if (strcmp(argv[1], "rearm") == 0)
        rearm(n, dir);
    else if (strcmp(argv[1], "late") == 0 && l.port > 0 && l.db != NULL)
        late(&l, label);
    else
        usage();
    return 0;
}
