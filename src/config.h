/* The server config file (SPEC §2, whistle.yaml).
 *
 * wh_config_load parses into a fresh structure, validates it whole and
 * reports every problem as FILE:LINE:COL (unknown keys, missing or duplicate
 * ids, unknown parent, parent loops, unset token/secret env vars or files,
 * shared tokens or secrets, bad durations …). Relative paths in the file are
 * resolved against the config file's directory. Tokens and secrets are read
 * into memory here and never printed. */
#ifndef WH_CONFIG_H
#define WH_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/diag.h"
#include "engine/duration.h"
#include "engine/org.h"

typedef enum { WH_DURABILITY_FULL, WH_DURABILITY_NORMAL } wh_durability_t;

typedef struct {
    const char *name; /* the key under calendars: ("workdays") */
    const char *path; /* resolved */
} wh_config_calendar_t;

typedef struct {
    const char *url;       /* NULL when the org has no webhook */
    unsigned char *secret; /* decoded bytes of whsec_… (NULL without webhook) */
    size_t secret_len;
} wh_config_webhook_t;

typedef struct {
    const char *host; /* "127.0.0.1"; "localhost" is stored as 127.0.0.1; IPv6 without [] */
    int port;
    bool host_ipv6;         /* host is an IPv6 literal (written as [::1]:8080) */
    const char *database;   /* resolved path */
    const char *workflows;  /* resolved directory */
    const char *public_url; /* no trailing slash; default http://HOST:PORT from listen */
    const char *timezone;   /* IANA name, default Asia/Shanghai */
    const wh_config_calendar_t *calendars;
    size_t ncalendars;
    wh_durability_t durability;
    int64_t webhook_timeout_ms;      /* default 10 s */
    const int64_t *webhook_retry_ms; /* delays between attempts */
    size_t nwebhook_retry;
    int max_connections_per_host; /* default 8 */
    int64_t action_ttl_s;         /* default 7 d */
    const char *jurisdiction_id;  /* NULL when not given */

    /* The directory (engine view) and per-org secrets, same index. */
    wh_orgdir_t dir;
    const char *const *tokens; /* bearer token per org, NULL when none */
    const wh_config_webhook_t *webhooks;
} wh_config_t;

/* Loads and validates path. Returns 0 and *out, or WH_EPARSE (see diag),
 * WH_EIO, WH_ETOOBIG, WH_ENOMEM with *out NULL. */
int wh_config_load(const char *path, wh_diag_t *diag, wh_config_t **out);
/* As wh_config_load over a buffer; name is used in diagnostics and relative
 * paths are resolved against its directory (as if the buffer were that file). */
int wh_config_load_buffer(const char *name, const char *buf, size_t len, wh_diag_t *diag,
                          wh_config_t **out);
/* Accepts NULL. Wipes tokens and secrets before freeing. */
void wh_config_free(wh_config_t *cfg);

/* The path of the calendar named name, or NULL. */
const char *wh_config_calendar(const wh_config_t *cfg, const char *name);

#endif
