/*
 * fuzz_tgexport -- the Telegram Desktop export reader (tgexport.c) and its
 * mapping to rows, as full-sync --import runs them: the input is the
 * export file.
 */
#include "fuzz.h"

static char path[] = "/tmp/msgsync-fuzz-tgexport-XXXXXX";

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	int fd;

	(void)argc;
	(void)argv;
	setenv("MSGSYNC_FUZZ_HASH", "0123456789abcdef0123456789abcdef", 1);
	fz_setup("sources = ( { name = \"tg\"; type = \"telegram\";\n"
	    "  tdlib_dir = \"/nonexistent\"; api_id = 1;\n"
	    "  api_hash_env = \"MSGSYNC_FUZZ_HASH\"; } );\n");
	if ((fd = mkstemp(path)) == -1)
		abort();
	close(fd);
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct ct t;
	struct sync_err err;
	FILE *f;

	if ((f = fopen(path, "wb")) == NULL ||
	    fwrite(data, 1, size, f) != size || fclose(f) != 0)
		abort();
	if (ct_init(&t, fz_cfg, &err) != SYNC_OK)
		abort();
	t.opts.import = path;
	if (ct_begin(&t, &err) == SYNC_OK)
		ct_walk(&t, "messages", SYNC_MODE_IMPORT, NULL, 1000, NULL, &err);
	if (t.bad[0] != '\0') {
		fprintf(stderr, "fuzz: %s\n", t.bad);
		abort();
	}
	ct_close(&t);
	return 0;
}
