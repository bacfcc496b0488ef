#include <criterion/criterion.h>
#include <string.h>

#include "engine/diag.h"
#include "engine/error.h"
#include "engine/ydoc.h"

static wh_diag_t *diag;

static void setup(void)
{
    diag = wh_diag_new();
}

static void teardown(void)
{
    wh_diag_free(diag);
}

static const char *line_of(size_t i)
{
    static char buf[512];
    wh_diag_format(diag, i, buf, sizeof(buf));
    return buf;
}

static wh_ydoc_t *load(const char *text, int expect_rc)
{
    wh_ydoc_t *doc = NULL;
    int rc = wh_ydoc_load_buffer("t.yaml", text, strlen(text), diag, &doc);
    cr_assert_eq(rc, expect_rc, "rc %d (%s)", rc, wh_diag_count(diag) ? line_of(0) : "");
    return doc;
}

TestSuite(ydoc, .init = setup, .fini = teardown);

Test(ydoc, positions_and_types)
{
    wh_ydoc_t *doc = load("a: 1\nb:\n  - x\n  - 'y'\nc: { d: true }\n", 0);
    const wh_ynode_t *root = wh_ydoc_root(doc), *b, *c;
    cr_assert_eq(root->type, WH_YNODE_MAP);
    cr_assert_eq(root->n, 3);
    b = wh_ynode_get(root, "b");
    cr_assert_eq(b->type, WH_YNODE_SEQ);
    cr_assert_eq(b->n, 2);
    cr_assert_eq(b->items[1]->line, 4);
    cr_assert_eq(b->items[1]->col, 5);
    cr_assert(b->items[0]->plain);
    cr_assert(!b->items[1]->plain);
    cr_assert_str_eq(b->items[1]->str, "y");
    c = wh_ynode_get(root, "c");
    cr_assert_eq(c->line, 5);
    cr_assert_eq(c->col, 4);
    bool v = false;
    cr_assert(wh_ynode_bool(doc, wh_ynode_get(c, "d"), "d", diag, &v));
    cr_assert(v);
    cr_assert_eq(wh_diag_count(diag), 0);
    wh_ydoc_free(doc);
}

Test(ydoc, duplicate_keys_reported_at_the_second)
{
    wh_ydoc_t *doc = load("a: 1\nb: 2\na: 3\nm:\n  k: 1\n  k: 2\n", 0);
    cr_assert_eq(wh_diag_errors(diag), 2);
    cr_assert_str_eq(line_of(0), "t.yaml:3:1: error: duplicate key 'a' (first at line 1)");
    cr_assert_str_eq(line_of(1), "t.yaml:6:3: error: duplicate key 'k' (first at line 5)");
    wh_ydoc_free(doc);
}

Test(ydoc, syntax_error_has_position)
{
    wh_ydoc_t *doc = load("a: [1, 2\nb: 3\n", WH_EPARSE);
    cr_assert_null(doc);
    cr_assert_eq(wh_diag_errors(diag), 1);
    cr_assert(strncmp(line_of(0), "t.yaml:", 7) == 0, "%s", line_of(0));
}

Test(ydoc, refuses_aliases_tags_and_documents)
{
    cr_assert_null(load("a: &x 1\nb: *x\n", WH_EPARSE));
    cr_assert_str_eq(line_of(0), "t.yaml:2:4: error: YAML aliases are not supported");
    cr_assert_null(load("a: !!str 1\n", WH_EPARSE));
    cr_assert_null(load("a: 1\n---\nb: 2\n", WH_EPARSE));
    cr_assert_null(load("? [a]\n: 1\n", WH_EPARSE));
    cr_assert_null(load("a: \"x\\0y\"\n", WH_EPARSE));
    cr_assert_eq(wh_diag_errors(diag), 5);
}

Test(ydoc, caps_depth_and_size)
{
    char deep[200];
    size_t n = 0;
    for (int i = 0; i < WH_YDOC_MAX_DEPTH + 1; i++)
        deep[n++] = '[';
    deep[n] = '\0';
    cr_assert_null(load(deep, WH_EPARSE));
    cr_assert(strstr(line_of(0), "nesting deeper than 32 levels") != NULL, "%s", line_of(0));

    size_t big = WH_YDOC_MAX_BYTES + 1;
    char *buf = malloc(big);
    memset(buf, ' ', big);
    wh_ydoc_t *doc = NULL;
    cr_assert_eq(wh_ydoc_load_buffer("big.yaml", buf, big, diag, &doc), WH_ETOOBIG);
    free(buf);
}

Test(ydoc, empty_document_has_no_root)
{
    wh_ydoc_t *doc = load("# nothing\n", 0);
    cr_assert_null(wh_ydoc_root(doc));
    wh_ydoc_free(doc);
}

Test(ydoc, helpers_report_at_the_node)
{
    static const char *const allowed[] = { "a", NULL };
    wh_ydoc_t *doc = load("a: x\nzz: 1\nn: 12x\n", 0);
    const wh_ynode_t *root = wh_ydoc_root(doc);
    int64_t v;
    cr_assert_eq(wh_ynode_check_keys(doc, root, allowed, "the root", diag), 2);
    cr_assert(!wh_ynode_int(doc, wh_ynode_get(root, "n"), "n", 0, 100, diag, &v));
    cr_assert(wh_ynode_int(doc, wh_ynode_get(root, "zz"), "zz", 0, 100, diag, &v));
    cr_assert_eq(v, 1);
    cr_assert(!wh_ynode_int(doc, wh_ynode_get(root, "zz"), "zz", 2, 100, diag, &v));
    cr_assert_str_eq(line_of(0), "t.yaml:2:1: error: unknown key 'zz' in the root");
    cr_assert_str_eq(line_of(1), "t.yaml:2:5: error: zz must be between 2 and 100");
    cr_assert_str_eq(line_of(2), "t.yaml:3:1: error: unknown key 'n' in the root");
    cr_assert_str_eq(line_of(3), "t.yaml:3:4: error: n must be an integer");
    wh_ydoc_free(doc);
}

Test(ydoc, names)
{
    cr_assert(wh_name_valid("street-whistle"));
    cr_assert(wh_name_valid("a1"));
    cr_assert(!wh_name_valid(""));
    cr_assert(!wh_name_valid("Street"));
    cr_assert(!wh_name_valid("a_b"));
    cr_assert(!wh_name_valid("a b"));
}

Test(ydoc, missing_file)
{
    wh_ydoc_t *doc = NULL;
    cr_assert_eq(wh_ydoc_load_file("/nonexistent/x.yaml", diag, &doc), WH_EIO);
    cr_assert_str_eq(line_of(0),
                     "/nonexistent/x.yaml: error: cannot read: No such file or directory");
}
