/* Tests for engine/workflow.c (SPEC §3) and the validate/graph commands. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "engine/error.h"
#include "engine/workflow.h"

#define DATA WH_SOURCE_DIR "/tests/data/workflows/"

/* A minimal valid workflow; tests add sections after it (line 8 on). */
#define HEAD   "workflow: t\nversion: 1\n"
#define STATES "states:\n  a: { initial: true }\n  b: { final: true }\n"
#define TRANS  "transitions:\n  go: { from: a, to: b, by: raiser }\n"
#define MINI   HEAD STATES TRANS

typedef struct {
    wh_diag_t *diag;
    wh_workflow_t *wf;
    int rc;
    char lines[64][256];
    size_t n;
} result_t;

static void load(result_t *r, const char *yaml, const wh_orgdir_t *dir)
{
    memset(r, 0, sizeof(*r));
    r->diag = wh_diag_new();
    cr_assert_not_null(r->diag);
    r->rc = wh_workflow_load_buffer("t.yaml", yaml, strlen(yaml), dir, r->diag, &r->wf);
    r->n = wh_diag_count(r->diag);
    for (size_t i = 0; i < r->n && i < 64; i++)
        wh_diag_format(r->diag, i, r->lines[i], sizeof(r->lines[i]));
}

static void done(result_t *r)
{
    wh_workflow_free(r->wf);
    wh_diag_free(r->diag);
}

/* Asserts that yaml fails with exactly the given diagnostics, in order. */
static void expect(const char *yaml, const char *const *want)
{
    result_t r;
    size_t n = 0;

    while (want[n] != NULL)
        n++;
    load(&r, yaml, NULL);
    for (size_t i = 0; i < r.n && i < 64; i++)
        cr_log_info("got: %s", r.lines[i]);
    cr_assert_eq(r.rc, WH_EPARSE);
    cr_assert_null(r.wf);
    cr_assert_eq(r.n, n, "want %zu diagnostics, got %zu", n, r.n);
    for (size_t i = 0; i < n; i++)
        cr_assert_str_eq(r.lines[i], want[i]);
    done(&r);
}

#define EXPECT(yaml, ...)                                  \
    do {                                                   \
        const char *const want_[] = { __VA_ARGS__, NULL }; \
        expect((yaml), want_);                             \
    } while (0)

/* ---- the shipped workflows ---- */

static wh_workflow_t *load_file(const char *path)
{
    wh_diag_t *d = wh_diag_new();
    wh_workflow_t *wf = NULL;
    int rc = wh_workflow_load(path, NULL, d, &wf);

    if (wh_diag_count(d) > 0) {
        char buf[512];
        wh_diag_format(d, 0, buf, sizeof(buf));
        cr_log_error("%s", buf);
    }
    cr_assert_eq(rc, 0);
    cr_assert_eq(wh_diag_count(d), 0);
    wh_diag_free(d);
    return wf;
}

Test(workflow, shipped_workflows_load)
{
    wh_workflow_t *a = load_file(WH_SOURCE_DIR "/workflows/street-whistle.yaml");
    wh_workflow_t *b = load_file(WH_SOURCE_DIR "/workflows/hotline-12345.yaml");

    cr_assert_str_eq(a->name, "street-whistle");
    cr_assert_str_eq(b->name, "hotline-12345");
    cr_assert_str_eq(b->title, "12345 接诉即办");
    cr_assert_eq(b->nclocks, 2);
    cr_assert_str_eq(b->clocks[0].name, "sign-for");
    cr_assert_eq(b->clocks[0].within[0].unit, WH_DUR_SECONDS);
    cr_assert_eq(b->clocks[0].within[0].n, 1800);
    cr_assert_eq(b->clocks[0].within[1].unit, WH_DUR_WORKHOURS);
    cr_assert_eq(b->clocks[0].within[1].n, 2);
    cr_assert_eq(b->events[wh_workflow_event(b, "return")].limit, 2);
    cr_assert(b->events[wh_workflow_event(b, "confirm")].require & WH_REQUIRE_RATING);
    cr_assert_str_eq(b->states[b->initial].name, "accepted");
    wh_workflow_free(a);
    wh_workflow_free(b);
}

Test(workflow, street_whistle_model)
{
    wh_workflow_t *wf = load_file(WH_SOURCE_DIR "/workflows/street-whistle.yaml");
    int whistled = wh_workflow_state(wf, "whistled"), reported = wh_workflow_state(wf, "reported");
    const wh_event_t *report = &wf->events[wh_workflow_event(wf, "report")];
    const wh_event_t *dispute = &wf->events[wh_workflow_event(wf, "dispute")];
    const wh_event_t *approve = &wf->events[wh_workflow_event(wf, "approve-extension")];
    const wh_clock_t *resolve = &wf->clocks[wh_workflow_clock(wf, "resolve")];
    const wh_state_t *disputed = &wf->states[wh_workflow_state(wf, "disputed")];
    const wh_escalation_t *noshow = &wf->escalations[0];

    cr_assert_eq(wf->version, 1);
    cr_assert_str_eq(wf->calendar, "workdays");
    cr_assert_eq(wf->nstates, 8);
    cr_assert_eq(wf->nevents, 14);
    cr_assert_eq(whistled, 0);
    cr_assert_eq(wf->initial, whistled);
    cr_assert_str_eq(wf->states[0].title, "已吹哨");
    cr_assert(wf->states[wh_workflow_state(wf, "closed")].final);
    /* report: whistled -> reported, by assignee, join all. */
    cr_assert_eq(report->from.n, 1);
    cr_assert_eq(report->from.v[0], whistled);
    cr_assert_eq(report->to, reported);
    cr_assert_eq(report->by.n, 1);
    cr_assert_eq(report->by.v[0].type, WH_WHO_ASSIGNEE);
    cr_assert(report->join_all);
    cr_assert_eq(report->pos.line, 36);
    cr_assert_eq(report->pos.col, 3);
    cr_assert_eq(dispute->limit, 2);
    cr_assert_eq(dispute->require, WH_REQUIRE_NOTE);
    cr_assert_not(dispute->join_all);
    /* approve-extension extends resolve by 3 workdays. */
    cr_assert_eq(approve->nextends, 1);
    cr_assert_eq(approve->extends[0].clock, wh_workflow_clock(wf, "resolve"));
    cr_assert_eq(approve->extends[0].by.unit, WH_DUR_WORKDAYS);
    cr_assert_eq(approve->extends[0].by.n, 3);
    cr_assert_eq(approve->by.v[0].type, WH_WHO_KIND);
    cr_assert_eq(approve->by.v[0].kind, WH_KIND_SUPERVISOR);
    /* resolve clock: per-priority within (urgent 2h, normal 7 workdays). */
    cr_assert_eq(wf->npriorities, 2);
    cr_assert_eq(wf->default_priority, wh_workflow_priority(wf, "normal"));
    cr_assert_eq(resolve->starts, whistled);
    cr_assert_eq(resolve->stops.n, 3);
    cr_assert_eq(resolve->pauses.n, 1);
    cr_assert_eq(resolve->pauses.v[0], wh_workflow_state(wf, "waiting-residents"));
    cr_assert_eq(resolve->within[0].unit, WH_DUR_SECONDS);
    cr_assert_eq(resolve->within[0].n, 7200);
    cr_assert_eq(resolve->within[1].unit, WH_DUR_WORKDAYS);
    cr_assert_eq(resolve->within[1].n, 7);
    cr_assert_eq(resolve->escalate, 1);
    /* notify lists: disputed -> supervisors, joint-meeting. */
    cr_assert_eq(disputed->notify.n, 2);
    cr_assert_eq(disputed->notify.v[0].type, WH_WHO_KIND);
    cr_assert_eq(disputed->notify.v[0].kind, WH_KIND_SUPERVISOR);
    cr_assert_eq(disputed->notify.v[1].kind, WH_KIND_JOINT_MEETING);
    cr_assert_eq(disputed->escalate, 2);
    cr_assert_eq(wf->states[whistled].notify.v[0].type, WH_WHO_ASSIGNEES);
    /* deadlines: whistled 30m -> no-show; resolved 2 workdays -> fire auto-close. */
    cr_assert(wf->states[whistled].has_deadline);
    cr_assert_eq(wf->states[whistled].within.n, 1800);
    cr_assert_str_eq(wf->escalations[wf->states[whistled].escalate].name, "no-show");
    cr_assert_eq(wf->states[wh_workflow_state(wf, "resolved")].fire,
                 wh_workflow_event(wf, "auto-close"));
    /* escalation no-show: [laggards, parents] at 0, district at 1h repeating 2h. */
    cr_assert_eq(noshow->nsteps, 2);
    cr_assert_eq(noshow->steps[0].notify.v[0].type, WH_WHO_LAGGARDS);
    cr_assert_eq(noshow->steps[0].notify.v[1].type, WH_WHO_PARENTS);
    cr_assert_eq(noshow->steps[1].notify.v[0].kind, WH_KIND_DISTRICT);
    cr_assert(noshow->steps[1].has_repeat);
    cr_assert_eq(noshow->steps[1].repeat.n, 7200);
    cr_assert_eq(wf->escalations[1].steps[0].at.n, -1);
    cr_assert_eq(wf->escalations[1].steps[0].at.unit, WH_DUR_WORKDAYS);
    /* routes and services. */
    cr_assert_eq(wh_workflow_route(wf, "property-fee")->norgs, 2);
    cr_assert_str_eq(wh_workflow_route(wf, "property-fee")->orgs[1], "market-regulation");
    cr_assert_str_eq(wh_workflow_route(wf, "potholes")->category, "default");
    cr_assert_str_eq(wf->services[0].name, "消防安全隐患");
    cr_assert_eq(wf->services[0].nkeywords, 1);
    cr_assert_eq(wf->audit_dispute.n, 1);
    cr_assert_eq(wf->audit_dispute.v[0], wh_workflow_event(wf, "dispute"));
    cr_assert_eq(wh_workflow_state(wf, "nope"), -1);
    wh_workflow_free(wf);
}

Test(workflow, defaults_and_digest)
{
    FILE *f = fopen(DATA "minimal.yaml", "rb");
    char buf[1024];
    size_t len;
    result_t r;

    cr_assert_not_null(f);
    len = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[len] = '\0';
    load(&r, buf, NULL);
    cr_assert_eq(r.rc, 0);
    /* sha256sum tests/data/workflows/minimal.yaml */
    cr_assert_str_eq(r.wf->digest,
                     "dc15b6658dfd97efaae6104b636480c7f62f5a7b802aaf9ad8dbf54a4c76668c");
    cr_assert_eq(r.wf->npriorities, 0);
    cr_assert_eq(r.wf->default_priority, 0);
    cr_assert_str_eq(r.wf->calendar, "workdays");
    cr_assert_null(r.wf->title);
    cr_assert_eq(r.wf->audit_dispute.n, 0);
    cr_assert_eq(r.wf->states[0].escalate, -1);
    cr_assert_eq(r.wf->states[0].fire, -1);
    done(&r);
}

/* ---- one test per class of invalid input ---- */

Test(workflow, empty_file)
{
    EXPECT("", "t.yaml: error: empty workflow file");
}

Test(workflow, not_a_mapping)
{
    EXPECT("- a\n", "t.yaml:1:1: error: a workflow file must be a mapping");
}

Test(workflow, unknown_keys_at_every_level)
{
    EXPECT(HEAD "states:\n  a: { initial: true, colour: red }\n  b: { final: true }\n" TRANS
                "extra: 1\n"
                "escalations:\n  e:\n    - { at: 0, notify: [raiser], when: now }\n",
           "t.yaml:4:23: error: unknown key 'colour' in state 'a'",
           "t.yaml:8:1: error: unknown key 'extra'",
           "t.yaml:11:34: error: unknown key 'when' in escalation step");
}

Test(workflow, missing_keys)
{
    EXPECT("version: 1\n" STATES "transitions:\n  go: { from: a, by: raiser }\n",
           "t.yaml:1:1: error: missing key 'workflow'",
           "t.yaml:6:7: error: missing key 'to' in transition 'go'");
}

Test(workflow, wrong_types)
{
    EXPECT(HEAD "states:\n  a: { initial: yes }\n  b: { final: true, title: [x] }\n" TRANS
                "priorities: urgent\n",
           "t.yaml:4:17: error: initial must be true or false",
           "t.yaml:5:28: error: title must be a string",
           "t.yaml:8:13: error: priorities must be a sequence");
}

Test(workflow, duplicate_keys)
{
    EXPECT(MINI "notify:\n  a: [raiser]\n  a: [assignees]\n",
           "t.yaml:10:3: error: duplicate key 'a' (first at line 9)");
}

Test(workflow, bad_names)
{
    EXPECT("workflow: T\nversion: 1\nstates:\n  a: { initial: true }\n  B_1: { final: true }\n"
           "transitions:\n  go: { from: a, to: B_1, by: raiser }\n",
           "t.yaml:1:11: error: bad workflow name 'T' (use [a-z0-9-], at most 64 characters)",
           "t.yaml:5:3: error: bad state name 'B_1' (use [a-z0-9-], at most 64 characters)");
}

Test(workflow, bad_version)
{
    EXPECT("workflow: t\nversion: 1.5\n" STATES TRANS,
           "t.yaml:2:10: error: version must be an integer");
    EXPECT("workflow: t\nversion: 0\n" STATES TRANS,
           "t.yaml:2:10: error: version must be between 1 and 2147483647");
}

Test(workflow, bad_durations)
{
    EXPECT(HEAD "states:\n  a: { initial: true, deadline: { within: 2 weeks } }\n"
                "  b: { final: true }\n" TRANS,
           "t.yaml:4:43: error: bad duration '2 weeks' in within: unknown unit (use s, m, h, d, "
           "workdays or workhours)");
    EXPECT(HEAD "states:\n  a: { initial: true, deadline: { within: -1h } }\n"
                "  b: { final: true }\n" TRANS,
           "t.yaml:4:43: error: bad duration '-1h' in within: a negative duration is not "
           "allowed here");
    EXPECT(HEAD "states:\n  a: { initial: true, deadline: { within: 0 } }\n"
                "  b: { final: true }\n" TRANS,
           "t.yaml:4:43: error: within must be positive");
}

Test(workflow, negative_at_is_allowed_but_repeat_must_be_positive)
{
    EXPECT(MINI "escalations:\n  e:\n    - { at: -1 workday, notify: [laggards], repeat: 0 }\n",
           "t.yaml:10:53: error: repeat must be positive");
}

Test(workflow, no_initial_state)
{
    EXPECT(HEAD "states:\n  a: {}\n  b: { final: true }\n" TRANS,
           "t.yaml:4:3: error: no initial state");
}

Test(workflow, two_initial_states)
{
    EXPECT(HEAD "states:\n  a: { initial: true }\n  c: { initial: true }\n  b: { final: true }\n"
                "transitions:\n  go: { from: [a, c], to: b, by: raiser }\n",
           "t.yaml:5:17: error: second initial state 'c' (the first is 'a')");
}

Test(workflow, no_final_state)
{
    EXPECT(HEAD "states:\n  a: { initial: true }\n  b: {}\n" TRANS,
           "t.yaml:4:3: error: no final state");
}

Test(workflow, unreachable_state)
{
    EXPECT(HEAD STATES "  c: { title: C }\n"
                       "transitions:\n  go: { from: [a, c], to: b, by: raiser }\n",
           "t.yaml:6:3: error: state 'c' is not reachable from the initial state 'a'");
}

Test(workflow, dead_end_state)
{
    EXPECT(HEAD STATES "  c: { title: C }\n"
                       "transitions:\n  go: { from: a, to: b, by: raiser }\n"
                       "  stall: { from: a, to: c, by: raiser }\n",
           "t.yaml:6:3: error: no final state can be reached from state 'c'");
}

Test(workflow, unknown_references)
{
    EXPECT(
        HEAD "states:\n  a: { initial: true, deadline: { within: 1h, escalate: up, fire: boom } }\n"
             "  b: { final: true }\n"
             "transitions:\n  go: { from: [a, x], to: b, by: raiser, extends: { tick: 1h } }\n"
             "clocks:\n  c: { starts: y, stops: [b], within: 1h, escalate: down }\n"
             "notify:\n  z: [raiser]\n"
             "audit:\n  reopen: [again]\n",
        "t.yaml:4:57: error: unknown escalation 'up'", "t.yaml:4:67: error: unknown event 'boom'",
        "t.yaml:7:19: error: unknown state 'x'", "t.yaml:7:53: error: unknown clock 'tick'",
        "t.yaml:9:16: error: unknown state 'y'", "t.yaml:9:53: error: unknown escalation 'down'",
        "t.yaml:11:3: error: unknown state 'z'", "t.yaml:13:12: error: unknown event 'again'");
}

Test(workflow, priorities)
{
    EXPECT(MINI "priorities: [high, low, high]\ndefault_priority: mid\n",
           "t.yaml:8:25: error: duplicate priority 'high'",
           "t.yaml:9:19: error: unknown priority 'mid'");
}

Test(workflow, per_priority_within)
{
    EXPECT(MINI "priorities: [high, low]\n"
                "clocks:\n  c: { starts: a, stops: [b], within: { high: 1h, mid: 2h } }\n",
           "t.yaml:10:39: error: within has no duration for priority 'low'",
           "t.yaml:10:51: error: unknown priority 'mid'");
    EXPECT(MINI "clocks:\n  c: { starts: a, stops: [b], within: { high: 1h } }\n",
           "t.yaml:9:39: error: a per-priority within needs 'priorities'");
}

Test(workflow, fire_event_rules)
{
    EXPECT(HEAD "states:\n  a: { initial: true, deadline: { within: 1h, fire: go } }\n"
                "  b: { final: true }\n  c: { deadline: { within: 1h, fire: go } }\n"
                "transitions:\n  go: { from: [a, c], to: b, by: raiser, require: [note] }\n"
                "  tc: { from: a, to: c, by: raiser }\n",
           "t.yaml:4:53: error: event 'go' must have 'system' in its by to be fired here",
           "t.yaml:4:53: error: event 'go' has a require and cannot be fired here",
           "t.yaml:6:38: error: event 'go' must have 'system' in its by to be fired here",
           "t.yaml:6:38: error: event 'go' has a require and cannot be fired here");
    EXPECT(HEAD "states:\n  a: { initial: true }\n"
                "  b: { final: true }\n  c: { deadline: { within: 1h, fire: go } }\n"
                "transitions:\n  go: { from: a, to: b, by: system }\n"
                "  tc: { from: a, to: c, by: raiser }\n  out: { from: c, to: b, by: raiser }\n",
           "t.yaml:6:38: error: event 'go' must have 'c' in its from to be fired here");
}

Test(workflow, join_rules)
{
    EXPECT(HEAD STATES "transitions:\n  go: { from: a, to: b, by: raiser, join: all }\n"
                       "  go2: { from: a, to: b, by: assignee, join: any }\n",
           "t.yaml:7:43: error: join needs 'assignee' in by",
           "t.yaml:8:46: error: join must be 'all'");
}

Test(workflow, limit_and_require)
{
    EXPECT(HEAD STATES "transitions:\n  go: { from: a, to: b, by: raiser, limit: 0, "
                       "require: [note, photo] }\n",
           "t.yaml:7:44: error: limit must be between 1 and 4294967295",
           "t.yaml:7:63: error: unknown require field 'photo' (use note, assignees or rating)");
}

Test(workflow, reserved_event_names)
{
    EXPECT(HEAD STATES "transitions:\n  raise: { from: a, to: b, by: raiser }\n"
                       "  breached: { from: a, to: b, by: raiser }\n",
           "t.yaml:7:3: error: 'raise' is a reserved event name",
           "t.yaml:8:3: error: 'breached' is a reserved event name");
}

Test(workflow, final_state_rules)
{
    EXPECT(HEAD "states:\n  a: { initial: true }\n  b: { final: true, deadline: { within: 1h } }\n"
                "transitions:\n  go: { from: a, to: b, by: raiser }\n"
                "  back: { from: b, to: a, by: raiser }\n",
           "t.yaml:5:31: error: final state 'b' cannot have a deadline",
           "t.yaml:8:17: error: event 'back' leaves final state 'b'");
}

Test(workflow, who_rules)
{
    EXPECT(HEAD STATES "transitions:\n  go: { from: a, to: b, by: [assignees, supervisors, "
                       "Bad] }\n"
                       "notify:\n  b: [assignee, system, districts, fire-brigade]\n",
           "t.yaml:7:30: error: 'assignees' is a notify target and cannot fire events (use "
           "'assignee')",
           "t.yaml:7:41: error: use the singular 'supervisor' in by",
           "t.yaml:7:54: error: bad org id 'Bad' (use [a-z0-9-], at most 64 characters)",
           "t.yaml:9:7: error: 'assignee' is not a notify target (use 'assignees')",
           "t.yaml:9:17: error: 'system' is not a notify target");
}

Test(workflow, routes_and_services)
{
    EXPECT(MINI "routes:\n  fire: []\n  water: [department]\n"
                "services:\n  gas: { name: 燃气 }\n  default: { name: x }\n"
                "  fire: { name: 火, colour: red }\n",
           "t.yaml:9:9: error: route 'fire' must not be empty",
           "t.yaml:10:11: error: 'department' is a role or kind, not an org id",
           "t.yaml:12:3: error: service 'gas' has no route",
           "t.yaml:13:3: error: 'default' is not a service category",
           "t.yaml:14:20: error: unknown key 'colour' in service");
}

Test(workflow, escalation_rules)
{
    EXPECT(MINI "escalations:\n  e: []\n  f:\n    - { at: 1h }\n    - { at: 0, notify: [] }\n",
           "t.yaml:9:6: error: escalation 'e' must have 1 to 32 steps",
           "t.yaml:11:7: error: missing key 'notify' in escalation step",
           "t.yaml:12:24: error: notify must not be empty");
}

Test(workflow, clock_rules)
{
    EXPECT(MINI "clocks:\n  c: { starts: a, stops: [], within: 1h }\n  d: { stops: [b] }\n",
           "t.yaml:9:26: error: stops must not be empty",
           "t.yaml:10:6: error: missing key 'starts' in clock 'd'",
           "t.yaml:10:6: error: missing key 'within' in clock 'd'");
}

Test(workflow, caps)
{
    char *yaml = malloc(20000), *p = yaml;

    cr_assert_not_null(yaml);
    p += sprintf(p, HEAD "states:\n  a: { initial: true }\n  b: { final: true }\n");
    for (int i = 0; i < 255; i++)
        p += sprintf(p, "  s%d: {}\n", i);
    sprintf(p, TRANS);
    EXPECT(yaml, "t.yaml:4:3: error: too many states (257, at most 256)");
    free(yaml);
}

Test(workflow, unknown_orgs_with_directory)
{
    static const wh_org_t orgs[] = {
        { "fire-brigade", "消防", WH_KIND_DEPARTMENT, -1, true, false },
        { "sup", "督查", WH_KIND_SUPERVISOR, -1, false, false },
    };
    wh_orgdir_t dir = { orgs, 2 };
    result_t r;

    load(&r,
         MINI "routes:\n  fire: [fire-brigade, water-works]\n"
              "escalations:\n  e:\n    - { at: 0, notify: [supervisors, ghost] }\n"
              "colour: red\n",
         &dir);
    cr_assert_eq(r.rc, WH_EPARSE);
    cr_assert_eq(r.n, 3);
    cr_assert_str_eq(r.lines[2], "t.yaml:13:1: error: unknown key 'colour'");
    cr_assert_str_eq(r.lines[0], "t.yaml:9:24: error: unknown org 'water-works'");
    cr_assert_str_eq(r.lines[1], "t.yaml:12:38: error: unknown org 'ghost'");
    done(&r);
}

Test(workflow, check_orgs_warnings)
{
    static const wh_org_t orgs[] = {
        { "xintan-street", "新滩", WH_KIND_STREET, -1, true, true },
        { "fire-brigade", "消防", WH_KIND_DEPARTMENT, -1, true, false },
        { "sup", "督查", WH_KIND_SUPERVISOR, -1, false, false },
    };
    wh_orgdir_t dir = { orgs, 3 };
    result_t r;
    char line[256];

    load(&r,
         HEAD STATES "transitions:\n  go: { from: a, to: b, by: [supervisor, raiser] }\n"
                     "notify:\n  b: [fire-brigade, raiser, ghost]\n",
         NULL);
    cr_assert_eq(r.rc, 0);
    cr_assert_eq(wh_workflow_check_orgs(r.wf, &dir, r.diag), 1);
    cr_assert_eq(wh_diag_errors(r.diag), 1);
    cr_assert_eq(wh_diag_warnings(r.diag), 2);
    wh_diag_format(r.diag, 0, line, sizeof(line));
    cr_assert_str_eq(line, "t.yaml:7:30: warning: no org of kind 'supervisor' has a token, so it "
                           "cannot fire event 'go'");
    wh_diag_format(r.diag, 1, line, sizeof(line));
    cr_assert_str_eq(line, "t.yaml:9:7: warning: org 'fire-brigade' has no webhook: messages to "
                           "it are recorded, not delivered");
    wh_diag_format(r.diag, 2, line, sizeof(line));
    cr_assert_str_eq(line, "t.yaml:9:29: error: unknown org 'ghost'");
    done(&r);
}

Test(workflow, several_errors_reported_in_one_run)
{
    static const char *const want[] = {
        "many-errors.yaml:1:11: error: bad workflow name 'Bad_Name' (use [a-z0-9-], at most 64 "
        "characters)",
        "many-errors.yaml:2:10: error: version must be between 1 and 2147483647",
        "many-errors.yaml:3:1: error: unknown key 'colour'",
        "many-errors.yaml:4:30: error: duplicate priority 'urgent'",
        "many-errors.yaml:5:19: error: unknown priority 'low'",
        "many-errors.yaml:7:56: error: within must be positive",
        "many-errors.yaml:7:69: error: unknown escalation 'nope'",
        "many-errors.yaml:8:3: error: no final state can be reached from state 'again'",
        "many-errors.yaml:8:21: error: second initial state 'again' (the first is 'open')",
        "many-errors.yaml:9:3: error: no final state can be reached from state 'busy'",
        "many-errors.yaml:9:41: error: bad duration '2 weeks' in within: unknown unit (use s, "
        "m, h, d, workdays or workhours)",
        "many-errors.yaml:9:56: error: event 'close' must have 'busy' in its from to be fired "
        "here",
        "many-errors.yaml:9:56: error: event 'close' must have 'system' in its by to be fired "
        "here",
        "many-errors.yaml:10:3: error: state 'orphan' is not reachable from the initial state "
        "'open'",
        "many-errors.yaml:11:3: error: no final state can be reached from state 'stuck'",
        "many-errors.yaml:12:44: error: final state 'done' cannot have a deadline",
        "many-errors.yaml:14:30: error: stops must not be empty",
        "many-errors.yaml:14:42: error: within has no duration for priority 'normal'",
        "many-errors.yaml:14:68: error: unknown escalation 'nope'",
        "many-errors.yaml:14:74: error: unknown key 'extra' in clock 'c1'",
        "many-errors.yaml:16:3: error: 'raise' is a reserved event name",
        "many-errors.yaml:16:39: error: 'assignees' is a notify target and cannot fire events "
        "(use 'assignee')",
        "many-errors.yaml:17:22: error: unknown state 'ghost'",
        "many-errors.yaml:17:56: error: use the singular 'supervisor' in by",
        "many-errors.yaml:17:76: error: join must be 'all'",
        "many-errors.yaml:18:56: error: unknown require field 'photo' (use note, assignees or "
        "rating)",
        "many-errors.yaml:18:71: error: limit must be between 1 and 4294967295",
        "many-errors.yaml:19:18: error: event 'leave' leaves final state 'done'",
        "many-errors.yaml:19:57: error: unknown clock 'c2'",
        "many-errors.yaml:20:51: error: join needs 'assignee' in by",
        "many-errors.yaml:23:13: error: bad duration 'x' in at: a duration starts with a whole "
        "number",
        "many-errors.yaml:23:24: error: notify must not be empty",
        "many-errors.yaml:24:26: error: 'assignee' is not a notify target (use 'assignees')",
        "many-errors.yaml:24:45: error: repeat must be positive",
        "many-errors.yaml:26:3: error: unknown state 'nowhere'",
        "many-errors.yaml:27:10: error: 'system' is not a notify target",
        "many-errors.yaml:29:9: error: route 'fire' must not be empty",
        "many-errors.yaml:30:3: error: bad category name 'Fire' (use [a-z0-9-], at most 64 "
        "characters)",
        "many-errors.yaml:32:3: error: service 'water' has no route",
        "many-errors.yaml:34:13: error: unknown event 'nothing'",
    };
    FILE *f = fopen(DATA "many-errors.yaml", "rb");
    static char buf[8192];
    wh_diag_t *d = wh_diag_new();
    wh_workflow_t *wf = NULL;
    size_t len, n = sizeof(want) / sizeof(want[0]);
    char line[512];

    cr_assert_not_null(f);
    len = fread(buf, 1, sizeof(buf), f);
    fclose(f);
    cr_assert_eq(wh_workflow_load_buffer("many-errors.yaml", buf, len, NULL, d, &wf), WH_EPARSE);
    cr_assert_null(wf);
    cr_assert_eq(wh_diag_count(d), n);
    for (size_t i = 0; i < n; i++) {
        wh_diag_format(d, i, line, sizeof(line));
        cr_assert_str_eq(line, want[i]);
    }
    wh_diag_free(d);
}

/* ---- DOT ---- */

static char *dot_of(const char *path)
{
    wh_workflow_t *wf = load_file(path);
    char *text = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&text, &len);

    cr_assert_not_null(mem);
    cr_assert_eq(wh_workflow_write_dot(wf, mem), 0);
    fclose(mem);
    wh_workflow_free(wf);
    return text;
}

Test(workflow, dot_output)
{
    char *text = dot_of(WH_SOURCE_DIR "/workflows/street-whistle.yaml");

    cr_assert(strstr(text, "digraph \"street-whistle\" {\n") == text);
    cr_assert_not_null(strstr(text, "\"whistled\" [label=\"已吹哨\\n(whistled)\", shape=box, "
                                    "style=\"rounded,bold\"];\n"));
    cr_assert_not_null(strstr(text, "\"closed\" [label=\"已关闭\\n(closed)\", "
                                    "shape=doubleoctagon];\n"));
    cr_assert_not_null(strstr(text, "\"whistled\" -> \"reported\" [label=\"report\"];\n"));
    cr_assert_not_null(
        strstr(text, "\"resolved\" -> \"closed\" [label=\"auto-close\", style=dashed];\n"));
    free(text);
    text = dot_of(DATA "minimal.yaml");
    cr_assert_not_null(strstr(text, "[label=\"Open \\\"quoted\\\" \\\\ back\\n(open)\""));
    free(text);
}

/* Pipes the DOT of path through `dot -Tsvg`; returns dot's exit status. */
static int run_dot(const char *path)
{
    char *text = dot_of(path);
    FILE *p = popen("/usr/bin/dot -Tsvg > /dev/null 2>&1", "w");
    int st;

    cr_assert_not_null(p);
    fputs(text, p);
    st = pclose(p);
    free(text);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

Test(workflow, dot_renders)
{
    if (access("/usr/bin/dot", X_OK) != 0)
        cr_skip_test("graphviz is not installed");
    cr_assert_eq(run_dot(WH_SOURCE_DIR "/workflows/street-whistle.yaml"), 0);
    cr_assert_eq(run_dot(WH_SOURCE_DIR "/workflows/hotline-12345.yaml"), 0);
    cr_assert_eq(run_dot(DATA "minimal.yaml"), 0);
}

/* ---- the commands ---- */

/* Runs the whistle executable with args (a shell fragment); returns its
 * exit code and the first line of its stderr (or stdout when err_line is
 * given as NULL). */
static int run_cli(const char *args, char *out, size_t outlen, bool want_stderr)
{
    char cmd[2048];
    FILE *p;
    int st;

    snprintf(cmd, sizeof(cmd), "cd '%s' && '%s' %s %s", WH_SOURCE_DIR, WH_BINARY, args,
             want_stderr ? "2>&1 >/dev/null" : "2>/dev/null");
    p = popen(cmd, "r");
    cr_assert_not_null(p);
    out[0] = '\0';
    if (fgets(out, (int)outlen, p) != NULL)
        out[strcspn(out, "\n")] = '\0';
    while (fgetc(p) != EOF)
        continue;
    st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

Test(cli, validate)
{
    char line[512];

    cr_assert_eq(run_cli("validate workflows/street-whistle.yaml workflows/hotline-12345.yaml",
                         line, sizeof(line), false),
                 0);
    cr_assert_str_eq(line, "ok: 2 files");
    cr_assert_eq(
        run_cli("validate tests/data/workflows/many-errors.yaml", line, sizeof(line), true), 1);
    cr_assert_str_eq(line, "tests/data/workflows/many-errors.yaml:1:11: error: bad workflow "
                           "name 'Bad_Name' (use [a-z0-9-], at most 64 characters)");
    cr_assert_eq(run_cli("validate", line, sizeof(line), true), 2);
    cr_assert_eq(
        run_cli("validate --bogus workflows/street-whistle.yaml", line, sizeof(line), true), 2);
    cr_assert_str_eq(line, "whistle validate: unknown option '--bogus'");
    cr_assert_eq(run_cli("validate tests/data/workflows/none.yaml", line, sizeof(line), true), 1);
    cr_assert_str_eq(line, "tests/data/workflows/none.yaml: error: cannot read: No such file "
                           "or directory");
    cr_assert_eq(run_cli("validate --help", line, sizeof(line), false), 0);
    cr_assert_str_eq(line, "usage: whistle validate [-c whistle.yaml] FILE...");
}

Test(cli, validate_same_version_different_content)
{
    char line[512];

    cr_assert_eq(run_cli("validate tests/data/workflows/minimal.yaml "
                         "tests/data/workflows/minimal.yaml",
                         line, sizeof(line), false),
                 0);
    cr_assert_eq(run_cli("validate tests/data/workflows/minimal.yaml "
                         "tests/data/workflows/minimal-changed.yaml",
                         line, sizeof(line), true),
                 1);
    cr_assert_str_eq(line, "tests/data/workflows/minimal-changed.yaml: error: workflow "
                           "'minimal' version 1 is also in tests/data/workflows/minimal.yaml "
                           "with different content");
}

Test(cli, validate_unknown_kind_of_file)
{
    char line[512];

    cr_assert_eq(run_cli("validate tests/data/workflows/not-a-kind.yaml", line, sizeof(line), true),
                 1);
    cr_assert_str_eq(line, "tests/data/workflows/not-a-kind.yaml: error: not a workflow "
                           "(workflow:), calendar (workdays:, hours:, holidays:) or config "
                           "(orgs:, listen:) file");
}

Test(cli, validate_with_config)
{
    char line[512];

    cr_assert_eq(run_cli("validate -c examples/whistle.yaml workflows/street-whistle.yaml "
                         "workflows/hotline-12345.yaml",
                         line, sizeof(line), false),
                 0);
    cr_assert_str_eq(line, "ok: 2 files");
    cr_assert_eq(run_cli("validate -c examples/whistle.yaml "
                         "tests/data/workflows/unknown-org.yaml",
                         line, sizeof(line), true),
                 1);
    cr_assert_str_eq(line, "tests/data/workflows/unknown-org.yaml:4:14: error: unknown org "
                           "'roads-bureau'");
}

Test(cli, graph)
{
    char line[512];

    cr_assert_eq(run_cli("graph workflows/street-whistle.yaml", line, sizeof(line), false), 0);
    cr_assert_str_eq(line, "digraph \"street-whistle\" {");
    cr_assert_eq(run_cli("graph tests/data/workflows/many-errors.yaml", line, sizeof(line), true),
                 1);
    cr_assert_str_eq(line, "tests/data/workflows/many-errors.yaml:1:11: error: bad workflow "
                           "name 'Bad_Name' (use [a-z0-9-], at most 64 characters)");
    cr_assert_eq(run_cli("graph", line, sizeof(line), true), 2);
    cr_assert_eq(run_cli("graph a.yaml b.yaml", line, sizeof(line), true), 2);
}

/* Inputs the fuzzer once crashed on (a state or event whose name was invalid
 * was later looked up by a NULL name): each must load as an error, cleanly. */
Test(workflow, fuzz_regressions)
{
    const char *files[] = { "crash-1.yaml", "crash-2.yaml" };
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        char path[512];
        wh_diag_t *d = wh_diag_new();
        wh_workflow_t *w = NULL;
        snprintf(path, sizeof(path), "%s/tests/data/workflows/fuzz/%s", WH_SOURCE_DIR, files[i]);
        cr_assert_eq(wh_workflow_load(path, NULL, d, &w), WH_EPARSE, "%s", files[i]);
        cr_assert_null(w);
        cr_assert_gt(wh_diag_errors(d), 0);
        wh_diag_free(d);
    }
}
