/*
 * time.c -- RFC 3339 timestamps, without the C library's time zone state.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "internal.h"

/* Days since 1970-01-01 of a proleptic Gregorian date (Hinnant's method). */
static int64_t
days_from_civil(int64_t y, unsigned m, unsigned d)
{
	int64_t era;
	unsigned yoe, doy, doe;

	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = (unsigned)(y - era * 400);
	doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + (int64_t)doe - 719468;
}

static int
digits(const char **s, int n, int *v)
{
	int i;

	*v = 0;
	for (i = 0; i < n; i++) {
		if ((*s)[i] < '0' || (*s)[i] > '9')
			return -1;
		*v = *v * 10 + ((*s)[i] - '0');
	}
	*s += n;
	return 0;
}

int
sync_time_parse(const char *s, int64_t *secs, int *usec)
{
	static const int mdays[] = { 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
	int y, mo, d, h = 0, mi = 0, se = 0, frac = 0, fd = 0, oh, om, sign;
	int64_t t;

	if (s == NULL)
		return -1;
	if (digits(&s, 4, &y) || *s++ != '-' || digits(&s, 2, &mo) ||
	    *s++ != '-' || digits(&s, 2, &d))
		return -1;
	if (mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] || y < 1)
		return -1;
	if (mo == 2 && d == 29 && !(y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)))
		return -1;
	if (*s == 'T' || *s == 't' || *s == ' ') {
		s++;
		if (digits(&s, 2, &h) || *s++ != ':' || digits(&s, 2, &mi))
			return -1;
		if (*s == ':') {
			s++;
			if (digits(&s, 2, &se))
				return -1;
		}
		if (*s == '.' || *s == ',') {
			s++;
			if (*s < '0' || *s > '9')
				return -1;
			for (; *s >= '0' && *s <= '9'; s++, fd++)
				if (fd < 6)
					frac = frac * 10 + (*s - '0');
			for (; fd < 6; fd++)
				frac *= 10;
		}
		if (h > 23 || mi > 59 || se > 60)
			return -1;
		if (se == 60)
			se = 59;	/* leap second: keep it in its minute */
	}
	t = days_from_civil(y, (unsigned)mo, (unsigned)d) * 86400 + h * 3600 +
	    mi * 60 + se;
	if (*s == 'Z' || *s == 'z') {
		s++;
	} else if (*s == '+' || *s == '-') {
		sign = *s++ == '+' ? 1 : -1;
		if (digits(&s, 2, &oh))
			return -1;
		if (*s == ':')
			s++;
		if (digits(&s, 2, &om) || oh > 23 || om > 59)
			return -1;
		t -= sign * (oh * 3600 + om * 60);
	} else if (*s != '\0') {
		return -1;
	}
	if (*s != '\0')
		return -1;
	*secs = t;
	if (usec != NULL)
		*usec = frac;
	return 0;
}

void
sync_time_format(time_t t, char *out, size_t n)
{
	struct tm tm;

	if (gmtime_r(&t, &tm) == NULL || strftime(out, n, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
		snprintf(out, n, "1970-01-01T00:00:00Z");
}

int
sync_time_normalize(const char *s, char *out, size_t n)
{
	int64_t t;
	int us;
	size_t len;

	if (sync_time_parse(s, &t, &us) == -1 || n < 40)
		return -1;
	/* Beyond what PostgreSQL's timestamptz holds: treat as invalid. */
	if (t < -210866803200LL || t > 9224318015999LL)
		return -1;
	sync_time_format((time_t)t, out, n);
	if (us != 0 && (len = strlen(out)) > 0) {
		out[len - 1] = '\0';
		snprintf(out + len - 1, n - len + 1, ".%06dZ", us);
	}
	return 0;
}

double
sync_now_mono(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}
