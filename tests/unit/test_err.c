/* test_err -- first error wins; secrets are masked (lib/err.c). */
#include <stdlib.h>
#include <unistd.h>

#include "internal.h"
#include "t.h"

/* A secret that straddles the cut of a message is masked whole. */
static void
test_straddle(void)
{
	struct sync_err e;
	char pad[600];

	sync_secret_add("straddle-secret-0123456789");
	memset(pad, 'x', 500);
	pad[500] = '\0';
	sync_err_clear(&e);
	sync_err_set(&e, SYNC_EUNAVAIL, SYNC_ERR_HTTP, "%s straddle-secret-0123456789",
	    pad);
	CHECK(strstr(e.msg, "strad") == NULL);
	CHECK(strlen(e.msg) < sizeof(e.msg));
	/* Also past any fixed buffer of the formatter. */
	{
		char *big = malloc(5000);

		memset(big, 'y', 4090);
		big[4090] = '\0';
		sync_err_clear(&e);
		sync_err_set(&e, SYNC_EUNAVAIL, SYNC_ERR_HTTP, "%.*s", 500, big);
		CHECK(strlen(e.msg) == 500);
		free(big);
	}
	sync_secrets_clear();
}

/* The log line, cut at its own buffer, is masked before the cut. */
static void
test_log_straddle(void)
{
	static const size_t lens[] = { 4, 500, 2030, 4060 };
	char tmpl[] = "/tmp/msgsync-test-err-XXXXXX", got[16384], *pad;
	int fd = mkstemp(tmpl), saved = dup(2);
	ssize_t n;
	size_t i;

	if (fd == -1 || saved == -1)
		return;
	sync_secret_add("log-straddle-secret-42");
	sync_log_setup(NULL, NULL);
	pad = malloc(4100);
	for (i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		memset(pad, 'z', lens[i]);
		pad[lens[i]] = '\0';
		fflush(stderr);
		dup2(fd, 2);
		sync_log(LOG_ERR, "%s log-straddle-secret-42 end", pad);
		fflush(stderr);
		dup2(saved, 2);
	}
	free(pad);
	n = pread(fd, got, sizeof(got) - 1, 0);
	got[n > 0 ? n : 0] = '\0';
	CHECK(n > 0);
	CHECK(strstr(got, "log-str") == NULL);
	CHECK(strstr(got, "*** end") != NULL);
	close(fd);
	close(saved);
	unlink(tmpl);
	sync_secrets_clear();
}

/* More secrets than any fixed table: each one is masked. */
static void
test_many(void)
{
	char s[64], line[128];
	int i, masked = 0;

	for (i = 0; i < 1000; i++) {
		snprintf(s, sizeof(s), "many-secret-%04d", i);
		CHECK(sync_secret_add(s) == 0);
	}
	for (i = 0; i < 1000; i += 37) {
		snprintf(line, sizeof(line), "a many-secret-%04d b", i);
		sync_redact(line);
		masked += strcmp(line, "a *** b") == 0;
	}
	CHECK(masked == 28);
	snprintf(line, sizeof(line), "a many-secret-0999 b");
	sync_redact(line);
	CHECK_STR(line, "a *** b");
	sync_secrets_clear();
}

/* The forms an upstream may echo a secret in: JSON-escaped, URL-encoded. */
static void
test_forms(void)
{
	char line[256];

	sync_secret_add("ab\"cd\\ef/gh jk");
	snprintf(line, sizeof(line), "{\"error\":\"bad token ab\\\"cd\\\\ef/gh jk\"}");
	sync_redact(line);
	CHECK_STR(line, "{\"error\":\"bad token ***\"}");
	snprintf(line, sizeof(line), "{\"error\":\"bad token ab\\\"cd\\\\ef\\/gh jk\"}");
	sync_redact(line);
	CHECK_STR(line, "{\"error\":\"bad token ***\"}");
	snprintf(line, sizeof(line), "GET /x?t=ab%%22cd%%5Cef%%2Fgh%%20jk&y=1");
	sync_redact(line);
	CHECK_STR(line, "GET /x?t=***&y=1");
	snprintf(line, sizeof(line), "GET /x?t=ab%%22cd%%5cef%%2fgh+jk&y=1");
	sync_redact(line);
	CHECK_STR(line, "GET /x?t=***&y=1");
	snprintf(line, sizeof(line), "raw ab\"cd\\ef/gh jk.");
	sync_redact(line);
	CHECK_STR(line, "raw ***.");
	sync_secrets_clear();
}

/* An excerpt of an upstream text is redacted before it is cut. */
static void
test_excerpt(void)
{
	char out[24], tiny[4];

	sync_secret_add("excerpt-secret-42");
	sync_redact_excerpt(out, sizeof(out), "0123456789abcexcerpt-secret-42 x");
	CHECK_STR(out, "0123456789abc*** x");
	/* Across the cut: masked whole, nothing of its start left. */
	sync_redact_excerpt(out, sizeof(out), "0123456789abcdefghexcerpt-secret-42");
	CHECK_STR(out, "0123456789abcdefgh***");
	sync_redact_excerpt(out, sizeof(out), "0123456789abcdefghijexcerpt-secret-42");
	CHECK_STR(out, "0123456789abcdefghij***");
	sync_redact_excerpt(out, sizeof(out), "0123456789abcdefghijkexcerpt-secret-42");
	CHECK_STR(out, "0123456789abcdefghijk**");
	/* Control characters as spaces; a character is not cut in two. */
	sync_redact_excerpt(out, sizeof(out), "a\nb\tc");
	CHECK_STR(out, "a b c");
	sync_redact_excerpt(tiny, sizeof(tiny), "ab\xc5\xbc");
	CHECK_STR(tiny, "ab");
	sync_redact_excerpt(tiny, sizeof(tiny), NULL);
	CHECK_STR(tiny, "");
	sync_secrets_clear();
}

int
main(void)
{
	struct sync_err e;
	char line[128];

	test_excerpt();
	sync_err_clear(&e);
	CHECK(sync_err_set(&e, SYNC_EPERM, SYNC_ERR_AUTH, "first %d", 1) == SYNC_EPERM);
	CHECK(sync_err_set(&e, SYNC_ETEMP, SYNC_ERR_DATABASE, "second") == SYNC_ETEMP);
	CHECK(e.rc == SYNC_EPERM && e.kind == SYNC_ERR_AUTH);
	CHECK_STR(e.msg, "first 1");

	sync_secret_add("s3cr3t-token");
	sync_secret_add("ab");			/* too short to mask */
	sync_err_clear(&e);
	sync_err_set(&e, SYNC_EUNAVAIL, SYNC_ERR_HTTP,
	    "GET /x?access_token=s3cr3t-token&b=s3cr3t-token failed");
	CHECK_STR(e.msg, "GET /x?access_token=***&b=*** failed");
	snprintf(line, sizeof(line), "Bearer s3cr3t-token about ab");
	sync_redact(line);
	CHECK_STR(line, "Bearer *** about ab");
	sync_secrets_clear();

	test_straddle();
	test_log_straddle();
	test_many();
	test_forms();

	CHECK(sync_rc_exit_code(SYNC_OK) == 0);
	CHECK(sync_rc_exit_code(SYNC_EUSAGE) == 64);
	CHECK(sync_rc_exit_code(SYNC_EDATA) == 65);
	CHECK(sync_rc_exit_code(SYNC_EUNAVAIL) == 69);
	CHECK(sync_rc_exit_code(SYNC_ETEMP) == 75);
	CHECK(sync_rc_exit_code(SYNC_EPERM) == 77);
	CHECK(sync_rc_exit_code(SYNC_ECONFIG) == 78);
	CHECK_STR(sync_errkind_name(SYNC_ERR_RATE_LIMIT), "rate_limit");
	return t_done("test_err");
}
