/* The state machine (engine/machine.c) against SPEC §3 "Semantics" and §4's
 * check order, on tests/data/machine/street.yaml (the SPEC example plus a
 * second clock and two events with a kind and an org id in `by`) and on one
 * small hand-built model for cases the loader may not accept. */
#include <criterion/criterion.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/diag.h"
#include "engine/error.h"
#include "engine/machine.h"
#include "engine/workflow.h"

enum {
    STREET,
    FIRE,
    HOUSING,
    MARKET,
    BEITA,
    SHUANGQING,
    JOINT,
    SUPERVISION,
    DEVREFORM,
    OTHER_STREET,
    NORGS
};

/* A street raiser; departments whose parent is a district, whose parent is
 * the joint meeting; one department with no parent; a supervisor. */
static const wh_org_t orgs[NORGS] = {
    [STREET] = { "xintan-street", "新滩镇街道办事处", WH_KIND_STREET, -1, true, true },
    [FIRE] = { "fire-brigade", "区消防救援大队", WH_KIND_DEPARTMENT, BEITA, true, true },
    [HOUSING] = { "housing-bureau", "区住建局", WH_KIND_DEPARTMENT, BEITA, true, true },
    [MARKET] = { "market-regulation", "区市场监管局", WH_KIND_DEPARTMENT, SHUANGQING, true, true },
    [BEITA] = { "beita-district", "北塔区人民政府", WH_KIND_DISTRICT, JOINT, true, true },
    [SHUANGQING] = { "shuangqing-district", "双清区人民政府", WH_KIND_DISTRICT, JOINT, true, true },
    [JOINT] = { "city-joint-meeting", "市物业管理联席会议", WH_KIND_JOINT_MEETING, -1, true, true },
    [SUPERVISION] = { "city-supervision", "市督查室", WH_KIND_SUPERVISOR, -1, true, true },
    [DEVREFORM] = { "development-reform", "市发改委", WH_KIND_DEPARTMENT, -1, true, true },
    [OTHER_STREET] = { "other-street", "其他街道", WH_KIND_STREET, -1, true, true },
};
static const wh_orgdir_t dir = { orgs, NORGS };

#define ID(i) (orgs[(i)].id)

static wh_workflow_t *wf;

static void setup(void)
{
    wh_diag_t *diag = wh_diag_new();
    int rc;

    cr_assert_not_null(diag);
    rc = wh_workflow_load(WH_SOURCE_DIR "/tests/data/machine/street.yaml", &dir, diag, &wf);
    if (rc != 0)
        wh_diag_print(diag, stderr);
    wh_diag_free(diag);
    cr_assert_eq(rc, 0, "load: %s", wh_err_name(rc));
}

static void teardown(void)
{
    wh_workflow_free(wf);
    wf = NULL;
}

TestSuite(machine, .init = setup, .fini = teardown);

static int ev(const char *name)
{
    int e = wh_workflow_event(wf, name);
    cr_assert_geq(e, 0, "no event %s", name);
    return e;
}

static int st(const char *name)
{
    int s = wh_workflow_state(wf, name);
    cr_assert_geq(s, 0, "no state %s", name);
    return s;
}

static int ck(const char *name)
{
    int c = wh_workflow_clock(wf, name);
    cr_assert_geq(c, 0, "no clock %s", name);
    return c;
}

/* A ticket as the store would keep it, with room for the tests' sequences. */
typedef struct {
    wh_mach_assignee_t as[24];
    wh_mach_progress_t pr[24];
    uint32_t counts[32];
    wh_clock_status_t clocks[4];
    wh_mach_ticket_t t;
} tk_t;

static void tk_bind(tk_t *k)
{
    k->t.assignees = k->as;
    k->t.progress = k->pr;
    k->t.event_counts = k->counts;
    k->t.clocks = k->clocks;
}

/* Applies an accepted result the way the store does. */
static void apply(tk_t *k, const wh_workflow_t *w, const wh_mach_result_t *r)
{
    cr_assert_eq(r->err, 0);
    if (r->event >= 0)
        k->counts[r->event]++;
    if (r->join_partial)
        k->pr[k->t.nprogress++] = (wh_mach_progress_t){ r->progress_assignee, r->event };
    if (r->entered) {
        k->t.nprogress = 0;
        k->t.state = r->to;
    }
    cr_assert_leq(r->nassignees, 24);
    memcpy(k->as, r->assignees, r->nassignees * sizeof *r->assignees);
    k->t.nassignees = r->nassignees;
    memcpy(k->clocks, r->clocks, w->nclocks * sizeof *r->clocks);
}

/* Raises a ticket by the street with the given assignees (NULL-terminated). */
static void tk_raise(tk_t *k, int priority, const char *a0, ...)
{
    const char *ids[24];
    size_t n = 0;
    va_list ap;
    wh_mach_result_t r;

    memset(k, 0, sizeof *k);
    tk_bind(k);
    k->t.raiser = ID(STREET);
    k->t.priority = priority;
    va_start(ap, a0);
    for (const char *id = a0; id != NULL; id = va_arg(ap, const char *))
        ids[n++] = id;
    va_end(ap);
    cr_assert_eq(wh_mach_raise(wf, &dir, ID(STREET), priority, ids, n, &r), 0);
    apply(k, wf, &r);
    wh_mach_result_free(&r);
}

static int fire(tk_t *k, const char *actor, const char *event, const wh_mach_fields_t *f,
                wh_mach_result_t *r)
{
    return wh_mach_fire(wf, &dir, &k->t, actor, event, f, r);
}

/* Fires, asserts acceptance and applies. */
static void fire_ok(tk_t *k, const char *actor, const char *event, const wh_mach_fields_t *f)
{
    wh_mach_result_t r;
    int rc = fire(k, actor, event, f, &r);

    cr_assert_eq(rc, 0, "%s by %s: %s %s", event, actor ? actor : "system", wh_err_name(rc),
                 r.detail ? r.detail : "");
    apply(k, wf, &r);
    wh_mach_result_free(&r);
}

/* Fires and asserts the refusal code and detail. */
static void fire_err(tk_t *k, const char *actor, const char *event, const wh_mach_fields_t *f,
                     int want, const char *detail)
{
    wh_mach_result_t r;
    int rc = fire(k, actor, event, f, &r);

    cr_assert_eq(rc, want, "%s by %s: got %s want %s", event, actor ? actor : "system",
                 wh_err_name(rc), wh_err_name(want));
    cr_assert_eq(r.err, want);
    if (detail == NULL)
        cr_assert_null(r.detail);
    else
        cr_assert_str_eq(r.detail, detail);
    cr_assert_null(r.assignees);
    cr_assert_null(r.clocks);
    cr_assert_null(r.notify);
    cr_assert_eq(r.nnotify, 0);
    cr_assert_eq(r.from, k->t.state);
    cr_assert_eq(r.to, k->t.state);
    cr_assert_not(r.entered);
    wh_mach_result_free(&r);
}

static const wh_mach_fields_t note = { .has_note = true };

static wh_mach_fields_t rating(int v)
{
    return (wh_mach_fields_t){ .has_rating = true, .rating = v };
}

static wh_mach_fields_t assignees(const char *const *ids, size_t n)
{
    return (wh_mach_fields_t){ .has_assignees = true, .assignees = ids, .nassignees = n };
}

static void assert_notify(const wh_mach_result_t *r, size_t n, ...)
{
    va_list ap;

    cr_assert_eq(r->nnotify, n, "nnotify %zu want %zu", r->nnotify, n);
    va_start(ap, n);
    for (size_t i = 0; i < n; i++)
        cr_assert_str_eq(r->notify[i], va_arg(ap, const char *));
    va_end(ap);
}

static void assert_targets(const char *const *got, size_t ngot, size_t n, ...)
{
    va_list ap;

    cr_assert_eq(ngot, n, "ntargets %zu want %zu", ngot, n);
    va_start(ap, n);
    for (size_t i = 0; i < n; i++)
        cr_assert_str_eq(got[i], va_arg(ap, const char *));
    va_end(ap);
}

Test(machine, msg_type_names)
{
    cr_assert_str_eq(wh_msg_type_name(WH_MSG_WHISTLED), "ticket.whistled");
    cr_assert_str_eq(wh_msg_type_name(WH_MSG_TRANSITIONED), "ticket.transitioned");
    cr_assert_str_eq(wh_msg_type_name(WH_MSG_CLOSED), "ticket.closed");
    cr_assert_str_eq(wh_msg_type_name(WH_MSG_ESCALATED), "ticket.escalated");
}

Test(machine, free_zeroed_and_null)
{
    wh_mach_result_t r;

    memset(&r, 0, sizeof r);
    wh_mach_result_free(&r);
    wh_mach_result_free(&r);
    wh_mach_result_free(NULL);
}

Test(machine, raise_enters_initial)
{
    const char *ids[] = { ID(FIRE), ID(HOUSING) };
    wh_mach_result_t r;

    cr_assert_eq(wh_mach_raise(wf, &dir, ID(STREET), 1, ids, 2, &r), 0);
    cr_assert_eq(r.err, 0);
    cr_assert_eq(r.event, -1);
    cr_assert_eq(r.from, st("whistled"));
    cr_assert_eq(r.to, st("whistled"));
    cr_assert(r.entered);
    cr_assert_not(r.join_partial);
    cr_assert_eq(r.progress_assignee, -1);
    cr_assert(r.start_deadline);
    cr_assert_not(r.cancel_deadline);
    cr_assert(r.assignees_changed);
    cr_assert_eq(r.nassignees, 2);
    cr_assert_str_eq(r.assignees[0].org, ID(FIRE));
    cr_assert(r.assignees[0].active);
    cr_assert_str_eq(r.assignees[1].org, ID(HOUSING));
    cr_assert(r.assignees[1].active);
    /* New assignees point at the directory's ids, which outlive the request. */
    cr_assert_eq(r.assignees[0].org, ID(FIRE));
    cr_assert_eq(r.clocks[ck("resolve")], WH_CLOCK_RUNNING);
    cr_assert_eq(r.clocks[ck("feedback")], WH_CLOCK_IDLE);
    cr_assert_eq(r.msg_type, WH_MSG_WHISTLED);
    assert_notify(&r, 2, ID(FIRE), ID(HOUSING));
    cr_assert_eq(r.nextends, 0);
    wh_mach_result_free(&r);
}

Test(machine, raise_checks_assignees)
{
    const char *unknown[] = { ID(FIRE), "nowhere" };
    const char *self[] = { ID(FIRE), ID(STREET) };
    const char *dup[] = { ID(FIRE), ID(HOUSING), ID(FIRE) };
    wh_mach_result_t r;

    cr_assert_eq(wh_mach_raise(wf, &dir, ID(STREET), 1, unknown, 2, &r), WH_EUNKNOWN_ORG);
    cr_assert_str_eq(r.detail, "nowhere");
    cr_assert_null(r.assignees);
    wh_mach_result_free(&r);
    cr_assert_eq(wh_mach_raise(wf, &dir, ID(STREET), 1, self, 2, &r), WH_EBAD_FIELD);
    cr_assert_str_eq(r.detail, "assignees");
    wh_mach_result_free(&r);
    cr_assert_eq(wh_mach_raise(wf, &dir, ID(STREET), 1, dup, 3, &r), WH_EBAD_FIELD);
    cr_assert_str_eq(r.detail, "assignees");
    wh_mach_result_free(&r);
    cr_assert_eq(wh_mach_raise(wf, &dir, ID(STREET), 1, dup, 0, &r), WH_EBAD_FIELD);
    cr_assert_str_eq(r.detail, "assignees");
    wh_mach_result_free(&r);
}

Test(machine, join_all_one_assignee_moves)
{
    tk_t k;
    wh_mach_result_t r;

    tk_raise(&k, 1, ID(FIRE), NULL);
    cr_assert_eq(fire(&k, ID(FIRE), "report", NULL, &r), 0);
    cr_assert_eq(r.event, ev("report"));
    cr_assert_eq(r.from, st("whistled"));
    cr_assert_eq(r.to, st("reported"));
    cr_assert(r.entered);
    cr_assert_not(r.join_partial);
    cr_assert_eq(r.progress_assignee, 0);
    cr_assert(r.cancel_deadline);
    cr_assert_not(r.start_deadline);
    cr_assert_not(r.assignees_changed);
    cr_assert_eq(r.msg_type, WH_MSG_TRANSITIONED);
    cr_assert_eq(r.nnotify, 0); /* reported has no notify list */
    cr_assert_eq(r.clocks[ck("resolve")], WH_CLOCK_RUNNING);
    cr_assert_eq(r.clocks[ck("feedback")], WH_CLOCK_RUNNING);
    wh_mach_result_free(&r);
}

Test(machine, join_all_three_assignees)
{
    tk_t k;
    wh_mach_result_t r;

    tk_raise(&k, 1, ID(FIRE), ID(HOUSING), ID(MARKET), NULL);
    cr_assert_eq(fire(&k, ID(HOUSING), "report", NULL, &r), 0);
    cr_assert(r.join_partial);
    cr_assert_not(r.entered);
    cr_assert_eq(r.progress_assignee, 1);
    cr_assert_eq(r.from, st("whistled"));
    cr_assert_eq(r.to, st("whistled"));
    cr_assert_not(r.cancel_deadline);
    cr_assert_not(r.start_deadline);
    cr_assert_eq(r.nnotify, 0);
    cr_assert_null(r.notify);
    cr_assert_eq(r.clocks[ck("resolve")], WH_CLOCK_RUNNING);
    cr_assert_eq(r.clocks[ck("feedback")], WH_CLOCK_IDLE);
    cr_assert_eq(r.nassignees, 3);
    apply(&k, wf, &r);
    wh_mach_result_free(&r);

    fire_err(&k, ID(HOUSING), "report", NULL, WH_EALREADY_FIRED, NULL);

    cr_assert_eq(fire(&k, ID(FIRE), "report", NULL, &r), 0);
    cr_assert(r.join_partial);
    cr_assert_eq(r.progress_assignee, 0);
    apply(&k, wf, &r);
    wh_mach_result_free(&r);
    fire_err(&k, ID(FIRE), "report", NULL, WH_EALREADY_FIRED, NULL);

    cr_assert_eq(fire(&k, ID(MARKET), "report", NULL, &r), 0);
    cr_assert_not(r.join_partial);
    cr_assert(r.entered);
    cr_assert_eq(r.to, st("reported"));
    cr_assert_eq(r.progress_assignee, 2);
    apply(&k, wf, &r);
    wh_mach_result_free(&r);
    cr_assert_eq(k.t.nprogress, 0);
    fire_err(&k, ID(MARKET), "report", NULL, WH_EINVALID_STATE, NULL);
}

Test(machine, join_counts_only_active_assignees)
{
    const char *two[] = { ID(HOUSING), ID(MARKET) };
    wh_mach_fields_t f = assignees(two, 2);
    tk_t k;
    wh_mach_result_t r;

    tk_raise(&k, 1, ID(FIRE), ID(HOUSING), NULL);
    fire_ok(&k, ID(FIRE), "report", NULL);
    cr_assert_eq(k.t.nprogress, 1);
    /* Reassigning re-enters whistled: progress is cleared and fire-brigade
     * is no longer awaited. */
    fire_ok(&k, ID(SUPERVISION), "reassign", &f);
    cr_assert_eq(k.t.nprogress, 0);
    fire_ok(&k, ID(HOUSING), "report", NULL);
    cr_assert_eq(k.t.state, st("whistled"));
    cr_assert_eq(fire(&k, ID(MARKET), "report", NULL, &r), 0);
    cr_assert(r.entered);
    cr_assert_eq(r.to, st("reported"));
    cr_assert_eq(r.progress_assignee, 2);
    wh_mach_result_free(&r);
}

Test(machine, limit_reached_on_third_dispute)
{
    const char *fb[] = { ID(FIRE) };
    wh_mach_fields_t f = assignees(fb, 1);
    tk_t k;

    tk_raise(&k, 1, ID(FIRE), NULL);
    fire_ok(&k, ID(FIRE), "dispute", &note);
    fire_ok(&k, ID(JOINT), "reassign", &f);
    fire_ok(&k, ID(FIRE), "dispute", &note);
    fire_ok(&k, ID(JOINT), "reassign", &f);
    cr_assert_eq(k.counts[ev("dispute")], 2);
    fire_err(&k, ID(FIRE), "dispute", &note, WH_ELIMIT_REACHED, NULL);
    /* The limit is checked before the fields. */
    fire_err(&k, ID(FIRE), "dispute", NULL, WH_ELIMIT_REACHED, NULL);
    /* Other events are not limited. */
    fire_ok(&k, ID(FIRE), "report", NULL);
    cr_assert_eq(k.t.state, st("reported"));
}

Test(machine, require_note_and_rating)
{
    wh_mach_fields_t r0 = rating(0), r6 = rating(6), r5 = rating(5), r1 = rating(1);
    tk_t k;
    wh_mach_result_t r;

    tk_raise(&k, 1, ID(FIRE), NULL);
    fire_err(&k, ID(STREET), "withdraw", NULL, WH_EMISSING_FIELD, "note");
    fire_err(&k, ID(STREET), "withdraw", &r5, WH_EMISSING_FIELD, "note");
    fire_ok(&k, ID(FIRE), "report", NULL);
    fire_ok(&k, ID(FIRE), "resolve", NULL);
    cr_assert_eq(k.t.state, st("resolved"));
    fire_err(&k, ID(STREET), "confirm", NULL, WH_EMISSING_FIELD, "rating");
    fire_err(&k, ID(STREET), "confirm", &note, WH_EMISSING_FIELD, "rating");
    fire_err(&k, ID(STREET), "confirm", &r0, WH_EBAD_FIELD, "rating");
    fire_err(&k, ID(STREET), "confirm", &r6, WH_EBAD_FIELD, "rating");
    /* A rating given to an event that does not require one is still checked. */
    fire_err(&k, ID(STREET), "reopen",
             &(wh_mach_fields_t){ .has_note = true, .has_rating = true, .rating = 9 },
             WH_EBAD_FIELD, "rating");
    cr_assert_eq(fire(&k, ID(STREET), "confirm", &r1, &r), 0);
    cr_assert_eq(r.to, st("closed"));
    wh_mach_result_free(&r);
    cr_assert_eq(fire(&k, ID(STREET), "confirm", &r5, &r), 0);
    cr_assert_eq(r.to, st("closed"));
    cr_assert_eq(r.msg_type, WH_MSG_CLOSED);
    assert_notify(&r, 1, ID(FIRE));
    wh_mach_result_free(&r);
}

Test(machine, require_assignees)
{
    const char *unknown[] = { ID(HOUSING), "nowhere" };
    const char *empty[] = { NULL };
    const char *self[] = { ID(HOUSING), ID(STREET) };
    const char *dup[] = { ID(HOUSING), ID(MARKET), ID(HOUSING) };
    const char *many[21];
    tk_t k;

    wh_mach_fields_t f;

    for (size_t i = 0; i < 21; i++)
        many[i] = ID(FIRE);
    tk_raise(&k, 1, ID(FIRE), NULL);
    fire_err(&k, ID(SUPERVISION), "reassign", &note, WH_EMISSING_FIELD, "assignees");
    f = assignees(unknown, 2);
    fire_err(&k, ID(SUPERVISION), "reassign", &f, WH_EUNKNOWN_ORG, "nowhere");
    f = assignees(empty, 0);
    fire_err(&k, ID(SUPERVISION), "reassign", &f, WH_EBAD_FIELD, "assignees");
    f = assignees(self, 2);
    fire_err(&k, ID(SUPERVISION), "reassign", &f, WH_EBAD_FIELD, "assignees");
    f = assignees(dup, 3);
    fire_err(&k, ID(SUPERVISION), "reassign", &f, WH_EBAD_FIELD, "assignees");
    f = assignees(many, 21);
    fire_err(&k, ID(SUPERVISION), "reassign", &f, WH_EBAD_FIELD, "assignees");
    /* Unknown orgs are reported before a bad list (SPEC §4: unknown_org). */
    many[20] = "nowhere";
    fire_err(&k, ID(SUPERVISION), "reassign", &f, WH_EUNKNOWN_ORG, "nowhere");
}

Test(machine, reassign_replaces_active_set)
{
    const char *hm[] = { ID(HOUSING), ID(MARKET) };
    const char *fb[] = { ID(FIRE) };
    wh_mach_fields_t f1 = assignees(hm, 2), f2 = assignees(fb, 1);
    tk_t k;
    wh_mach_result_t r;

    tk_raise(&k, 1, ID(FIRE), NULL);
    cr_assert_eq(fire(&k, ID(JOINT), "reassign", &f1, &r), 0);
    cr_assert(r.entered);
    cr_assert_eq(r.from, st("whistled"));
    cr_assert_eq(r.to, st("whistled"));
    cr_assert(r.cancel_deadline);
    cr_assert(r.start_deadline);
    cr_assert(r.assignees_changed);
    cr_assert_eq(r.nassignees, 3);
    cr_assert_str_eq(r.assignees[0].org, ID(FIRE));
    cr_assert_not(r.assignees[0].active);
    cr_assert_str_eq(r.assignees[1].org, ID(HOUSING));
    cr_assert(r.assignees[1].active);
    cr_assert_str_eq(r.assignees[2].org, ID(MARKET));
    cr_assert(r.assignees[2].active);
    /* The new set gets whistled; the dropped one does not. */
    cr_assert_eq(r.msg_type, WH_MSG_WHISTLED);
    assert_notify(&r, 2, ID(HOUSING), ID(MARKET));
    /* A re-entered clock that runs keeps running. */
    cr_assert_eq(r.clocks[ck("resolve")], WH_CLOCK_RUNNING);
    apply(&k, wf, &r);
    wh_mach_result_free(&r);

    /* The dropped assignee lost the assignee role. */
    fire_err(&k, ID(FIRE), "report", NULL, WH_EFORBIDDEN, NULL);

    cr_assert_eq(fire(&k, ID(SUPERVISION), "reassign", &f2, &r), 0);
    cr_assert_eq(r.nassignees, 3);
    cr_assert_str_eq(r.assignees[0].org, ID(FIRE));
    cr_assert(r.assignees[0].active);
    cr_assert_not(r.assignees[1].active);
    cr_assert_not(r.assignees[2].active);
    assert_notify(&r, 1, ID(FIRE));
    apply(&k, wf, &r);
    wh_mach_result_free(&r);
    fire_err(&k, ID(HOUSING), "report", NULL, WH_EFORBIDDEN, NULL);
    fire_ok(&k, ID(FIRE), "report", NULL);
    cr_assert_eq(k.t.state, st("reported"));
}

Test(machine, by_roles)
{
    tk_t k;

    tk_raise(&k, 1, ID(FIRE), NULL);
    /* refer: by [raiser, supervisor]. */
    fire_err(&k, ID(FIRE), "refer", &note, WH_EFORBIDDEN, NULL);
    fire_err(&k, NULL, "refer", &note, WH_EFORBIDDEN, NULL);
    fire_err(&k, ID(MARKET), "refer", &note, WH_EFORBIDDEN, NULL);
    fire_err(&k, ID(OTHER_STREET), "refer", &note, WH_EFORBIDDEN, NULL);
    fire_err(&k, ID(BEITA), "refer", &note, WH_EFORBIDDEN, NULL);
    fire_err(&k, "not-in-directory", "refer", &note, WH_EFORBIDDEN, NULL);

    tk_t k2 = k;
    tk_bind(&k2);
    fire_ok(&k2, ID(STREET), "refer", &note);
    cr_assert_eq(k2.t.state, st("disputed"));
    tk_t k3 = k;
    tk_bind(&k3);
    fire_ok(&k3, ID(SUPERVISION), "refer", &note);
    cr_assert_eq(k3.t.state, st("disputed"));

    /* report: by assignee only. */
    fire_err(&k, ID(STREET), "report", NULL, WH_EFORBIDDEN, NULL);
    fire_err(&k, ID(SUPERVISION), "report", NULL, WH_EFORBIDDEN, NULL);
    fire_err(&k, ID(MARKET), "report", NULL, WH_EFORBIDDEN, NULL);
    fire_err(&k, NULL, "report", NULL, WH_EFORBIDDEN, NULL);
    fire_ok(&k, ID(FIRE), "report", NULL);

    /* deny-extension: [supervisor, system]. */
    fire_ok(&k, ID(FIRE), "request-extension", &note);
    fire_err(&k, ID(FIRE), "deny-extension", NULL, WH_EFORBIDDEN, NULL);
    fire_err(&k, ID(JOINT), "deny-extension", NULL, WH_EFORBIDDEN, NULL);
    k2 = k;
    tk_bind(&k2);
    fire_ok(&k2, NULL, "deny-extension", NULL);
    cr_assert_eq(k2.t.state, st("reported"));
    fire_ok(&k, ID(SUPERVISION), "deny-extension", NULL);
    cr_assert_eq(k.t.state, st("reported"));

    /* auto-close: system only; resume: [assignee, raiser]. */
    fire_ok(&k, ID(FIRE), "wait-residents", &note);
    fire_err(&k, NULL, "resume", NULL, WH_EFORBIDDEN, NULL);
    fire_err(&k, ID(SUPERVISION), "resume", NULL, WH_EFORBIDDEN, NULL);
    k2 = k;
    tk_bind(&k2);
    fire_ok(&k2, ID(STREET), "resume", NULL);
    fire_ok(&k, ID(FIRE), "resume", NULL);
    fire_ok(&k, ID(FIRE), "resolve", NULL);
    fire_err(&k, ID(STREET), "auto-close", NULL, WH_EFORBIDDEN, NULL);
    fire_err(&k, ID(SUPERVISION), "auto-close", NULL, WH_EFORBIDDEN, NULL);
    fire_ok(&k, NULL, "auto-close", NULL);
    cr_assert_eq(k.t.state, st("closed"));
}

Test(machine, by_org_id)
{
    tk_t k;

    tk_raise(&k, 1, ID(FIRE), NULL);
    fire_ok(&k, ID(FIRE), "report", NULL);
    fire_ok(&k, ID(FIRE), "wait-residents", &note);
    /* hotline: by the org id city-supervision. */
    fire_err(&k, ID(JOINT), "hotline", NULL, WH_EFORBIDDEN, NULL);
    fire_err(&k, ID(FIRE), "hotline", NULL, WH_EFORBIDDEN, NULL);
    fire_ok(&k, ID(SUPERVISION), "hotline", NULL);
    cr_assert_eq(k.t.state, st("reported"));
}

Test(machine, by_kind_on_chains)
{
    tk_t k;

    /* arbitrate: by district. fire-brigade's chain holds beita-district, so
     * only it may; market-regulation's district is not on the chains. */
    tk_raise(&k, 1, ID(FIRE), NULL);
    fire_ok(&k, ID(FIRE), "dispute", &note);
    fire_err(&k, ID(SHUANGQING), "arbitrate", NULL, WH_EFORBIDDEN, NULL);
    fire_err(&k, ID(JOINT), "arbitrate", NULL, WH_EFORBIDDEN, NULL);
    fire_ok(&k, ID(BEITA), "arbitrate", NULL);

    /* Both districts are on the chains of a joint patrol. */
    tk_raise(&k, 1, ID(FIRE), ID(MARKET), NULL);
    fire_ok(&k, ID(MARKET), "dispute", &note);
    tk_t k2 = k;
    tk_bind(&k2);
    fire_ok(&k2, ID(SHUANGQING), "arbitrate", NULL);
    fire_ok(&k, ID(BEITA), "arbitrate", NULL);

    /* No district on the chains: every district qualifies. */
    tk_raise(&k, 1, ID(DEVREFORM), NULL);
    fire_ok(&k, ID(DEVREFORM), "dispute", &note);
    k2 = k;
    tk_bind(&k2);
    fire_ok(&k2, ID(SHUANGQING), "arbitrate", NULL);
    fire_ok(&k, ID(BEITA), "arbitrate", NULL);
    cr_assert_eq(k.t.state, st("reported"));

    /* joint-meeting on a chain (fire -> beita -> joint) may reassign. */
    tk_raise(&k, 1, ID(FIRE), NULL);
    cr_assert(wh_mach_by_matches(wf, &dir, &k.t, wf->events[ev("reassign")].by, ID(JOINT)));
    cr_assert(wh_mach_by_matches(wf, &dir, &k.t, wf->events[ev("reassign")].by, ID(SUPERVISION)));
    cr_assert_not(wh_mach_by_matches(wf, &dir, &k.t, wf->events[ev("reassign")].by, ID(BEITA)));
    cr_assert_not(wh_mach_by_matches(wf, &dir, &k.t, wf->events[ev("reassign")].by, NULL));
    cr_assert_not(wh_mach_by_matches(wf, &dir, &k.t, wf->events[ev("auto-close")].by, ID(FIRE)));
}

Test(machine, extends_passed_through)
{
    tk_t k;
    wh_mach_result_t r;

    tk_raise(&k, 1, ID(FIRE), NULL);
    fire_ok(&k, ID(FIRE), "report", NULL);
    fire_ok(&k, ID(FIRE), "request-extension", &note);
    cr_assert_eq(fire(&k, ID(SUPERVISION), "approve-extension", NULL, &r), 0);
    cr_assert_eq(r.to, st("reported"));
    cr_assert_eq(r.nextends, 1);
    cr_assert_eq(r.extends[0].clock, ck("resolve"));
    cr_assert_eq(r.extends[0].by.n, 3);
    cr_assert_eq(r.extends[0].by.unit, WH_DUR_WORKDAYS);
    cr_assert_eq(r.clocks[ck("resolve")], WH_CLOCK_RUNNING);
    cr_assert(r.cancel_deadline);
    cr_assert_not(r.start_deadline);
    wh_mach_result_free(&r);

    cr_assert_eq(fire(&k, ID(SUPERVISION), "deny-extension", NULL, &r), 0);
    cr_assert_eq(r.nextends, 0);
    cr_assert_null(r.extends);
    wh_mach_result_free(&r);

    /* A refused firing carries no extends. */
    k.t.state = st("reported");
    cr_assert_eq(fire(&k, ID(SUPERVISION), "approve-extension", NULL, &r), WH_EINVALID_STATE);
    cr_assert_eq(r.nextends, 0);
    cr_assert_null(r.extends);
    wh_mach_result_free(&r);
}

Test(machine, clocks_pause_resume_stop_reopen)
{
    const int res = ck("resolve"), fb = ck("feedback");
    tk_t k;

    tk_raise(&k, 1, ID(FIRE), ID(HOUSING), NULL);
    cr_assert_eq(k.clocks[res], WH_CLOCK_RUNNING);
    cr_assert_eq(k.clocks[fb], WH_CLOCK_IDLE);
    fire_ok(&k, ID(FIRE), "report", NULL); /* partial: no clock moves */
    cr_assert_eq(k.clocks[fb], WH_CLOCK_IDLE);
    fire_ok(&k, ID(HOUSING), "report", NULL);
    cr_assert_eq(k.clocks[res], WH_CLOCK_RUNNING);
    cr_assert_eq(k.clocks[fb], WH_CLOCK_RUNNING);
    fire_ok(&k, ID(FIRE), "wait-residents", &note);
    cr_assert_eq(k.clocks[res], WH_CLOCK_PAUSED);
    cr_assert_eq(k.clocks[fb], WH_CLOCK_PAUSED);
    fire_ok(&k, ID(STREET), "resume", NULL);
    cr_assert_eq(k.clocks[res], WH_CLOCK_RUNNING);
    cr_assert_eq(k.clocks[fb], WH_CLOCK_RUNNING);
    fire_ok(&k, ID(FIRE), "resolve", NULL);
    cr_assert_eq(k.clocks[res], WH_CLOCK_RUNNING);
    fire_ok(&k, ID(HOUSING), "resolve", NULL);
    cr_assert_eq(k.t.state, st("resolved"));
    cr_assert_eq(k.clocks[res], WH_CLOCK_STOPPED);
    cr_assert_eq(k.clocks[fb], WH_CLOCK_RUNNING);
    fire_ok(&k, ID(STREET), "reopen", &note);
    cr_assert_eq(k.t.state, st("reported"));
    cr_assert_eq(k.clocks[res], WH_CLOCK_RUNNING);
    cr_assert_eq(k.clocks[fb], WH_CLOCK_RUNNING);
    fire_ok(&k, ID(FIRE), "resolve", NULL);
    fire_ok(&k, ID(HOUSING), "resolve", NULL);
    cr_assert_eq(k.clocks[res], WH_CLOCK_STOPPED);
    fire_ok(&k, NULL, "auto-close", NULL);
    cr_assert_eq(k.clocks[res], WH_CLOCK_STOPPED);
    cr_assert_eq(k.clocks[fb], WH_CLOCK_STOPPED);
}

Test(machine, clock_never_started_stays_idle)
{
    tk_t k;

    tk_raise(&k, 1, ID(FIRE), NULL);
    fire_ok(&k, ID(STREET), "withdraw", &note);
    cr_assert_eq(k.t.state, st("withdrawn"));
    cr_assert_eq(k.clocks[ck("resolve")], WH_CLOCK_STOPPED);
    cr_assert_eq(k.clocks[ck("feedback")], WH_CLOCK_IDLE);
}

Test(machine, priorities_unaffected)
{
    tk_t a, b;
    wh_mach_result_t ra, rb;

    tk_raise(&a, 0, ID(FIRE), NULL);
    tk_raise(&b, 1, ID(FIRE), NULL);
    cr_assert_eq(a.t.priority, 0);
    cr_assert_eq(b.t.priority, 1);
    cr_assert_eq(memcmp(a.clocks, b.clocks, sizeof a.clocks), 0);
    cr_assert_eq(fire(&a, ID(FIRE), "report", NULL, &ra), 0);
    cr_assert_eq(fire(&b, ID(FIRE), "report", NULL, &rb), 0);
    cr_assert_eq(ra.to, rb.to);
    cr_assert_eq(ra.entered, rb.entered);
    cr_assert_eq(memcmp(ra.clocks, rb.clocks, wf->nclocks * sizeof *ra.clocks), 0);
    cr_assert_eq(ra.nnotify, rb.nnotify);
    wh_mach_result_free(&ra);
    wh_mach_result_free(&rb);
}

Test(machine, notify_actor_excluded)
{
    tk_t k, k2;
    wh_mach_result_t r;

    tk_raise(&k, 1, ID(FIRE), NULL);
    k2 = k;
    tk_bind(&k2);
    /* disputed: [supervisors, joint-meeting]. */
    cr_assert_eq(fire(&k, ID(SUPERVISION), "refer", &note, &r), 0);
    cr_assert_eq(r.msg_type, WH_MSG_TRANSITIONED);
    cr_assert(r.start_deadline);
    assert_notify(&r, 1, ID(JOINT));
    wh_mach_result_free(&r);
    cr_assert_eq(fire(&k2, ID(STREET), "refer", &note, &r), 0);
    assert_notify(&r, 2, ID(SUPERVISION), ID(JOINT));
    wh_mach_result_free(&r);
}

Test(machine, notify_closed_and_resolved)
{
    tk_t k;
    wh_mach_result_t r;

    tk_raise(&k, 1, ID(FIRE), ID(HOUSING), NULL);
    fire_ok(&k, ID(FIRE), "report", NULL);
    fire_ok(&k, ID(HOUSING), "report", NULL);
    fire_ok(&k, ID(FIRE), "resolve", NULL);
    cr_assert_eq(fire(&k, ID(HOUSING), "resolve", NULL, &r), 0);
    cr_assert_eq(r.msg_type, WH_MSG_TRANSITIONED);
    assert_notify(&r, 1, ID(STREET)); /* resolved: [raiser] */
    apply(&k, wf, &r);
    wh_mach_result_free(&r);
    cr_assert_eq(fire(&k, NULL, "auto-close", NULL, &r), 0);
    cr_assert_eq(r.msg_type, WH_MSG_CLOSED);
    assert_notify(&r, 2, ID(FIRE), ID(HOUSING));
    wh_mach_result_free(&r);

    /* withdrawn is final too. */
    tk_raise(&k, 1, ID(FIRE), NULL);
    cr_assert_eq(fire(&k, ID(STREET), "withdraw", &note, &r), 0);
    cr_assert_eq(r.msg_type, WH_MSG_CLOSED);
    assert_notify(&r, 1, ID(FIRE));
    cr_assert_not(r.start_deadline);
    wh_mach_result_free(&r);
}

Test(machine, awaited_event)
{
    cr_assert_eq(wh_mach_awaited_event(wf, st("whistled")), ev("report"));
    cr_assert_eq(wh_mach_awaited_event(wf, st("reported")), ev("resolve"));
    cr_assert_eq(wh_mach_awaited_event(wf, st("waiting-residents")), -1);
    cr_assert_eq(wh_mach_awaited_event(wf, st("closed")), -1);
}

static wh_who_list_t step_notify(const char *escalation, size_t step)
{
    for (size_t i = 0; i < wf->nescalations; i++)
        if (strcmp(wf->escalations[i].name, escalation) == 0)
            return wf->escalations[i].steps[step].notify;
    cr_assert_fail("no escalation %s", escalation);
    return (wh_who_list_t){ NULL, 0 };
}

Test(machine, targets_laggards_and_parents)
{
    wh_who_list_t noshow0 = step_notify("no-show", 0); /* [laggards, parents] */
    const char **out;
    size_t n;
    tk_t k;

    tk_raise(&k, 1, ID(FIRE), ID(HOUSING), ID(MARKET), NULL);
    cr_assert_eq(wh_mach_targets(wf, &dir, &k.t, noshow0, NULL, &out, &n), 0);
    assert_targets(out, n, 5, ID(FIRE), ID(HOUSING), ID(MARKET), ID(BEITA), ID(SHUANGQING));
    free((void *)out);

    fire_ok(&k, ID(FIRE), "report", NULL);
    fire_ok(&k, ID(MARKET), "report", NULL);
    cr_assert_eq(wh_mach_targets(wf, &dir, &k.t, noshow0, NULL, &out, &n), 0);
    assert_targets(out, n, 2, ID(HOUSING), ID(BEITA));
    free((void *)out);
    cr_assert_eq(wh_mach_targets(wf, &dir, &k.t, noshow0, ID(BEITA), &out, &n), 0);
    assert_targets(out, n, 1, ID(HOUSING));
    free((void *)out);

    /* No join awaited in waiting-residents: every active assignee lags. */
    fire_ok(&k, ID(HOUSING), "report", NULL);
    fire_ok(&k, ID(HOUSING), "wait-residents", &note);
    cr_assert_eq(wh_mach_targets(wf, &dir, &k.t, step_notify("overdue", 0), NULL, &out, &n), 0);
    assert_targets(out, n, 3, ID(FIRE), ID(HOUSING), ID(MARKET));
    free((void *)out);

    /* A department without a parent has none to notify. */
    tk_raise(&k, 1, ID(DEVREFORM), NULL);
    cr_assert_eq(wh_mach_targets(wf, &dir, &k.t, noshow0, NULL, &out, &n), 0);
    assert_targets(out, n, 1, ID(DEVREFORM));
    free((void *)out);
}

Test(machine, targets_kinds)
{
    const char **out;
    size_t n;
    tk_t k;

    tk_raise(&k, 1, ID(FIRE), ID(HOUSING), NULL);
    cr_assert_eq(wh_mach_targets(wf, &dir, &k.t, step_notify("no-show", 1), NULL, &out, &n), 0);
    assert_targets(out, n, 1, ID(BEITA));
    free((void *)out);
    cr_assert_eq(wh_mach_targets(wf, &dir, &k.t, step_notify("overdue", 1), NULL, &out, &n), 0);
    assert_targets(out, n, 3, ID(FIRE), ID(HOUSING), ID(SUPERVISION));
    free((void *)out);
    cr_assert_eq(
        wh_mach_targets(wf, &dir, &k.t, step_notify("to-joint-meeting", 0), NULL, &out, &n), 0);
    assert_targets(out, n, 1, ID(JOINT));
    free((void *)out);

    tk_raise(&k, 1, ID(DEVREFORM), NULL);
    cr_assert_eq(wh_mach_targets(wf, &dir, &k.t, step_notify("no-show", 1), NULL, &out, &n), 0);
    assert_targets(out, n, 2, ID(BEITA), ID(SHUANGQING));
    free((void *)out);
}

Test(machine, targets_without_duplicates)
{
    const wh_who_t who[] = {
        { .type = WH_WHO_ASSIGNEES }, { .type = WH_WHO_LAGGARDS },
        { .type = WH_WHO_RAISER },    { .type = WH_WHO_ORG, .org = "fire-brigade" },
        { .type = WH_WHO_SYSTEM },    { .type = WH_WHO_KIND, .kind = WH_KIND_STREET },
    };
    const char **out;
    size_t n;
    tk_t k;

    tk_raise(&k, 1, ID(FIRE), ID(HOUSING), NULL);
    cr_assert_eq(wh_mach_targets(wf, &dir, &k.t, (wh_who_list_t){ who, 6 }, ID(HOUSING), &out, &n),
                 0);
    /* The street kind is on the raiser's chain, so other-street is not in. */
    assert_targets(out, n, 2, ID(FIRE), ID(STREET));
    free((void *)out);
    cr_assert_eq(wh_mach_targets(wf, &dir, &k.t, (wh_who_list_t){ who, 0 }, NULL, &out, &n), 0);
    cr_assert_eq(n, 0);
    free((void *)out);
}

Test(machine, check_order)
{
    tk_t k;

    tk_raise(&k, 1, ID(FIRE), NULL);
    fire_err(&k, ID(FIRE), "nope", NULL, WH_EUNKNOWN_EVENT, NULL);
    fire_err(&k, ID(FIRE), "raise", NULL, WH_EUNKNOWN_EVENT, NULL);
    fire_err(&k, NULL, "nope", NULL, WH_EUNKNOWN_EVENT, NULL);
    /* confirm: by raiser, from resolved. Forbidden and in the wrong state. */
    fire_err(&k, ID(FIRE), "confirm", NULL, WH_EFORBIDDEN, NULL);
    fire_err(&k, ID(STREET), "confirm", NULL, WH_EINVALID_STATE, NULL);
    /* The wrong state comes before the limit and the fields. */
    k.counts[ev("dispute")] = 2;
    fire_ok(&k, ID(FIRE), "report", NULL);
    fire_ok(&k, ID(FIRE), "resolve", NULL);
    fire_err(&k, ID(FIRE), "dispute", NULL, WH_EINVALID_STATE, NULL);
    /* A refusal reports the event it is about. */
    wh_mach_result_t r;
    cr_assert_eq(fire(&k, ID(FIRE), "confirm", NULL, &r), WH_EFORBIDDEN);
    cr_assert_eq(r.event, ev("confirm"));
    wh_mach_result_free(&r);
    cr_assert_eq(fire(&k, ID(FIRE), "nope", NULL, &r), WH_EUNKNOWN_EVENT);
    cr_assert_eq(r.event, -1);
    wh_mach_result_free(&r);
}

Test(machine, allowed_events)
{
    int out[16];
    size_t n;
    tk_t k;

    tk_raise(&k, 1, ID(FIRE), ID(HOUSING), NULL);
    n = wh_mach_allowed_events(wf, &dir, &k.t, ID(FIRE), false, out, 16);
    cr_assert_eq(n, 2);
    cr_assert_eq(out[0], ev("report"));
    cr_assert_eq(out[1], ev("dispute"));
    n = wh_mach_allowed_events(wf, &dir, &k.t, ID(FIRE), true, out, 16);
    cr_assert_eq(n, 1);
    cr_assert_eq(out[0], ev("report"));
    fire_ok(&k, ID(FIRE), "report", NULL);
    /* Already fired in this visit: no longer offered. */
    n = wh_mach_allowed_events(wf, &dir, &k.t, ID(FIRE), true, out, 16);
    cr_assert_eq(n, 0);
    n = wh_mach_allowed_events(wf, &dir, &k.t, ID(HOUSING), true, out, 16);
    cr_assert_eq(n, 1);
    /* The limit. */
    k.counts[ev("dispute")] = 2;
    n = wh_mach_allowed_events(wf, &dir, &k.t, ID(HOUSING), false, out, 16);
    cr_assert_eq(n, 1);
    cr_assert_eq(out[0], ev("report"));
    /* The total is returned even past cap. */
    n = wh_mach_allowed_events(wf, &dir, &k.t, ID(SUPERVISION), false, out, 1);
    cr_assert_eq(n, 2);
    cr_assert_eq(out[0], ev("refer"));
    n = wh_mach_allowed_events(wf, &dir, &k.t, ID(SUPERVISION), false, out, 16);
    cr_assert_eq(out[1], ev("reassign"));
    /* The system may fire nothing in whistled. */
    cr_assert_eq(wh_mach_allowed_events(wf, &dir, &k.t, NULL, false, out, 16), 0);
    cr_assert_eq(wh_mach_allowed_events(wf, &dir, &k.t, ID(MARKET), false, out, 16), 0);
}

Test(machine, named_in_current_by)
{
    tk_t k;

    tk_raise(&k, 1, ID(FIRE), NULL);
    cr_assert(wh_mach_named_in_current_by(wf, &dir, &k.t, ID(SUPERVISION)));
    cr_assert(wh_mach_named_in_current_by(wf, &dir, &k.t, ID(JOINT)));
    cr_assert_not(wh_mach_named_in_current_by(wf, &dir, &k.t, ID(BEITA)));
    cr_assert_not(wh_mach_named_in_current_by(wf, &dir, &k.t, ID(MARKET)));
    cr_assert_not(wh_mach_named_in_current_by(wf, &dir, &k.t, NULL));
    fire_ok(&k, ID(FIRE), "dispute", &note);
    /* disputed: arbitrate by district (beita on the chain, shuangqing not). */
    cr_assert(wh_mach_named_in_current_by(wf, &dir, &k.t, ID(BEITA)));
    cr_assert_not(wh_mach_named_in_current_by(wf, &dir, &k.t, ID(SHUANGQING)));
    fire_ok(&k, ID(BEITA), "arbitrate", NULL);
    fire_ok(&k, ID(FIRE), "wait-residents", &note);
    /* waiting-residents: hotline by the org id. */
    cr_assert(wh_mach_named_in_current_by(wf, &dir, &k.t, ID(SUPERVISION)));
    cr_assert_not(wh_mach_named_in_current_by(wf, &dir, &k.t, ID(JOINT)));
}

/* A hand-built model: open (initial) -> hold (a pause) -> done (final).
 * finish is `join: all` by [assignee, supervisor]; park reopens a finished
 * ticket into the pause state; clock c1 starts in a pause state. */
static const int from_finish[] = { 0, 1 }, from_park[] = { 0, 2 };
static const int stops[] = { 2 }, pauses[] = { 1 };
static const wh_who_t by_finish[] = { { .type = WH_WHO_ASSIGNEE },
                                      { .type = WH_WHO_KIND, .kind = WH_KIND_SUPERVISOR } };
static const wh_who_t by_park[] = { { .type = WH_WHO_RAISER } };
static const wh_who_t notify_done[] = { { .type = WH_WHO_ASSIGNEES }, { .type = WH_WHO_RAISER } };
static const wh_duration_t hour[] = { { 3600, WH_DUR_SECONDS } };

static void mini(wh_workflow_t *w, wh_state_t *states, wh_event_t *events, wh_clock_t *clocks)
{
    memset(w, 0, sizeof *w);
    states[0] = (wh_state_t){ .name = "open", .initial = true, .escalate = -1, .fire = -1 };
    states[1] = (wh_state_t){ .name = "hold", .escalate = -1, .fire = -1 };
    states[2] = (wh_state_t){
        .name = "done", .final = true, .escalate = -1, .fire = -1, .notify = { notify_done, 2 }
    };
    events[0] = (wh_event_t){ .name = "finish",
                              .from = { from_finish, 2 },
                              .to = 2,
                              .by = { by_finish, 2 },
                              .join_all = true };
    events[1] =
        (wh_event_t){ .name = "park", .from = { from_park, 2 }, .to = 1, .by = { by_park, 1 } };
    clocks[0] = (wh_clock_t){ .name = "c0",
                              .starts = 0,
                              .stops = { stops, 1 },
                              .pauses = { pauses, 1 },
                              .within = hour,
                              .escalate = -1 };
    clocks[1] = (wh_clock_t){ .name = "c1",
                              .starts = 1,
                              .stops = { stops, 1 },
                              .pauses = { pauses, 1 },
                              .within = hour,
                              .escalate = -1 };
    w->name = "mini";
    w->states = states;
    w->nstates = 3;
    w->initial = 0;
    w->events = events;
    w->nevents = 2;
    w->clocks = clocks;
    w->nclocks = 2;
}

Test(machine, join_event_by_other_role_moves_directly)
{
    wh_workflow_t w;
    wh_state_t states[3];
    wh_event_t events[2];
    wh_clock_t clocks[2];
    const char *ids[] = { ID(FIRE), ID(HOUSING) };
    wh_mach_result_t r;
    tk_t k;

    mini(&w, states, events, clocks);
    memset(&k, 0, sizeof k);
    tk_bind(&k);
    k.t.raiser = ID(STREET);
    cr_assert_eq(wh_mach_raise(&w, &dir, ID(STREET), 0, ids, 2, &r), 0);
    cr_assert_eq(r.msg_type, WH_MSG_WHISTLED);
    cr_assert_eq(r.nnotify, 0);
    cr_assert_eq(r.clocks[0], WH_CLOCK_RUNNING);
    cr_assert_eq(r.clocks[1], WH_CLOCK_IDLE);
    cr_assert_not(r.start_deadline);
    apply(&k, &w, &r);
    wh_mach_result_free(&r);

    /* An assignee joins: partial. */
    cr_assert_eq(wh_mach_fire(&w, &dir, &k.t, ID(FIRE), "finish", NULL, &r), 0);
    cr_assert(r.join_partial);
    cr_assert_eq(r.progress_assignee, 0);
    apply(&k, &w, &r);
    wh_mach_result_free(&r);

    /* The supervisor is no assignee: its firing moves the ticket at once. */
    cr_assert_eq(wh_mach_fire(&w, &dir, &k.t, ID(SUPERVISION), "finish", NULL, &r), 0);
    cr_assert_not(r.join_partial);
    cr_assert(r.entered);
    cr_assert_eq(r.to, 2);
    cr_assert_eq(r.progress_assignee, -1);
    cr_assert_eq(r.msg_type, WH_MSG_CLOSED);
    assert_notify(&r, 3, ID(FIRE), ID(HOUSING), ID(STREET));
    cr_assert_eq(r.clocks[0], WH_CLOCK_STOPPED);
    cr_assert_eq(r.clocks[1], WH_CLOCK_IDLE);
    apply(&k, &w, &r);
    wh_mach_result_free(&r);

    /* Reopened into a pause state: a stopped clock resumes paused, and a
     * clock that starts in a pause state starts paused. */
    cr_assert_eq(wh_mach_fire(&w, &dir, &k.t, ID(STREET), "park", NULL, &r), 0);
    cr_assert_eq(r.msg_type, WH_MSG_TRANSITIONED);
    cr_assert_eq(r.clocks[0], WH_CLOCK_PAUSED);
    cr_assert_eq(r.clocks[1], WH_CLOCK_PAUSED);
    apply(&k, &w, &r);
    wh_mach_result_free(&r);

    /* A join-partial event changes no clock, and sends nothing. */
    cr_assert_eq(wh_mach_fire(&w, &dir, &k.t, ID(HOUSING), "finish", NULL, &r), 0);
    cr_assert(r.join_partial);
    cr_assert_eq(r.progress_assignee, 1);
    cr_assert_eq(r.clocks[0], WH_CLOCK_PAUSED);
    cr_assert_eq(r.clocks[1], WH_CLOCK_PAUSED);
    cr_assert_eq(r.nnotify, 0);
    apply(&k, &w, &r);
    wh_mach_result_free(&r);

    /* The last assignee completes the join; it is excluded from the message. */
    cr_assert_eq(wh_mach_fire(&w, &dir, &k.t, ID(FIRE), "finish", NULL, &r), 0);
    cr_assert(r.entered);
    cr_assert_eq(r.to, 2);
    assert_notify(&r, 2, ID(HOUSING), ID(STREET));
    cr_assert_eq(r.clocks[0], WH_CLOCK_STOPPED);
    cr_assert_eq(r.clocks[1], WH_CLOCK_STOPPED);
    wh_mach_result_free(&r);
}

static wh_workflow_t *load_buffer(const char *name, const char *yaml)
{
    wh_diag_t *diag = wh_diag_new();
    wh_workflow_t *w = NULL;
    int rc;

    cr_assert_not_null(diag);
    rc = wh_workflow_load_buffer(name, yaml, strlen(yaml), &dir, diag, &w);
    if (rc != 0)
        wh_diag_print(diag, stderr);
    wh_diag_free(diag);
    cr_assert_eq(rc, 0, "load %s: %s", name, wh_err_name(rc));
    return w;
}

/* Targets of a state's notify list are resolved on the ticket after the
 * event: entering a state clears join progress, so laggards are every active
 * assignee; parents are theirs; an org id is sent as is. */
Test(machine, notify_laggards_parents_org_on_entry)
{
    static const char yaml[] = "workflow: notify-test\n"
                               "version: 1\n"
                               "states:\n"
                               "  open: { initial: true }\n"
                               "  check: {}\n"
                               "  done: { final: true }\n"
                               "transitions:\n"
                               "  start: { from: open, to: check, by: raiser }\n"
                               "  finish: { from: check, to: done, by: assignee, join: all }\n"
                               "notify:\n"
                               "  check: [laggards, parents, city-supervision, raiser]\n"
                               "  done: [parents, supervisors]\n";
    wh_workflow_t *w = load_buffer("notify-test.yaml", yaml);
    const char *ids[] = { ID(FIRE), ID(MARKET) };
    wh_mach_result_t r;
    tk_t k;

    memset(&k, 0, sizeof k);
    tk_bind(&k);
    k.t.raiser = ID(STREET);
    cr_assert_eq(wh_mach_raise(w, &dir, ID(STREET), 0, ids, 2, &r), 0);
    cr_assert_eq(r.nnotify, 0);
    apply(&k, w, &r);
    wh_mach_result_free(&r);

    cr_assert_eq(wh_mach_fire(w, &dir, &k.t, ID(STREET), "start", NULL, &r), 0);
    cr_assert_eq(r.msg_type, WH_MSG_TRANSITIONED);
    assert_notify(&r, 5, ID(FIRE), ID(MARKET), ID(BEITA), ID(SHUANGQING), ID(SUPERVISION));
    apply(&k, w, &r);
    wh_mach_result_free(&r);

    cr_assert_eq(wh_mach_fire(w, &dir, &k.t, ID(MARKET), "finish", NULL, &r), 0);
    cr_assert(r.join_partial);
    cr_assert_eq(r.nnotify, 0);
    apply(&k, w, &r);
    wh_mach_result_free(&r);
    cr_assert_eq(wh_mach_fire(w, &dir, &k.t, ID(FIRE), "finish", NULL, &r), 0);
    cr_assert_eq(r.msg_type, WH_MSG_CLOSED);
    cr_assert_eq(r.to, 2);
    assert_notify(&r, 3, ID(BEITA), ID(SHUANGQING), ID(SUPERVISION));
    wh_mach_result_free(&r);
    wh_workflow_free(w);
}

/* The shipped workflow, start to end. */
Test(machine, shipped_street_whistle)
{
    wh_diag_t *diag = wh_diag_new();
    wh_workflow_t *w = NULL;
    const char *ids[] = { ID(FIRE), ID(HOUSING) };
    const wh_mach_fields_t r4 = { .has_rating = true, .rating = 4 };
    wh_mach_result_t r;
    tk_t k;
    int rc;

    rc = wh_workflow_load(WH_SOURCE_DIR "/workflows/street-whistle.yaml", &dir, diag, &w);
    if (rc != 0)
        wh_diag_print(diag, stderr);
    wh_diag_free(diag);
    cr_assert_eq(rc, 0);
    memset(&k, 0, sizeof k);
    tk_bind(&k);
    k.t.raiser = ID(STREET);
    cr_assert_eq(wh_mach_raise(w, &dir, ID(STREET), 1, ids, 2, &r), 0);
    assert_notify(&r, 2, ID(FIRE), ID(HOUSING));
    cr_assert_eq(r.clocks[0], WH_CLOCK_RUNNING);
    apply(&k, w, &r);
    wh_mach_result_free(&r);
    const char *steps[][2] = { { "fire-brigade", "report" },
                               { "housing-bureau", "report" },
                               { "fire-brigade", "resolve" },
                               { "housing-bureau", "resolve" } };
    for (size_t i = 0; i < 4; i++) {
        cr_assert_eq(wh_mach_fire(w, &dir, &k.t, steps[i][0], steps[i][1], NULL, &r), 0);
        cr_assert_eq(r.join_partial, i % 2 == 0);
        apply(&k, w, &r);
        wh_mach_result_free(&r);
    }
    cr_assert_eq(k.t.state, wh_workflow_state(w, "resolved"));
    cr_assert_eq(k.clocks[0], WH_CLOCK_STOPPED);
    cr_assert_eq(wh_mach_fire(w, &dir, &k.t, ID(STREET), "confirm", &r4, &r), 0);
    cr_assert_eq(r.to, wh_workflow_state(w, "closed"));
    cr_assert_eq(r.msg_type, WH_MSG_CLOSED);
    assert_notify(&r, 2, ID(FIRE), ID(HOUSING));
    wh_mach_result_free(&r);
    wh_workflow_free(w);
}

/* A join event that extends a clock extends it once, when the ticket moves,
 * not once per assignee's firing. */
Test(machine, join_partial_firing_does_not_extend)
{
    static const char yaml[] = "workflow: join-extends\n"
                               "version: 1\n"
                               "states:\n"
                               "  open: { initial: true }\n"
                               "  done: { final: true }\n"
                               "clocks:\n"
                               "  resolve: { starts: open, stops: [done], within: 2 workdays }\n"
                               "transitions:\n"
                               "  finish: { from: open, to: done, by: assignee, join: all,\n"
                               "            extends: { resolve: 1 workday } }\n";
    wh_workflow_t *w = load_buffer("join-extends.yaml", yaml);
    const char *ids[] = { ID(FIRE), ID(MARKET) };
    wh_mach_result_t r;
    tk_t k;

    memset(&k, 0, sizeof k);
    tk_bind(&k);
    k.t.raiser = ID(STREET);
    cr_assert_eq(wh_mach_raise(w, &dir, ID(STREET), 0, ids, 2, &r), 0);
    apply(&k, w, &r);
    wh_mach_result_free(&r);

    cr_assert_eq(wh_mach_fire(w, &dir, &k.t, ID(MARKET), "finish", NULL, &r), 0);
    cr_assert(r.join_partial);
    cr_assert_eq(r.nextends, 0);
    apply(&k, w, &r);
    wh_mach_result_free(&r);
    cr_assert_eq(wh_mach_fire(w, &dir, &k.t, ID(FIRE), "finish", NULL, &r), 0);
    cr_assert(r.entered);
    cr_assert_eq(r.nextends, 1);
    wh_mach_result_free(&r);
    wh_workflow_free(w);
}
