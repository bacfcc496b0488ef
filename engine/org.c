#include <string.h>

#include "engine/error.h"
#include "engine/org.h"

static const char *const kind_names[WH_KIND__COUNT] = {
    "street", "community", "department", "district", "joint-meeting", "supervisor",
};

const char *wh_org_kind_name(wh_org_kind_t kind)
{
    if ((unsigned)kind >= WH_KIND__COUNT)
        return "unknown";
    return kind_names[kind];
}

int wh_org_kind_parse(const char *s, bool plural_ok, wh_org_kind_t *out)
{
    size_t len = strlen(s);

    for (int k = 0; k < WH_KIND__COUNT; k++) {
        size_t klen = strlen(kind_names[k]);
        if (len == klen && memcmp(s, kind_names[k], klen) == 0) {
            *out = (wh_org_kind_t)k;
            return 0;
        }
        if (plural_ok && len == klen + 1 && memcmp(s, kind_names[k], klen) == 0 && s[klen] == 's') {
            *out = (wh_org_kind_t)k;
            return 0;
        }
    }
    return WH_EINVAL;
}

int wh_orgdir_find(const wh_orgdir_t *dir, const char *id)
{
    if (dir == NULL || id == NULL)
        return -1;
    for (size_t i = 0; i < dir->n; i++)
        if (strcmp(dir->orgs[i].id, id) == 0)
            return (int)i;
    return -1;
}
