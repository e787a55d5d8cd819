/*
 * config.h -- options from the command line, then the environment, then a file.
 *
 * The config file (--config, else $RAGSAFE_CONFIG, else /etc/ragsafe/ragsafe.conf,
 * which may be absent) holds "key = value" lines whose keys are long option names
 * ("repo", "compress-level"); '#' starts a comment; values may be double-quoted.
 * Unknown keys are allowed (one file serves every tool).
 *
 * Calling sequence:
 *     config *cfg = config_load(path_or_NULL);     NULL: reported error
 *     const char *repo = config_resolve(opt_repo, "RAGSAFE_REPO", cfg, "repo");
 *     config_free(cfg);                            strings from config_get die with it
 */
#ifndef RAGSAFE_CONFIG_H
#define RAGSAFE_CONFIG_H

#include <stdint.h>

typedef struct config config;

#define CONFIG_DEFAULT_PATH "/etc/ragsafe/ragsafe.conf"

/* Load a config file. path NULL: $RAGSAFE_CONFIG, else the default path, and a
 * missing default file is not an error. An explicitly named file must exist.
 * A malformed line is an error naming file and line. Returns NULL after reporting.
 * The file holds commands the tools run and secrets, so (as ssh does) it is refused
 * when owned by anyone but root or the running user, when group or others can write
 * it, or when a directory on its path is writable by group or others without the
 * sticky bit; each refusal names the fix (chown, chmod go-w). /dev/null is fine. */
config *config_load(const char *path);
void config_free(config *cfg);

/* Value of key in the file, or NULL. */
const char *config_get(const config *cfg, const char *key);

/* flag if non-NULL, else getenv(env) if env and set and non-empty, else the file's
 * value for key, else NULL. cfg may be NULL. */
const char *config_resolve(const char *flag, const char *env, const config *cfg, const char *key);

/* Parse a decimal integer in [min, max]; on failure report naming what and return -1. */
int config_parse_int(const char *what, const char *s, long min, long max, long *out);

/* Parse a duration: "90" (seconds), "30s", "15m", "12h", "7d", "2w". Returns -1 reported. */
int config_parse_duration(const char *what, const char *s, int64_t *seconds);

#endif
