/* test_err -- first error wins; secrets are masked (lib/err.c). */
#include "internal.h"
#include "t.h"

int
main(void)
{
	struct sync_err e;
	char line[128];

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
