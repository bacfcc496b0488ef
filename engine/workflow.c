/* The workflow loader (SPEC §3): YAML tree -> validated, immutable model.
 *
 * Loading runs in passes over the ydoc tree: first every name that can be
 * referenced (states, events, clocks, escalations, priorities) is collected,
 * so that references resolve whatever order the sections come in; then each
 * section is parsed with its references resolved to indices; then the checks
 * that need the whole model (initial/final, reachability, `fire` events) run.
 * Every problem is reported and loading goes on, so one run shows them all.
 * All memory of a model comes from one arena freed by wh_workflow_free. */
#include <stdalign.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "engine/error.h"
#include "engine/workflow.h"
#include "engine/ydoc.h"

/* Caps on counts; ydoc already caps the file size, depth and node count. */
#define MAX_STATES      256
#define MAX_EVENTS      256
#define MAX_CLOCKS      64
#define MAX_ESCALATIONS 64
#define MAX_STEPS       32
#define MAX_PRIORITIES  16
#define MAX_ROUTES      1024
#define MAX_LIST        256

/* ---- arena ---- */

typedef struct chunk_s {
    struct chunk_s *next;
    size_t used, cap;
    max_align_t data[];
} chunk_t;

typedef struct {
    chunk_t *head;
} arena_t;

#define CHUNK_SIZE 16384

static void *arena_alloc(arena_t *a, size_t size)
{
    size_t align = alignof(max_align_t);
    chunk_t *c = a->head;
    void *p;

    size = (size + align - 1) / align * align;
    if (size == 0)
        size = align;
    if (c == NULL || c->cap - c->used < size) {
        size_t cap = size > CHUNK_SIZE ? size : CHUNK_SIZE;
        c = malloc(sizeof(*c) + cap);
        if (c == NULL)
            return NULL;
        c->cap = cap;
        c->used = 0;
        c->next = a->head;
        a->head = c;
    }
    p = (char *)c->data + c->used;
    c->used += size;
    memset(p, 0, size);
    return p;
}

static void arena_free(arena_t *a)
{
    chunk_t *c = a->head;

    while (c != NULL) {
        chunk_t *next = c->next;
        free(c);
        c = next;
    }
    a->head = NULL;
}

/* The model and the arena it lives in; wf comes first so that a model
 * pointer is also a pointer to its box. */
typedef struct {
    wh_workflow_t wf;
    arena_t arena;
} box_t;

/* ---- loader context ---- */

typedef struct {
    const wh_ydoc_t *doc;
    wh_diag_t *diag;
    arena_t *arena;
    bool oom;
    wh_workflow_t *wf;

    /* Mutable views of the model's arrays while it is built. */
    const char **priorities;
    wh_state_t *states;
    const wh_ynode_t **state_nodes; /* the key node of each state */
    const wh_ynode_t **state_maps;  /* the value node of each state */
    wh_event_t *events;
    const wh_ynode_t **event_maps;
    wh_clock_t *clocks;
    const wh_ynode_t **clock_maps;
    wh_escalation_t *escs;
    const wh_ynode_t **fire_nodes; /* per state: the deadline's fire node */

    /* Set when a problem already reported would make the whole-graph checks
     * report nonsense (a lost edge, an unreadable initial flag). */
    bool flags_bad, edges_bad;
} ctx_t;

static void *ctx_alloc(ctx_t *c, size_t n, size_t size)
{
    void *p;

    if (n != 0 && size > SIZE_MAX / n) {
        c->oom = true;
        return NULL;
    }
    p = arena_alloc(c->arena, n * size);
    if (p == NULL)
        c->oom = true;
    return p;
}

static const char *ctx_strdup(ctx_t *c, const char *s)
{
    size_t len = strlen(s);
    char *p = ctx_alloc(c, 1, len + 1);

    if (p != NULL)
        memcpy(p, s, len + 1);
    return p != NULL ? p : "";
}

static wh_pos_t pos_of(const wh_ynode_t *n)
{
    wh_pos_t p = { n != NULL ? n->line : 0, n != NULL ? n->col : 0 };
    return p;
}

#define ERR(c, node, ...) wh_ynode_error((c)->doc, (node), (c)->diag, __VA_ARGS__)

/* Whether pair i of map repeats an earlier key (ydoc reported it already). */
static bool dup_key(const wh_ynode_t *map, size_t i)
{
    for (size_t j = 0; j < i; j++)
        if (strcmp(map->pairs[j].key->str, map->pairs[i].key->str) == 0)
            return true;
    return false;
}

static bool need(ctx_t *c, const wh_ynode_t *map, const char *key, const char *what,
                 const wh_ynode_t **out)
{
    *out = wh_ynode_get(map, key);
    if (*out != NULL)
        return true;
    if (what != NULL)
        ERR(c, map, "missing key '%s' in %s", key, what);
    else
        ERR(c, map, "missing key '%s'", key);
    return false;
}

/* A name ([a-z0-9-]+) in a scalar node; kind says what it names. */
static bool name_of(ctx_t *c, const wh_ynode_t *n, const char *kind, const char **out)
{
    if (n == NULL || n->type != WH_YNODE_SCALAR || wh_ynode_is_null(n)) {
        ERR(c, n, "%s name must be a string", kind);
        return false;
    }
    if (!wh_name_valid(n->str)) {
        ERR(c, n, "bad %s name '%s' (use [a-z0-9-], at most 64 characters)", kind, n->str);
        return false;
    }
    *out = n->str;
    return true;
}

/* A name, or a list of names: lists in the language take a lone name too. */
typedef struct {
    const wh_ynode_t *one;
    const wh_ynode_t *const *v;
    size_t n;
} nlist_t;

static bool list_of(ctx_t *c, const wh_ynode_t *n, const char *what, bool nonempty, nlist_t *out)
{
    out->n = 0;
    out->v = NULL;
    if (n != NULL && n->type == WH_YNODE_SCALAR && !wh_ynode_is_null(n)) {
        out->one = n;
        out->v = &out->one;
        out->n = 1;
        return true;
    }
    if (n == NULL || n->type != WH_YNODE_SEQ) {
        ERR(c, n, "%s must be a name or a list of names", what);
        return false;
    }
    if (nonempty && n->n == 0) {
        ERR(c, n, "%s must not be empty", what);
        return false;
    }
    if (n->n > MAX_LIST) {
        ERR(c, n, "%s has more than %d entries", what, MAX_LIST);
        return false;
    }
    out->v = n->items;
    out->n = n->n;
    return true;
}

static int find_name(const char *const *names, size_t n, const char *s)
{
    for (size_t i = 0; i < n; i++)
        if (names[i] != NULL && strcmp(names[i], s) == 0)
            return (int)i;
    return -1;
}

static int find_state(ctx_t *c, const char *s)
{
    for (size_t i = 0; i < c->wf->nstates; i++)
        if (s != NULL && c->states[i].name != NULL && strcmp(c->states[i].name, s) == 0)
            return (int)i;
    return -1;
}

static int find_event(ctx_t *c, const char *s)
{
    for (size_t i = 0; i < c->wf->nevents; i++)
        if (s != NULL && c->events[i].name != NULL && strcmp(c->events[i].name, s) == 0)
            return (int)i;
    return -1;
}

static int find_clock(ctx_t *c, const char *s)
{
    for (size_t i = 0; i < c->wf->nclocks; i++)
        if (s != NULL && c->clocks[i].name != NULL && strcmp(c->clocks[i].name, s) == 0)
            return (int)i;
    return -1;
}

static int find_esc(ctx_t *c, const char *s)
{
    for (size_t i = 0; i < c->wf->nescalations; i++)
        if (s != NULL && c->escs[i].name != NULL && strcmp(c->escs[i].name, s) == 0)
            return (int)i;
    return -1;
}

/* Resolves a scalar naming a state / event / … through find; -1 reported. */
static int ref(ctx_t *c, const wh_ynode_t *n, const char *kind, int (*find)(ctx_t *, const char *))
{
    int i;

    if (n == NULL || n->type != WH_YNODE_SCALAR || wh_ynode_is_null(n)) {
        ERR(c, n, "%s name must be a string", kind);
        return -1;
    }
    i = find(c, n->str);
    if (i < 0)
        ERR(c, n, "unknown %s '%s'", kind, n->str);
    return i;
}

/* A list of state names resolved to indices (unknown ones reported, left
 * out). Returns whether the list itself was well formed. */
static bool state_list(ctx_t *c, const wh_ynode_t *n, const char *what, bool nonempty,
                       wh_index_list_t *out)
{
    nlist_t l;
    int *v;
    size_t k = 0;

    out->v = NULL;
    out->n = 0;
    if (!list_of(c, n, what, nonempty, &l))
        return false;
    v = ctx_alloc(c, l.n, sizeof(*v));
    if (v == NULL)
        return false;
    for (size_t i = 0; i < l.n; i++) {
        int s = ref(c, l.v[i], "state", find_state);
        if (s >= 0)
            v[k++] = s;
    }
    out->v = v;
    out->n = k;
    return true;
}

static bool duration_of(ctx_t *c, const wh_ynode_t *n, const char *what, bool allow_negative,
                        bool positive, wh_duration_t *out)
{
    const char *why = NULL;
    int rc;

    if (n == NULL || n->type != WH_YNODE_SCALAR || wh_ynode_is_null(n)) {
        ERR(c, n, "%s must be a duration", what);
        return false;
    }
    rc = wh_duration_parse(n->str, allow_negative, out, &why);
    if (rc == WH_ERANGE) {
        ERR(c, n, "%s '%s' is too large", what, n->str);
        return false;
    }
    if (rc != 0) {
        ERR(c, n, "bad duration '%s' in %s: %s", n->str, what, why != NULL ? why : "malformed");
        return false;
    }
    if (positive && out->n <= 0) {
        ERR(c, n, "%s must be positive", what);
        return false;
    }
    return true;
}

/* ---- who: by lists and notify targets ---- */

static bool reserved_org_word(const char *s)
{
    static const char *const words[] = { "raiser",   "assignee", "assignees", "system",
                                         "laggards", "parents",  "default",   NULL };
    wh_org_kind_t k;

    for (size_t i = 0; words[i] != NULL; i++)
        if (strcmp(s, words[i]) == 0)
            return true;
    return wh_org_kind_parse(s, true, &k) == 0;
}

static bool who_notify_word(const char *s, wh_who_type_t *t)
{
    if (strcmp(s, "assignees") == 0)
        *t = WH_WHO_ASSIGNEES;
    else if (strcmp(s, "laggards") == 0)
        *t = WH_WHO_LAGGARDS;
    else if (strcmp(s, "parents") == 0)
        *t = WH_WHO_PARENTS;
    else
        return false;
    return true;
}

static bool who_of(ctx_t *c, const wh_ynode_t *n, bool notify, wh_who_t *out)
{
    const char *s = n->str;
    wh_who_type_t t;

    memset(out, 0, sizeof(*out));
    out->pos = pos_of(n);
    if (n->type != WH_YNODE_SCALAR || wh_ynode_is_null(n)) {
        ERR(c, n, "%s entries must be strings", notify ? "notify" : "by");
        return false;
    }
    if (strcmp(s, "raiser") == 0) {
        out->type = WH_WHO_RAISER;
        return true;
    }
    if (strcmp(s, "assignee") == 0 || strcmp(s, "system") == 0) {
        if (notify) {
            ERR(c, n, "'%s' is not a notify target%s", s, s[0] == 'a' ? " (use 'assignees')" : "");
            return false;
        }
        out->type = s[0] == 'a' ? WH_WHO_ASSIGNEE : WH_WHO_SYSTEM;
        return true;
    }
    if (who_notify_word(s, &t)) {
        if (!notify) {
            ERR(c, n, "'%s' is a notify target and cannot fire events%s", s,
                t == WH_WHO_ASSIGNEES ? " (use 'assignee')" : "");
            return false;
        }
        out->type = t;
        return true;
    }
    if (wh_org_kind_parse(s, notify, &out->kind) == 0) {
        out->type = WH_WHO_KIND;
        return true;
    }
    if (!notify && wh_org_kind_parse(s, true, &out->kind) == 0) {
        ERR(c, n, "use the singular '%s' in by", wh_org_kind_name(out->kind));
        return false;
    }
    if (!wh_name_valid(s)) {
        ERR(c, n, "bad org id '%s' (use [a-z0-9-], at most 64 characters)", s);
        return false;
    }
    out->type = WH_WHO_ORG;
    out->org = ctx_strdup(c, s);
    return true;
}

static bool who_list(ctx_t *c, const wh_ynode_t *n, bool notify, wh_who_list_t *out)
{
    nlist_t l;
    wh_who_t *v;
    size_t k = 0;
    bool ok = true;

    out->v = NULL;
    out->n = 0;
    if (!list_of(c, n, notify ? "notify" : "by", true, &l))
        return false;
    v = ctx_alloc(c, l.n, sizeof(*v));
    if (v == NULL)
        return false;
    for (size_t i = 0; i < l.n; i++) {
        if (who_of(c, l.v[i], notify, &v[k]))
            k++;
        else
            ok = false;
    }
    out->v = v;
    out->n = k;
    return ok;
}

/* ---- top level ---- */

static const char *const top_keys[] = {
    "workflow", "version",  "title",       "calendar",
    "routes",   "services", "priorities",  "default_priority",
    "states",   "clocks",   "transitions", "escalations",
    "notify",   "audit",    NULL,
};

static void parse_header(ctx_t *c, const wh_ynode_t *root)
{
    wh_workflow_t *wf = c->wf;
    const wh_ynode_t *n;
    const char *s;
    int64_t v;

    wf->name = "";
    wf->calendar = "workdays";
    if (need(c, root, "workflow", NULL, &n) && name_of(c, n, "workflow", &s))
        wf->name = ctx_strdup(c, s);
    if (need(c, root, "version", NULL, &n) &&
        wh_ynode_int(c->doc, n, "version", 1, INT32_MAX, c->diag, &v))
        wf->version = v;
    if ((n = wh_ynode_get(root, "title")) != NULL && wh_ynode_str(c->doc, n, "title", c->diag, &s))
        wf->title = ctx_strdup(c, s);
    if ((n = wh_ynode_get(root, "calendar")) != NULL && name_of(c, n, "calendar", &s))
        wf->calendar = ctx_strdup(c, s);
}

static void parse_priorities(ctx_t *c, const wh_ynode_t *root)
{
    const wh_ynode_t *n = wh_ynode_get(root, "priorities");
    const wh_ynode_t *d = wh_ynode_get(root, "default_priority");
    size_t k = 0;

    c->wf->default_priority = 0;
    if (n != NULL && wh_ynode_expect(c->doc, n, WH_YNODE_SEQ, "priorities", c->diag)) {
        if (n->n == 0)
            ERR(c, n, "priorities must not be empty");
        else if (n->n > MAX_PRIORITIES)
            ERR(c, n, "too many priorities (%zu, at most %d)", n->n, MAX_PRIORITIES);
        else if ((c->priorities = ctx_alloc(c, n->n, sizeof(char *))) != NULL) {
            for (size_t i = 0; i < n->n; i++) {
                const char *s;
                if (!name_of(c, n->items[i], "priority", &s))
                    continue;
                if (find_name(c->priorities, k, s) >= 0) {
                    ERR(c, n->items[i], "duplicate priority '%s'", s);
                    continue;
                }
                c->priorities[k++] = ctx_strdup(c, s);
            }
        }
    }
    c->wf->priorities = c->priorities;
    c->wf->npriorities = k;
    if (d == NULL)
        return;
    if (d->type != WH_YNODE_SCALAR || wh_ynode_is_null(d)) {
        ERR(c, d, "default_priority must be a string");
    } else if (k == 0) {
        ERR(c, d, "default_priority needs 'priorities'");
    } else {
        int i = find_name(c->priorities, k, d->str);
        if (i < 0)
            ERR(c, d, "unknown priority '%s'", d->str);
        else
            c->wf->default_priority = i;
    }
}

/* Counts the entries of an optional name-keyed section and checks the cap.
 * Returns the usable map or NULL. */
static const wh_ynode_t *section(ctx_t *c, const wh_ynode_t *root, const char *key, size_t cap,
                                 bool *too_many)
{
    const wh_ynode_t *n = wh_ynode_get(root, key);

    if (n == NULL || wh_ynode_is_null(n))
        return NULL;
    if (!wh_ynode_expect(c->doc, n, WH_YNODE_MAP, key, c->diag))
        return NULL;
    if (n->n > cap) {
        ERR(c, n, "too many %s (%zu, at most %zu)", key, n->n, cap);
        *too_many = true;
        return NULL;
    }
    return n;
}

/* Allocates the arrays for a name-keyed section and fills in the names.
 * Duplicate keys (already reported by ydoc) are skipped, so each name has
 * one index. Returns how many entries there are. */
static size_t collect(ctx_t *c, const wh_ynode_t *map, const char *kind, void *arr, size_t size,
                      size_t name_off, size_t pos_off, const wh_ynode_t **maps)
{
    size_t k = 0;

    if (map == NULL || arr == NULL)
        return 0;
    for (size_t i = 0; i < map->n; i++) {
        char *item = (char *)arr + k * size;
        const char *s = NULL;
        if (dup_key(map, i))
            continue;
        if (!name_of(c, map->pairs[i].key, kind, &s))
            s = map->pairs[i].key->str;
        *(const char **)(void *)(item + name_off) = ctx_strdup(c, s);
        *(wh_pos_t *)(void *)(item + pos_off) = pos_of(map->pairs[i].key);
        if (maps != NULL)
            maps[k] = map->pairs[i].value;
        k++;
    }
    return k;
}

#define COLLECT(c, map, kind, arr, type, maps)                                                  \
    collect((c), (map), (kind), (arr), sizeof(type), offsetof(type, name), offsetof(type, pos), \
            (maps))

static bool collect_names(ctx_t *c, const wh_ynode_t *root)
{
    bool too_many = false;
    const wh_ynode_t *st = section(c, root, "states", MAX_STATES, &too_many);
    const wh_ynode_t *ev = section(c, root, "transitions", MAX_EVENTS, &too_many);
    const wh_ynode_t *cl = section(c, root, "clocks", MAX_CLOCKS, &too_many);
    const wh_ynode_t *es = section(c, root, "escalations", MAX_ESCALATIONS, &too_many);
    size_t ns = st ? st->n : 0, ne = ev ? ev->n : 0, nc = cl ? cl->n : 0, nx = es ? es->n : 0;

    if (too_many)
        return false;
    c->states = ctx_alloc(c, ns + 1, sizeof(*c->states));
    c->state_nodes = ctx_alloc(c, ns + 1, sizeof(*c->state_nodes));
    c->state_maps = ctx_alloc(c, ns + 1, sizeof(*c->state_maps));
    c->fire_nodes = ctx_alloc(c, ns + 1, sizeof(*c->fire_nodes));
    c->events = ctx_alloc(c, ne + 1, sizeof(*c->events));
    c->event_maps = ctx_alloc(c, ne + 1, sizeof(*c->event_maps));
    c->clocks = ctx_alloc(c, nc + 1, sizeof(*c->clocks));
    c->clock_maps = ctx_alloc(c, nc + 1, sizeof(*c->clock_maps));
    c->escs = ctx_alloc(c, nx + 1, sizeof(*c->escs));
    if (c->oom)
        return false;
    c->wf->nstates = COLLECT(c, st, "state", c->states, wh_state_t, c->state_maps);
    for (size_t i = 0, k = 0; st != NULL && i < st->n; i++)
        if (!dup_key(st, i))
            c->state_nodes[k++] = st->pairs[i].key;
    c->wf->nevents = COLLECT(c, ev, "event", c->events, wh_event_t, c->event_maps);
    c->wf->nclocks = COLLECT(c, cl, "clock", c->clocks, wh_clock_t, c->clock_maps);
    c->wf->nescalations = COLLECT(c, es, "escalation", c->escs, wh_escalation_t, NULL);
    return !c->oom;
}

/* ---- escalations ---- */

static const char *const step_keys[] = { "at", "notify", "repeat", NULL };

static void parse_step(ctx_t *c, const wh_ynode_t *n, wh_step_t *s)
{
    const wh_ynode_t *v;

    s->pos = pos_of(n);
    if (!wh_ynode_expect(c->doc, n, WH_YNODE_MAP, "an escalation step", c->diag))
        return;
    wh_ynode_check_keys(c->doc, n, step_keys, "escalation step", c->diag);
    if (need(c, n, "at", "escalation step", &v))
        duration_of(c, v, "at", true, false, &s->at);
    if (need(c, n, "notify", "escalation step", &v))
        who_list(c, v, true, &s->notify);
    if ((v = wh_ynode_get(n, "repeat")) != NULL)
        s->has_repeat = duration_of(c, v, "repeat", false, true, &s->repeat);
}

static void parse_escalations(ctx_t *c, const wh_ynode_t *root)
{
    const wh_ynode_t *map = wh_ynode_get(root, "escalations");

    for (size_t i = 0, k = 0; map != NULL && map->type == WH_YNODE_MAP && i < map->n; i++) {
        const wh_ynode_t *seq = map->pairs[i].value;
        wh_escalation_t *e;
        wh_step_t *steps;

        if (dup_key(map, i))
            continue;
        e = &c->escs[k++];
        if (!wh_ynode_expect(c->doc, seq, WH_YNODE_SEQ, "an escalation", c->diag))
            continue;
        if (seq->n == 0 || seq->n > MAX_STEPS) {
            ERR(c, seq, "escalation '%s' must have 1 to %d steps", e->name, MAX_STEPS);
            continue;
        }
        steps = ctx_alloc(c, seq->n, sizeof(*steps));
        if (steps == NULL)
            return;
        for (size_t j = 0; j < seq->n; j++)
            parse_step(c, seq->items[j], &steps[j]);
        e->steps = steps;
        e->nsteps = seq->n;
    }
}

/* ---- states ---- */

static const char *const state_keys[] = { "title", "initial", "final", "deadline", NULL };
static const char *const deadline_keys[] = { "within", "escalate", "fire", NULL };

static void parse_deadline(ctx_t *c, size_t i, const wh_ynode_t *n)
{
    wh_state_t *s = &c->states[i];
    const wh_ynode_t *v;

    if (!wh_ynode_expect(c->doc, n, WH_YNODE_MAP, "deadline", c->diag))
        return;
    wh_ynode_check_keys(c->doc, n, deadline_keys, "deadline", c->diag);
    if (need(c, n, "within", "deadline", &v)) {
        if (v->type == WH_YNODE_MAP)
            ERR(c, v, "a state deadline's within must be one duration");
        else
            s->has_deadline = duration_of(c, v, "within", false, true, &s->within);
    }
    if ((v = wh_ynode_get(n, "escalate")) != NULL)
        s->escalate = ref(c, v, "escalation", find_esc);
    if ((v = wh_ynode_get(n, "fire")) != NULL) {
        s->fire = ref(c, v, "event", find_event);
        c->fire_nodes[i] = v;
    }
}

static void parse_state(ctx_t *c, size_t i)
{
    wh_state_t *s = &c->states[i];
    const wh_ynode_t *n = c->state_maps[i], *v;
    const char *str;
    char what[300];

    s->escalate = -1;
    s->fire = -1;
    snprintf(what, sizeof(what), "state '%s'", s->name);
    if (!wh_ynode_expect(c->doc, n, WH_YNODE_MAP, what, c->diag))
        return;
    wh_ynode_check_keys(c->doc, n, state_keys, what, c->diag);
    if ((v = wh_ynode_get(n, "title")) != NULL && wh_ynode_str(c->doc, v, "title", c->diag, &str))
        s->title = ctx_strdup(c, str);
    if ((v = wh_ynode_get(n, "initial")) != NULL &&
        !wh_ynode_bool(c->doc, v, "initial", c->diag, &s->initial))
        c->flags_bad = true;
    if ((v = wh_ynode_get(n, "final")) != NULL &&
        !wh_ynode_bool(c->doc, v, "final", c->diag, &s->final))
        c->flags_bad = true;
    if ((v = wh_ynode_get(n, "deadline")) != NULL) {
        if (s->final)
            ERR(c, v, "final state '%s' cannot have a deadline", s->name);
        else
            parse_deadline(c, i, v);
    }
    if (s->initial && s->final)
        ERR(c, wh_ynode_get(n, "final"), "state '%s' cannot be both initial and final", s->name);
}

static void parse_states(ctx_t *c, const wh_ynode_t *root)
{
    const wh_ynode_t *map = wh_ynode_get(root, "states");
    const wh_ynode_t *first = NULL;

    c->wf->initial = -1;
    if (map == NULL) {
        ERR(c, root, "missing key 'states'");
        return;
    }
    if (wh_ynode_is_null(map)) {
        ERR(c, map, "states must be a mapping");
        return;
    }
    for (size_t i = 0; i < c->wf->nstates; i++)
        parse_state(c, i);
    if (map->type != WH_YNODE_MAP || c->flags_bad)
        return;
    for (size_t i = 0; i < c->wf->nstates; i++) {
        if (!c->states[i].initial)
            continue;
        if (first == NULL) {
            first = c->state_nodes[i];
            c->wf->initial = (int)i;
        } else {
            ERR(c, wh_ynode_get(c->state_maps[i], "initial"),
                "second initial state '%s' (the first is '%s')", c->states[i].name, first->str);
        }
    }
    if (first == NULL)
        ERR(c, map, "no initial state");
    for (size_t i = 0; i < c->wf->nstates; i++)
        if (c->states[i].final)
            return;
    ERR(c, map, "no final state");
}

/* ---- transitions ---- */

static const char *const event_keys[] = { "from",    "to",    "by",      "join",
                                          "require", "limit", "extends", NULL };

static void parse_require(ctx_t *c, const wh_ynode_t *n, wh_event_t *e)
{
    nlist_t l;

    if (!list_of(c, n, "require", false, &l))
        return;
    for (size_t i = 0; i < l.n; i++) {
        const wh_ynode_t *r = l.v[i];
        if (r->type == WH_YNODE_SCALAR && strcmp(r->str, "note") == 0)
            e->require |= WH_REQUIRE_NOTE;
        else if (r->type == WH_YNODE_SCALAR && strcmp(r->str, "assignees") == 0)
            e->require |= WH_REQUIRE_ASSIGNEES;
        else if (r->type == WH_YNODE_SCALAR && strcmp(r->str, "rating") == 0)
            e->require |= WH_REQUIRE_RATING;
        else
            ERR(c, r, "unknown require field '%s' (use note, assignees or rating)",
                r->type == WH_YNODE_SCALAR ? r->str : "?");
    }
}

static void parse_extends(ctx_t *c, const wh_ynode_t *n, wh_event_t *e)
{
    wh_extend_t *v;
    size_t k = 0;

    if (!wh_ynode_expect(c->doc, n, WH_YNODE_MAP, "extends", c->diag))
        return;
    if (n->n == 0) {
        ERR(c, n, "extends must not be empty");
        return;
    }
    v = ctx_alloc(c, n->n, sizeof(*v));
    if (v == NULL)
        return;
    for (size_t i = 0; i < n->n; i++) {
        int clock;
        if (dup_key(n, i))
            continue;
        clock = ref(c, n->pairs[i].key, "clock", find_clock);
        if (duration_of(c, n->pairs[i].value, "extends", false, true, &v[k].by) && clock >= 0)
            v[k++].clock = clock;
    }
    e->extends = v;
    e->nextends = k;
}

static bool by_has(const wh_event_t *e, wh_who_type_t t)
{
    for (size_t i = 0; i < e->by.n; i++)
        if (e->by.v[i].type == t)
            return true;
    return false;
}

static void parse_event_rest(ctx_t *c, const wh_ynode_t *n, wh_event_t *e)
{
    const wh_ynode_t *v;
    int64_t limit;

    if ((v = wh_ynode_get(n, "join")) != NULL) {
        if (v->type != WH_YNODE_SCALAR || strcmp(v->str, "all") != 0)
            ERR(c, v, "join must be 'all'");
        else if (!by_has(e, WH_WHO_ASSIGNEE))
            ERR(c, v, "join needs 'assignee' in by");
        else
            e->join_all = true;
    }
    if ((v = wh_ynode_get(n, "require")) != NULL)
        parse_require(c, v, e);
    if ((v = wh_ynode_get(n, "limit")) != NULL &&
        wh_ynode_int(c->doc, v, "limit", 1, UINT32_MAX, c->diag, &limit))
        e->limit = (unsigned)limit;
    if ((v = wh_ynode_get(n, "extends")) != NULL)
        parse_extends(c, v, e);
}

/* A final state ends the ticket: no event may leave it. from is known to be
 * a well-formed list here. */
static void check_leaves_final(ctx_t *c, const wh_event_t *e, const wh_ynode_t *from)
{
    nlist_t l;

    if (!list_of(c, from, "from", true, &l))
        return;
    for (size_t j = 0; j < l.n; j++) {
        int s = find_state(c, l.v[j]->str);
        if (s >= 0 && c->states[s].final)
            ERR(c, l.v[j], "event '%s' leaves final state '%s'", e->name, c->states[s].name);
    }
}

static void parse_event(ctx_t *c, size_t i)
{
    wh_event_t *e = &c->events[i];
    const wh_ynode_t *n = c->event_maps[i], *v;
    char what[300];

    e->to = -1;
    snprintf(what, sizeof(what), "transition '%s'", e->name);
    if (strcmp(e->name, "raise") == 0 || strcmp(e->name, "escalated") == 0 ||
        strcmp(e->name, "breached") == 0)
        wh_diag_error(c->diag, wh_ydoc_file(c->doc), e->pos.line, e->pos.col,
                      "'%s' is a reserved event name", e->name);
    if (!wh_ynode_expect(c->doc, n, WH_YNODE_MAP, what, c->diag)) {
        c->edges_bad = true;
        return;
    }
    wh_ynode_check_keys(c->doc, n, event_keys, what, c->diag);
    if (need(c, n, "from", what, &v) && state_list(c, v, "from", true, &e->from))
        check_leaves_final(c, e, v);
    else
        c->edges_bad = true;
    if (need(c, n, "to", what, &v))
        e->to = ref(c, v, "state", find_state);
    c->edges_bad |= e->to < 0;
    if (need(c, n, "by", what, &v))
        who_list(c, v, false, &e->by);
    parse_event_rest(c, n, e);
}

static void parse_events(ctx_t *c)
{
    for (size_t i = 0; i < c->wf->nevents; i++)
        parse_event(c, i);
}

static bool index_has(wh_index_list_t l, int v)
{
    for (size_t i = 0; i < l.n; i++)
        if (l.v[i] == v)
            return true;
    return false;
}

/* A deadline's `fire` event is fired by the engine in that state, so it must
 * leave that state, be allowed for `system` and need no fields. */
static void check_fire(ctx_t *c)
{
    for (size_t i = 0; i < c->wf->nstates; i++) {
        const wh_state_t *s = &c->states[i];
        const wh_event_t *e;
        if (s->fire < 0)
            continue;
        e = &c->events[s->fire];
        if (!index_has(e->from, (int)i))
            ERR(c, c->fire_nodes[i], "event '%s' must have '%s' in its from to be fired here",
                e->name, s->name);
        if (!by_has(e, WH_WHO_SYSTEM))
            ERR(c, c->fire_nodes[i], "event '%s' must have 'system' in its by to be fired here",
                e->name);
        if (e->require != 0)
            ERR(c, c->fire_nodes[i], "event '%s' has a require and cannot be fired here", e->name);
    }
}

/* ---- clocks ---- */

static const char *const clock_keys[] = { "starts", "stops", "pauses", "within", "escalate", NULL };

static void parse_within_map(ctx_t *c, const wh_ynode_t *n, wh_duration_t *v)
{
    size_t np = c->wf->npriorities;
    bool *seen;

    if (np == 0) {
        ERR(c, n, "a per-priority within needs 'priorities'");
        return;
    }
    seen = ctx_alloc(c, np, sizeof(*seen));
    if (seen == NULL)
        return;
    for (size_t i = 0; i < n->n; i++) {
        const wh_ynode_t *k = n->pairs[i].key;
        int p = find_name(c->priorities, np, k->str);
        if (dup_key(n, i))
            continue;
        if (p < 0) {
            ERR(c, k, "unknown priority '%s'", k->str);
            continue;
        }
        duration_of(c, n->pairs[i].value, "within", false, true, &v[p]);
        seen[p] = true;
    }
    for (size_t p = 0; p < np; p++)
        if (!seen[p])
            ERR(c, n, "within has no duration for priority '%s'", c->priorities[p]);
}

static void parse_clock(ctx_t *c, size_t i)
{
    wh_clock_t *k = &c->clocks[i];
    const wh_ynode_t *n = c->clock_maps[i], *v;
    size_t np = c->wf->npriorities > 0 ? c->wf->npriorities : 1;
    wh_duration_t *within = ctx_alloc(c, np, sizeof(*within));
    char what[300];

    k->starts = -1;
    k->escalate = -1;
    k->within = within;
    snprintf(what, sizeof(what), "clock '%s'", k->name);
    if (within == NULL || !wh_ynode_expect(c->doc, n, WH_YNODE_MAP, what, c->diag))
        return;
    wh_ynode_check_keys(c->doc, n, clock_keys, what, c->diag);
    if (need(c, n, "starts", what, &v))
        k->starts = ref(c, v, "state", find_state);
    if (need(c, n, "stops", what, &v))
        state_list(c, v, "stops", true, &k->stops);
    if ((v = wh_ynode_get(n, "pauses")) != NULL)
        state_list(c, v, "pauses", false, &k->pauses);
    if (need(c, n, "within", what, &v)) {
        if (v->type == WH_YNODE_MAP)
            parse_within_map(c, v, within);
        else if (duration_of(c, v, "within", false, true, &within[0]))
            for (size_t p = 1; p < np; p++)
                within[p] = within[0];
    }
    if ((v = wh_ynode_get(n, "escalate")) != NULL)
        k->escalate = ref(c, v, "escalation", find_esc);
}

/* ---- notify, routes, services, audit ---- */

static void parse_notify(ctx_t *c, const wh_ynode_t *root)
{
    const wh_ynode_t *map = wh_ynode_get(root, "notify");

    if (map == NULL || !wh_ynode_expect(c->doc, map, WH_YNODE_MAP, "notify", c->diag))
        return;
    for (size_t i = 0; i < map->n; i++) {
        int s;
        if (dup_key(map, i))
            continue;
        s = ref(c, map->pairs[i].key, "state", find_state);
        if (s >= 0)
            who_list(c, map->pairs[i].value, true, &c->states[s].notify);
    }
}

static void parse_route(ctx_t *c, const wh_ynode_t *key, const wh_ynode_t *val, wh_route_t *r)
{
    nlist_t l;
    const char **orgs;
    wh_pos_t *pos;
    const char *s;
    char what[300];

    r->pos = pos_of(key);
    r->category = ctx_strdup(c, name_of(c, key, "category", &s) ? s : key->str);
    snprintf(what, sizeof(what), "route '%s'", key->str);
    if (!list_of(c, val, what, true, &l))
        return;
    orgs = ctx_alloc(c, l.n, sizeof(*orgs));
    pos = ctx_alloc(c, l.n, sizeof(*pos));
    if (orgs == NULL || pos == NULL)
        return;
    for (size_t j = 0; j < l.n; j++) {
        const wh_ynode_t *o = l.v[j];
        if (o->type != WH_YNODE_SCALAR || !wh_name_valid(o->str)) {
            ERR(c, o, "bad org id '%s' (use [a-z0-9-], at most 64 characters)",
                o->type == WH_YNODE_SCALAR ? o->str : "?");
            continue;
        }
        if (reserved_org_word(o->str)) {
            ERR(c, o, "'%s' is a role or kind, not an org id", o->str);
            continue;
        }
        pos[r->norgs] = pos_of(o);
        orgs[r->norgs++] = ctx_strdup(c, o->str);
    }
    r->orgs = orgs;
    r->org_pos = pos;
}

static void parse_routes(ctx_t *c, const wh_ynode_t *root)
{
    const wh_ynode_t *map = wh_ynode_get(root, "routes");
    wh_route_t *routes;
    size_t k = 0;

    if (map == NULL || !wh_ynode_expect(c->doc, map, WH_YNODE_MAP, "routes", c->diag))
        return;
    if (map->n > MAX_ROUTES) {
        ERR(c, map, "too many routes (%zu, at most %d)", map->n, MAX_ROUTES);
        return;
    }
    routes = ctx_alloc(c, map->n + 1, sizeof(*routes));
    if (routes == NULL)
        return;
    for (size_t i = 0; i < map->n; i++)
        if (!dup_key(map, i))
            parse_route(c, map->pairs[i].key, map->pairs[i].value, &routes[k++]);
    c->wf->routes = routes;
    c->wf->nroutes = k;
}

static const char *const service_keys[] = { "name", "description", "group", "keywords", NULL };

static const char *opt_str(ctx_t *c, const wh_ynode_t *map, const char *key)
{
    const wh_ynode_t *v = wh_ynode_get(map, key);
    const char *s;

    if (v == NULL || !wh_ynode_str(c->doc, v, key, c->diag, &s))
        return NULL;
    return ctx_strdup(c, s);
}

static void parse_service(ctx_t *c, const wh_ynode_t *key, const wh_ynode_t *n, wh_service_t *s)
{
    const wh_ynode_t *kw;
    const char **v;

    s->category = ctx_strdup(c, key->str);
    s->pos = pos_of(key);
    if (strcmp(key->str, "default") == 0)
        ERR(c, key, "'default' is not a service category");
    else if (wh_workflow_route(c->wf, key->str) == NULL ||
             strcmp(wh_workflow_route(c->wf, key->str)->category, key->str) != 0)
        ERR(c, key, "service '%s' has no route", key->str);
    if (!wh_ynode_expect(c->doc, n, WH_YNODE_MAP, "a service", c->diag))
        return;
    wh_ynode_check_keys(c->doc, n, service_keys, "service", c->diag);
    s->name = opt_str(c, n, "name");
    s->description = opt_str(c, n, "description");
    s->group = opt_str(c, n, "group");
    kw = wh_ynode_get(n, "keywords");
    if (kw == NULL || !wh_ynode_expect(c->doc, kw, WH_YNODE_SEQ, "keywords", c->diag))
        return;
    v = ctx_alloc(c, kw->n + 1, sizeof(*v));
    if (v == NULL)
        return;
    for (size_t i = 0; i < kw->n; i++) {
        const char *str;
        if (wh_ynode_str(c->doc, kw->items[i], "a keyword", c->diag, &str))
            v[s->nkeywords++] = ctx_strdup(c, str);
    }
    s->keywords = v;
}

static void parse_services(ctx_t *c, const wh_ynode_t *root)
{
    const wh_ynode_t *map = wh_ynode_get(root, "services");
    wh_service_t *v;
    size_t k = 0;

    if (map == NULL || !wh_ynode_expect(c->doc, map, WH_YNODE_MAP, "services", c->diag))
        return;
    if (map->n > MAX_ROUTES) {
        ERR(c, map, "too many services (%zu, at most %d)", map->n, MAX_ROUTES);
        return;
    }
    v = ctx_alloc(c, map->n + 1, sizeof(*v));
    if (v == NULL)
        return;
    for (size_t i = 0; i < map->n; i++)
        if (!dup_key(map, i))
            parse_service(c, map->pairs[i].key, map->pairs[i].value, &v[k++]);
    c->wf->services = v;
    c->wf->nservices = k;
}

static void audit_list(ctx_t *c, const wh_ynode_t *n, const char *dflt, wh_index_list_t *out)
{
    nlist_t l;
    int *v;

    out->n = 0;
    if (n == NULL) {
        int e = find_event(c, dflt);
        if (e < 0 || (v = ctx_alloc(c, 1, sizeof(*v))) == NULL)
            return;
        v[0] = e;
        out->v = v;
        out->n = 1;
        return;
    }
    if (!list_of(c, n, dflt, false, &l) || (v = ctx_alloc(c, l.n + 1, sizeof(*v))) == NULL)
        return;
    for (size_t i = 0; i < l.n; i++) {
        int e = ref(c, l.v[i], "event", find_event);
        if (e >= 0)
            v[out->n++] = e;
    }
    out->v = v;
}

static const char *const audit_keys[] = { "dispute", "reopen", NULL };

static void parse_audit(ctx_t *c, const wh_ynode_t *root)
{
    const wh_ynode_t *n = wh_ynode_get(root, "audit");

    if (n != NULL && !wh_ynode_expect(c->doc, n, WH_YNODE_MAP, "audit", c->diag))
        n = NULL;
    if (n != NULL)
        wh_ynode_check_keys(c->doc, n, audit_keys, "audit", c->diag);
    audit_list(c, wh_ynode_get(n, "dispute"), "dispute", &c->wf->audit_dispute);
    audit_list(c, wh_ynode_get(n, "reopen"), "reopen", &c->wf->audit_reopen);
}

/* ---- graph checks ---- */

/* Marks the states reachable from start (forward) or that reach a marked
 * state (backward), following the events' edges until nothing changes. */
static void reach(const ctx_t *c, bool *mark, bool forward)
{
    bool changed = true;

    while (changed) {
        changed = false;
        for (size_t i = 0; i < c->wf->nevents; i++) {
            const wh_event_t *e = &c->events[i];
            if (e->to < 0)
                continue;
            for (size_t j = 0; j < e->from.n; j++) {
                int a = e->from.v[j], b = e->to;
                if (!forward) {
                    a = e->to;
                    b = e->from.v[j];
                }
                if (mark[a] && !mark[b]) {
                    mark[b] = true;
                    changed = true;
                }
            }
        }
    }
}

static void check_graph(ctx_t *c)
{
    size_t n = c->wf->nstates;
    bool *fwd = ctx_alloc(c, n + 1, sizeof(bool)), *back = ctx_alloc(c, n + 1, sizeof(bool));
    bool any_final = false;

    if (fwd == NULL || back == NULL || c->flags_bad || c->edges_bad)
        return;
    for (size_t i = 0; i < n; i++) {
        back[i] = c->states[i].final;
        any_final |= back[i];
    }
    if (c->wf->initial >= 0) {
        fwd[c->wf->initial] = true;
        reach(c, fwd, true);
    }
    reach(c, back, false);
    for (size_t i = 0; i < n; i++) {
        const wh_ynode_t *k = c->state_nodes[i];
        if (c->wf->initial >= 0 && !fwd[i] && !c->states[i].initial)
            ERR(c, k, "state '%s' is not reachable from the initial state '%s'", k->str,
                c->states[c->wf->initial].name);
        else if (any_final && !back[i])
            ERR(c, k, "no final state can be reached from state '%s'", k->str);
    }
}

/* ---- org references ---- */

static void org_error(const wh_workflow_t *wf, wh_diag_t *diag, wh_pos_t p, const char *id,
                      int *errors)
{
    wh_diag_error(diag, wf->file, p.line, p.col, "unknown org '%s'", id);
    (*errors)++;
}

static void check_who_ids(const wh_workflow_t *wf, const wh_orgdir_t *dir, wh_diag_t *diag,
                          wh_who_list_t l, int *errors)
{
    for (size_t i = 0; i < l.n; i++)
        if (l.v[i].type == WH_WHO_ORG && wh_orgdir_find(dir, l.v[i].org) < 0)
            org_error(wf, diag, l.v[i].pos, l.v[i].org, errors);
}

static int check_ids(const wh_workflow_t *wf, const wh_orgdir_t *dir, wh_diag_t *diag)
{
    int errors = 0;

    for (size_t i = 0; i < wf->nroutes; i++)
        for (size_t j = 0; j < wf->routes[i].norgs; j++)
            if (wh_orgdir_find(dir, wf->routes[i].orgs[j]) < 0)
                org_error(wf, diag, wf->routes[i].org_pos[j], wf->routes[i].orgs[j], &errors);
    for (size_t i = 0; i < wf->nevents; i++)
        check_who_ids(wf, dir, diag, wf->events[i].by, &errors);
    for (size_t i = 0; i < wf->nstates; i++)
        check_who_ids(wf, dir, diag, wf->states[i].notify, &errors);
    for (size_t i = 0; i < wf->nescalations; i++)
        for (size_t j = 0; j < wf->escalations[i].nsteps; j++)
            check_who_ids(wf, dir, diag, wf->escalations[i].steps[j].notify, &errors);
    return errors;
}

/* Whether some org in dir matching the entry has a token (by) or a webhook
 * (notify). Roles resolved per ticket (raiser, assignees …) are left alone. */
static bool who_covered(const wh_orgdir_t *dir, const wh_who_t *w, bool want_token)
{
    for (size_t i = 0; i < dir->n; i++) {
        const wh_org_t *o = &dir->orgs[i];
        bool match = (w->type == WH_WHO_KIND && o->kind == w->kind) ||
                     (w->type == WH_WHO_ORG && strcmp(o->id, w->org) == 0) ||
                     (w->type == WH_WHO_RAISER && want_token &&
                      (o->kind == WH_KIND_STREET || o->kind == WH_KIND_COMMUNITY)) ||
                     (w->type == WH_WHO_ASSIGNEE);
        if (match && (want_token ? o->has_token : o->has_webhook))
            return true;
    }
    return w->type == WH_WHO_SYSTEM || w->type == WH_WHO_ASSIGNEES || w->type == WH_WHO_LAGGARDS ||
           w->type == WH_WHO_PARENTS || (w->type == WH_WHO_RAISER && !want_token);
}

/* "no org of kind 'supervisor' has a token", "org 'x' has no webhook" … */
static const char *who_text(const wh_who_t *w, const char *what, char *buf, size_t len)
{
    if (w->type == WH_WHO_KIND)
        snprintf(buf, len, "no org of kind '%s' has a %s", wh_org_kind_name(w->kind), what);
    else if (w->type == WH_WHO_ORG)
        snprintf(buf, len, "org '%s' has no %s", w->org, what);
    else if (w->type == WH_WHO_RAISER)
        snprintf(buf, len, "no street or community org has a %s", what);
    else
        snprintf(buf, len, "no org has a %s", what);
    return buf;
}

static void warn_notify(const wh_workflow_t *wf, const wh_orgdir_t *dir, wh_diag_t *diag,
                        wh_who_list_t l)
{
    char buf[200];

    for (size_t i = 0; i < l.n; i++) {
        const wh_who_t *w = &l.v[i];
        if (w->type == WH_WHO_ORG && wh_orgdir_find(dir, w->org) < 0)
            continue;
        if (!who_covered(dir, w, false))
            wh_diag_warning(diag, wf->file, w->pos.line, w->pos.col,
                            "%s: messages to it are recorded, not delivered",
                            who_text(w, "webhook", buf, sizeof(buf)));
    }
}

static void warn_orgs(const wh_workflow_t *wf, const wh_orgdir_t *dir, wh_diag_t *diag)
{
    char buf[200];

    for (size_t i = 0; i < wf->nevents; i++) {
        const wh_event_t *e = &wf->events[i];
        for (size_t j = 0; j < e->by.n; j++) {
            const wh_who_t *w = &e->by.v[j];
            if (w->type == WH_WHO_ORG && wh_orgdir_find(dir, w->org) < 0)
                continue;
            if (!who_covered(dir, w, true))
                wh_diag_warning(diag, wf->file, w->pos.line, w->pos.col,
                                "%s, so it cannot fire event '%s'",
                                who_text(w, "token", buf, sizeof(buf)), e->name);
        }
    }
    for (size_t i = 0; i < wf->nstates; i++)
        warn_notify(wf, dir, diag, wf->states[i].notify);
    for (size_t i = 0; i < wf->nescalations; i++)
        for (size_t j = 0; j < wf->escalations[i].nsteps; j++)
            warn_notify(wf, dir, diag, wf->escalations[i].steps[j].notify);
}

int wh_workflow_check_orgs(const wh_workflow_t *wf, const wh_orgdir_t *dir, wh_diag_t *diag)
{
    static const wh_orgdir_t empty = { NULL, 0 };
    int errors;

    if (dir == NULL)
        dir = &empty;
    errors = check_ids(wf, dir, diag);
    warn_orgs(wf, dir, diag);
    return errors;
}

/* ---- load ---- */

static void digest_hex(const char *buf, size_t len, char out[65])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;

    out[0] = '\0';
    if (EVP_Digest(buf, len, md, &mdlen, EVP_sha256(), NULL) != 1)
        return;
    for (unsigned int i = 0; i < mdlen && i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
}

static void parse_all(ctx_t *c, const wh_ynode_t *root)
{
    wh_ynode_check_keys(c->doc, root, top_keys, NULL, c->diag);
    parse_header(c, root);
    parse_priorities(c, root);
    if (!collect_names(c, root))
        return;
    parse_escalations(c, root);
    parse_states(c, root);
    if (wh_ynode_get(root, "transitions") == NULL)
        ERR(c, root, "missing key 'transitions'");
    parse_events(c);
    check_fire(c);
    for (size_t i = 0; i < c->wf->nclocks; i++)
        parse_clock(c, i);
    parse_notify(c, root);
    parse_routes(c, root);
    parse_services(c, root);
    parse_audit(c, root);
    check_graph(c);
}

static void publish(ctx_t *c)
{
    wh_workflow_t *wf = c->wf;

    wf->states = c->states;
    wf->events = c->events;
    wf->clocks = c->clocks;
    wf->escalations = c->escs;
}

int wh_workflow_load_buffer(const char *name, const char *buf, size_t len, const wh_orgdir_t *dir,
                            wh_diag_t *diag, wh_workflow_t **out)
{
    size_t errors_before = wh_diag_errors(diag);
    wh_ydoc_t *doc = NULL;
    box_t *box = NULL;
    ctx_t c = { 0 };
    char *src;
    int rc;

    *out = NULL;
    rc = wh_ydoc_load_buffer(name, buf, len, diag, &doc);
    if (rc != 0)
        goto out;
    box = calloc(1, sizeof(*box));
    if (box == NULL) {
        rc = WH_ENOMEM;
        goto out;
    }
    c.doc = doc;
    c.diag = diag;
    c.arena = &box->arena;
    c.wf = &box->wf;
    box->wf.file = ctx_strdup(&c, name);
    box->wf.initial = -1;
    digest_hex(buf, len, box->wf.digest);
    if ((src = arena_alloc(&box->arena, len + 1)) == NULL) {
        c.oom = true;
    } else {
        memcpy(src, buf, len);
        box->wf.source = src;
        box->wf.source_len = len;
    }
    if (wh_ydoc_root(doc) == NULL)
        wh_diag_error(diag, name, 0, 0, "empty workflow file");
    else if (wh_ynode_expect(doc, wh_ydoc_root(doc), WH_YNODE_MAP, "a workflow file", diag))
        parse_all(&c, wh_ydoc_root(doc));
    publish(&c);
    if (!c.oom && dir != NULL)
        check_ids(&box->wf, dir, diag);
    rc = c.oom ? WH_ENOMEM : wh_diag_errors(diag) != errors_before ? WH_EPARSE : 0;
out:
    wh_ydoc_free(doc);
    if (rc != 0) {
        wh_workflow_free(box != NULL ? &box->wf : NULL);
        return rc;
    }
    *out = &box->wf;
    return 0;
}

int wh_workflow_load(const char *path, const wh_orgdir_t *dir, wh_diag_t *diag, wh_workflow_t **out)
{
    char *buf = NULL;
    size_t len = 0;
    int rc;

    *out = NULL;
    rc = wh_ydoc_read_file(path, diag, &buf, &len);
    if (rc == 0)
        rc = wh_workflow_load_buffer(path, buf, len, dir, diag, out);
    free(buf);
    return rc;
}

void wh_workflow_free(wh_workflow_t *wf)
{
    box_t *box = (box_t *)(void *)wf;

    if (box == NULL)
        return;
    arena_free(&box->arena);
    free(box);
}

/* ---- lookups ---- */

int wh_workflow_state(const wh_workflow_t *wf, const char *name)
{
    for (size_t i = 0; i < wf->nstates; i++)
        if (strcmp(wf->states[i].name, name) == 0)
            return (int)i;
    return -1;
}

int wh_workflow_event(const wh_workflow_t *wf, const char *name)
{
    for (size_t i = 0; i < wf->nevents; i++)
        if (strcmp(wf->events[i].name, name) == 0)
            return (int)i;
    return -1;
}

int wh_workflow_clock(const wh_workflow_t *wf, const char *name)
{
    for (size_t i = 0; i < wf->nclocks; i++)
        if (strcmp(wf->clocks[i].name, name) == 0)
            return (int)i;
    return -1;
}

int wh_workflow_priority(const wh_workflow_t *wf, const char *name)
{
    return find_name(wf->priorities, wf->npriorities, name);
}

const wh_route_t *wh_workflow_route(const wh_workflow_t *wf, const char *category)
{
    const wh_route_t *dflt = NULL;

    for (size_t i = 0; i < wf->nroutes; i++) {
        if (strcmp(wf->routes[i].category, category) == 0)
            return &wf->routes[i];
        if (strcmp(wf->routes[i].category, "default") == 0)
            dflt = &wf->routes[i];
    }
    return dflt;
}

/* ---- DOT ---- */

/* Writes s inside a DOT double-quoted string: quotes and backslashes are
 * escaped, and line breaks become DOT's \n so a title cannot break out. */
static void dot_escape(FILE *out, const char *s)
{
    for (; *s != '\0'; s++) {
        if (*s == '"' || *s == '\\')
            fputc('\\', out);
        if (*s == '\n')
            fputs("\\n", out);
        else if (*s != '\r')
            fputc(*s, out);
    }
}

static void dot_state(const wh_workflow_t *wf, size_t i, FILE *out)
{
    const wh_state_t *s = &wf->states[i];

    fprintf(out, "  \"%s\" [label=\"", s->name);
    if (s->title != NULL) {
        dot_escape(out, s->title);
        fputs("\\n", out);
    }
    fprintf(out, "(%s)\"", s->name);
    if (s->initial)
        fputs(", shape=box, style=\"rounded,bold\"", out);
    else if (s->final)
        fputs(", shape=doubleoctagon", out);
    fputs("];\n", out);
}

int wh_workflow_write_dot(const wh_workflow_t *wf, FILE *out)
{
    fprintf(out, "digraph \"%s\" {\n  label=\"", wf->name);
    if (wf->title != NULL) {
        dot_escape(out, wf->title);
        fputc(' ', out);
    }
    fprintf(out, "(%s v%lld)\";\n  labelloc=t;\n", wf->name, (long long)wf->version);
    fputs("  node [shape=box, style=rounded, fontname=\"sans-serif\"];\n"
          "  edge [fontname=\"sans-serif\", fontsize=10];\n",
          out);
    if (wf->initial >= 0)
        fprintf(out, "  \"__start\" [shape=point, label=\"\"];\n  \"__start\" -> \"%s\";\n",
                wf->states[wf->initial].name);
    for (size_t i = 0; i < wf->nstates; i++)
        dot_state(wf, i, out);
    for (size_t i = 0; i < wf->nevents; i++) {
        const wh_event_t *e = &wf->events[i];
        for (size_t j = 0; j < e->from.n; j++)
            fprintf(out, "  \"%s\" -> \"%s\" [label=\"%s\"%s];\n", wf->states[e->from.v[j]].name,
                    wf->states[e->to].name, e->name,
                    e->by.n == 1 && e->by.v[0].type == WH_WHO_SYSTEM ? ", style=dashed" : "");
    }
    fputs("}\n", out);
    return ferror(out) ? WH_EIO : 0;
}
