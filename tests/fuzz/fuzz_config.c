/*
 * fuzz_config -- the configuration loader (config.c, over libconfig): the
 * input is the configuration file.  A load either succeeds or fails with
 * a message that names the file.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

int	LLVMFuzzerInitialize(int *, char ***);
int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

static char path[] = "/tmp/msgsync-fuzz-config-XXXXXX";

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	int fd;

	(void)argc;
	(void)argv;
	setenv("MSGSYNC_FUZZ_TOKEN", "fuzz-token-from-env", 1);
	if ((fd = mkstemp(path)) == -1)
		abort();
	close(fd);
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sync_config *cfg = NULL;
	struct sync_opts o;
	struct sync_err err;
	enum sync_rc rc;
	FILE *f;

	if ((f = fopen(path, "wb")) == NULL ||
	    fwrite(data, 1, size, f) != size || fclose(f) != 0)
		abort();
	memset(&o, 0, sizeof(o));
	o.config_path = path;
	o.max_runtime = -1;
	sync_err_clear(&err);
	rc = sync_config_load(&o, &cfg, &err);
	if (rc == SYNC_OK ? cfg == NULL : (cfg != NULL || err.msg[0] == '\0' ||
	    strncmp(err.msg, path, strlen(path)) != 0)) {
		fprintf(stderr, "fuzz: rc %d, message '%s'\n", (int)rc, err.msg);
		abort();
	}
	sync_config_free(cfg);
	sync_secrets_clear();
	return 0;
}
