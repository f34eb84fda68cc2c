/*
 * commands.h - the subcommands of `backprop`. Each takes the arguments after
 * "backprop" (argv[0] is the subcommand's name) and returns the exit status.
 */
#ifndef BP_CLI_COMMANDS_H
#define BP_CLI_COMMANDS_H

int cli_cmd_train(int argc, char **argv);
int cli_cmd_eval(int argc, char **argv);
int cli_cmd_predict(int argc, char **argv);
int cli_cmd_info(int argc, char **argv);

#endif /* BP_CLI_COMMANDS_H */
