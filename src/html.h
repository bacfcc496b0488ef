/* HTML for the pages the server draws itself (action links, the
 * dashboard): text escaped for element content and quoted attributes. */
#ifndef WH_HTML_H
#define WH_HTML_H

#include <stdio.h>

/* Writes s (NULL: nothing) with < > & " ' as character references. */
void wh_html_escape(FILE *f, const char *s);

#endif
