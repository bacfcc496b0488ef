/* The org directory: the units that raise, handle, escalate and supervise
 * tickets (SPEC §1, §2). The config loader (src/config.c) builds it; the
 * engine only reads it. */
#ifndef WH_ORG_H
#define WH_ORG_H

#include <stdbool.h>
#include <stddef.h>

typedef enum {
    WH_KIND_STREET,
    WH_KIND_COMMUNITY,
    WH_KIND_DEPARTMENT,
    WH_KIND_DISTRICT,
    WH_KIND_JOINT_MEETING,
    WH_KIND_SUPERVISOR,
    WH_KIND__COUNT
} wh_org_kind_t;

typedef struct {
    const char *id;   /* [a-z0-9-]+ */
    const char *name; /* display name (UTF-8) */
    wh_org_kind_t kind;
    int parent;       /* index into the directory, or -1 */
    bool has_token;   /* can authenticate (and so fire events) */
    bool has_webhook; /* can receive messages */
} wh_org_t;

/* A read-only view; whoever builds it owns the array. */
typedef struct {
    const wh_org_t *orgs;
    size_t n;
} wh_orgdir_t;

/* "street", "community", "department", "district", "joint-meeting", "supervisor". */
const char *wh_org_kind_name(wh_org_kind_t kind);
/* Parses a kind name; also accepts the plural forms notify lists use
 * ("supervisors", "districts", …) when plural_ok. Returns 0 or WH_EINVAL. */
int wh_org_kind_parse(const char *s, bool plural_ok, wh_org_kind_t *out);
/* Index of the org with this id, or -1 (also for a NULL or empty dir). */
int wh_orgdir_find(const wh_orgdir_t *dir, const char *id);

#endif
