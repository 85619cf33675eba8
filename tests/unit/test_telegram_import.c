/*
 * test_telegram_import -- the Telegram connector's export reader (full-sync
 * --import over tgexport.c) over Telegram Desktop exports
 * (tests/fixtures/telegram/, and hostile variants of them).  The TDLib
 * side is tested end to end against the fake TDLib (tests/e2e/).
 */
#include "canned.h"
#include "t.h"

#define FIX "tests/fixtures/telegram/"
#define CONF "sources = ( { name = \"tg\"; type = \"telegram\";\n" \
	"  tdlib_dir = \"/nonexistent\"; api_id = 1;\n" \
	"  api_hash_env = \"MSGSYNC_TEST_HASH\"; } );\n"

static char path[] = "/tmp/msgsync-test-tgimport-XXXXXX";
static struct sync_config *cfg;

/* Imports data (len bytes) as an export; the walk's outcome. */
static enum sync_rc
import(const char *data, size_t len, struct ct *t, char **cursor,
    struct sync_err *e)
{
	enum sync_rc rc;
	FILE *f;

	*cursor = NULL;
	if ((f = fopen(path, "wb")) == NULL || fwrite(data, 1, len, f) != len ||
	    fclose(f) != 0) {
		CHECK(!"cannot write the export");
		return SYNC_ECONFIG;
	}
	if ((rc = ct_init(t, cfg, e)) != SYNC_OK)
		return rc;
	t->opts.import = path;
	if ((rc = ct_begin(t, e)) == SYNC_OK)
		rc = ct_walk(t, "messages", SYNC_MODE_IMPORT, NULL, 1000, cursor, e);
	if (rc != SYNC_OK && e->msg[0] == '\0')
		ct_bad(t, "an error without a message", NULL);
	return rc;
}

static void
test_fixtures(void)
{
	static const struct {
		const char	*name;
		long		 rows;
		long		 chats;
	} c[] = {
		{ FIX "tdesktop_export_full_result.json", 7, 2 },
		{ FIX "tdesktop_export_single_chat_result.json", 5, 1 },
	};
	struct sync_err e;
	struct ct t;
	size_t i;

	for (i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
		char *data = ct_fixture(c[i].name), *cursor;
		enum sync_rc rc;

		if (data == NULL) {
			CHECK(!"fixture");
			return;
		}
		rc = import(data, strlen(data), &t, &cursor, &e);
		CHECK(rc == SYNC_OK);
		if (rc != SYNC_OK || t.bad[0] != '\0')
			fprintf(stderr, "  %s: %s %s\n", c[i].name, e.msg, t.bad);
		CHECK(t.bad[0] == '\0');
		CHECK(t.rows == c[i].rows && t.fetched == c[i].rows);
		CHECK(t.side_rows[1] == c[i].chats);
		CHECK(cursor != NULL);
		free(cursor);
		ct_close(&t);
		free(data);
	}
}

/* Cut short, not an export, too deep: an error that says where. */
static void
test_errors(void)
{
	static const char *const bad[] = {
		"{\"name\":\"x\",\"type\":\"personal_chat\",\"id\":5,\"messages\":[{\"id\":1,",
		"[1,2,3]",
		"",
		"{\"name\":\"x\",\"type\":\"personal_chat\",\"id\":5,\"messages\":{}}",
	};
	struct sync_err e;
	struct ct t;
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char *cursor;
		enum sync_rc rc = import(bad[i], strlen(bad[i]), &t, &cursor, &e);

		CHECK(rc == SYNC_EDATA && strstr(e.msg, path) != NULL);
		if (rc != SYNC_EDATA)
			fprintf(stderr, "  case %zu: rc %d '%s'\n", i, (int)rc, e.msg);
		CHECK(t.bad[0] == '\0');
		free(cursor);
		ct_close(&t);
	}
}

static void
test_hostile_variants(void)
{
	static const char *const fixtures[] = {
		FIX "tdesktop_export_single_chat_result.json",
		FIX "tdesktop_export_full_result.json",
	};
	struct sync_err e;
	struct ct t;
	size_t f, len;
	long i, runs = 0, errors = 0;

	for (f = 0; f < sizeof(fixtures) / sizeof(fixtures[0]); f++) {
		char *valid = ct_fixture(fixtures[f]), *data, *cursor;

		if (valid == NULL) {
			CHECK(!"fixture");
			return;
		}
		for (i = 0; ct_mutate(valid, i, &data, &len) == 0; i++) {
			if (import(data, len, &t, &cursor, &e) != SYNC_OK)
				errors++;
			runs++;
			if (t.bad[0] != '\0')
				fprintf(stderr, "  %s: variant %ld: %s\n", fixtures[f], i,
				    t.bad);
			CHECK(t.bad[0] == '\0');
			free(cursor);
			free(data);
			ct_close(&t);
		}
		free(valid);
	}
	CHECK(runs > 200 && errors > 10 && errors < runs);
}

int
main(void)
{
	struct sync_err e;
	int fd;

	setenv("MSGSYNC_TEST_HASH", "0123456789abcdef0123456789abcdef", 1);
	if ((fd = mkstemp(path)) == -1)
		return 1;
	close(fd);
	if (ct_load(CONF, &cfg, &e) != SYNC_OK) {
		fprintf(stderr, "%s\n", e.msg);
		unlink(path);
		return 1;
	}
	test_fixtures();
	test_errors();
	test_hostile_variants();
	sync_config_free(cfg);
	unlink(path);
	return t_done("test_telegram_import");
}
