/* whistle graph FILE (SPEC §7): a workflow as Graphviz DOT on stdout. */
#include <stdio.h>
#include <string.h>

#include "engine/diag.h"
#include "engine/workflow.h"
#include "src/cmd.h"

static void usage(FILE *out)
{
    fputs("usage: whistle graph FILE\n\n"
          "Prints the workflow in FILE as Graphviz DOT: states labelled with their\n"
          "titles and names, the initial state in bold, final states as double\n"
          "octagons, events as edges (dashed when only the system fires them).\n"
          "Render it with: whistle graph FILE | dot -Tsvg > workflow.svg\n\n"
          "Exit codes: 0 success, 1 invalid workflow, 2 usage error.\n",
          out);
}

int wh_cmd_graph(int argc, char **argv)
{
    wh_workflow_t *wf = NULL;
    wh_diag_t *diag;
    int rc = WH_EXIT_INVALID;

    if (argc == 2 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0)) {
        usage(stdout);
        return WH_EXIT_OK;
    }
    if (argc != 2 || (argv[1][0] == '-' && argv[1][1] != '\0')) {
        usage(stderr);
        return WH_EXIT_USAGE;
    }
    diag = wh_diag_new();
    if (diag == NULL) {
        fputs("whistle graph: out of memory\n", stderr);
        return WH_EXIT_INVALID;
    }
    if (wh_workflow_load(argv[1], NULL, diag, &wf) == 0) {
        if (wh_workflow_write_dot(wf, stdout) == 0 && fflush(stdout) == 0)
            rc = WH_EXIT_OK;
        else
            fputs("whistle graph: cannot write to standard output\n", stderr);
    }
    wh_diag_print(diag, stderr);
    wh_workflow_free(wf);
    wh_diag_free(diag);
    return rc;
}
