#include "engine/error.h"

const char *wh_strerror(int err)
{
    switch (err) {
    case 0:
        return "success";
#define XX(code, status, api, msg) \
    case WH_E##code:               \
        return msg;
        WH_ERRNO_MAP(XX)
#undef XX
    default:
        return "unknown error";
    }
}

const char *wh_err_name(int err)
{
    switch (err) {
    case 0:
        return "OK";
#define XX(code, status, api, msg) \
    case WH_E##code:               \
        return #code;
        WH_ERRNO_MAP(XX)
#undef XX
    default:
        return "UNKNOWN";
    }
}

int wh_err_http_status(int err)
{
    switch (err) {
#define XX(code, status, api, msg) \
    case WH_E##code:               \
        return status;
        WH_ERRNO_MAP(XX)
#undef XX
    default:
        return 500;
    }
}

const char *wh_err_api_code(int err)
{
    switch (err) {
#define XX(code, status, api, msg) \
    case WH_E##code:               \
        return api;
        WH_ERRNO_MAP(XX)
#undef XX
    default:
        return "internal";
    }
}
