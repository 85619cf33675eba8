/* test_config -- loading and validating configuration (lib/config.c). */
#include <sys/stat.h>

#include <stdlib.h>
#include <unistd.h>

#include "internal.h"
#include "t.h"

static char path[] = "/tmp/msgsync-test-config-XXXXXX";

/* Writes text to the test file with mode, loads it; returns rc. */
static enum sync_rc
load(const char *text, mode_t mode, struct sync_config **cfg, struct sync_err *e)
{
	struct sync_opts o;
	FILE *f = fopen(path, "w");

	fputs(text, f);
	fclose(f);
	chmod(path, mode);
	memset(&o, 0, sizeof(o));
	o.config_path = path;
	sync_err_clear(e);
	*cfg = NULL;
	return sync_config_load(&o, cfg, e);
}

/* Expects a configuration error at the given line, mentioning what. */
static void
bad(const char *text, mode_t mode, int line, const char *what)
{
	struct sync_config *cfg;
	struct sync_err e;
	char want[300];

	CHECK(load(text, mode, &cfg, &e) == SYNC_ECONFIG);
	CHECK(cfg == NULL);
	snprintf(want, sizeof(want), "%s:%d: ", path, line);
	CHECK(strncmp(e.msg, want, strlen(want)) == 0);
	CHECK(strstr(e.msg, what) != NULL);
	if (strncmp(e.msg, want, strlen(want)) != 0 || strstr(e.msg, what) == NULL)
		fprintf(stderr, "  got: %s\n  want: %s...%s\n", e.msg, want, what);
	sync_config_free(cfg);
}

#define SRC "sources = ( { name = \"wa\"; type = \"seqapi\";\n" \
	"  url = \"http://127.0.0.1:9\"; integration_id = \"i1\";\n"

static void
test_good(void)
{
	struct sync_config *cfg;
	struct sync_err e;

	setenv("MSGSYNC_TEST_TOKEN", "env-token-123", 1);
	CHECK(load("database = { conninfo = \"dbname=x\"; };\n"
	    "http = { timeout = 5; backoff = 0.5; retries = 2; };\n"
	    "sync = { max_runtime = 60; jobs = 2; };\n"
	    "log = { level = \"debug\"; format = \"json\"; };\n"
	    SRC "  token_env = \"MSGSYNC_TEST_TOKEN\";\n"
	    "  streams = [ \"messages\", \"contacts\" ];\n"
	    "  page_size = { messages = 200; }; } );\n", 0644, &cfg, &e) == SYNC_OK);
	if (cfg == NULL) {
		fprintf(stderr, "  %s\n", e.msg);
		return;
	}
	CHECK_STR(cfg->conninfo, "dbname=x");
	CHECK(cfg->http_timeout == 5 && cfg->retries == 2 && cfg->backoff == 0.5);
	CHECK(cfg->max_runtime == 60 && cfg->jobs == 2 && cfg->log_json == 1);
	CHECK(cfg->nsources == 1);
	CHECK_STR(cfg->sources[0].token, "env-token-123");
	CHECK(cfg->sources[0].nstreams == 2);
	CHECK_STR(cfg->sources[0].streams[0], "messages");
	CHECK(sync_cfg_stream_int(&cfg->sources[0], "page_size", "messages", 1) == 200);
	CHECK(sync_cfg_stream_int(&cfg->sources[0], "page_size", "contacts", 7) == 7);
	CHECK_STR(sync_cfg_str(&cfg->sources[0], "integration_id"), "i1");
	sync_config_free(cfg);

	/* Inline token in a private file; default streams. */
	CHECK(load(SRC "  token = \"inline-token\"; } );\n", 0600, &cfg, &e) == SYNC_OK);
	if (cfg != NULL) {
		CHECK(cfg->sources[0].nstreams == 3);
		CHECK(cfg->sources[0].enabled == 1);
		CHECK(cfg->sources[0].quarantine == 0);	/* on_bad_row = fail */
	}
	sync_config_free(cfg);

	/* on_bad_row, a generic key of every source type. */
	CHECK(load(SRC "  token = \"t0ken\"; on_bad_row = \"quarantine\"; },\n"
	    "  { name = \"sms\"; type = \"smseagle\"; url = \"http://127.0.0.1\";\n"
	    "    token = \"t0ken\"; on_bad_row = \"fail\"; } );\n", 0600, &cfg,
	    &e) == SYNC_OK);
	if (cfg != NULL)
		CHECK(cfg->sources[0].quarantine == 1 && cfg->sources[1].quarantine == 0);
	else
		fprintf(stderr, "  %s\n", e.msg);
	sync_config_free(cfg);
}

static void
test_bad(void)
{
	unsetenv("MSGSYNC_NO_SUCH_VAR");
	bad("databse = { };\n", 0600, 1, "unknown key 'databse'");
	bad("http = {\n timeout = \"30\"; };\n", 0600, 2, "'timeout' must be an integer");
	bad("http = { retries = -1; };\n", 0600, 1, "between");
	bad("log = { level = \"loud\"; };\n", 0600, 1, "'level' must be one of");
	bad("sync = { jobs = ; };\n", 0600, 1, "syntax error");
	bad(SRC "  token = \"t0ken\"; } );\n", 0644, 3, "readable by group or others");
	bad(SRC "  token_env = \"MSGSYNC_NO_SUCH_VAR\"; } );\n", 0600, 3,
	    "'MSGSYNC_NO_SUCH_VAR' (token_env) is not set");
	bad(SRC "  token = \"t0ken\"; token_env = \"X\"; } );\n", 0600, 3,
	    "exactly one of");
	bad(SRC "  token = \"t0ken\";\n  colour = \"blue\"; } );\n", 0600, 4,
	    "unknown key 'colour' in source 'wa'");
	bad("sources = ( { name = \"wa\"; type = \"seqapi\";\n"
	    "  url = \"http://gw.example\"; integration_id = \"i1\";\n"
	    "  token = \"t0ken\"; } );\n", 0600, 2, "loopback");
	bad("sources = ( { name = \"Bad Name\"; type = \"seqapi\"; } );\n", 0600, 1,
	    "must match [a-z0-9_-]+");
	bad("sources = ( { name = \"a\"; type = \"nosuch\"; } );\n", 0600, 1,
	    "unknown type 'nosuch'");
	bad("sources = ( { name = \"a\"; type = \"telegram\"; } );\n", 0600, 1,
	    "has no 'tdlib_dir' (required for type telegram)");
	bad("sources = ( { name = \"a\"; type = \"telegram\"; tdlib_dir = \"/x\";\n"
	    "  api_id = 1; token = \"abcd\"; } );\n", 0600, 2,
	    "type telegram takes no token ('token')");
	bad("sources = ( { name = \"a\"; type = \"telegram\"; tdlib_dir = \"/x\";\n"
	    "  api_id = 1; } );\n", 0600, 1,
	    "needs exactly one of 'api_hash_file', 'api_hash_env'");
	bad("sources = ( { name = \"sms\"; type = \"smseagle\";\n"
	    "  url = \"http://127.0.0.1/api/v2\"; token = \"t0ken\";\n"
	    "  token_in = \"body\"; } );\n", 0600, 1,
	    "'token_in' must be \"header\" or \"query\"");
	bad("sources = ( { name = \"sms\"; type = \"smseagle\";\n"
	    "  url = \"http://127.0.0.1\"; token = \"t0ken\";\n"
	    "  folders = [ \"inbox\", \"drafts\" ]; } );\n", 0600, 3, "drafts");
	bad("sources = ( { name = \"sms\"; type = \"smseagle\";\n"
	    "  url = \"http://127.0.0.1\"; token = \"t0ken\";\n"
	    "  cold_start_days = -1; } );\n", 0600, 3, "cold_start_days");
	bad("sources = ( { name = \"fb\"; type = \"facebook\";\n"
	    "  token = \"t0ken\"; } );\n", 0600, 1, "has no 'page_id'");
	bad("sources = ( { name = \"fb\"; type = \"facebook\"; page_id = \"1\";\n"
	    "  token = \"t0ken\"; platform = \"whatsapp\"; } );\n", 0600, 1,
	    "'platform' must be");
	bad("sources = ( { name = \"fb\"; type = \"facebook\"; page_id = \"1\";\n"
	    "  token = \"t0ken\"; graph_version = \"21\"; } );\n", 0600, 1,
	    "'graph_version' must look like");
	bad("sources = ( { name = \"fb\"; type = \"facebook\"; page_id = \"1\";\n"
	    "  token = \"t0ken\";\n  app_secret_file = \"/nonexistent/s\"; } );\n",
	    0600, 3, "cannot read app_secret_file '/nonexistent/s'");
	bad("sources = ( { name = \"fb\"; type = \"facebook\"; page_id = \"1\";\n"
	    "  token = \"t0ken\";\n  app_secret_env = \"MSGSYNC_NO_SUCH_VAR\"; } );\n",
	    0600, 3, "'MSGSYNC_NO_SUCH_VAR' (app_secret_env) is not set");
	bad(SRC "  token = \"t0ken\"; },\n"
	    "  { name = \"wa\"; type = \"seqapi\"; } );\n", 0600, 4,
	    "duplicate source name 'wa'");
	bad("sources = ( { name = \"wa\"; type = \"seqapi\";\n"
	    "  url = \"http://127.0.0.1:9\"; token = \"t0ken\"; } );\n", 0600, 1,
	    "no 'integration_id'");
	bad(SRC "  token = \"t0ken\";\n  streams = [ \"messages\", \"calls\" ]; } );\n",
	    0600, 4, "cannot contain \"calls\"");
	bad(SRC "  token = \"t0ken\";\n  page_size = { letters = 5; }; } );\n", 0600,
	    4, "no stream named 'letters'");
	bad(SRC "  token = \"t0ken\";\n  page_size = 0; } );\n", 0600, 4, "between 1");
	bad(SRC "  token_file = \"/nonexistent/token\"; } );\n", 0600, 3,
	    "cannot read token_file");
	bad(SRC "  token = \"t0ken\";\n  on_bad_row = \"drop\"; } );\n", 0600, 4,
	    "'on_bad_row' must be \"fail\" or \"quarantine\"");
	bad(SRC "  token = \"t0ken\";\n  on_bad_row = 1; } );\n", 0600, 4,
	    "'on_bad_row' must be");
}

static void
test_missing_file(void)
{
	struct sync_opts o;
	struct sync_config *cfg = NULL;
	struct sync_err e;

	memset(&o, 0, sizeof(o));
	o.config_path = "/nonexistent/msgsync.conf";
	sync_err_clear(&e);
	CHECK(sync_config_load(&o, &cfg, &e) == SYNC_ECONFIG);
	CHECK(strstr(e.msg, "/nonexistent/msgsync.conf: cannot read") == e.msg);
}

int
main(void)
{
	int fd = mkstemp(path);

	if (fd == -1)
		return 2;
	close(fd);
	test_good();
	test_bad();
	test_missing_file();
	unlink(path);
	sync_secrets_clear();
	return t_done("test_config");
}
