/* model_data.c - model and data options for eval and predict (see model_data.h). */
#include "model_data.h"

#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "model_meta.h"

void cli_model_data_init(cli_model_data *md) {
  md->model = md->data = NULL;
  md->backend = BP_BACKEND_AUTO;
  md->device = 0;
  cli_data_options_init(&md->data_opt);
  md->label_column_given = 0;
  md->class_names = NULL;
}

int cli_model_data_option(cli_args *a, int id, const char *v, cli_model_data *md) {
  static const char *const backends[] = {"auto", "cpu", "cuda", NULL};
  int choice = 0, bad = 0;
  switch (id) {
    case MD_OPT_MODEL: md->model = v; break;
    case MD_OPT_DATA: md->data = v; break;
    case MD_OPT_FORMAT:
      bad = cli_parse_choice(a, v, cli_format_names, &choice);
      md->data_opt.format = (cli_format)choice;
      break;
    case MD_OPT_LABEL_COLUMN:
      md->label_column_given = 1;
      bad = cli_parse_int(a, v, -1000000, 1000000, &md->data_opt.label_column);
      break;
    case MD_OPT_TARGETS: bad = cli_parse_int(a, v, 1, 1 << 24, &md->data_opt.n_targets); break;
    case MD_OPT_CLASSES: bad = cli_parse_int(a, v, 1, 1 << 24, &md->data_opt.n_classes); break;
    case MD_OPT_BACKEND:
      bad = cli_parse_choice(a, v, backends, &choice);
      md->backend = choice == 1 ? BP_BACKEND_CPU : choice == 2 ? BP_BACKEND_CUDA : BP_BACKEND_AUTO;
      break;
    case MD_OPT_DEVICE: bad = cli_parse_int(a, v, 0, 1024, &md->device); break;
    case MD_OPT_DELIMITER:
      bad = cli_parse_choice(a, v, cli_delimiter_names, &choice);
      md->data_opt.delimiter = cli_delimiter_chars[choice];
      break;
    default: return 1;
  }
  return bad ? -1 : 0;
}

int cli_model_data_check(const char *cmd, const cli_model_data *md) {
  if (!md->model) return cli_usage_error(cmd, "missing --model FILE");
  if (!md->data) return cli_usage_error(cmd, "missing --data PATH");
  if (md->data_opt.n_targets > 0 && (md->label_column_given || md->data_opt.n_classes))
    return cli_usage_error(cmd, "--targets excludes --label-column and --classes");
  return 0;
}

/* The model's class names ("classes" metadata), or NULL. */
static char *model_classes(bp_context *ctx, const char *path) {
  bp_model_info *info = NULL;
  char *names = NULL;
  if (bp_model_info_read(ctx, path, &info) != BP_OK) return NULL;
  for (int i = 0; i < info->n_meta; ++i)
    if (strcmp(info->meta_keys[i], "classes") == 0) names = strdup(info->meta_values[i]);
  bp_model_info_free(info);
  return names;
}

int cli_model_data_load(const char *cmd, cli_model_data *md, int check_outputs,
                        bp_context **ctx, bp_network **net, bp_data **data) {
  int code = 0;
  *net = NULL;
  *data = NULL;
  *ctx = cli_context_create(cmd, md->backend, md->device, &code);
  if (!*ctx) return code;
  if (bp_network_load(*ctx, md->model, net) != BP_OK) {
    code = cli_fail(cmd, "cannot load the model: %s", bp_context_last_error(*ctx));
  } else {
    int n_in = bp_network_size(*net, 0);
    int n_out = bp_network_size(*net, bp_network_n_layers(*net));
    free(md->class_names);
    md->class_names = model_classes(*ctx, md->model);
    cli_data_options opt = md->data_opt;
    if (opt.n_targets == 0) opt.class_names = md->class_names;
    int inputs_width = -1;
    if (!check_outputs && cli_data_format(md->data, opt.format) == CLI_FORMAT_CSV) {
      /* Inputs alone, when the file has exactly the model's input width. */
      cli_data_options only = opt;
      only.inputs_only = 1;
      bp_data *d = NULL;
      bp_csv_options csv;
      bp_csv_options_init(&csv);
      csv.delimiter = only.delimiter;
      csv.inputs_only = 1;
      if (bp_data_read_csv(*ctx, md->data, &csv, &d) == BP_OK) {
        inputs_width = d->n_in;
        if (d->n_in == n_in) *data = d;
        else bp_data_free(d);
      }
    }
    if (!*data) {
      code = cli_data_read_eval(cmd, *ctx, md->data, &opt, n_out, data);
      if (code && inputs_width >= 0)
        fprintf(stderr, "backprop %s: (read as inputs alone, %s has %d columns; the model "
                        "takes %d inputs)\n", cmd, md->data, inputs_width, n_in);
    }
    if (!code && ((*data)->n_in != n_in || (check_outputs && (*data)->n_out != n_out)))
      code = cli_fail(cmd, "%s has %d inputs and %d outputs per example but the model %s takes "
                           "%d and gives %d", md->data, (*data)->n_in, (*data)->n_out,
                      md->model, n_in, n_out);
    /* --standardize: the model was trained on scaled inputs. */
    if (!code) code = cli_model_scale_inputs(cmd, *ctx, md->model, *data);
  }
  if (code) {
    bp_data_free(*data);
    bp_network_destroy(*net);
    bp_context_destroy(*ctx);
    *data = NULL;
    *net = NULL;
    *ctx = NULL;
    free(md->class_names);
    md->class_names = NULL;
  }
  return code;
}

int cli_model_data_parse(const char *cmd, int argc, char **argv, const cli_option *options,
                         int help_id, void (*help)(FILE *), int flag_id, int *flag,
                         cli_model_data *md) {
  cli_model_data_init(md);
  cli_args a;
  cli_args_init(&a, cmd, argc, argv);
  const char *v;
  int id;
  while ((id = cli_next_option(&a, options, &v)) != CLI_ARGS_END) {
    if (id == CLI_ARGS_ERROR) return CLI_EXIT_USAGE;
    if (id == CLI_ARGS_POSITIONAL) return cli_usage_error(cmd, "unexpected argument '%s'", v);
    if (id == help_id) {
      help(stdout);
      return fflush(stdout) == 0 ? 0 : CLI_EXIT_FAILURE;
    }
    if (id == flag_id) {
      *flag = 1;
      continue;
    }
    if (cli_model_data_option(&a, id, v, md) < 0) return CLI_EXIT_USAGE;
  }
  int code = cli_model_data_check(cmd, md);
  return code ? code : -1;
}
