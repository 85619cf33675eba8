/*
 * test_log -- log lines (lib/log.c): JSON lines are valid UTF-8 JSON, cut
 * between characters; the format is known before the configuration is;
 * and the JSON object of an error that stops a command (lib/output.c).
 */
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "internal.h"
#include "t.h"

static char path[] = "/tmp/msgsync-test-log-XXXXXX";

/* Whether s is valid UTF-8 (what sync_utf8_copy() leaves alone). */
static int
valid_utf8(const char *s)
{
	char *c = malloc(3 * strlen(s) + 1);
	int ok;

	sync_utf8_copy(c, 3 * strlen(s) + 1, s);
	ok = strcmp(c, s) == 0;
	free(c);
	return ok;
}

/*
 * Runs fn with stderr going to the test file; returns what was written
 * (static, NUL-terminated).
 */
static const char *
capture(void (*fn)(void))
{
	static char buf[65536];
	FILE *f;
	size_t n;
	int saved = dup(2), fd;

	fflush(stderr);
	fd = open(path, O_WRONLY | O_TRUNC);
	dup2(fd, 2);
	close(fd);
	fn();
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	f = fopen(path, "r");
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	return buf;
}

static char long_msg[4096];

static void
log_long(void)
{
	sync_log(LOG_ERR, "%s", long_msg);
}

static void
log_invalid(void)
{
	sync_log(LOG_ERR, "upstream said \"%s\"", "bad \xff\xfe byte, cut \xc3");
	sync_log(LOG_ERR, "surrogate \xed\xa0\x80 and overlong \xc0\xaf end");
}

static void
log_plain(void)
{
	sync_log(LOG_ERR, "before the configuration");
}

/* Parses each line as a JSON object; returns how many, checking each. */
static int
json_lines(const char *text, const char *want_prefix, size_t want_len)
{
	const char *p = text, *nl;
	char line[8192];
	int n = 0;

	while ((nl = strchr(p, '\n')) != NULL) {
		cJSON *j;
		const cJSON *m;

		snprintf(line, sizeof(line), "%.*s", (int)(nl - p), p);
		CHECK(valid_utf8(line));
		j = cJSON_Parse(line);
		CHECK(j != NULL);
		m = cJSON_GetObjectItemCaseSensitive(j, "message");
		CHECK(cJSON_IsString(m));
		if (cJSON_IsString(m)) {
			CHECK(valid_utf8(m->valuestring));
			if (want_prefix != NULL)
				CHECK(strncmp(m->valuestring, want_prefix,
				    strlen(want_prefix)) == 0);
			if (want_len != 0)
				CHECK(strlen(m->valuestring) == want_len);
		}
		CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j,
		    "level")), "error");
		cJSON_Delete(j);
		n++;
		p = nl + 1;
	}
	CHECK(*p == '\0');
	return n;
}

/* A message longer than a line is cut between two characters. */
static void
test_cut(void)
{
	struct sync_config cfg;
	struct sync_opts o;
	const char *out;
	size_t i, k;

	memset(&cfg, 0, sizeof(cfg));
	memset(&o, 0, sizeof(o));
	cfg.log_level = LOG_INFO;
	cfg.log_json = 1;
	o.prog = "test_log";
	sync_log_setup(&cfg, &o);
	/* The cut (2047 bytes) at each byte of a 2, 3 and 4 byte character. */
	for (k = 0; k < 4; k++) {
		static const char *const ch[] = { "\xc3\xa9", "\xe2\x82\xac",
		    "\xf0\x9f\x98\x80", "\xc3\xa9" };
		size_t n = 2047 - 1 - (k % 3), len = strlen(ch[k]);

		memset(long_msg, 'x', n);
		for (i = n; i + len < sizeof(long_msg) - 1; i += len)
			memcpy(long_msg + i, ch[k], len);
		long_msg[i] = '\0';
		out = capture(log_long);
		CHECK(json_lines(out, "xxxx", 0) == 1);
	}
	/* In text too. */
	cfg.log_json = 0;
	sync_log_setup(&cfg, &o);
	out = capture(log_long);
	CHECK(valid_utf8(out));
	CHECK(strncmp(out, "test_log: xxx", 13) == 0);
}

/* Invalid UTF-8 from upstream becomes U+FFFD in a JSON line. */
static void
test_invalid(void)
{
	struct sync_config cfg;
	struct sync_opts o;
	const char *out;

	memset(&cfg, 0, sizeof(cfg));
	memset(&o, 0, sizeof(o));
	cfg.log_level = LOG_INFO;
	cfg.log_json = 1;
	o.prog = "test_log";
	sync_log_setup(&cfg, &o);
	out = capture(log_invalid);
	CHECK(json_lines(out, NULL, 0) == 2);
	CHECK(strstr(out, "bad \xef\xbf\xbd\xef\xbf\xbd byte, cut \xef\xbf\xbd\\\"") !=
	    NULL);
}

/* Before a configuration: MSGSYNC_LOG_FORMAT says the format. */
static void
test_env(void)
{
	struct sync_opts o;
	const char *out;

	memset(&o, 0, sizeof(o));
	o.prog = "test_log";
	setenv("MSGSYNC_LOG_FORMAT", "json", 1);
	sync_log_setup(NULL, &o);
	out = capture(log_plain);
	CHECK(json_lines(out, "before the configuration", 0) == 1);
	setenv("MSGSYNC_LOG_FORMAT", "text", 1);
	sync_log_setup(NULL, &o);
	CHECK_STR(capture(log_plain), "test_log: before the configuration\n");
	unsetenv("MSGSYNC_LOG_FORMAT");
	sync_log_setup(NULL, &o);
	CHECK_STR(capture(log_plain), "test_log: before the configuration\n");
}

/* An error message cut to its buffer ends between characters too. */
static void
test_err_cut(void)
{
	struct sync_err e;
	char big[2000];
	size_t i;

	for (i = 0; i + 2 < sizeof(big); i += 2)
		memcpy(big + i, "\xc3\xa9", 2);
	big[i] = '\0';
	for (i = 0; i < 3; i++) {
		sync_err_clear(&e);
		sync_err_set(&e, SYNC_ECONFIG, SYNC_ERR_CONFIG, "%.*s%s", (int)i,
		    "abc", big);
		CHECK(valid_utf8(e.msg));
		CHECK(strlen(e.msg) >= sizeof(e.msg) - 2);
	}
}

/* The JSON of an error that stopped a command before any source ran. */
static void
test_error_format(void)
{
	struct sync_err e;
	char *errors[] = { "f.conf:1: one", "f.conf:2: two \xff", NULL };
	char *s;
	cJSON *j, *err, *arr;

	sync_err_clear(&e);
	sync_err_set(&e, SYNC_ECONFIG, SYNC_ERR_CONFIG, "f.conf:1: one");
	s = sync_error_format(SYNC_CMD_INCR, 1764892800, 12, &e, errors);
	CHECK(s != NULL && valid_utf8(s) && s[strlen(s) - 1] == '\n');
	j = cJSON_Parse(s);
	CHECK(j != NULL);
	CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(j, "command")), "incr-sync");
	CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(j, "status")), "failed");
	CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(j, "started_at")),
	    "2025-12-05T00:00:00Z");
	CHECK(cJSON_GetNumberValue(cJSON_GetObjectItem(j, "duration_ms")) == 12);
	err = cJSON_GetObjectItem(j, "error");
	CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(err, "kind")), "config");
	CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(err, "message")),
	    "f.conf:1: one");
	arr = cJSON_GetObjectItem(j, "errors");
	CHECK(cJSON_GetArraySize(arr) == 2);
	CHECK_STR(cJSON_GetStringValue(cJSON_GetArrayItem(arr, 1)),
	    "f.conf:2: two \xef\xbf\xbd");
	CHECK(cJSON_IsArray(cJSON_GetObjectItem(j, "sources")) &&
	    cJSON_GetArraySize(cJSON_GetObjectItem(j, "sources")) == 0);
	cJSON_Delete(j);
	free(s);

	/* One error (database, usage): errors holds it alone. */
	sync_err_clear(&e);
	sync_err_set(&e, SYNC_ETEMP, SYNC_ERR_DATABASE, "cannot connect");
	s = sync_error_format(SYNC_CMD_STATUS, 0, 0, &e, NULL);
	j = cJSON_Parse(s);
	CHECK(j != NULL);
	CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(j, "command")), "sync-status");
	CHECK(cJSON_GetObjectItem(j, "generated_at") != NULL);
	CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetObjectItem(j,
	    "error"), "kind")), "database");
	CHECK(cJSON_GetArraySize(cJSON_GetObjectItem(j, "errors")) == 1);
	cJSON_Delete(j);
	free(s);
}

int
main(void)
{
	int fd = mkstemp(path);

	if (fd == -1)
		return 2;
	close(fd);
	test_cut();
	test_invalid();
	test_env();
	test_err_cut();
	test_error_format();
	unlink(path);
	return t_done("test_log");
}
