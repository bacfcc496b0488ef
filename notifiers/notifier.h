/* The notifier interface: how the engine hands a message to whatever
 * delivers it (the webhook notifier, notifiers/webhook.h; a fake in tests).
 *
 * The engine knows only this vtable. A notifier runs on the engine's loop
 * and every call, and every callback, happens on that loop's thread. */
#ifndef WH_NOTIFIER_H
#define WH_NOTIFIER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct wh_notifier_s wh_notifier_t;

/* One delivery attempt of one outbox message. Everything is borrowed for
 * the duration of send(): the notifier copies what it keeps. */
typedef struct {
    int64_t outbox_id;
    const char *webhook_id; /* stable across attempts (SPEC §5) */
    const char *url;
    const unsigned char *secret; /* the decoded bytes of the org's whsec_ secret */
    size_t secret_len;
    const char *payload; /* the complete JSON body */
    size_t payload_len;
    int attempt; /* 1 for the first attempt */
} wh_notifier_msg_t;

/* How one attempt ended. */
typedef struct {
    int status;          /* the HTTP status, or 0 when no response came */
    const char *error;   /* the transport error ("" when a response came) */
    int64_t retry_after; /* Retry-After in seconds, or -1 when absent */
    int64_t latency_ms;
    bool cancelled; /* the notifier closed first: no attempt to record */
} wh_notifier_result_t;

/* Runs exactly once per accepted send, never from inside send(). res and
 * its strings are valid only during the call. */
typedef void (*wh_notifier_cb)(const wh_notifier_result_t *res, void *arg);

typedef struct {
    /* Starts one attempt. Returns 0 (cb will run), or WH_ENOMEM, WH_EINVAL
     * (a URL the notifier refuses), WH_ECLOSED, without calling cb. */
    int (*send)(wh_notifier_t *n, const wh_notifier_msg_t *msg, wh_notifier_cb cb, void *arg);
    /* Completes every attempt in flight as cancelled, then releases the
     * notifier once the loop has closed its handles. */
    void (*close)(wh_notifier_t *n);
} wh_notifier_vtable_t;

/* Every notifier starts with this header. */
struct wh_notifier_s {
    const wh_notifier_vtable_t *vt;
};

/* Dispatch through the vtable; wh_notifier_close accepts NULL. */
int wh_notifier_send(wh_notifier_t *n, const wh_notifier_msg_t *msg, wh_notifier_cb cb, void *arg);
void wh_notifier_close(wh_notifier_t *n);

#endif
