/* The supervisor dashboard. See dashboard.h. */
#include "src/dashboard.h"

#include <ctype.h>
#include <openssl/crypto.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "engine/error.h"
#include "src/cmd.h"
#include "src/html.h"

#define COOKIE        "whistle_token"
#define MAX_TOKEN     1024 /* longer sign-in tokens are refused unread */
#define MAX_OVERDUE   200  /* overdue tickets listed */
#define MAX_EVENTS    2000 /* event rows shown on a ticket's page */
#define MAX_DEPTS     1000 /* departments ranked */
#define MAX_HEADERS   24
#define SVG_W         1040 /* chart geometry, in px */
#define SVG_LABEL     220
#define SVG_PLOT      700
#define SVG_BAR       12
#define SVG_BAR_GAP   3
#define SVG_BLOCK     56
#define SVG_TOP       34
#define SVG_BOTTOM    40
#define NO_VALUE      "\xe2\x80\x94" /* an em dash */
#define CSP           "default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'self'"
#define LOCATION_HOME "/"

/* The three rates, in the order they rank departments. */
static const char *const rate_keys[3] = { "response_rate", "resolve_rate", "satisfaction_rate" };
static const char *const rate_names[3] = { "响应率", "解决率", "满意率" };
static const char *const rate_colors[3] = { "#2b6cb0", "#2f855a", "#c05621" };
static const char *const close_keys[3] = { "median", "p90", "max" };
static const char *const close_colors[3] = { "#4c51bf", "#805ad5", "#b794f4" };

static const char css[] =
    "*{box-sizing:border-box}"
    "body{margin:0;font-family:\"Noto Sans CJK SC\",\"Noto Sans\",sans-serif;font-size:14px;"
    "color:#1a202c;background:#f4f5f7;line-height:1.45}"
    "header{display:flex;align-items:center;gap:16px;padding:10px 24px;background:#1f2a44;"
    "color:#fff}"
    "header .brand{color:#fff;font-weight:700;font-size:17px;text-decoration:none}"
    "header .who{margin-left:auto;opacity:.85}"
    "header form{margin:0}"
    "main{max-width:1120px;margin:0 auto;padding:18px 24px 40px}"
    "section{background:#fff;border:1px solid #dfe3e8;border-radius:6px;padding:14px 18px;"
    "margin:0 0 18px}"
    "h1{font-size:21px;margin:4px 0 12px}h2{font-size:16px;margin:0 0 10px}"
    "table{border-collapse:collapse;width:100%}"
    "th,td{padding:5px 8px;border-bottom:1px solid #e8ebef;text-align:left;vertical-align:top}"
    "th{background:#f7f8fa;font-weight:600;white-space:nowrap}"
    "td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}"
    "td.rate{font-weight:600}td.name,td.at,td.event,td.actor,td.states{white-space:nowrap}"
    "td small,.muted{color:#6b7280}"
    "form.window{display:flex;gap:10px;align-items:end;flex-wrap:wrap}"
    "label{display:flex;flex-direction:column;font-size:12px;color:#4a5568}"
    "input{font:inherit;padding:5px 8px;border:1px solid #cbd2d9;border-radius:4px;min-width:230px}"
    "button{font:inherit;padding:5px 14px;border:0;border-radius:4px;background:#2b6cb0;"
    "color:#fff;cursor:pointer}"
    "header button{background:#3c4a6b}"
    "svg{display:block;width:100%;max-width:1040px;height:auto}"
    "svg text{font-family:\"Noto Sans CJK SC\",\"Noto Sans\",sans-serif;font-size:12px;"
    "fill:#1a202c}"
    "svg .axis{fill:#6b7280;font-size:11px}svg .grid{stroke:#e2e8f0}"
    "ul#overdue{list-style:none;margin:0;padding:0}"
    "ul#overdue li{padding:6px 0;border-bottom:1px solid #eef0f3}"
    "ul#overdue a,td a{font-family:monospace;font-weight:600;color:#2b6cb0}"
    "span.state{display:inline-block;padding:0 6px;border-radius:3px;background:#fde8e8;"
    "color:#9b2c2c;font-size:12px}"
    ".error{color:#9b2c2c;background:#fff5f5;border:1px solid #fed7d7;padding:8px 12px;"
    "border-radius:4px}"
    "dl{display:grid;grid-template-columns:max-content 1fr;gap:4px 16px;margin:0}"
    "dt{color:#6b7280}dd{margin:0}"
    "code{font-size:12px;word-break:break-all}"
    ".signin{max-width:420px;margin:60px auto}"
    ".signin form{display:flex;flex-direction:column;gap:10px}";

/* ---- small helpers ---- */

bool wh_dashboard_owns(const char *path)
{
    return strcmp(path, "/") == 0 || strcmp(path, "/signin") == 0 ||
           strcmp(path, "/signout") == 0 || strncmp(path, "/tickets/", 9) == 0;
}

static const char *jstr(const json_t *o, const char *key)
{
    return json_string_value(json_object_get(o, key));
}

/* A ticket id as SPEC §4 makes them: [A-Za-z0-9-]{1,40}. */
static bool valid_id(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 40)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && s[i] != '-')
            return false;
    return true;
}

/* The display name of an org id (the id itself when it is not in the
 * directory, as "system" is not). */
static const char *org_name(const wh_api_state_t *st, const char *id)
{
    int i = id != NULL ? wh_orgdir_find(&st->cfg->dir, id) : -1;
    return i >= 0 && st->cfg->dir.orgs[i].name != NULL ? st->cfg->dir.orgs[i].name : id;
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = tolower(c);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Percent-decodes n bytes of s into out (outlen bytes, NUL-terminated);
 * plus_space reads '+' as a space (form bodies). Returns -1 when the result
 * would not fit, holds a NUL byte or an escape is malformed. */
static int pct_decode(const char *s, size_t n, bool plus_space, char *out, size_t outlen)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        int c = (unsigned char)s[i];
        if (c == '+' && plus_space) {
            c = ' ';
        } else if (c == '%') {
            if (i + 2 >= n)
                return -1;
            int hi = hexval(s[i + 1]), lo = hexval(s[i + 2]);
            if (hi < 0 || lo < 0)
                return -1;
            c = hi * 16 + lo;
            i += 2;
        }
        if (c == 0 || o + 1 >= outlen)
            return -1;
        out[o++] = (char)c;
    }
    out[o] = '\0';
    return 0;
}

/* ---- pages ---- */

typedef struct {
    FILE *f;
    char *buf;
    size_t len;
} page_t;

static int page_open(page_t *p, wh_http_req_t *r)
{
    p->buf = NULL;
    p->len = 0;
    p->f = open_memstream(&p->buf, &p->len);
    if (p->f == NULL)
        wh_http_respond(r, 503, NULL, "out of memory", 13);
    return p->f != NULL ? 0 : WH_ENOMEM;
}

/* Sends the page with the headers every page has, then extra (NULL or
 * name, value, …, NULL; at most 6 pairs). */
static void page_send(page_t *p, wh_http_req_t *r, int status, const char *const *extra)
{
    const char *hdr[MAX_HEADERS] = {
        "Content-Type",
        "text/html; charset=utf-8",
        "Content-Security-Policy",
        CSP,
        "Cache-Control",
        "no-store",
        "Referrer-Policy",
        "no-referrer",
        "X-Content-Type-Options",
        "nosniff",
        "X-Frame-Options",
        "DENY",
    };
    size_t n = 12;

    for (size_t i = 0; extra != NULL && extra[i] != NULL && n + 2 < MAX_HEADERS; i += 2) {
        hdr[n++] = extra[i];
        hdr[n++] = extra[i + 1];
    }
    hdr[n] = NULL;
    if (fclose(p->f) != 0 || p->buf == NULL)
        wh_http_respond(r, 503, NULL, "out of memory", 13);
    else
        wh_http_respond(r, status, hdr, p->buf, p->len);
    free(p->buf);
    p->buf = NULL;
}

static void page_head(FILE *f, const char *title)
{
    fputs("<!DOCTYPE html>\n<html lang=\"zh-CN\"><head><meta charset=\"utf-8\">\n"
          "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>",
          f);
    wh_html_escape(f, title);
    fprintf(f, " \xc2\xb7 whistle</title>\n<style>%s</style>\n</head>\n<body>\n", css);
}

/* The bar on top of a signed-in page: the org and a sign-out button. */
static void page_bar(FILE *f, const wh_api_state_t *st, int org)
{
    fputs("<header><a class=\"brand\" href=\"/\">whistle \xc2\xb7 督查</a>"
          "<span class=\"who\">",
          f);
    wh_html_escape(f, st->cfg->dir.orgs[org].name);
    fputs(" (", f);
    wh_html_escape(f, st->cfg->dir.orgs[org].id);
    fputs(")</span><form method=\"post\" action=\"/signout\">"
          "<button type=\"submit\">Sign out</button></form></header>\n<main>\n",
          f);
}

/* A short page with a heading and a sentence (errors, 404). */
static void message_page(wh_http_req_t *r, const wh_api_state_t *st, int org, int status,
                         const char *heading, const char *text, const char *const *extra)
{
    page_t p;
    if (page_open(&p, r) != 0)
        return;
    page_head(p.f, heading);
    if (org >= 0)
        page_bar(p.f, st, org);
    else
        fputs("<main>\n", p.f);
    fputs("<h1>", p.f);
    wh_html_escape(p.f, heading);
    fputs("</h1>\n<p class=\"error\" role=\"alert\">", p.f);
    wh_html_escape(p.f, text);
    fputs("</p>\n<p><a href=\"/\">Back to the dashboard</a></p>\n</main></body></html>\n", p.f);
    page_send(&p, r, status, extra);
}

/* The sign-in page; msg (may be NULL) says why it is shown again. */
static void signin_page(wh_http_req_t *r, int status, const char *msg, const char *const *extra)
{
    page_t p;
    if (page_open(&p, r) != 0)
        return;
    page_head(p.f, "Sign in");
    fputs("<main class=\"signin\"><section>\n<h1>whistle \xc2\xb7 督查 dashboard</h1>\n"
          "<p>Sign in with a supervisor's API token. The dashboard shows the departments' "
          "scorecards (响应率, 解决率, 满意率) and the tickets overdue now.</p>\n",
          p.f);
    if (msg != NULL) {
        fputs("<p class=\"error\" id=\"signin-error\" role=\"alert\">", p.f);
        wh_html_escape(p.f, msg);
        fputs("</p>\n", p.f);
    }
    fputs("<form id=\"signin\" method=\"post\" action=\"/signin\">\n"
          "<label for=\"token\">Token</label>\n"
          "<input id=\"token\" name=\"token\" type=\"password\" autocomplete=\"current-password\" "
          "required autofocus>\n<button type=\"submit\">Sign in</button>\n</form>\n"
          "</section></main></body></html>\n",
          p.f);
    page_send(&p, r, status, extra);
}

/* ---- credentials ---- */

/* The cookie's value: the token percent-encoded, so that any token fits the
 * cookie-value grammar (RFC 6265). */
static void cookie_value(FILE *f, const char *token)
{
    for (const unsigned char *s = (const unsigned char *)token; *s != '\0'; s++) {
        if (isalnum(*s) || *s == '-' || *s == '.' || *s == '_' || *s == '~')
            fputc(*s, f);
        else
            fprintf(f, "%%%02X", *s);
    }
}

/* The token in the request's whistle_token cookie, decoded into out; false
 * when there is none (or it is malformed). */
static bool cookie_token(wh_http_req_t *r, char *out, size_t outlen)
{
    const char *h = wh_http_header(r, "Cookie");
    size_t klen = strlen(COOKIE);

    while (h != NULL && *h != '\0') {
        while (*h == ' ' || *h == ';')
            h++;
        size_t n = strcspn(h, ";");
        if (n > klen && strncmp(h, COOKIE, klen) == 0 && h[klen] == '=')
            return pct_decode(h + klen + 1, n - klen - 1, false, out, outlen) == 0 &&
                   out[0] != '\0';
        h += n;
    }
    return false;
}

/* The org the request is signed in as (a Bearer header first, else the
 * cookie), or -1; *sent says whether any credential came. */
static int request_org(wh_http_req_t *r, wh_api_t *a, bool *sent)
{
    const char *h = wh_http_header(r, "Authorization");
    char tok[MAX_TOKEN + 1];

    *sent = false;
    if (h != NULL) {
        *sent = true;
        if (strncasecmp(h, "Bearer ", 7) != 0)
            return -1;
        for (h += 7; *h == ' '; h++)
            ;
        return wh_api_token_org(a, h);
    }
    if (!cookie_token(r, tok, sizeof(tok)))
        return -1;
    *sent = true;
    int o = wh_api_token_org(a, tok);
    OPENSSL_cleanse(tok, sizeof(tok));
    return o;
}

static bool is_supervisor(const wh_api_state_t *st, int o)
{
    return o >= 0 && st->cfg->dir.orgs[o].kind == WH_KIND_SUPERVISOR;
}

/* The cookie that clears whistle_token. */
static const char clear_cookie[] = COOKIE "=; Max-Age=0; HttpOnly; SameSite=Strict; Path=/";

/* The supervisor the request is signed in as; -1 after answering it with
 * the sign-in page (200 on the home page without any credential, 401 for a
 * bad or missing one elsewhere, 403 for an org that is not a supervisor). A
 * cookie that no longer signs in is cleared. */
static int gate(wh_http_req_t *r, wh_api_t *a, const wh_api_state_t *st, bool home)
{
    bool sent, by_cookie = wh_http_header(r, "Authorization") == NULL;
    int o = request_org(r, a, &sent);
    const char *hdr[5] = { NULL };
    size_t h = 0;

    if (sent && by_cookie) {
        hdr[h++] = "Set-Cookie";
        hdr[h++] = clear_cookie;
    }
    if (o < 0) {
        hdr[h++] = "WWW-Authenticate";
        hdr[h++] = "Bearer";
        if (!sent && home)
            signin_page(r, 200, NULL, NULL);
        else
            signin_page(r, 401,
                        sent ? "That sign-in is not valid (any more): sign in again."
                             : "Sign in to see this page.",
                        hdr);
        return -1;
    }
    wh_http_set_org(r, st->cfg->dir.orgs[o].id);
    if (!is_supervisor(st, o)) {
        signin_page(r, 403, "The dashboard is for supervisors: this token is not a supervisor's.",
                    hdr);
        return -1;
    }
    return o;
}

/* The value of field name in an application/x-www-form-urlencoded body,
 * decoded into out; false when absent, malformed or too long. */
static bool form_field(const char *body, size_t len, const char *name, char *out, size_t outlen)
{
    size_t klen = strlen(name), i = 0;

    while (i < len) {
        const char *p = body + i, *amp = memchr(p, '&', len - i);
        size_t n = amp != NULL ? (size_t)(amp - p) : len - i;
        if (n > klen && memcmp(p, name, klen) == 0 && p[klen] == '=')
            return pct_decode(p + klen + 1, n - klen - 1, true, out, outlen) == 0;
        i += n + 1;
    }
    return false;
}

/* 303 to the dashboard, setting cookie (a Set-Cookie value). */
static void see_home(wh_http_req_t *r, const char *cookie)
{
    const char *const hdr[] = { "Location", LOCATION_HOME, "Set-Cookie", cookie, NULL };
    page_t p;

    if (page_open(&p, r) != 0)
        return;
    page_head(p.f, "whistle");
    fputs("<main><p><a href=\"/\">Continue to the dashboard</a></p></main></body></html>\n", p.f);
    page_send(&p, r, 303, hdr);
}

/* POST /signin: the token of a supervisor becomes the session cookie. The
 * cookie is HttpOnly (no script reads it) and SameSite=Strict (no other
 * site's page sends it), and Secure when the public URL is https. */
static void post_signin(wh_http_req_t *r, wh_api_t *a, const wh_api_state_t *st)
{
    static const char *const auth[] = { "WWW-Authenticate", "Bearer", NULL };
    size_t len = 0, clen = 0;
    const char *body = wh_http_body(r, &len), *url = st->cfg->public_url;
    char tok[MAX_TOKEN + 1] = "", *cookie = NULL;
    int o = -1;
    FILE *f;

    if (body != NULL && form_field(body, len, "token", tok, sizeof(tok)))
        o = wh_api_token_org(a, tok);
    if (o < 0) {
        signin_page(r, 401, "That token is not valid.", auth);
        goto out;
    }
    wh_http_set_org(r, st->cfg->dir.orgs[o].id);
    if (!is_supervisor(st, o)) {
        signin_page(r, 403, "The dashboard is for supervisors: this token is not a supervisor's.",
                    NULL);
        goto out;
    }
    if ((f = open_memstream(&cookie, &clen)) == NULL) {
        wh_http_respond(r, 503, NULL, "out of memory", 13);
        goto out;
    }
    fputs(COOKIE "=", f);
    cookie_value(f, tok);
    fputs("; HttpOnly; SameSite=Strict; Path=/", f);
    if (url != NULL && strncmp(url, "https://", 8) == 0)
        fputs("; Secure", f);
    if (fclose(f) != 0 || cookie == NULL)
        wh_http_respond(r, 503, NULL, "out of memory", 13);
    else
        see_home(r, cookie);
out:
    OPENSSL_cleanse(tok, sizeof(tok));
    if (cookie != NULL)
        OPENSSL_cleanse(cookie, clen);
    free(cookie);
}

/* ---- charts ---- */

/* A department of the audit answer and its place in the answer (the tie
 * break that keeps the config's order). */
typedef struct {
    json_t *d;
    size_t i;
} ranked_t;

/* Descending, a null rate after every number. */
static int cmp_rate(const json_t *x, const json_t *y)
{
    if (!json_is_number(x) || !json_is_number(y))
        return json_is_number(y) - json_is_number(x);
    double a = json_number_value(x), b = json_number_value(y);
    return a > b ? -1 : a < b ? 1 : 0;
}

static int cmp_ranked(const void *pa, const void *pb)
{
    const ranked_t *a = pa, *b = pb;
    for (int k = 0; k < 3; k++) {
        int c = cmp_rate(json_object_get(a->d, rate_keys[k]), json_object_get(b->d, rate_keys[k]));
        if (c != 0)
            return c;
    }
    return a->i < b->i ? -1 : a->i > b->i;
}

static void svg_open(FILE *f, const char *id, size_t n, const char *title)
{
    int h = SVG_TOP + (int)n * SVG_BLOCK + SVG_BOTTOM;
    fprintf(f,
            "<svg id=\"%s\" xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
            "viewBox=\"0 0 %d %d\" role=\"img\" aria-labelledby=\"%s-title\">"
            "<title id=\"%s-title\">%s</title>\n",
            id, SVG_W, h, SVG_W, h, id, id, title);
}

/* The legend above the plot: a swatch and a name per series. */
static void svg_legend(FILE *f, const char *const *names, const char *const *colors)
{
    for (int k = 0; k < 3; k++) {
        int x = SVG_LABEL + k * 120;
        fprintf(f,
                "<rect class=\"key\" x=\"%d\" y=\"8\" width=\"12\" height=\"12\" fill=\"%s\"/>"
                "<text x=\"%d\" y=\"18\">%s</text>\n",
                x, colors[k], x + 17, names[k]);
    }
}

/* Vertical grid lines at every step up to max, labelled value × scale with
 * suffix, and the axis title under them. */
static void svg_grid(FILE *f, size_t n, double max, double step, double scale, const char *suffix,
                     const char *axis_title)
{
    int bottom = SVG_TOP + (int)n * SVG_BLOCK, steps = (int)lround(max / step);

    for (int i = 0; i <= steps; i++) {
        double x = SVG_LABEL + SVG_PLOT * (i * step / max);
        fprintf(f,
                "<line class=\"grid\" x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\"/>"
                "<text class=\"axis\" x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%g%s</text>\n",
                x, SVG_TOP - 4, x, bottom, x, bottom + 14, i * step * scale, suffix);
    }
    fprintf(f, "<text class=\"axis\" x=\"%d\" y=\"%d\" text-anchor=\"middle\">%s</text>\n",
            SVG_LABEL + SVG_PLOT / 2, bottom + 32, axis_title);
}

/* The department's name left of its block of three bars. */
static void svg_label(FILE *f, const json_t *d, size_t row)
{
    int y = SVG_TOP + (int)row * SVG_BLOCK + (3 * (SVG_BAR + SVG_BAR_GAP)) / 2 + 8;
    fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"end\">", SVG_LABEL - 10, y);
    wh_html_escape(f, jstr(d, "name") != NULL ? jstr(d, "name") : jstr(d, "org"));
    fputs("</text>\n", f);
}

/* One horizontal bar of width frac (0-1) of the plot with text after it. */
static void svg_bar(FILE *f, size_t row, int k, const char *cls, const char *color, double frac,
                    const char *text)
{
    int y = SVG_TOP + (int)row * SVG_BLOCK + 4 + k * (SVG_BAR + SVG_BAR_GAP);
    double w = SVG_PLOT * (frac < 0 ? 0 : frac > 1 ? 1 : frac);
    fprintf(f,
            "<rect class=\"bar %s\" x=\"%d\" y=\"%d\" width=\"%.1f\" height=\"%d\" fill=\"%s\">"
            "<title>%s</title></rect><text x=\"%.1f\" y=\"%d\">%s</text>\n",
            cls, SVG_LABEL, y, w, SVG_BAR, color, text, SVG_LABEL + w + 5, y + SVG_BAR - 2, text);
}

/* A missing value: a dash where the bar would start. */
static void svg_none(FILE *f, size_t row, int k, const char *text)
{
    int y = SVG_TOP + (int)row * SVG_BLOCK + 4 + k * (SVG_BAR + SVG_BAR_GAP);
    fprintf(f, "<text class=\"axis\" x=\"%d\" y=\"%d\">%s</text>\n", SVG_LABEL + 5, y + SVG_BAR - 2,
            text);
}

static void fmt_rate(char *buf, size_t len, const json_t *v)
{
    if (json_is_number(v))
        snprintf(buf, len, "%.1f%%", json_number_value(v) * 100);
    else
        snprintf(buf, len, NO_VALUE);
}

static void rates_chart(FILE *f, const ranked_t *v, size_t n)
{
    char text[32];

    svg_open(f, "rates-chart", n, "响应率, 解决率 and 满意率 per department");
    svg_legend(f, rate_names, rate_colors);
    svg_grid(f, n, 1, .25, 100, "%", "rate (%)");
    for (size_t i = 0; i < n; i++) {
        svg_label(f, v[i].d, i);
        for (int k = 0; k < 3; k++) {
            const json_t *x = json_object_get(v[i].d, rate_keys[k]);
            fmt_rate(text, sizeof(text), x);
            if (json_is_number(x))
                svg_bar(f, i, k, rate_keys[k], rate_colors[k], json_number_value(x), text);
            else
                svg_none(f, i, k, text);
        }
    }
    fputs("</svg>\n", f);
}

/* The unit of the closure-time axis: the largest that keeps the longest
 * time at two units or more, so the bars stay readable. */
typedef struct {
    double secs;
    const char *name, *abbr;
} unit_t;

static const unit_t units[] = {
    { 86400, "days", "d" }, { 3600, "hours", "h" }, { 60, "minutes", "min" }, { 1, "seconds", "s" }
};

static const unit_t *pick_unit(double max_s)
{
    for (size_t i = 0; i < 3; i++)
        if (max_s >= 2 * units[i].secs)
            return &units[i];
    return &units[3];
}

/* A step of 1, 2 or 5 × 10^k giving about four grid intervals. */
static double nice_step(double max)
{
    double raw = max / 4, mag = pow(10, floor(log10(raw))), norm = raw / mag;
    return (norm <= 1 ? 1 : norm <= 2 ? 2 : norm <= 5 ? 5 : 10) * mag;
}

static double close_value(const json_t *d, int k)
{
    return json_number_value(json_object_get(json_object_get(d, "close_seconds"), close_keys[k]));
}

static void close_chart(FILE *f, const ranked_t *v, size_t n)
{
    double max_s = 0, max_u, step;
    char text[48], axis[64];
    const unit_t *u;

    for (size_t i = 0; i < n; i++)
        max_s = fmax(max_s, close_value(v[i].d, 2));
    u = pick_unit(max_s);
    max_u = max_s > 0 ? max_s / u->secs : 1;
    step = nice_step(max_u);
    max_u = ceil(max_u / step - 1e-9) * step;
    snprintf(axis, sizeof(axis), "time to close, %s", u->name);
    svg_open(f, "close-chart", n, "Closure time per department: median, p90, max");
    svg_legend(f, close_keys, close_colors);
    svg_grid(f, n, max_u, step, 1, "", axis);
    for (size_t i = 0; i < n; i++) {
        const json_t *cs = json_object_get(v[i].d, "close_seconds");
        svg_label(f, v[i].d, i);
        if (!json_is_number(json_object_get(cs, "median"))) {
            svg_none(f, i, 1, "no resolved ticket");
            continue;
        }
        for (int k = 0; k < 3; k++) {
            double x = close_value(v[i].d, k) / u->secs;
            snprintf(text, sizeof(text), "%s %.*f %s", close_keys[k], u->secs > 1 ? 1 : 0, x,
                     u->abbr);
            svg_bar(f, i, k, close_keys[k], close_colors[k], x / max_u, text);
        }
    }
    fputs("</svg>\n", f);
}

/* ---- the dashboard ---- */

/* The window form: from/to as the audit API takes them (GET, so a window
 * is a link that can be shared). */
static void window_form(FILE *f, const char *from, const char *to)
{
    fputs("<section><form class=\"window\" id=\"window\" method=\"get\" action=\"/\">"
          "<label for=\"from\">from (date or RFC 3339)<input id=\"from\" name=\"from\" value=\"",
          f);
    wh_html_escape(f, from);
    fputs("\"></label><label for=\"to\">to<input id=\"to\" name=\"to\" value=\"", f);
    wh_html_escape(f, to);
    fputs("\"></label><button type=\"submit\">Show</button>"
          "<span class=\"muted\">Tickets raised in [from, to); overdue counts ignore the window."
          "</span></form></section>\n",
          f);
}

static const char *const count_keys[] = { "assigned", "reported", "reported_on_time", "resolved",
                                          "resolved_on_time" };
static const char *const count_heads[] = { "派单<br><small>assigned</small>",
                                           "报到<br><small>reported</small>",
                                           "按时报到<br><small>on time</small>",
                                           "办结<br><small>resolved</small>",
                                           "按时办结<br><small>on time</small>" };
static const char *const extra_keys[] = { "overdue_now", "escalations", "disputed", "reopened" };
static const char *const extra_heads[] = { "当前超期<br><small>overdue now</small>",
                                           "升级<br><small>escalations</small>",
                                           "争议<br><small>disputed</small>",
                                           "重办<br><small>reopened</small>" };

static void count_cell(FILE *f, const json_t *d, const char *key)
{
    fprintf(f, "<td class=\"num %s\">%" JSON_INTEGER_FORMAT "</td>", key,
            json_integer_value(json_object_get(d, key)));
}

static void scorecards_row(FILE *f, const json_t *d, size_t rank)
{
    char text[32];

    fputs("<tr data-org=\"", f);
    wh_html_escape(f, jstr(d, "org"));
    fprintf(f, "\"><td class=\"num rank\">%zu</td><td class=\"name\">", rank);
    wh_html_escape(f, jstr(d, "name"));
    fputs("<br><small>", f);
    wh_html_escape(f, jstr(d, "org"));
    fputs("</small></td>", f);
    for (size_t k = 0; k < 5; k++)
        count_cell(f, d, count_keys[k]);
    for (int k = 0; k < 3; k++) {
        const json_t *x = json_object_get(d, rate_keys[k]);
        fmt_rate(text, sizeof(text), x);
        fprintf(f, "<td class=\"num rate %s\" data-value=\"", rate_keys[k]);
        if (json_is_number(x))
            fprintf(f, "%.17g", json_number_value(x));
        fprintf(f, "\">%s</td>", text);
    }
    for (size_t k = 0; k < 4; k++)
        count_cell(f, d, extra_keys[k]);
    fputs("</tr>\n", f);
}

static void scorecards_table(FILE *f, const ranked_t *v, size_t n)
{
    fputs("<section><h2>部门排名 \xc2\xb7 departments ranked by 响应率, then 解决率, then 满意率"
          "</h2>\n<table id=\"scorecards\"><thead><tr><th class=\"num\">#</th>"
          "<th>部门<br><small>department</small></th>",
          f);
    for (size_t k = 0; k < 5; k++)
        fprintf(f, "<th class=\"num\">%s</th>", count_heads[k]);
    fputs("<th class=\"num\">响应率<br><small>response</small></th>"
          "<th class=\"num\">解决率<br><small>resolve</small></th>"
          "<th class=\"num\">满意率<br><small>satisfaction</small></th>",
          f);
    for (size_t k = 0; k < 4; k++)
        fprintf(f, "<th class=\"num\">%s</th>", extra_heads[k]);
    fputs("</tr></thead>\n<tbody>\n", f);
    for (size_t i = 0; i < n; i++)
        scorecards_row(f, v[i].d, i + 1);
    fputs("</tbody></table>\n<p class=\"muted\">Rates as GET /v1/audit/departments answers "
          "them; " NO_VALUE " when nothing counts yet.</p></section>\n",
          f);
}

/* The table and the two charts of the audit answer's departments. */
static int scorecards(FILE *f, json_t *audit)
{
    json_t *depts = json_object_get(audit, "departments");
    size_t n = json_array_size(depts);
    ranked_t *v;

    if (n > MAX_DEPTS)
        n = MAX_DEPTS;
    if ((v = calloc(n + 1, sizeof(*v))) == NULL)
        return WH_ENOMEM;
    for (size_t i = 0; i < n; i++)
        v[i] = (ranked_t){ json_array_get(depts, i), i };
    qsort(v, n, sizeof(*v), cmp_ranked);
    scorecards_table(f, v, n);
    fputs("<section><h2>三率 \xc2\xb7 rates per department</h2>\n", f);
    rates_chart(f, v, n);
    fputs("</section>\n<section><h2>办结用时 \xc2\xb7 time to close (resolved tickets)</h2>\n", f);
    close_chart(f, v, n);
    fputs("</section>\n", f);
    free(v);
    return 0;
}

/* Names of the ticket's active assignees, joined by "、". */
static void assignee_names(FILE *f, const wh_api_state_t *st, const json_t *t)
{
    size_t i;
    json_t *as;
    bool first = true;

    json_array_foreach(json_object_get(t, "assignees"), i, as)
    {
        if (!json_is_true(json_object_get(as, "active")))
            continue;
        fputs(first ? "" : "、", f);
        wh_html_escape(f, org_name(st, jstr(as, "org")));
        first = false;
    }
}

static void overdue_item(FILE *f, const wh_api_state_t *st, const json_t *t)
{
    size_t i;
    json_t *c;

    fputs("<li data-id=\"", f);
    wh_html_escape(f, jstr(t, "id"));
    fputs("\"><a href=\"/tickets/", f);
    wh_html_escape(f, jstr(t, "id"));
    fputs("\">", f);
    wh_html_escape(f, jstr(t, "id"));
    fputs("</a> <span class=\"state\">", f);
    wh_html_escape(f, jstr(t, "state"));
    fputs("</span> <span class=\"title\">", f);
    wh_html_escape(f, jstr(t, "title"));
    fputs("</span> <span class=\"muted\">\xc2\xb7 ", f);
    assignee_names(f, st, t);
    if (jstr(t, "due_at") != NULL) {
        fputs(" \xc2\xb7 due ", f);
        wh_html_escape(f, jstr(t, "due_at"));
    }
    json_array_foreach(json_object_get(t, "clocks"), i, c)
    {
        fputs(" \xc2\xb7 clock ", f);
        wh_html_escape(f, jstr(c, "name"));
        fputs(" due ", f);
        wh_html_escape(f, jstr(c, "due_at"));
    }
    fputs("</span></li>\n", f);
}

/* The tickets overdue now, as GET /v1/tickets?overdue=true shows them to
 * this supervisor (newest first, the first MAX_OVERDUE). */
static void overdue_list(FILE *f, const wh_api_state_t *st, int org)
{
    wh_list_query_t q = { .overdue = true, .limit = MAX_OVERDUE };
    json_t *out = NULL, *t;
    size_t i, n;
    int rc = wh_engine_list(st->engine, st->cfg->dir.orgs[org].id, &q, &out);

    fputs("<section><h2>超期工单 \xc2\xb7 overdue now</h2>\n", f);
    if (rc != 0) {
        fprintf(f, "<p class=\"error\">The list cannot be read: %s</p></section>\n",
                wh_strerror(rc));
        return;
    }
    n = json_array_size(json_object_get(out, "tickets"));
    fprintf(f, "<p class=\"muted\" id=\"overdue-count\">%zu%s ticket%s past a deadline.</p>\n", n,
            json_is_string(json_object_get(out, "next")) ? "+" : "", n == 1 ? "" : "s");
    fputs("<ul id=\"overdue\">\n", f);
    json_array_foreach(json_object_get(out, "tickets"), i, t)
    {
        overdue_item(f, st, t);
    }
    fputs("</ul></section>\n", f);
    json_decref(out);
}

/* What the dashboard page needs once the audit has run off the loop. */
typedef struct {
    wh_http_req_t *r;
    const wh_api_state_t *st; /* the API's: current when the audit returns */
    int org;
    char *from, *to; /* as asked, for the window form */
} dash_call_t;

static void dash_call_free(dash_call_t *c)
{
    free(c->from);
    free(c->to);
    free(c);
}

static void render_dashboard(int rc, char *body, size_t len, const char *err, void *arg)
{
    dash_call_t *c = arg;
    wh_http_req_t *r = c->r;
    const wh_api_state_t *st = c->st;
    json_t *audit = NULL;
    page_t p;

    if (rc == 0 && (audit = json_loadb(body, len, 0, NULL)) == NULL)
        rc = WH_ENOMEM;
    if (rc == 0 && (st->engine == NULL || st->cfg == NULL))
        rc = WH_ECLOSED; /* a reload or a stop while the audit ran */
    if (rc != 0 && rc != WH_EPARSE) {
        message_page(r, st, c->org, wh_err_http_status(rc), "Unavailable", wh_strerror(rc), NULL);
        goto out;
    }
    if (page_open(&p, r) != 0)
        goto out;
    page_head(p.f, "Dashboard");
    page_bar(p.f, st, c->org);
    fputs("<h1>部门考核 \xc2\xb7 department scorecards</h1>\n", p.f);
    window_form(p.f, audit != NULL ? jstr(audit, "from") : c->from,
                audit != NULL ? jstr(audit, "to") : c->to);
    if (rc == WH_EPARSE) {
        fputs("<p class=\"error\" id=\"window-error\" role=\"alert\">", p.f);
        wh_html_escape(p.f, err);
        fputs("</p>\n", p.f);
    } else if (scorecards(p.f, audit) != 0) {
        fputs("<p class=\"error\">out of memory</p>\n", p.f);
    }
    overdue_list(p.f, st, c->org);
    fputs("</main></body></html>\n", p.f);
    page_send(&p, r, rc == WH_EPARSE ? 400 : 200, NULL);
out:
    json_decref(audit);
    free(body);
    dash_call_free(c);
}

/* The scorecards come from the same audit as GET /v1/audit/departments,
 * run off the loop's thread (a million tickets take about a second). */
static void get_dashboard(wh_http_req_t *r, wh_api_t *a, const wh_api_state_t *st, int org)
{
    char fb[64], tb[64];
    const char *from = wh_http_query_time(r, "from", fb), *to = wh_http_query_time(r, "to", tb);
    dash_call_t *c = calloc(1, sizeof(*c));
    int rc = WH_ENOMEM;

    if (c != NULL && (from == NULL || (c->from = strdup(from)) != NULL) &&
        (to == NULL || (c->to = strdup(to)) != NULL)) {
        *c = (dash_call_t){ r, st, org, c->from, c->to };
        rc = wh_api_audit(a, from, to, WH_AUDIT_JSON, false, render_dashboard, c);
    }
    if (rc != 0) {
        if (c != NULL)
            dash_call_free(c);
        message_page(r, st, org, wh_err_http_status(rc), "Unavailable", wh_strerror(rc), NULL);
    }
}

/* ---- one ticket ---- */

static void field(FILE *f, const char *label, const char *cls, const char *value)
{
    fprintf(f, "<dt>%s</dt><dd class=\"%s\">", label, cls);
    wh_html_escape(f, value != NULL ? value : NO_VALUE);
    fputs("</dd>\n", f);
}

static void ticket_fields(FILE *f, const wh_api_state_t *st, const json_t *t)
{
    char buf[64];

    fputs("<section><dl id=\"ticket\">\n", f);
    field(f, "state", "state", jstr(t, "state"));
    snprintf(buf, sizeof(buf), "%.40s v%" JSON_INTEGER_FORMAT, jstr(t, "workflow"),
             json_integer_value(json_object_get(t, "version")));
    field(f, "workflow", "workflow", buf);
    field(f, "category", "category", jstr(t, "category"));
    field(f, "priority", "priority", jstr(t, "priority"));
    field(f, "raiser", "raiser", org_name(st, jstr(t, "raiser")));
    fputs("<dt>assignees</dt><dd class=\"assignees\">", f);
    assignee_names(f, st, t);
    fputs("</dd>\n", f);
    field(f, "raised", "created_at", jstr(t, "created_at"));
    field(f, "updated", "updated_at", jstr(t, "updated_at"));
    field(f, "due", "due_at", jstr(t, "due_at"));
    field(f, "closed", "closed_at", jstr(t, "closed_at"));
    snprintf(buf, sizeof(buf), "%" JSON_INTEGER_FORMAT,
             json_integer_value(json_object_get(t, "escalation_level")));
    field(f, "escalation level", "escalation_level", buf);
    field(f, "address", "address", jstr(json_object_get(t, "location"), "address"));
    field(f, "description", "description", jstr(t, "description"));
    fputs("</dl></section>\n", f);
}

static void clocks_table(FILE *f, const json_t *t)
{
    size_t i;
    json_t *c;

    if (json_array_size(json_object_get(t, "clocks")) == 0)
        return;
    fputs("<section><h2>时限 \xc2\xb7 clocks</h2><table id=\"clocks\"><thead><tr><th>clock</th>"
          "<th>due</th><th>running</th><th class=\"num\">elapsed (s)</th><th>breached</th></tr>"
          "</thead><tbody>\n",
          f);
    json_array_foreach(json_object_get(t, "clocks"), i, c)
    {
        fputs("<tr><td>", f);
        wh_html_escape(f, jstr(c, "name"));
        fputs("</td><td>", f);
        wh_html_escape(f, jstr(c, "due_at") != NULL ? jstr(c, "due_at") : NO_VALUE);
        fprintf(f,
                "</td><td>%s</td><td class=\"num\">%" JSON_INTEGER_FORMAT "</td><td>%s</td></tr>\n",
                json_is_true(json_object_get(c, "running")) ? "yes" : "no",
                json_integer_value(json_object_get(c, "elapsed_seconds")),
                json_is_true(json_object_get(c, "breached")) ? "yes" : "no");
    }
    fputs("</tbody></table></section>\n", f);
}

static void event_row(FILE *f, const wh_api_state_t *st, const json_t *e)
{
    char *data = json_dumps(json_object_get(e, "data"), JSON_COMPACT | JSON_SORT_KEYS);

    fprintf(f,
            "<tr data-seq=\"%" JSON_INTEGER_FORMAT "\"><td class=\"num seq\">%" JSON_INTEGER_FORMAT
            "</td><td class=\"at\">",
            json_integer_value(json_object_get(e, "seq")),
            json_integer_value(json_object_get(e, "seq")));
    wh_html_escape(f, jstr(e, "at"));
    fputs("</td><td class=\"event\">", f);
    wh_html_escape(f, jstr(e, "event"));
    fputs("</td><td class=\"actor\">", f);
    wh_html_escape(f, org_name(st, jstr(e, "actor")));
    fputs("</td><td class=\"states\">", f);
    wh_html_escape(f, jstr(e, "from"));
    fputs(jstr(e, "from") != NULL ? " \xe2\x86\x92 " : "\xe2\x86\x92 ", f);
    wh_html_escape(f, jstr(e, "to"));
    fputs("</td><td class=\"note\">", f);
    wh_html_escape(f, jstr(e, "note"));
    fputs("</td><td class=\"data\"><code>", f);
    wh_html_escape(f, data != NULL && strcmp(data, "{}") != 0 && strcmp(data, "null") != 0 ? data
                                                                                           : "");
    fputs("</code></td></tr>\n", f);
    free(data);
}

static void events_table(FILE *f, const wh_api_state_t *st, const json_t *ev)
{
    const json_t *rows = json_object_get(ev, "events");
    size_t n = json_array_size(rows);

    fputs("<section><h2>时间线 \xc2\xb7 timeline</h2><table id=\"events\"><thead><tr>"
          "<th class=\"num\">#</th><th>at</th><th>event</th><th>actor</th><th>from \xe2\x86\x92 "
          "to</th><th>note</th><th>data</th></tr></thead><tbody>\n",
          f);
    for (size_t i = 0; i < n && i < MAX_EVENTS; i++)
        event_row(f, st, json_array_get(rows, i));
    fputs("</tbody></table>\n", f);
    if (n > MAX_EVENTS)
        fprintf(f,
                "<p class=\"muted\">The first %d of %zu rows; GET /v1/tickets/{id}/events has "
                "them all.</p>\n",
                MAX_EVENTS, n);
    fputs("</section>\n", f);
}

static void get_ticket_page(wh_http_req_t *r, const wh_api_state_t *st, int org, const char *id)
{
    const char *reader = st->cfg->dir.orgs[org].id;
    json_t *t = NULL, *ev = NULL;
    int rc = valid_id(id) ? wh_engine_ticket(st->engine, id, reader, &t) : WH_ENOENT;
    page_t p;

    if (rc == 0)
        rc = wh_engine_events(st->engine, id, reader, 0, &ev);
    if (rc != 0) {
        message_page(r, st, org, rc == WH_ENOENT ? 404 : wh_err_http_status(rc),
                     rc == WH_ENOENT ? "Not found" : "Unavailable",
                     rc == WH_ENOENT ? "There is no such ticket." : wh_strerror(rc), NULL);
        goto out;
    }
    if (page_open(&p, r) != 0)
        goto out;
    page_head(p.f, jstr(t, "id"));
    page_bar(p.f, st, org);
    fputs("<p><a href=\"/\">\xe2\x86\x90 dashboard</a></p>\n<h1 id=\"ticket-title\">", p.f);
    wh_html_escape(p.f, jstr(t, "title"));
    fputs(" <small class=\"muted\" id=\"ticket-id\">", p.f);
    wh_html_escape(p.f, jstr(t, "id"));
    fputs("</small></h1>\n", p.f);
    ticket_fields(p.f, st, t);
    clocks_table(p.f, t);
    events_table(p.f, st, ev);
    fputs("</main></body></html>\n", p.f);
    page_send(&p, r, 200, NULL);
out:
    json_decref(t);
    json_decref(ev);
}

/* ---- routing ---- */

void wh_dashboard_handle(wh_http_req_t *r, wh_api_t *a, const wh_api_state_t *st)
{
    const char *path = wh_http_path(r), *m = wh_http_method(r);
    bool post = strcmp(path, "/signin") == 0 || strcmp(path, "/signout") == 0;
    bool ok = post ? strcmp(m, "POST") == 0 : strcmp(m, "GET") == 0 || strcmp(m, "HEAD") == 0;
    int org;

    if (!ok) {
        const char *const hdr[] = { "Allow", post ? "POST" : "GET, HEAD", NULL };
        message_page(r, st, -1, 405, "Method not allowed", "This method is not allowed here.", hdr);
    } else if (st->engine == NULL || st->cfg == NULL) {
        message_page(r, st, -1, 503, "Unavailable", "The server is shutting down.",
                     (const char *const[]){ "Retry-After", "1", NULL });
    } else if (strcmp(path, "/signin") == 0) {
        post_signin(r, a, st);
    } else if (strcmp(path, "/signout") == 0) {
        see_home(r, clear_cookie);
    } else if ((org = gate(r, a, st, strcmp(path, "/") == 0)) < 0) {
        return;
    } else if (strcmp(path, "/") == 0) {
        get_dashboard(r, a, st, org);
    } else {
        get_ticket_page(r, st, org, path + 9);
    }
}
