/* libFuzzer target: the workflow loader must report, never crash or leak. */
#include <stddef.h>
#include <stdint.h>

#include "engine/diag.h"
#include "engine/workflow.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    wh_diag_t *diag = wh_diag_new();
    wh_workflow_t *wf = NULL;

    if (diag == NULL)
        return 0;
    if (wh_workflow_load_buffer("fuzz.yaml", (const char *)data, size, NULL, diag, &wf) == 0)
        wh_workflow_free(wf);
    wh_diag_free(diag);
    return 0;
}
