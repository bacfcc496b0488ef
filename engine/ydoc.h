/* YAML documents as a tree of nodes that remember their line and column.
 *
 * Built on libyaml's parser API. One file holds one document whose nodes are
 * scalars, sequences and mappings; aliases, tags and several documents are
 * refused. Duplicate mapping keys are reported (at the second key) as errors.
 * Input is capped (WH_YDOC_MAX_BYTES, WH_YDOC_MAX_DEPTH, WH_YDOC_MAX_NODES).
 * A document is immutable after loading and owns every string it hands out. */
#ifndef WH_YDOC_H
#define WH_YDOC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/diag.h"

#define WH_YDOC_MAX_BYTES (1024 * 1024)
#define WH_YDOC_MAX_DEPTH 32
#define WH_YDOC_MAX_NODES 200000

typedef enum { WH_YNODE_SCALAR, WH_YNODE_SEQ, WH_YNODE_MAP } wh_ynode_type_t;

typedef struct wh_ynode_s wh_ynode_t;
typedef struct wh_ypair_s wh_ypair_t;

struct wh_ypair_s {
    const wh_ynode_t *key; /* always a scalar (other keys are refused) */
    const wh_ynode_t *value;
};

struct wh_ynode_s {
    wh_ynode_type_t type;
    int line, col;   /* 1-based, where the node starts */
    const char *str; /* scalar: the text, NUL-terminated (NUL inside is refused) */
    size_t len;      /* scalar: strlen(str) */
    bool plain;      /* scalar: written without quotes or block style */
    size_t n;        /* seq: items; map: pairs */
    const wh_ynode_t **items;
    const wh_ypair_t *pairs;
};

typedef struct wh_ydoc_s wh_ydoc_t;

/* Loads the file at path. Syntax errors, caps and duplicate keys go to diag
 * with positions. Returns 0 and *out (a document, possibly with an empty root
 * when the file is empty: root is NULL then), or a negative WH_E* code
 * (WH_EIO, WH_ETOOBIG, WH_EPARSE, WH_ENOMEM) with *out NULL. A document with
 * duplicate keys is still returned (0), so callers can report more. */
int wh_ydoc_load_file(const char *path, wh_diag_t *diag, wh_ydoc_t **out);
/* Reads a whole file of at most WH_YDOC_MAX_BYTES into *out (malloc'd,
 * NUL-terminated, *len bytes before the NUL), reporting as wh_ydoc_load_file
 * does. Returns 0, WH_EIO, WH_ETOOBIG or WH_ENOMEM. */
int wh_ydoc_read_file(const char *path, wh_diag_t *diag, char **out, size_t *len);
/* As wh_ydoc_load_file over a buffer; name is used in diagnostics. */
int wh_ydoc_load_buffer(const char *name, const char *buf, size_t len, wh_diag_t *diag,
                        wh_ydoc_t **out);
/* Accepts NULL. */
void wh_ydoc_free(wh_ydoc_t *doc);

/* The root node or NULL for an empty document. */
const wh_ynode_t *wh_ydoc_root(const wh_ydoc_t *doc);
/* The name given at load (the path for files). */
const char *wh_ydoc_file(const wh_ydoc_t *doc);

/* ---- helpers for loaders: each reports a problem to diag at the node ---- */

/* The value under key in a mapping, or NULL (also when map is not a mapping). */
const wh_ynode_t *wh_ynode_get(const wh_ynode_t *map, const char *key);
/* Reports every key of map that is not in allowed (a NULL-terminated list) as
 * "unknown key 'K'" (with "in WHAT" when what is not NULL); returns the count. */
int wh_ynode_check_keys(const wh_ydoc_t *doc, const wh_ynode_t *map, const char *const *allowed,
                        const char *what, wh_diag_t *diag);
/* Checks the node's type; reports "WHAT must be a mapping|sequence|scalar". */
bool wh_ynode_expect(const wh_ydoc_t *doc, const wh_ynode_t *node, wh_ynode_type_t type,
                     const char *what, wh_diag_t *diag);
/* A plain scalar "null", "~" or empty. */
bool wh_ynode_is_null(const wh_ynode_t *node);
/* Reads a plain scalar integer (decimal, optional sign) into *out. */
bool wh_ynode_int(const wh_ydoc_t *doc, const wh_ynode_t *node, const char *what, int64_t min,
                  int64_t max, wh_diag_t *diag, int64_t *out);
/* Reads a plain scalar true/false into *out. */
bool wh_ynode_bool(const wh_ydoc_t *doc, const wh_ynode_t *node, const char *what, wh_diag_t *diag,
                   bool *out);
/* Reads a scalar (any style) as a string; reports non-scalars. */
bool wh_ynode_str(const wh_ydoc_t *doc, const wh_ynode_t *node, const char *what, wh_diag_t *diag,
                  const char **out);
/* Reports at node: "FILE:LINE:COL: error: ..." */
void wh_ynode_error(const wh_ydoc_t *doc, const wh_ynode_t *node, wh_diag_t *diag, const char *fmt,
                    ...) __attribute__((format(printf, 4, 5)));
void wh_ynode_warning(const wh_ydoc_t *doc, const wh_ynode_t *node, wh_diag_t *diag,
                      const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* Names are short: they are keys in rows, logs and URLs. */
#define WH_NAME_MAX 64

/* Whether s matches [a-z0-9-]{1,64} (names of workflows, states, events, orgs…). */
bool wh_name_valid(const char *s);

#endif
