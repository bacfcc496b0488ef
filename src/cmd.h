/* The subcommands of the whistle executable (SPEC §7). Each takes the
 * arguments after its name (argv[0] is the subcommand) and returns the exit
 * code: 0 success, 1 invalid input or a failed check, 2 usage error. */
#ifndef WH_CMD_H
#define WH_CMD_H

#define WH_EXIT_OK      0
#define WH_EXIT_INVALID 1
#define WH_EXIT_USAGE   2

int wh_cmd_validate(int argc, char **argv);
int wh_cmd_graph(int argc, char **argv);
int wh_cmd_due(int argc, char **argv);
int wh_cmd_serve(int argc, char **argv);
int wh_cmd_verify(int argc, char **argv);

#endif
