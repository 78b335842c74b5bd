/* `ovlfs export` and `ovlfs diff`: read a layer, never mount. argv[0] is the subcommand's
 * name; the return value is the exit status. */
#ifndef OVLFS_SUBCOMMANDS_H
#define OVLFS_SUBCOMMANDS_H

int ovl_export_main(int argc, char **argv);
int ovl_diff_main(int argc, char **argv);

#endif
