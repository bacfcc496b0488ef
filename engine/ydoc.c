#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <yaml.h>

#include "engine/error.h"
#include "engine/ydoc.h"

/* Nodes and strings live in an arena of chunks freed together: a document is
 * immutable once built, so nothing is freed one by one. */
typedef struct chunk_s {
    struct chunk_s *next;
    size_t used, cap;
    max_align_t data[];
} chunk_t;

struct wh_ydoc_s {
    char *file;
    const wh_ynode_t *root;
    chunk_t *chunks;
};

/* A node being built: its children so far (map: key, value, key, value…). */
typedef struct {
    wh_ynode_t *node;
    const wh_ynode_t **kids;
    size_t n, cap;
} frame_t;

typedef struct {
    wh_ydoc_t *doc;
    wh_diag_t *diag;
    yaml_parser_t parser;
    frame_t stack[WH_YDOC_MAX_DEPTH + 1];
    int depth;
    size_t nodes;
    bool failed; /* a fatal problem was reported: stop building */
} builder_t;

static void *arena_alloc(wh_ydoc_t *doc, size_t size)
{
    chunk_t *c = doc->chunks;
    size = (size + sizeof(max_align_t) - 1) / sizeof(max_align_t) * sizeof(max_align_t);
    if (c == NULL || c->cap - c->used < size) {
        size_t cap = size > 16384 ? size : 16384;
        c = malloc(sizeof(*c) + cap);
        if (c == NULL)
            return NULL;
        c->next = doc->chunks;
        c->used = 0;
        c->cap = cap;
        doc->chunks = c;
    }
    void *p = (char *)c->data + c->used;
    c->used += size;
    return p;
}

void wh_ydoc_free(wh_ydoc_t *doc)
{
    if (doc == NULL)
        return;
    for (chunk_t *c = doc->chunks, *next; c != NULL; c = next) {
        next = c->next;
        free(c);
    }
    free(doc->file);
    free(doc);
}

const wh_ynode_t *wh_ydoc_root(const wh_ydoc_t *doc)
{
    return doc->root;
}

const char *wh_ydoc_file(const wh_ydoc_t *doc)
{
    return doc->file;
}

static void fail_at(builder_t *b, int line, int col, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void fail_at(builder_t *b, int line, int col, const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    wh_diag_error(b->diag, b->doc->file, line, col, "%s", msg);
    b->failed = true;
}

static wh_ynode_t *new_node(builder_t *b, wh_ynode_type_t type, yaml_mark_t mark)
{
    wh_ynode_t *n;
    if (++b->nodes > WH_YDOC_MAX_NODES) {
        fail_at(b, (int)mark.line + 1, (int)mark.column + 1, "too many YAML nodes (more than %d)",
                WH_YDOC_MAX_NODES);
        return NULL;
    }
    n = arena_alloc(b->doc, sizeof(*n));
    if (n == NULL)
        return NULL;
    memset(n, 0, sizeof(*n));
    n->type = type;
    n->line = (int)mark.line + 1;
    n->col = (int)mark.column + 1;
    return n;
}

static int push_kid(builder_t *b, const wh_ynode_t *kid)
{
    frame_t *f;
    if (b->depth == 0) {
        b->doc->root = kid;
        return 0;
    }
    f = &b->stack[b->depth - 1];
    if (f->n == f->cap) {
        size_t cap = f->cap ? f->cap * 2 : 8;
        const wh_ynode_t **kids = realloc(f->kids, cap * sizeof(*kids));
        if (kids == NULL)
            return WH_ENOMEM;
        f->kids = kids;
        f->cap = cap;
    }
    if (f->node->type == WH_YNODE_MAP && f->n % 2 == 0 && kid->type != WH_YNODE_SCALAR)
        fail_at(b, kid->line, kid->col, "mapping keys must be plain strings");
    f->kids[f->n++] = kid;
    return 0;
}

static int cmp_key(const void *pa, const void *pb)
{
    const wh_ypair_t *a = *(const wh_ypair_t *const *)pa, *b = *(const wh_ypair_t *const *)pb;
    int c = strcmp(a->key->str, b->key->str);
    if (c != 0)
        return c;
    return a->key->line != b->key->line ? (a->key->line < b->key->line ? -1 : 1)
                                        : (a->key->col < b->key->col ? -1 : 1);
}

/* Reports each key that repeats an earlier one of the same mapping, at the
 * later key. Sorting keeps this O(n log n) for large mappings. */
static int check_duplicates(builder_t *b, const wh_ynode_t *map)
{
    const wh_ypair_t **sorted;
    if (map->n < 2)
        return 0;
    sorted = malloc(map->n * sizeof(*sorted));
    if (sorted == NULL)
        return WH_ENOMEM;
    for (size_t i = 0; i < map->n; i++)
        sorted[i] = &map->pairs[i];
    qsort(sorted, map->n, sizeof(*sorted), cmp_key);
    for (size_t i = 1; i < map->n; i++) {
        const wh_ynode_t *first = sorted[i - 1]->key, *k = sorted[i]->key;
        if (strcmp(first->str, k->str) != 0)
            continue;
        size_t j = i - 1;
        while (j > 0 && strcmp(sorted[j - 1]->key->str, k->str) == 0)
            j--;
        first = sorted[j]->key;
        wh_diag_error(b->diag, b->doc->file, k->line, k->col,
                      "duplicate key '%s' (first at line %d)", k->str, first->line);
    }
    free(sorted);
    return 0;
}

/* Turns the open frame's children into the node's items or pairs. */
static int close_frame(builder_t *b)
{
    frame_t *f = &b->stack[--b->depth];
    wh_ynode_t *node = f->node;
    int rc = 0;

    if (node->type == WH_YNODE_SEQ) {
        node->n = f->n;
        node->items = arena_alloc(b->doc, (f->n ? f->n : 1) * sizeof(*node->items));
        if (node->items == NULL)
            rc = WH_ENOMEM;
        else if (f->n)
            memcpy(node->items, f->kids, f->n * sizeof(*node->items));
    } else {
        wh_ypair_t *pairs = arena_alloc(b->doc, (f->n / 2 + 1) * sizeof(*pairs));
        node->n = f->n / 2;
        node->pairs = pairs;
        if (pairs == NULL)
            rc = WH_ENOMEM;
        for (size_t i = 0; rc == 0 && i < node->n; i++)
            pairs[i] = (wh_ypair_t){ f->kids[2 * i], f->kids[2 * i + 1] };
        if (rc == 0 && !b->failed)
            rc = check_duplicates(b, node);
    }
    free(f->kids);
    *f = (frame_t){ 0 };
    return rc != 0 ? rc : push_kid(b, node);
}

static int open_frame(builder_t *b, wh_ynode_type_t type, yaml_mark_t mark)
{
    wh_ynode_t *node;
    if (b->depth >= WH_YDOC_MAX_DEPTH) {
        fail_at(b, (int)mark.line + 1, (int)mark.column + 1, "nesting deeper than %d levels",
                WH_YDOC_MAX_DEPTH);
        return 0;
    }
    node = new_node(b, type, mark);
    if (node == NULL)
        return b->failed ? 0 : WH_ENOMEM;
    b->stack[b->depth++] = (frame_t){ .node = node };
    return 0;
}

static int on_scalar(builder_t *b, const yaml_event_t *ev)
{
    const char *value = (const char *)ev->data.scalar.value;
    size_t len = ev->data.scalar.length;
    wh_ynode_t *node;
    char *str;

    if (memchr(value, '\0', len) != NULL) {
        fail_at(b, (int)ev->start_mark.line + 1, (int)ev->start_mark.column + 1,
                "NUL characters are not allowed in strings");
        return 0;
    }
    node = new_node(b, WH_YNODE_SCALAR, ev->start_mark);
    if (node == NULL)
        return b->failed ? 0 : WH_ENOMEM;
    str = arena_alloc(b->doc, len + 1);
    if (str == NULL)
        return WH_ENOMEM;
    memcpy(str, value, len);
    str[len] = '\0';
    node->str = str;
    node->len = len;
    node->plain = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
    return push_kid(b, node);
}

static const yaml_char_t *event_tag(const yaml_event_t *ev)
{
    switch (ev->type) {
    case YAML_SCALAR_EVENT:
        return ev->data.scalar.tag;
    case YAML_SEQUENCE_START_EVENT:
        return ev->data.sequence_start.tag;
    case YAML_MAPPING_START_EVENT:
        return ev->data.mapping_start.tag;
    default:
        return NULL;
    }
}

/* Handles one parser event; returns a WH_E* code only for resource errors
 * (problems in the input are reported and set b->failed). */
static int on_event(builder_t *b, const yaml_event_t *ev, int *docs)
{
    int line = (int)ev->start_mark.line + 1, col = (int)ev->start_mark.column + 1;

    if (event_tag(ev) != NULL) {
        fail_at(b, line, col, "YAML tags are not supported");
        return 0;
    }
    switch (ev->type) {
    case YAML_DOCUMENT_START_EVENT:
        if (++*docs > 1)
            fail_at(b, line, col, "only one YAML document is allowed per file");
        return 0;
    case YAML_ALIAS_EVENT:
        fail_at(b, line, col, "YAML aliases are not supported");
        return 0;
    case YAML_SCALAR_EVENT:
        return on_scalar(b, ev);
    case YAML_SEQUENCE_START_EVENT:
        return open_frame(b, WH_YNODE_SEQ, ev->start_mark);
    case YAML_MAPPING_START_EVENT:
        return open_frame(b, WH_YNODE_MAP, ev->start_mark);
    case YAML_SEQUENCE_END_EVENT:
    case YAML_MAPPING_END_EVENT:
        return close_frame(b);
    default:
        return 0;
    }
}

static void report_parser_error(builder_t *b)
{
    const yaml_parser_t *p = &b->parser;
    yaml_mark_t m = p->problem ? p->problem_mark : p->context_mark;

    if (p->error == YAML_MEMORY_ERROR)
        return;
    if (p->context != NULL)
        fail_at(b, (int)m.line + 1, (int)m.column + 1, "%s %s", p->problem ? p->problem : "",
                p->context);
    else
        fail_at(b, (int)m.line + 1, (int)m.column + 1, "%s",
                p->problem ? p->problem : "malformed YAML");
}

static int build(builder_t *b, const char *buf, size_t len)
{
    yaml_event_t ev;
    int docs = 0, rc = 0;
    bool done = false;

    yaml_parser_set_input_string(&b->parser, (const unsigned char *)buf, len);
    while (!done && rc == 0 && !b->failed) {
        if (!yaml_parser_parse(&b->parser, &ev)) {
            if (b->parser.error == YAML_MEMORY_ERROR)
                rc = WH_ENOMEM;
            report_parser_error(b);
            break;
        }
        done = ev.type == YAML_STREAM_END_EVENT;
        rc = on_event(b, &ev, &docs);
        yaml_event_delete(&ev);
    }
    while (b->depth > 0) {
        free(b->stack[b->depth - 1].kids);
        b->depth--;
    }
    return rc;
}

int wh_ydoc_load_buffer(const char *name, const char *buf, size_t len, wh_diag_t *diag,
                        wh_ydoc_t **out)
{
    builder_t b = { 0 };
    int rc = 0;

    *out = NULL;
    if (len > WH_YDOC_MAX_BYTES) {
        wh_diag_error(diag, name, 0, 0, "file is larger than %d bytes", WH_YDOC_MAX_BYTES);
        return WH_ETOOBIG;
    }
    b.diag = diag;
    b.doc = calloc(1, sizeof(*b.doc));
    if (b.doc == NULL || (b.doc->file = strdup(name)) == NULL) {
        rc = WH_ENOMEM;
        goto out;
    }
    if (!yaml_parser_initialize(&b.parser)) {
        rc = WH_ENOMEM;
        goto out;
    }
    rc = build(&b, buf, len);
    yaml_parser_delete(&b.parser);
    if (rc == 0 && b.failed)
        rc = WH_EPARSE;
out:
    if (rc != 0) {
        wh_ydoc_free(b.doc);
        return rc;
    }
    *out = b.doc;
    return 0;
}

int wh_ydoc_read_file(const char *path, wh_diag_t *diag, char **out, size_t *len)
{
    FILE *f = NULL;
    char *buf = NULL;
    struct stat st;
    int rc = 0;

    *out = NULL;
    *len = 0;
    f = fopen(path, "rb");
    if (f == NULL || fstat(fileno(f), &st) != 0) {
        wh_diag_error(diag, path, 0, 0, "cannot read: %s", strerror(errno));
        rc = WH_EIO;
        goto out;
    }
    if (!S_ISREG(st.st_mode) || st.st_size > WH_YDOC_MAX_BYTES) {
        wh_diag_error(diag, path, 0, 0,
                      S_ISREG(st.st_mode) ? "file is larger than %d bytes"
                                          : "not a regular file (cap %d bytes)",
                      WH_YDOC_MAX_BYTES);
        rc = S_ISREG(st.st_mode) ? WH_ETOOBIG : WH_EIO;
        goto out;
    }
    buf = malloc((size_t)st.st_size + 1);
    if (buf == NULL) {
        rc = WH_ENOMEM;
        goto out;
    }
    *len = fread(buf, 1, (size_t)st.st_size + 1, f);
    if (ferror(f) || *len > (size_t)st.st_size) {
        wh_diag_error(diag, path, 0, 0, "cannot read: the file changed while it was read");
        rc = WH_EIO;
        goto out;
    }
    buf[*len] = '\0';
    *out = buf;
    buf = NULL;
out:
    free(buf);
    if (f != NULL)
        fclose(f);
    return rc;
}

int wh_ydoc_load_file(const char *path, wh_diag_t *diag, wh_ydoc_t **out)
{
    char *buf;
    size_t len;
    int rc = wh_ydoc_read_file(path, diag, &buf, &len);

    *out = NULL;
    if (rc == 0)
        rc = wh_ydoc_load_buffer(path, buf, len, diag, out);
    free(buf);
    return rc;
}

/* ---- helpers for loaders ---- */

const wh_ynode_t *wh_ynode_get(const wh_ynode_t *map, const char *key)
{
    if (map == NULL || map->type != WH_YNODE_MAP)
        return NULL;
    for (size_t i = 0; i < map->n; i++)
        if (strcmp(map->pairs[i].key->str, key) == 0)
            return map->pairs[i].value;
    return NULL;
}

static void vreport(const wh_ydoc_t *doc, const wh_ynode_t *node, wh_diag_t *diag, bool warning,
                    const char *fmt, va_list ap) __attribute__((format(printf, 5, 0)));

static void vreport(const wh_ydoc_t *doc, const wh_ynode_t *node, wh_diag_t *diag, bool warning,
                    const char *fmt, va_list ap)
{
    char msg[512];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    if (warning)
        wh_diag_warning(diag, doc->file, node ? node->line : 0, node ? node->col : 0, "%s", msg);
    else
        wh_diag_error(diag, doc->file, node ? node->line : 0, node ? node->col : 0, "%s", msg);
}

void wh_ynode_error(const wh_ydoc_t *doc, const wh_ynode_t *node, wh_diag_t *diag, const char *fmt,
                    ...)
{
    va_list ap;
    va_start(ap, fmt);
    vreport(doc, node, diag, false, fmt, ap);
    va_end(ap);
}

void wh_ynode_warning(const wh_ydoc_t *doc, const wh_ynode_t *node, wh_diag_t *diag,
                      const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vreport(doc, node, diag, true, fmt, ap);
    va_end(ap);
}

int wh_ynode_check_keys(const wh_ydoc_t *doc, const wh_ynode_t *map, const char *const *allowed,
                        const char *what, wh_diag_t *diag)
{
    int bad = 0;
    if (map == NULL || map->type != WH_YNODE_MAP)
        return 0;
    for (size_t i = 0; i < map->n; i++) {
        const wh_ynode_t *key = map->pairs[i].key;
        const char *const *a = allowed;
        while (*a != NULL && strcmp(*a, key->str) != 0)
            a++;
        if (*a != NULL)
            continue;
        bad++;
        if (what != NULL)
            wh_ynode_error(doc, key, diag, "unknown key '%s' in %s", key->str, what);
        else
            wh_ynode_error(doc, key, diag, "unknown key '%s'", key->str);
    }
    return bad;
}

static const char *type_name(wh_ynode_type_t type)
{
    switch (type) {
    case WH_YNODE_SCALAR:
        return "a scalar";
    case WH_YNODE_SEQ:
        return "a sequence";
    default:
        return "a mapping";
    }
}

bool wh_ynode_expect(const wh_ydoc_t *doc, const wh_ynode_t *node, wh_ynode_type_t type,
                     const char *what, wh_diag_t *diag)
{
    if (node != NULL && node->type == type)
        return true;
    wh_ynode_error(doc, node, diag, "%s must be %s", what, type_name(type));
    return false;
}

bool wh_ynode_is_null(const wh_ynode_t *node)
{
    if (node == NULL || node->type != WH_YNODE_SCALAR || !node->plain)
        return false;
    return node->len == 0 || strcmp(node->str, "~") == 0 || strcmp(node->str, "null") == 0 ||
           strcmp(node->str, "Null") == 0 || strcmp(node->str, "NULL") == 0;
}

bool wh_ynode_int(const wh_ydoc_t *doc, const wh_ynode_t *node, const char *what, int64_t min,
                  int64_t max, wh_diag_t *diag, int64_t *out)
{
    const char *s;
    char *end;
    long long v;

    if (node == NULL || node->type != WH_YNODE_SCALAR || !node->plain)
        goto bad;
    s = node->str;
    if (*s == '+' || *s == '-')
        s++;
    if (*s < '0' || *s > '9')
        goto bad;
    errno = 0;
    v = strtoll(node->str, &end, 10);
    if (*end != '\0')
        goto bad;
    if (errno == ERANGE || v < min || v > max) {
        wh_ynode_error(doc, node, diag, "%s must be between %lld and %lld", what, (long long)min,
                       (long long)max);
        return false;
    }
    *out = v;
    return true;
bad:
    wh_ynode_error(doc, node, diag, "%s must be an integer", what);
    return false;
}

bool wh_ynode_bool(const wh_ydoc_t *doc, const wh_ynode_t *node, const char *what, wh_diag_t *diag,
                   bool *out)
{
    if (node != NULL && node->type == WH_YNODE_SCALAR && node->plain) {
        if (strcmp(node->str, "true") == 0) {
            *out = true;
            return true;
        }
        if (strcmp(node->str, "false") == 0) {
            *out = false;
            return true;
        }
    }
    wh_ynode_error(doc, node, diag, "%s must be true or false", what);
    return false;
}

bool wh_ynode_str(const wh_ydoc_t *doc, const wh_ynode_t *node, const char *what, wh_diag_t *diag,
                  const char **out)
{
    if (node == NULL || node->type != WH_YNODE_SCALAR || wh_ynode_is_null(node)) {
        wh_ynode_error(doc, node, diag, "%s must be a string", what);
        return false;
    }
    *out = node->str;
    return true;
}

bool wh_name_valid(const char *s)
{
    if (s == NULL || *s == '\0' || strlen(s) > WH_NAME_MAX)
        return false;
    for (; *s != '\0'; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '-'))
            return false;
    return true;
}
