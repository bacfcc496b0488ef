/* whistle: the command line (SPEC §7). */
#include <stdio.h>
#include <string.h>

#include "src/cmd.h"

#ifndef WH_VERSION
#define WH_VERSION "0.0.0"
#endif

typedef struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *synopsis;
} command_t;

static int cmd_version(int argc, char **argv);

static const command_t commands[] = {
    { "serve", wh_cmd_serve,
      "serve [-c whistle.yaml]              run the engine and its HTTP API" },
    { "validate", wh_cmd_validate,
      "validate [-c whistle.yaml] FILE...  check workflow, calendar or config files" },
    { "graph", wh_cmd_graph, "graph FILE                          a workflow as Graphviz DOT" },
    { "due", wh_cmd_due, "due --calendar FILE [--from TIME] DURATION  when a deadline falls due" },
    { "verify", wh_cmd_verify,
      "verify [-c whistle.yaml]            check every ticket's hash chain" },
    { "audit", wh_cmd_audit,
      "audit [-c whistle.yaml] [--from D] [--to D] [--format table|csv|json]  scorecards" },
    { "version", cmd_version, "version                             print the version" },
};

static void usage(FILE *out)
{
    fputs("usage: whistle COMMAND [ARGS]\n\n"
          "The engine for 街道吹哨、部门报到: tickets that summon departments, with\n"
          "working-day deadlines and escalation.\n\ncommands:\n",
          out);
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        fprintf(out, "  whistle %s\n", commands[i].synopsis);
    fputs("\n'whistle COMMAND --help' describes one command.\n"
          "Exit codes: 0 success, 1 invalid input or a failed check, 2 usage error.\n",
          out);
}

static int cmd_version(int argc, char **argv)
{
    (void)argv;
    if (argc > 1) {
        fputs("usage: whistle version\n", stderr);
        return WH_EXIT_USAGE;
    }
    printf("whistle %s\n", WH_VERSION);
    return WH_EXIT_OK;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return WH_EXIT_USAGE;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return WH_EXIT_OK;
    }
    if (strcmp(argv[1], "--version") == 0)
        return cmd_version(1, argv + 1);
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        if (strcmp(argv[1], commands[i].name) == 0)
            return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "whistle: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return WH_EXIT_USAGE;
}
