/*
 * fuzz_telegram -- the Telegram connector's TDLib side: the input is a
 * scenario of the fake TDLib (tests/fake/tdjson/fake_tdjson.c: the account,
 * its users, chats and messages), which serves it through TDLib's JSON
 * interface to begin(), the chats and messages walks and end().  The fake
 * is loaded from tests/fake/tdjson/libtdjson.so (make builds it).
 */
#include <limits.h>

#include "fuzz.h"

static const struct fz_walk walks[] = {
	{ "chats", SYNC_MODE_INCR, NULL },
	{ "messages", SYNC_MODE_INCR, NULL },
	{ "messages", SYNC_MODE_FULL, NULL },
	{ NULL, SYNC_MODE_INCR, NULL }
};

static char dir[] = "/tmp/msgsync-fuzz-telegram-XXXXXX";
static char scenario[PATH_MAX];

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	char lib[PATH_MAX], path[PATH_MAX], conf[3 * PATH_MAX];
	FILE *f;

	(void)argc;
	(void)argv;
	if (realpath("tests/fake/tdjson/libtdjson.so", lib) == NULL) {
		fprintf(stderr, "fuzz_telegram: run it from the top directory, "
		    "after make tests/fake/tdjson/libtdjson.so\n");
		abort();
	}
	if (mkdtemp(dir) == NULL)
		abort();
	snprintf(path, sizeof(path), "%s/fake-session", dir);
	if ((f = fopen(path, "w")) == NULL || fputs("+15550001234", f) == EOF ||
	    fclose(f) != 0)
		abort();
	snprintf(scenario, sizeof(scenario), "%s/scenario.json", dir);
	setenv("FAKE_TDJSON_SCENARIO", scenario, 1);
	setenv("MSGSYNC_FUZZ_HASH", "0123456789abcdef0123456789abcdef", 1);
	snprintf(conf, sizeof(conf), "sources = ( { name = \"tg\"; "
	    "type = \"telegram\";\n  tdlib_library = \"%s\"; tdlib_dir = \"%s\";\n"
	    "  api_id = 12345; api_hash_env = \"MSGSYNC_FUZZ_HASH\"; } );\n",
	    lib, dir);
	fz_setup(conf);
	return 0;
}

/*
 * TDLib's JSON is valid UTF-8 without \u0000 (it cleans every string it
 * takes in), so the scenario is made so first, as sync_json_sanitize() does:
 * what the connector reads is what a real TDLib could send.
 */
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sync_buf b = SYNC_BUF_INIT(0);
	FILE *f;

	if (sync_buf_add(&b, data, size) == -1 || sync_json_sanitize(&b) < 0)
		abort();
	if ((f = fopen(scenario, "wb")) == NULL ||
	    fwrite(b.data, 1, b.len, f) != b.len || fclose(f) != 0)
		abort();
	sync_buf_release(&b);
	return fz_run(walks, (const uint8_t *)"", 0);	/* no HTTP */
}
