#include "notifiers/notifier.h"

int wh_notifier_send(wh_notifier_t *n, const wh_notifier_msg_t *msg, wh_notifier_cb cb, void *arg)
{
    return n->vt->send(n, msg, cb, arg);
}

void wh_notifier_close(wh_notifier_t *n)
{
    if (n != NULL)
        n->vt->close(n);
}
