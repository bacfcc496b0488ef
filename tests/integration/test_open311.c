/* Open311 GeoReport v2 (SPEC §8) as a client sees it: the real daemon
 * (WH_BINARY) on a free port with its own database, driven with libcurl.
 * JSON answers are checked with jansson, XML answers with python3's
 * xml.etree.ElementTree (a real parser) when python3 is installed. */
#include <criterion/criterion.h>
#include <curl/curl.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

#include "engine/tz.h"

/* ---- the daemon ---- */

/* street-whistle again as version 2: versions of one workflow may share
 * categories, and the service list shows each category once. */
static void write_v2(const char *wf)
{
    char path[600];
    char *text = wh_test_read_file(WH_SOURCE_DIR "/workflows/street-whistle.yaml");
    char *v = strstr(text, "version: 1");
    cr_assert_not_null(v);
    v[9] = '2';
    snprintf(path, sizeof(path), "%s/street-whistle-v2.yaml", wf);
    wh_test_write_file(path, text);
    free(text);
}

static void write_config(void)
{
    static const char *const wfs[] = { "workflows/street-whistle.yaml",
                                       "workflows/hotline-12345.yaml", NULL };
    char wf[300];
    wh_test_write_city(wfs, "public_url: https://whistle.example.cn\n"
                            "open311:\n  jurisdiction_id: shaoyang.gov.cn\n");
    snprintf(wf, sizeof(wf), "%s/workflows", wh_test_dir);
    write_v2(wf);
}

static void setup(void)
{
    wh_test_dir_make("wh-open311");
    write_config();
    wh_test_daemon_start();
}

static void teardown(void)
{
    wh_test_finish(wh_test_daemon_stop(SIGTERM));
}

TestSuite(open311, .init = setup, .fini = teardown, .timeout = 120);

/* ---- HTTP ---- */

/* One request: a form body (POST) or none; token, when given, as a bearer
 * token (the native API). */
static wh_test_resp_t request(const char *method, const char *path, const char *token,
                              const char *form)
{
    const char *type = token != NULL ? "application/json" : "application/x-www-form-urlencoded";
    return wh_test_send(method, path, token, type, form, form != NULL ? strlen(form) : 0, NULL);
}

/* The XML answer parsed by python3, flattened: the root's tag, then one
 * line "item.child=text" per child of each item. NULL without python3. */
static char *xml_flat(const wh_test_resp_t *r)
{
    static const char script[] = "import sys, xml.etree.ElementTree as ET\n"
                                 "root = ET.parse(sys.argv[1]).getroot()\n"
                                 "print(root.tag)\n"
                                 "for item in root:\n"
                                 "    for c in item:\n"
                                 "        print('%s.%s=%s' % (item.tag, c.tag, c.text or ''))\n";
    char doc[300], py[300], cmd[1400], out[300];
    snprintf(doc, sizeof(doc), "%s/answer.xml", wh_test_dir);
    snprintf(py, sizeof(py), "%s/flat.py", wh_test_dir);
    snprintf(out, sizeof(out), "%s/flat.txt", wh_test_dir);
    if (system("command -v python3 >/dev/null 2>&1") != 0) {
        cr_log_warn("python3 is not installed: XML left unparsed");
        return NULL;
    }
    wh_test_write_file(doc, r->body);
    wh_test_write_file(py, script);
    snprintf(cmd, sizeof(cmd), "PYTHONIOENCODING=utf-8 python3 '%s' '%s' > '%s' 2>&1", py, doc,
             out);
    int rc = system(cmd);
    char *flat = wh_test_read_file(out);
    cr_assert_eq(rc, 0, "not well-formed XML (%s):\n%s", flat, r->body);
    return flat;
}

/* Asserts a GeoReport error: status, [{"code": status, "description"}] in
 * JSON, or the same in XML. */
static void expect_error(wh_test_resp_t r, long status, const char *desc, bool xml)
{
    char want[600];
    cr_assert_eq(r.status, status, "%ld %s", r.status, r.body ? r.body : "");
    if (!xml) {
        cr_assert(wh_test_has_header(&r, "Content-Type: application/json"), "%s", r.headers);
        cr_assert_not_null(r.json, "not JSON: %s", r.body);
        cr_assert_eq(json_array_size(r.json), 1, "%s", r.body);
        json_t *e = json_array_get(r.json, 0);
        cr_assert_eq(json_integer_value(json_object_get(e, "code")), status, "%s", r.body);
        cr_assert_str_eq(wh_test_str(e, "description"), desc);
        cr_assert_eq(json_object_size(e), 2);
    } else {
        cr_assert(wh_test_has_header(&r, "Content-Type: text/xml; charset=utf-8"), "%s", r.headers);
        char *flat = xml_flat(&r);
        snprintf(want, sizeof(want), "errors\nerror.code=%ld\nerror.description=%s\n", status,
                 desc);
        if (flat != NULL)
            cr_assert_str_eq(flat, want);
        free(flat);
    }
    wh_test_resp_free(&r);
}

/* Raises through Open311 and returns the service_request_id. */
static char *raise311(const char *form)
{
    wh_test_resp_t r = request("POST", "/open311/v2/requests.json", NULL, form);
    cr_assert_eq(r.status, 201, "%ld %s", r.status, r.body);
    cr_assert_eq(json_array_size(r.json), 1, "%s", r.body);
    char *id = strdup(wh_test_str(json_array_get(r.json, 0), "service_request_id"));
    wh_test_resp_free(&r);
    return id;
}

static json_t *native_ticket(const char *id)
{
    char path[128];
    snprintf(path, sizeof(path), "/v1/tickets/%s", id);
    wh_test_resp_t r = request("GET", path, "tok-xintan", NULL);
    cr_assert_eq(r.status, 200, "%s", r.body);
    json_t *t = json_incref(r.json);
    wh_test_resp_free(&r);
    return t;
}

static void fire(const char *token, const char *id, const char *body)
{
    char path[128];
    snprintf(path, sizeof(path), "/v1/tickets/%s/events", id);
    wh_test_resp_t r = request("POST", path, token, body);
    cr_assert_eq(r.status, 200, "%s: %ld %s", body, r.status, r.body);
    wh_test_resp_free(&r);
}

/* GET requests/{id}.json as xintan: the one request. */
static json_t *get311(const char *id)
{
    char path[200];
    snprintf(path, sizeof(path), "/open311/v2/requests/%s.json?api_key=tok-xintan", id);
    wh_test_resp_t r = request("GET", path, NULL, NULL);
    cr_assert_eq(r.status, 200, "%ld %s", r.status, r.body);
    cr_assert_eq(json_array_size(r.json), 1, "%s", r.body);
    json_t *o = json_incref(json_array_get(r.json, 0));
    wh_test_resp_free(&r);
    return o;
}

static const char fire_form[] = "api_key=tok-xintan&jurisdiction_id=shaoyang.gov.cn"
                                "&service_code=fire-safety&lat=27.2389&long=111.4672"
                                "&address_string=%E6%96%B0%E6%BB%A9%E8%B7%AF1%E5%8F%B7"
                                "&description=%E6%A5%BC%E9%81%93%E5%A0%86%E7%89%A9+3%E5%A4%84";

/* ---- services and discovery ---- */

Test(open311, services_json_lists_each_routed_category_once)
{
    static const char *const codes[] = { "fire-hazard", "housing-repair", "price-complaint",
                                         "food-safety", "fire-safety",    "property-fee" };
    wh_test_resp_t r = request("GET", "/open311/v2/services.json", NULL, NULL);
    cr_assert_eq(r.status, 200, "%s", r.body);
    cr_assert(wh_test_has_header(&r, "Content-Type: application/json; charset=utf-8"));
    cr_assert_eq(json_array_size(r.json), 6, "%s", r.body);
    for (size_t i = 0; i < 6; i++)
        cr_assert_str_eq(wh_test_str(json_array_get(r.json, i), "service_code"), codes[i]);

    json_t *fire = json_array_get(r.json, 4);
    json_t *want =
        json_pack("{s:s,s:s,s:s,s:b,s:s,s:s,s:s}", "service_code", "fire-safety", "service_name",
                  "消防安全隐患", "description", "占用消防通道、消防设施损坏", "metadata", 0,
                  "type", "realtime", "keywords", "消防", "group", "安全");
    cr_assert(json_equal(fire, want), "%s", r.body);
    json_decref(want);
    /* Without a services: entry the category names itself. */
    want = json_pack("{s:s,s:s,s:s,s:b,s:s,s:n,s:n}", "service_code", "property-fee",
                     "service_name", "property-fee", "description", "property-fee", "metadata", 0,
                     "type", "realtime", "keywords", "group");
    cr_assert(json_equal(json_array_get(r.json, 5), want), "%s", r.body);
    json_decref(want);
    cr_assert_str_eq(wh_test_str(json_array_get(r.json, 0), "keywords"), "消防,楼道");
    wh_test_resp_free(&r);

    r = request("GET", "/open311/v2/services.json?jurisdiction_id=shaoyang.gov.cn", NULL, NULL);
    cr_assert_eq(r.status, 200);
    wh_test_resp_free(&r);
    expect_error(request("GET", "/open311/v2/services.json?jurisdiction_id=x.gov.cn", NULL, NULL),
                 400, "jurisdiction_id does not name this server's jurisdiction", false);
}

Test(open311, services_xml_is_well_formed_with_chinese_intact)
{
    wh_test_resp_t r = request("GET", "/open311/v2/services.xml", NULL, NULL);
    cr_assert_eq(r.status, 200, "%s", r.body);
    cr_assert(wh_test_has_header(&r, "Content-Type: text/xml; charset=utf-8"));
    cr_assert(
        strncmp(r.body, "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<services><service>", 58) == 0,
        "%s", r.body);
    char *flat = xml_flat(&r);
    if (flat != NULL) {
        static const char head[] = "services\n"
                                   "service.service_code=fire-hazard\n"
                                   "service.service_name=消防隐患\n"
                                   "service.description=楼道堆物、消防通道堵塞、消防设施损坏\n"
                                   "service.metadata=false\n"
                                   "service.type=realtime\n"
                                   "service.keywords=消防,楼道\n"
                                   "service.group=安全\n"
                                   "service.service_code=housing-repair\n";
        cr_assert(strncmp(flat, head, strlen(head)) == 0, "%s", flat);
        cr_assert_not_null(strstr(flat, "service.service_code=fire-safety\n"
                                        "service.service_name=消防安全隐患\n"),
                           "%s", flat);
        cr_assert_not_null(strstr(flat, "service.service_code=property-fee\n"
                                        "service.service_name=property-fee\n"
                                        "service.description=property-fee\n"
                                        "service.metadata=false\n"
                                        "service.type=realtime\n"
                                        "service.keywords=\n"
                                        "service.group=\n"),
                           "%s", flat);
    }
    free(flat);
    wh_test_resp_free(&r);
}

Test(open311, discovery_names_the_v2_endpoint)
{
    wh_test_resp_t r = request("GET", "/open311/discovery.json", NULL, NULL);
    cr_assert_eq(r.status, 200, "%s", r.body);
    json_t *ep = json_array_get(json_object_get(r.json, "endpoints"), 0);
    cr_assert_str_eq(wh_test_str(ep, "url"), "https://whistle.example.cn/open311/v2");
    cr_assert_str_eq(wh_test_str(ep, "specification"), "http://wiki.open311.org/GeoReport_v2");
    cr_assert_str_eq(wh_test_str(ep, "type"), "production");
    cr_assert_eq(json_array_size(json_object_get(ep, "formats")), 2);
    wh_test_resp_free(&r);

    r = request("GET", "/open311/discovery.xml", NULL, NULL);
    cr_assert_eq(r.status, 200, "%s", r.body);
    char *flat = xml_flat(&r);
    if (flat != NULL)
        cr_assert_str_eq(flat, "discovery\nendpoints.endpoint=\n");
    free(flat);
    cr_assert_not_null(strstr(r.body, "<url>https://whistle.example.cn/open311/v2</url>"));
    cr_assert_not_null(strstr(r.body, "<formats><format>application/json</format>"
                                      "<format>text/xml</format></formats>"));
    wh_test_resp_free(&r);
}

/* ---- raising ---- */

Test(open311, a_form_post_raises_a_ticket_and_stores_no_personal_data)
{
    wh_test_resp_t r =
        request("POST", "/open311/v2/requests.json", NULL,
                "api_key=tok-xintan&service_code=fire-safety&lat=27.2389&long=111.4672"
                "&description=%E6%A5%BC%E9%81%93%E5%A0%86%E7%89%A9+3%E5%A4%84"
                "&media_url=https%3A%2F%2Fimg.example.cn%2Fa.jpg"
                "&first_name=%E5%BC%A0&last_name=%E4%B8%89&email=zhang%40example.cn"
                "&phone=13800000000&device_id=dev-42&account_id=acct-7"
                "&attribute%5Bfloor%5D=3&attribute%5Bkind%5D%5B%5D=a&attribute%5Bkind"
                "%5D%5B%5D=b");
    cr_assert_eq(r.status, 201, "%ld %s", r.status, r.body);
    json_t *want = json_pack("[{s:s,s:s,s:n}]", "service_request_id", "T00000001", "service_notice",
                             "已吹哨", "account_id");
    cr_assert(json_equal(r.json, want), "%s", r.body);
    json_decref(want);
    wh_test_resp_free(&r);

    json_t *t = native_ticket("T00000001");
    cr_assert_str_eq(wh_test_str(t, "workflow"), "street-whistle");
    cr_assert_eq(json_integer_value(json_object_get(t, "version")), 2);
    cr_assert_str_eq(wh_test_str(t, "category"), "fire-safety");
    cr_assert_str_eq(wh_test_str(t, "title"), "消防安全隐患");
    cr_assert_str_eq(wh_test_str(t, "raiser"), "xintan-street");
    cr_assert_str_eq(wh_test_str(t, "description"),
                     "楼道堆物 3处\n\nmedia_url: https://img.example.cn/a.jpg");
    json_t *loc = json_pack("{s:f,s:f}", "lat", 27.2389, "lon", 111.4672);
    cr_assert(json_equal(json_object_get(t, "location"), loc));
    json_decref(loc);
    cr_assert_str_eq(wh_test_str(json_array_get(json_object_get(t, "assignees"), 0), "org"),
                     "fire-brigade");
    json_decref(t);

    /* Nothing personal reaches the ticket or its log. */
    r = request("GET", "/v1/tickets/T00000001/events", "tok-xintan", NULL);
    cr_assert_eq(r.status, 200);
    static const char *const personal[] = { "zhang@example.cn", "13800000000", "dev-42",
                                            "acct-7",           "张",          "floor" };
    for (size_t i = 0; i < sizeof(personal) / sizeof(personal[0]); i++)
        cr_assert_null(strstr(r.body, personal[i]), "%s in %s", personal[i], r.body);
    wh_test_resp_free(&r);

    /* The XML form of the answer. */
    r = request("POST", "/open311/v2/requests.xml", NULL,
                "api_key=tok-xintan&service_code=housing-repair&address_id=grid-07");
    cr_assert_eq(r.status, 201, "%s", r.body);
    char *flat = xml_flat(&r);
    if (flat != NULL)
        cr_assert_str_eq(flat, "service_requests\nrequest.service_request_id=T00000002\n"
                               "request.service_notice=已受理（待签收）\nrequest.account_id=\n");
    free(flat);
    wh_test_resp_free(&r);
    t = native_ticket("T00000002");
    cr_assert_str_eq(wh_test_str(t, "workflow"), "hotline-12345");
    cr_assert_str_eq(wh_test_str(json_object_get(t, "location"), "grid"), "grid-07");
    cr_assert(json_is_null(json_object_get(t, "description")));
    json_decref(t);
}

static void bad_requests(bool xml)
{
    const char *path = xml ? "/open311/v2/requests.xml" : "/open311/v2/requests.json";
    expect_error(request("POST", path, NULL, "service_code=fire-safety&lat=27&long=111"), 401,
                 "api_key is required (an org's token)", xml);
    expect_error(
        request("POST", path, NULL, "api_key=nope&service_code=fire-safety&lat=27&long=111"), 401,
        "api_key is not valid", xml);
    expect_error(
        request("POST", path, NULL, "api_key=tok-fire&service_code=fire-safety&lat=27&long=111"),
        403, "only street offices and communities raise tickets", xml);
    expect_error(
        request("POST", path, NULL, "api_key=tok-xintan&service_code=potholes&lat=27&long=111"),
        400, "service_code 'potholes' is not a listed service", xml);
    expect_error(
        request("POST", path, NULL, "api_key=tok-xintan&service_code=default&lat=27&long=111"), 400,
        "service_code 'default' is not a listed service", xml);
    expect_error(request("POST", path, NULL, "api_key=tok-xintan&service_code=fire-safety"), 400,
                 "a location is required: lat and long, address_string or address_id", xml);
    expect_error(request("POST", path, NULL, "api_key=tok-xintan&service_code=fire-safety&lat=27"),
                 400, "lat and long must both be given, as decimal degrees", xml);
    expect_error(request("POST", path, NULL,
                         "api_key=tok-xintan&jurisdiction_id=beijing.gov.cn&service_code=fire-"
                         "safety&lat=27&long=111"),
                 400, "jurisdiction_id does not name this server's jurisdiction", xml);
    expect_error(request("POST", path, NULL,
                         "api_key=tok-xintan&service_code=fire-safety&service_code=x&lat=27&long="
                         "111"),
                 400, "service_code is given more than once", xml);
    expect_error(request("POST", path, NULL, "api_key=tok-xintan&description=%E6%A5"), 400,
                 "the body is not valid UTF-8", xml);
    expect_error(request("POST", path, NULL, "api_key=tok-xintan&description=%4"), 400,
                 "the body has a malformed %-escape (or %00)", xml);
    expect_error(request("POST", path, NULL,
                         "api_key=tok-xintan&service_code=fire-safety&address_id=g"
                         "&media_url=javascript:alert(1)"),
                 400, "media_url must be an http(s) URL", xml);
    /* The engine's own checks come back as GeoReport errors too. */
    expect_error(
        request("POST", path, NULL, "api_key=tok-xintan&service_code=fire-safety&lat=95&long=111"),
        422, "'location.lat' must be a number between -90 and 90", xml);
}

Test(open311, refusals_are_georeport_errors_in_json)
{
    bad_requests(false);
    wh_test_resp_t r = request("GET", "/open311/v2/requests.json?api_key=tok-xintan", NULL, NULL);
    cr_assert_str_eq(r.body, "[]", "nothing was raised by the refused requests");
    wh_test_resp_free(&r);
}

Test(open311, refusals_are_georeport_errors_in_xml)
{
    bad_requests(true);
    expect_error(request("GET", "/open311/v2/nothing.xml", NULL, NULL), 404, "no such Open311 path",
                 true);
    wh_test_resp_t r = request("DELETE", "/open311/v2/requests.xml", NULL, NULL);
    cr_assert(wh_test_has_header(&r, "Allow: GET, HEAD, POST"));
    expect_error(r, 405, "this method is not allowed on this path", true);
}

/* ---- reading ---- */

static int64_t at(const char *rfc3339)
{
    int64_t t = 0;
    cr_assert_eq(wh_time_parse(rfc3339, &t), 0, "%s", rfc3339);
    return t;
}

Test(open311, a_ticket_closed_in_the_native_api_shows_closed)
{
    char *id = raise311(fire_form);
    json_t *t = native_ticket(id), *o = get311(id);
    const char *due = wh_test_str(t, "due_at");

    cr_assert_not_null(due);
    cr_assert_str_eq(wh_test_str(o, "service_request_id"), id);
    cr_assert_str_eq(wh_test_str(o, "status"), "open");
    cr_assert(json_is_null(json_object_get(o, "status_notes")));
    cr_assert_str_eq(wh_test_str(o, "service_name"), "消防安全隐患");
    cr_assert_str_eq(wh_test_str(o, "service_code"), "fire-safety");
    cr_assert_str_eq(wh_test_str(o, "description"), "楼道堆物 3处");
    cr_assert_str_eq(wh_test_str(o, "agency_responsible"), "消防");
    cr_assert_str_eq(wh_test_str(o, "service_notice"), "已吹哨");
    cr_assert_str_eq(wh_test_str(o, "requested_datetime"), wh_test_str(t, "created_at"));
    cr_assert_str_eq(wh_test_str(o, "updated_datetime"), wh_test_str(t, "updated_at"));
    /* The 30-minute 报到 deadline comes before the 7-workday clock. */
    cr_assert_str_eq(wh_test_str(o, "expected_datetime"), due);
    cr_assert_eq(at(due) - at(wh_test_str(t, "created_at")), 1800);
    cr_assert_str_eq(wh_test_str(o, "address"), "新滩路1号");
    cr_assert(json_is_null(json_object_get(o, "address_id")));
    cr_assert(json_is_null(json_object_get(o, "zipcode")));
    cr_assert(json_real_value(json_object_get(o, "lat")) == 27.2389);
    cr_assert(json_real_value(json_object_get(o, "long")) == 111.4672);
    cr_assert(json_is_null(json_object_get(o, "media_url")));
    cr_assert_eq(json_object_size(o), 17);
    json_decref(o);
    json_decref(t);

    /* 报到: no state deadline any more; the resolve clock is the nearest. */
    fire("tok-fire", id, "{\"event\":\"report\"}");
    t = native_ticket(id);
    o = get311(id);
    cr_assert(json_is_null(json_object_get(t, "due_at")));
    cr_assert_str_eq(wh_test_str(o, "expected_datetime"),
                     wh_test_str(json_array_get(json_object_get(t, "clocks"), 0), "due_at"));
    cr_assert_str_eq(wh_test_str(o, "service_notice"), "已报到");
    cr_assert_str_eq(wh_test_str(o, "status"), "open");
    json_decref(o);
    json_decref(t);

    /* 办结: the clock stops; the state's 2-workday deadline is what is left. */
    fire("tok-fire", id, "{\"event\":\"resolve\",\"note\":\"已清理完毕\"}");
    t = native_ticket(id);
    o = get311(id);
    cr_assert_not_null(wh_test_str(t, "due_at"));
    cr_assert_str_eq(wh_test_str(o, "expected_datetime"), wh_test_str(t, "due_at"));
    cr_assert_str_eq(wh_test_str(o, "status_notes"), "已清理完毕");
    cr_assert_str_eq(wh_test_str(o, "status"), "open");
    json_decref(o);
    json_decref(t);

    fire("tok-xintan", id, "{\"event\":\"confirm\",\"rating\":5}");
    o = get311(id);
    cr_assert_str_eq(wh_test_str(o, "status"), "closed");
    cr_assert_str_eq(wh_test_str(o, "service_notice"), "已关闭");
    cr_assert(json_is_null(json_object_get(o, "expected_datetime")));
    cr_assert(json_is_null(json_object_get(o, "status_notes")), "confirm carries no note");
    cr_assert_str_eq(wh_test_str(o, "agency_responsible"), "消防");
    json_decref(o);

    char path[200];
    snprintf(path, sizeof(path), "/open311/v2/requests/%s.xml?api_key=tok-xintan", id);
    wh_test_resp_t r = request("GET", path, NULL, NULL);
    cr_assert_eq(r.status, 200, "%s", r.body);
    char *flat = xml_flat(&r);
    if (flat != NULL) {
        cr_assert_not_null(strstr(flat, "request.status=closed\n"), "%s", flat);
        cr_assert_not_null(strstr(flat, "request.expected_datetime=\nrequest.address=新滩路1号\n"),
                           "%s", flat);
    }
    free(flat);
    wh_test_resp_free(&r);
    free(id);
}

Test(open311, lists_show_only_what_the_org_may_read)
{
    char *a = raise311(fire_form);
    char *b = raise311("api_key=tok-xintan&service_code=property-fee&address_id=grid-3"
                       "&description=%E7%89%A9%E4%B8%9A%E8%B4%B9&media_url=http://x.cn/p.png");
    wh_test_resp_t r =
        request("POST", "/open311/v2/requests.json", NULL,
                "api_key=tok-beita&service_code=food-safety&address_string=%E5%8C%97");
    cr_assert_eq(r.status, 201, "%s", r.body);
    char *c = strdup(wh_test_str(json_array_get(r.json, 0), "service_request_id"));
    wh_test_resp_free(&r);

    r = request("GET", "/open311/v2/requests.json?api_key=tok-xintan", NULL, NULL);
    cr_assert_eq(r.status, 200, "%s", r.body);
    cr_assert_eq(json_array_size(r.json), 2, "%s", r.body);
    json_t *pb = json_array_get(r.json, 0); /* newest first */
    cr_assert_str_eq(wh_test_str(pb, "service_request_id"), b);
    cr_assert_str_eq(wh_test_str(pb, "agency_responsible"), "发改, 市场");
    cr_assert_str_eq(wh_test_str(pb, "service_name"), "property-fee");
    cr_assert_str_eq(wh_test_str(pb, "description"), "物业费");
    cr_assert_str_eq(wh_test_str(pb, "media_url"), "http://x.cn/p.png");
    cr_assert_str_eq(wh_test_str(pb, "address_id"), "grid-3");
    cr_assert(json_is_null(json_object_get(pb, "lat")));
    cr_assert_str_eq(wh_test_str(json_array_get(r.json, 1), "service_request_id"), a);
    wh_test_resp_free(&r);

    r = request("GET", "/open311/v2/requests.json?api_key=tok-xintan&service_code=property-fee",
                NULL, NULL);
    cr_assert_eq(json_array_size(r.json), 1, "%s", r.body);
    wh_test_resp_free(&r);
    r = request("GET", "/open311/v2/requests.json?api_key=tok-xintan&status=closed", NULL, NULL);
    cr_assert_str_eq(r.body, "[]");
    wh_test_resp_free(&r);
    r = request("GET", "/open311/v2/requests.json?api_key=tok-xintan&status=open,closed", NULL,
                NULL);
    cr_assert_eq(json_array_size(r.json), 2, "%s", r.body);
    wh_test_resp_free(&r);
    r = request(
        "GET",
        "/open311/v2/requests.json?api_key=tok-xintan&start_date=2099-01-01T00:00:00%2B08:00", NULL,
        NULL);
    cr_assert_str_eq(r.body, "[]");
    wh_test_resp_free(&r);

    /* Another street office sees only its own; ids it may not read are left out. */
    char path[300];
    snprintf(path, sizeof(path),
             "/open311/v2/requests.json?api_key=tok-beita&service_request_id=%s,%s", a, c);
    r = request("GET", path, NULL, NULL);
    cr_assert_eq(json_array_size(r.json), 1, "%s", r.body);
    cr_assert_str_eq(wh_test_str(json_array_get(r.json, 0), "service_request_id"), c);
    cr_assert_str_eq(wh_test_str(json_array_get(r.json, 0), "agency_responsible"), "市场");
    wh_test_resp_free(&r);
    snprintf(path, sizeof(path), "/open311/v2/requests/%s.json?api_key=tok-beita", a);
    expect_error(request("GET", path, NULL, NULL), 404, "no such service request", false);
    /* The department summoned reads it. */
    snprintf(path, sizeof(path), "/open311/v2/requests/%s.json?api_key=tok-fire", a);
    r = request("GET", path, NULL, NULL);
    cr_assert_eq(r.status, 200, "%s", r.body);
    wh_test_resp_free(&r);

    expect_error(request("GET", "/open311/v2/requests.json", NULL, NULL), 401,
                 "api_key is required (an org's token)", false);
    expect_error(
        request("GET", "/open311/v2/requests.xml?api_key=tok-xintan&status=pending", NULL, NULL),
        400, "status must be open, closed or both (comma-separated)", true);
    expect_error(request("GET", "/open311/v2/requests.json?api_key=tok-xintan&end_date=yesterday",
                         NULL, NULL),
                 400, "end_date must be an RFC 3339 time", false);
    free(a);
    free(b);
    free(c);
}

/* ---- the start check ---- */

Test(open311_start, a_category_in_two_workflows_stops_the_start)
{
    char wf[300], path[600], cfg[600], cmd[1400], out[600];
    wh_test_dir_make("wh-open311");
    write_config();
    snprintf(wf, sizeof(wf), "%s/workflows", wh_test_dir);
    snprintf(path, sizeof(path), "%s/zz-other.yaml", wf);
    wh_test_write_file(path, "workflow: other\n"
                             "version: 1\n"
                             "routes:\n"
                             "  fire-safety: [fire-brigade]\n"
                             "  default: [housing-bureau]\n"
                             "states:\n"
                             "  open: { title: Open, initial: true }\n"
                             "  done: { title: Done, final: true }\n"
                             "transitions:\n"
                             "  finish: { from: open, to: done, by: raiser }\n");
    snprintf(cfg, sizeof(cfg), "%s/whistle.yaml", wh_test_dir);
    snprintf(out, sizeof(out), "%s/out.txt", wh_test_dir);
    snprintf(cmd, sizeof(cmd), "'%s' serve -c '%s' --listen 127.0.0.1:0 2>'%s'", WH_BINARY, cfg,
             out);
    int rc = system(cmd);
    char *text = wh_test_read_file(out), want[1200];
    cr_assert(WIFEXITED(rc) && WEXITSTATUS(rc) == 1, "%d %s", rc, text);
    /* Once, against the first workflow that routes it (version 2 of the
     * same workflow does not collide with version 1). */
    snprintf(want, sizeof(want),
             "%s/zz-other.yaml:4:3: error: category 'fire-safety' is also routed by workflow "
             "'street-whistle' in %s/street-whistle-v2.yaml\n",
             wf, wf);
    cr_assert_not_null(strstr(text, want), "%s", text);
    cr_assert_null(strstr(text, "default"), "%s", text);
    cr_assert_null(strstr(text, "listening"), "%s", text);
    free(text);
    wh_test_dir_remove();
}

Test(open311, xml_escapes_markup_and_replaces_forbidden_characters)
{
    /* Raised natively: JSON lets a description hold what XML 1.0 cannot. */
    wh_test_resp_t r = request("POST", "/v1/tickets", "tok-xintan",
                               "{\"category\":\"no-such-service\",\"workflow\":\"street-whistle\","
                               "\"title\":\"t\",\"description\":\"a<b>&c\\u0001'\\\"]]>\"}");
    cr_assert_eq(r.status, 201, "%s", r.body);
    wh_test_resp_free(&r);
    r = request("GET", "/open311/v2/requests/T00000001.xml?api_key=tok-xintan", NULL, NULL);
    cr_assert_eq(r.status, 200, "%s", r.body);
    cr_assert_not_null(strstr(r.body, "<description>a&lt;b&gt;&amp;c\xEF\xBF\xBD&apos;&quot;]]&gt;"
                                      "</description>"),
                       "%s", r.body);
    char *flat = xml_flat(&r);
    if (flat != NULL) {
        cr_assert_not_null(strstr(flat, "request.description=a<b>&c\xEF\xBF\xBD'\"]]>\n"), "%s",
                           flat);
        /* A category outside the services names itself; the default route's department. */
        cr_assert_not_null(strstr(flat, "request.service_name=no-such-service\n"), "%s", flat);
        cr_assert_not_null(strstr(flat, "request.agency_responsible=住建\n"), "%s", flat);
    }
    free(flat);
    wh_test_resp_free(&r);
}
