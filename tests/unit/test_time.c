/* test_time -- RFC 3339 parsing and formatting (lib/time.c). */
#include "internal.h"
#include "t.h"

static void
test_parse(void)
{
	int64_t t;
	int us;

	CHECK(sync_time_parse("1970-01-01T00:00:00Z", &t, &us) == 0 && t == 0);
	CHECK(sync_time_parse("2026-11-22T10:00:00Z", &t, &us) == 0 && t == 1795341600);
	CHECK(sync_time_parse("2026-11-22T12:00:00+02:00", &t, NULL) == 0 &&
	    t == 1795341600);
	CHECK(sync_time_parse("2026-11-22T05:30:00-0430", &t, NULL) == 0 &&
	    t == 1795341600);
	CHECK(sync_time_parse("2026-11-22 10:00:00.25Z", &t, &us) == 0 &&
	    t == 1795341600 && us == 250000);
	CHECK(sync_time_parse("2024-02-29", &t, NULL) == 0);
	CHECK(sync_time_parse("2023-02-29T00:00:00Z", &t, NULL) == -1);
	CHECK(sync_time_parse("2026-13-01T00:00:00Z", &t, NULL) == -1);
	CHECK(sync_time_parse("2026-11-22T25:00:00Z", &t, NULL) == -1);
	CHECK(sync_time_parse("yesterday", &t, NULL) == -1);
	CHECK(sync_time_parse("2026-11-22T10:00:00Zjunk", &t, NULL) == -1);
	CHECK(sync_time_parse("", &t, NULL) == -1);
	CHECK(sync_time_parse(NULL, &t, NULL) == -1);
}

static void
test_normalize(void)
{
	char out[64];

	CHECK(sync_time_normalize("2026-11-22T12:00:00+02:00", out, sizeof(out)) == 0);
	CHECK_STR(out, "2026-11-22T10:00:00Z");
	CHECK(sync_time_normalize("2026-11-22T10:00:00.123456789Z", out,
	    sizeof(out)) == 0);
	CHECK_STR(out, "2026-11-22T10:00:00.123456Z");
	CHECK(sync_time_normalize("99999-01-01", out, sizeof(out)) == -1);
	sync_time_format(0, out, sizeof(out));
	CHECK_STR(out, "1970-01-01T00:00:00Z");
}

int
main(void)
{
	test_parse();
	test_normalize();
	return t_done("test_time");
}
