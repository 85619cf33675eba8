/* test_config -- loading and validating configuration (lib/config.c). */
#include <sys/stat.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif

#include <stdlib.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

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

/* Expects a configuration error at file:line, mentioning what. */
static void
bad_at(const char *text, mode_t mode, const char *file, int line,
    const char *what)
{
	struct sync_config *cfg;
	struct sync_err e;
	char want[300];

	CHECK(load(text, mode, &cfg, &e) == SYNC_ECONFIG);
	CHECK(cfg == NULL);
	snprintf(want, sizeof(want), "%s:%d: ", file, line);
	CHECK(strncmp(e.msg, want, strlen(want)) == 0);
	CHECK(strstr(e.msg, what) != NULL);
	if (strncmp(e.msg, want, strlen(want)) != 0 || strstr(e.msg, what) == NULL)
		fprintf(stderr, "  got: %s\n  want: %s...%s\n", e.msg, want, what);
	sync_config_free(cfg);
}

/* Expects a configuration error at the given line, mentioning what. */
static void
bad(const char *text, mode_t mode, int line, const char *what)
{
	bad_at(text, mode, path, line, what);
}

/* Writes text to a file of that mode; returns its path (static). */
static const char *
put(const char *name, const char *text, mode_t mode)
{
	static char p[8][256];
	static int k;
	char *f = p[k++ % 8];
	FILE *fp;

	snprintf(f, sizeof(p[0]), "%s.%s", path, name);
	unlink(f);
	if ((fp = fopen(f, "w")) != NULL) {
		fputs(text, fp);
		fclose(fp);
	}
	chmod(f, mode);
	return f;
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
	CHECK(load(SRC "  token = \"t0ken-long\"; on_bad_row = \"quarantine\"; },\n"
	    "  { name = \"sms\"; type = \"smseagle\"; url = \"http://127.0.0.1\";\n"
	    "    token = \"t0ken-long\"; on_bad_row = \"fail\"; } );\n", 0600, &cfg,
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
	bad(SRC "  token = \"t0ken-123\"; } );\n", 0644, 3, "readable by group or others");
	bad(SRC "  token_env = \"MSGSYNC_NO_SUCH_VAR\"; } );\n", 0600, 3,
	    "'MSGSYNC_NO_SUCH_VAR' (token_env) is not set");
	bad(SRC "  token = \"t0ken-123\"; token_env = \"X\"; } );\n", 0600, 3,
	    "exactly one of");
	bad(SRC "  token = \"t0ken-123\";\n  colour = \"blue\"; } );\n", 0600, 4,
	    "unknown key 'colour' in source 'wa'");
	bad("sources = ( { name = \"wa\"; type = \"seqapi\";\n"
	    "  url = \"http://gw.example\"; integration_id = \"i1\";\n"
	    "  token = \"t0ken-123\"; } );\n", 0600, 2, "loopback");
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
	    "  url = \"http://127.0.0.1/api/v2\"; token = \"t0ken-123\";\n"
	    "  token_in = \"body\"; } );\n", 0600, 1,
	    "'token_in' must be \"header\" or \"query\"");
	bad("sources = ( { name = \"sms\"; type = \"smseagle\";\n"
	    "  url = \"http://127.0.0.1\"; token = \"t0ken-123\";\n"
	    "  folders = [ \"inbox\", \"drafts\" ]; } );\n", 0600, 3, "drafts");
	bad("sources = ( { name = \"sms\"; type = \"smseagle\";\n"
	    "  url = \"http://127.0.0.1\"; token = \"t0ken-123\";\n"
	    "  cold_start_days = -1; } );\n", 0600, 3, "cold_start_days");
	bad("sources = ( { name = \"fb\"; type = \"facebook\";\n"
	    "  token = \"t0ken-123\"; } );\n", 0600, 1, "has no 'page_id'");
	bad("sources = ( { name = \"fb\"; type = \"facebook\"; page_id = \"1\";\n"
	    "  token = \"t0ken-123\"; platform = \"whatsapp\"; } );\n", 0600, 1,
	    "'platform' must be");
	bad("sources = ( { name = \"fb\"; type = \"facebook\"; page_id = \"1\";\n"
	    "  token = \"t0ken-123\"; graph_version = \"21\"; } );\n", 0600, 1,
	    "'graph_version' must look like");
	bad("sources = ( { name = \"fb\"; type = \"facebook\"; page_id = \"1\";\n"
	    "  token = \"t0ken-123\";\n  app_secret_file = \"/nonexistent/s\"; } );\n",
	    0600, 3, "cannot read app_secret_file '/nonexistent/s'");
	bad("sources = ( { name = \"fb\"; type = \"facebook\"; page_id = \"1\";\n"
	    "  token = \"t0ken-123\";\n  app_secret_env = \"MSGSYNC_NO_SUCH_VAR\"; } );\n",
	    0600, 3, "'MSGSYNC_NO_SUCH_VAR' (app_secret_env) is not set");
	bad(SRC "  token = \"t0ken-123\"; },\n"
	    "  { name = \"wa\"; type = \"seqapi\"; } );\n", 0600, 4,
	    "duplicate source name 'wa'");
	bad("sources = ( { name = \"wa\"; type = \"seqapi\";\n"
	    "  url = \"http://127.0.0.1:9\"; token = \"t0ken-123\"; } );\n", 0600, 1,
	    "no 'integration_id'");
	bad(SRC "  token = \"t0ken-123\";\n  streams = [ \"messages\", \"calls\" ]; } );\n",
	    0600, 4, "cannot contain \"calls\"");
	bad(SRC "  token = \"t0ken-123\";\n  page_size = { letters = 5; }; } );\n", 0600,
	    4, "no stream named 'letters'");
	bad(SRC "  token = \"t0ken-123\";\n  page_size = 0; } );\n", 0600, 4, "between 1");
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

/*
 * Secret files readable by group or others are refused, naming the file
 * and the chmod that fixes it; so is an inline token in an included file
 * that others can read, whatever file includes it (SPEC §4).
 */
static void
test_modes(void)
{
	char text[1024], want[400];
	const char *f, *inc;
	struct sync_config *cfg;
	struct sync_err e;

	f = put("tok", "file-token-123\n", 0644);
	snprintf(text, sizeof(text), SRC "  token_file = \"%s\"; } );\n", f);
	snprintf(want, sizeof(want), "'%s' is readable by group or others "
	    "(mode 0644): chmod 600 %s", f, f);
	bad(text, 0600, 3, want);
	chmod(f, 0600);
	CHECK(load(text, 0600, &cfg, &e) == SYNC_OK);
	sync_config_free(cfg);

	f = put("appsecret", "app-secret-4567\n", 0640);
	snprintf(text, sizeof(text), "sources = ( { name = \"fb\"; type = "
	    "\"facebook\"; page_id = \"1\";\n  token = \"t0ken-123\";\n"
	    "  app_secret_file = \"%s\"; } );\n", f);
	snprintf(want, sizeof(want), "chmod 600 %s", f);
	bad(text, 0600, 3, want);

	f = put("apihash", "0123456789abcdef0123456789abcdef\n", 0604);
	snprintf(text, sizeof(text), "sources = ( { name = \"tg\"; type = "
	    "\"telegram\"; tdlib_dir = \"/x\";\n  api_id = 1;\n"
	    "  api_hash_file = \"%s\"; } );\n", f);
	snprintf(want, sizeof(want), "chmod 600 %s", f);
	bad(text, 0600, 3, want);

	/* An inline token in an included file that others can read. */
	inc = put("inc", SRC "  token = \"inline-token-9\"; } );\n", 0644);
	snprintf(text, sizeof(text), "log = { level = \"info\"; };\n"
	    "@include \"%s\"\n", inc);
	snprintf(want, sizeof(want), "chmod 600 %s", inc);
	bad_at(text, 0600, inc, 3, want);
	/* Private: accepted, though the main file is world-readable. */
	chmod(inc, 0600);
	CHECK(load(text, 0644, &cfg, &e) == SYNC_OK);
	if (cfg == NULL)
		fprintf(stderr, "  %s\n", e.msg);
	sync_config_free(cfg);
	unlink(inc);
	unlink(f);
}

/* Tokens and secrets too short to be masked are refused. */
static void
test_short(void)
{
	char text[1024];
	const char *f;

	bad(SRC "  token = \"abc\"; } );\n", 0600, 3,
	    "source 'wa': the token is too short (3 characters; at least 8)");
	f = put("short", "abcdefg\n", 0600);
	snprintf(text, sizeof(text), SRC "  token_file = \"%s\"; } );\n", f);
	bad(text, 0600, 3, "source 'wa': the token is too short");
	setenv("MSGSYNC_TEST_SHORT", "abc", 1);
	bad("sources = ( { name = \"fb\"; type = \"facebook\"; page_id = \"1\";\n"
	    "  token = \"t0ken-123\";\n  app_secret_env = \"MSGSYNC_TEST_SHORT\"; } );\n",
	    0600, 3, "source 'fb': 'app_secret_env' is too short");
	unlink(f);
}

/*
 * A secret a source derives (Facebook's appsecret_proof) is registered
 * while the configuration loads, before any thread starts; the process
 * is no longer dumpable.
 */
static void
test_derived(void)
{
	unsigned char mac[EVP_MAX_MD_SIZE];
	unsigned int n = 0, i;
	char proof[2 * EVP_MAX_MD_SIZE + 1], line[300], text[1024];
	struct sync_config *cfg;
	struct sync_err e;
	const char *f;

	sync_secrets_clear();
	f = put("appsecret2", "app-secret-4567\n", 0600);
	snprintf(text, sizeof(text), "sources = ( { name = \"fb\"; type = "
	    "\"facebook\"; page_id = \"1\";\n  token = \"fb-token-abcdef\";\n"
	    "  app_secret_file = \"%s\"; } );\n", f);
	CHECK(load(text, 0600, &cfg, &e) == SYNC_OK);
	if (cfg == NULL)
		fprintf(stderr, "  %s\n", e.msg);
	sync_config_free(cfg);
	HMAC(EVP_sha256(), "app-secret-4567", 15,
	    (const unsigned char *)"fb-token-abcdef", 15, mac, &n);
	for (i = 0; i < n; i++)
		snprintf(proof + 2 * i, 3, "%02x", mac[i]);
	snprintf(line, sizeof(line), "GET /x?appsecret_proof=%s&y=1", proof);
	sync_redact(line);
	CHECK_STR(line, "GET /x?appsecret_proof=***&y=1");
	unlink(f);
#ifdef __linux__
	CHECK(prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) == 0);
#endif
}

/*
 * The database password of database.conninfo, in any form libpq reads, is
 * a secret: masked in every error and log line once the file is loaded.
 */
static void
test_conninfo_password(void)
{
	static const struct {
		const char	*conninfo, *password;
	} c[] = {
		{ "host=/tmp dbname=x password=kv-Passw0rd-1", "kv-Passw0rd-1" },
		{ "dbname=x password = 'quoted pass\\\\'w0rd'", "quoted pass'w0rd" },
		{ "postgresql://msgsync:uri-Pa%40ss-2@db.example:5432/x",
		    "uri-Pa@ss-2" },
	};
	struct sync_config *cfg;
	struct sync_err e;
	char text[256], line[256];
	size_t i;

	for (i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
		snprintf(text, sizeof(text), "database = { conninfo = \"%s\"; };\n",
		    c[i].conninfo);
		CHECK(load(text, 0600, &cfg, &e) == SYNC_OK);
		if (cfg == NULL) {
			fprintf(stderr, "  %s\n", e.msg);
			continue;
		}
		sync_err_clear(&e);
		sync_err_set(&e, SYNC_ETEMP, SYNC_ERR_DATABASE, "cannot connect: "
		    "password \"%s\"", c[i].password);
		CHECK_STR(e.msg, "cannot connect: password \"***\"");
		/* As the URI spells it, too. */
		snprintf(line, sizeof(line), "%s", cfg->conninfo);
		sync_redact(line);
		CHECK(i != 2 || strcmp(line, "postgresql://msgsync:***@db.example:5432/x")
		    == 0);
		snprintf(line, sizeof(line), "password %s.", c[i].password);
		sync_redact(line);
		CHECK_STR(line, "password ***.");
		sync_config_free(cfg);
		sync_secrets_clear();
	}
}

/* Loads text with the options o (config_path set here); every error too. */
static enum sync_rc
load_with(const char *text, struct sync_opts *o, struct sync_config **cfg,
    char ***errors, struct sync_err *e)
{
	FILE *f = fopen(path, "w");

	fputs(text, f);
	fclose(f);
	chmod(path, 0600);
	o->config_path = path;
	sync_err_clear(e);
	*cfg = NULL;
	return sync_config_load_all(o, cfg, errors, e);
}

/* Whether errors holds a line "path:line: ..." containing what. */
static int
has_error(char **errors, int line, const char *what)
{
	char want[300];
	size_t i;

	snprintf(want, sizeof(want), "%s:%d: ", path, line);
	for (i = 0; errors != NULL && errors[i] != NULL; i++)
		if (strncmp(errors[i], want, strlen(want)) == 0 &&
		    strstr(errors[i], what) != NULL)
			return 1;
	fprintf(stderr, "  no error %s...%s among:\n", want, what);
	for (i = 0; errors != NULL && errors[i] != NULL; i++)
		fprintf(stderr, "    %s\n", errors[i]);
	return 0;
}

static size_t
count(char **v)
{
	size_t n = 0;

	while (v != NULL && v[n] != NULL)
		n++;
	return n;
}

/* Every error of a file in one load, the first in err (issue 11). */
static void
test_all_errors(void)
{
	struct sync_opts o;
	struct sync_config *cfg;
	struct sync_err e;
	char **errors = NULL;

	unsetenv("MSGSYNC_NO_SUCH_VAR");
	memset(&o, 0, sizeof(o));
	CHECK(load_with("databse = { conninfo = \"x\"; };\n"		/* 1 */
	    "http = { timeout = \"30\"; retries = -1; };\n"		/* 2 */
	    "log = { level = \"loud\"; };\n"				/* 3 */
	    SRC								/* 4, 5 */
	    "  token_env = \"MSGSYNC_NO_SUCH_VAR\";\n"			/* 6 */
	    "  colour = \"blue\"; page_size = 0; },\n"			/* 7 */
	    "  { name = \"wa\"; type = \"seqapi\"; },\n"		/* 8 */
	    "  { name = \"fb\"; type = \"facebook\";\n"			/* 9 */
	    "    token_file = \"/nonexistent/fb.token\"; } );\n",	/* 10 */
	    &o, &cfg, &errors, &e) == SYNC_ECONFIG);
	CHECK(cfg == NULL);
	CHECK(count(errors) == 13);
	if (count(errors) != 13)
		has_error(errors, 0, "(list)");
	CHECK(errors != NULL && errors[0] != NULL && strcmp(errors[0], e.msg) == 0);
	CHECK(has_error(errors, 1, "unknown key 'databse' in the top level "
	    "(did you mean 'database'?)"));
	CHECK(has_error(errors, 2, "'timeout' must be an integer"));
	CHECK(has_error(errors, 2, "'retries' must be between 0 and 100"));
	CHECK(has_error(errors, 3, "'level' must be one of"));
	CHECK(has_error(errors, 6, "'MSGSYNC_NO_SUCH_VAR' (token_env) is not set"));
	CHECK(has_error(errors, 7, "unknown key 'colour' in source 'wa' (type seqapi)"));
	CHECK(has_error(errors, 7, "'page_size' must be between 1"));
	CHECK(has_error(errors, 8, "duplicate source name 'wa' (first at line 4)"));
	CHECK(has_error(errors, 8, "source 'wa' has no 'url'"));
	CHECK(has_error(errors, 8, "source 'wa' has no 'integration_id'"));
	CHECK(has_error(errors, 8, "source 'wa' needs exactly one of 'token'"));
	CHECK(has_error(errors, 9, "source 'fb' has no 'page_id'"));
	CHECK(has_error(errors, 10, "cannot read token_file '/nonexistent/fb.token'"));
	sync_strv_free(errors);

	/* Without the list: the first error only, as before. */
	CHECK(load_with("databse = { };\nhttp = { retries = -1; };\n", &o, &cfg,
	    &errors, &e) == SYNC_ECONFIG);
	CHECK(count(errors) == 2);
	sync_strv_free(errors);
	bad("databse = { };\nhttp = { retries = -1; };\n", 0600, 1,
	    "unknown key 'databse'");

	/* A good file: no list. */
	errors = (char **)&o;
	CHECK(load_with(SRC "  token = \"t0ken-123\"; } );\n", &o, &cfg, &errors,
	    &e) == SYNC_OK);
	CHECK(errors == NULL);
	sync_config_free(cfg);
}

/* "Did you mean" among the keys valid at that place. */
static void
test_did_you_mean(void)
{
	bad(SRC "  token = \"t0ken-123\";\n  tokn_file = \"/x\"; } );\n", 0600, 4,
	    "unknown key 'tokn_file' in source 'wa' (did you mean 'token_file'?)");
	bad(SRC "  token = \"t0ken-123\";\n  integration = \"x\"; } );\n", 0600, 4,
	    "(did you mean 'integration_id'?)");
	bad(SRC "  token = \"t0ken-123\";\n  enabeld = false; } );\n", 0600, 4,
	    "(did you mean 'enabled'?)");
	bad("sources = ( { name = \"sms\"; type = \"smseagle\";\n"
	    "  url = \"http://127.0.0.1\"; token = \"t0ken-123\";\n"
	    "  cold_start_day = 3; } );\n", 0600, 3,
	    "(did you mean 'cold_start_days'?)");
	bad("sources = ( { name = \"tg\"; type = \"telegram\"; tdlib_dir = \"/x\";\n"
	    "  api_id = 1; api_hash_fil = \"/x\"; } );\n", 0600, 2,
	    "(did you mean 'api_hash_file'?)");
	bad(SRC "  token = \"t0ken-123\";\n  Enabled = false; } );\n", 0600, 4,
	    "(did you mean 'enabled'?)");
	bad("http = { conect_timeout = 3; };\n", 0600, 1,
	    "unknown key 'conect_timeout' in 'http' (did you mean 'connect_timeout'?)");
	bad("sync = { max_runtim = 3; };\n", 0600, 1, "(did you mean 'max_runtime'?)");
	bad("log = { fromat = \"json\"; };\n", 0600, 1, "(did you mean 'format'?)");
	bad("sourses = ( );\n", 0600, 1, "(did you mean 'sources'?)");
	bad("sources = ( { name = \"a\"; type = \"smseagel\"; } );\n", 0600, 1,
	    "unknown type 'smseagel' (did you mean 'smseagle'?)");
	bad(SRC "  token = \"t0ken-123\";\n  streams = [ \"mesages\" ]; } );\n", 0600, 4,
	    "cannot contain \"mesages\" (did you mean 'messages'?)");
	/* Nothing close: no guess. */
	bad(SRC "  token = \"t0ken-123\";\n  colour = \"blue\"; } );\n", 0600, 4,
	    "unknown key 'colour' in source 'wa' (type seqapi)");
	bad("zzz = 1;\n", 0600, 1, "unknown key 'zzz' in the top level");
}

/*
 * A disabled source's credentials are neither read nor required; its keys
 * are still checked.  Selected with --source, it may run: they are.
 */
static void
test_disabled(void)
{
	static const char text[] =
	    SRC "  token = \"t0ken-123\"; },\n"
	    "  { name = \"off\"; type = \"seqapi\"; url = \"http://127.0.0.1:9\";\n"
	    "    integration_id = \"i\"; token_file = \"/nonexistent/t\";\n"
	    "    enabled = false; },\n"
	    "  { name = \"env\"; type = \"unipile\"; url = \"http://127.0.0.1:9\";\n"
	    "    account_id = \"a\"; token_env = \"MSGSYNC_NO_SUCH_VAR\";\n"
	    "    enabled = false; },\n"
	    "  { name = \"none\"; type = \"smseagle\"; url = \"http://127.0.0.1:9\";\n"
	    "    enabled = false; },\n"
	    "  { name = \"fb\"; type = \"facebook\"; page_id = \"1\";\n"
	    "    token = \"t0ken-123\"; app_secret_file = \"/nonexistent/s\";\n"
	    "    enabled = false; },\n"
	    "  { name = \"tg\"; type = \"telegram\"; tdlib_dir = \"/x\"; api_id = 1;\n"
	    "    enabled = false; },\n"
	    "  { name = \"tg2\"; type = \"telegram\"; tdlib_dir = \"/x\"; api_id = 1;\n"
	    "    api_hash_file = \"/nonexistent/h\"; enabled = false; } );\n";
	struct sync_opts o;
	struct sync_config *cfg;
	struct sync_err e;
	char **errors = NULL;
	size_t i;

	unsetenv("MSGSYNC_NO_SUCH_VAR");
	memset(&o, 0, sizeof(o));
	CHECK(load_with(text, &o, &cfg, &errors, &e) == SYNC_OK);
	if (cfg == NULL)
		fprintf(stderr, "  %s\n", e.msg);
	for (i = 1; cfg != NULL && i < cfg->nsources; i++) {
		CHECK(cfg->sources[i].enabled == 0);
		CHECK(cfg->sources[i].token == NULL);
		CHECK(cfg->sources[i].secrets_optional == 1);
	}
	if (cfg != NULL) {
		CHECK_STR(cfg->sources[0].token, "t0ken-123");
		CHECK(cfg->sources[0].secrets_optional == 0);
	}
	sync_config_free(cfg);
	sync_strv_free(errors);

	/* Selected: its credentials are read, and the missing ones are errors. */
	o.sources[0] = "off";
	o.sources[1] = "none";
	o.sources[2] = "tg";
	o.nsources = 3;
	CHECK(load_with(text, &o, &cfg, &errors, &e) == SYNC_ECONFIG);
	CHECK(count(errors) == 3);
	CHECK(has_error(errors, 5, "cannot read token_file '/nonexistent/t'"));
	CHECK(has_error(errors, 10, "source 'none' needs exactly one of 'token'"));
	CHECK(has_error(errors, 15, "source 'tg' needs exactly one of "
	    "'api_hash_file', 'api_hash_env'"));
	sync_strv_free(errors);

	/* Unknown keys and wrong types of a disabled source are errors. */
	bad("sources = ( { name = \"off\"; type = \"seqapi\"; enabled = false;\n"
	    "  url = \"http://127.0.0.1:9\"; integration_id = \"i\";\n"
	    "  tokn_file = \"/x\"; } );\n", 0600, 3,
	    "unknown key 'tokn_file' in source 'off' (did you mean 'token_file'?)");
	bad("sources = ( { name = \"off\"; type = \"seqapi\"; enabled = false;\n"
	    "  url = \"http://127.0.0.1:9\"; integration_id = \"i\";\n"
	    "  token_file = 7; } );\n", 0600, 3, "'token_file' must be a string");
	bad("sources = ( { name = \"off\"; type = \"telegram\"; enabled = false;\n"
	    "  tdlib_dir = \"/x\"; api_id = 1; api_hash_file = [ \"x\" ]; } );\n",
	    0600, 2, "'api_hash_file' must be a string");
	bad("sources = ( { name = \"off\"; type = \"seqapi\"; enabled = false;\n"
	    "  url = \"http://127.0.0.1:9\";\n"
	    "  token_file = \"/x\"; } );\n", 0600, 1, "no 'integration_id'");
}

/*
 * sync-status reads no upstream secret: no token, token file, variable or
 * secret file, and no secret file's mode is checked (a monitoring user
 * holds none); the rest of the file is checked as for a pass.
 */
static void
test_status_reads_no_secret(void)
{
	char text[2048];
	const char *f;
	struct sync_opts o;
	struct sync_config *cfg;
	struct sync_err e;
	char **errors = NULL;

	unsetenv("MSGSYNC_NO_SUCH_VAR");
	f = put("public", "public-token-123\n", 0644);
	snprintf(text, sizeof(text),
	    SRC "  token_file = \"/nonexistent/wa.token\"; },\n"
	    "  { name = \"pub\"; type = \"seqapi\"; url = \"http://127.0.0.1:9\";\n"
	    "    integration_id = \"i\"; token_file = \"%s\"; },\n"
	    "  { name = \"env\"; type = \"unipile\"; url = \"http://127.0.0.1:9\";\n"
	    "    account_id = \"a\"; token_env = \"MSGSYNC_NO_SUCH_VAR\"; },\n"
	    "  { name = \"fb\"; type = \"facebook\"; page_id = \"1\";\n"
	    "    token_env = \"MSGSYNC_NO_SUCH_VAR\";\n"
	    "    app_secret_file = \"/nonexistent/s\"; },\n"
	    "  { name = \"tg\"; type = \"telegram\"; tdlib_dir = \"/x\"; api_id = 1;\n"
	    "    api_hash_file = \"/nonexistent/h\"; } );\n", f);
	memset(&o, 0, sizeof(o));
	o.cmd = SYNC_CMD_STATUS;
	CHECK(load_with(text, &o, &cfg, &errors, &e) == SYNC_OK);
	if (cfg == NULL)
		fprintf(stderr, "  %s\n", e.msg);
	else {
		size_t i;

		CHECK(cfg->nsources == 5);
		for (i = 0; i < cfg->nsources; i++)
			CHECK(cfg->sources[i].token == NULL);
		CHECK_STR(sync_cfg_str(&cfg->sources[4], "api_hash_file"), "");
	}
	sync_config_free(cfg);
	sync_strv_free(errors);

	/* A pass reads them all, and says so. */
	o.cmd = SYNC_CMD_INCR;
	CHECK(load_with(text, &o, &cfg, &errors, &e) == SYNC_ECONFIG);
	CHECK(count(errors) == 6);
	sync_strv_free(errors);

	/* Unknown keys, wrong types, missing keys: errors for sync-status too. */
	o.cmd = SYNC_CMD_STATUS;
	CHECK(load_with(SRC "  token_file = \"/nonexistent/wa.token\";\n"
	    "  tokn = \"x\"; },\n"
	    "  { name = \"tg\"; type = \"telegram\"; tdlib_dir = \"/x\"; api_id = 1; } );\n",
	    &o, &cfg, &errors, &e) == SYNC_ECONFIG);
	CHECK(count(errors) >= 1);
	CHECK(has_error(errors, 4, "unknown key 'tokn' in source 'wa' (did you mean 'token'?)"));
	sync_strv_free(errors);
	unlink(f);
}

/* The log format the file asks for counts from the start (issue 11). */
static void
test_log_format_early(void)
{
	struct sync_opts o;
	struct sync_config *cfg;
	struct sync_err e;
	char **errors = NULL;

	memset(&o, 0, sizeof(o));
	unsetenv("MSGSYNC_LOG_FORMAT");
	CHECK(load_with("log = { format = \"json\"; };\n", &o, &cfg, &errors,
	    &e) == SYNC_OK);
	CHECK(cfg != NULL && cfg->log_json == 1);
	sync_config_free(cfg);
	/* The environment's format is the default; the file's wins. */
	setenv("MSGSYNC_LOG_FORMAT", "json", 1);
	CHECK(load_with("log = { level = \"info\"; };\n", &o, &cfg, &errors,
	    &e) == SYNC_OK);
	CHECK(cfg != NULL && cfg->log_json == 1);
	sync_config_free(cfg);
	CHECK(load_with("log = { format = \"text\"; };\n", &o, &cfg, &errors,
	    &e) == SYNC_OK);
	CHECK(cfg != NULL && cfg->log_json == 0);
	sync_config_free(cfg);
	unsetenv("MSGSYNC_LOG_FORMAT");
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
	test_modes();
	test_short();
	test_derived();
	test_conninfo_password();
	test_all_errors();
	test_did_you_mean();
	test_disabled();
	test_status_reads_no_secret();
	test_log_format_early();
	unlink(path);
	sync_secrets_clear();
	return t_done("test_config");
}
