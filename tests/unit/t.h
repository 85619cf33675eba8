/*
 * t.h -- the smallest test harness: CHECK() counts and reports, main()
 * of each test calls its cases and returns t_done().
 */
#ifndef T_H
#define T_H

#include <stdio.h>
#include <string.h>

static int t_pass, t_fail;

#define CHECK(c) do {							\
	if (c)								\
		t_pass++;						\
	else {								\
		t_fail++;						\
		fprintf(stderr, "%s:%d: CHECK(%s) failed\n", __FILE__,	\
		    __LINE__, #c);					\
	}								\
} while (0)

#define CHECK_STR(a, b) do {						\
	const char *t_a = (a), *t_b = (b);				\
	if (t_a != NULL && t_b != NULL && strcmp(t_a, t_b) == 0)	\
		t_pass++;						\
	else {								\
		t_fail++;						\
		fprintf(stderr, "%s:%d: \"%s\" != \"%s\"\n", __FILE__,	\
		    __LINE__, t_a ? t_a : "(null)", t_b ? t_b : "(null)"); \
	}								\
} while (0)

static int
t_done(const char *name)
{
	printf("%s: %d passed, %d failed\n", name, t_pass, t_fail);
	return t_fail == 0 ? 0 : 1;
}

#endif
