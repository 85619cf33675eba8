/*
 * err.c -- errors, their exit codes, and the redaction of secrets.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define SYNC_MAX_SECRETS 128

static char	*secrets[SYNC_MAX_SECRETS];
static size_t	 nsecrets;

/*
 * Registers a copy of s.  Secrets shorter than four bytes are not masked
 * (they would mask ordinary words); such tokens are refused by config.c.
 */
void
sync_secret_add(const char *s)
{
	size_t i;

	if (s == NULL || strlen(s) < 4 || nsecrets == SYNC_MAX_SECRETS)
		return;
	for (i = 0; i < nsecrets; i++)
		if (strcmp(secrets[i], s) == 0)
			return;
	if ((secrets[nsecrets] = strdup(s)) != NULL)
		nsecrets++;
}

void
sync_secrets_clear(void)
{
	while (nsecrets > 0)
		free(secrets[--nsecrets]);
}

/* Replaces every registered secret in s by "***", in place. */
void
sync_redact(char *s)
{
	size_t i, n;
	char *p;

	if (s == NULL)
		return;
	for (i = 0; i < nsecrets; i++) {
		n = strlen(secrets[i]);
		while ((p = strstr(s, secrets[i])) != NULL) {
			memcpy(p, "***", 3);
			memmove(p + 3, p + n, strlen(p + n) + 1);
		}
	}
}

enum sync_rc
sync_err_set(struct sync_err *err, enum sync_rc rc, enum sync_errkind kind,
    const char *fmt, ...)
{
	va_list ap;

	if (err == NULL || err->rc != SYNC_OK)
		return rc;
	err->rc = rc;
	err->kind = kind;
	va_start(ap, fmt);
	vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
	va_end(ap);
	sync_redact(err->msg);
	return rc;
}

void
sync_err_clear(struct sync_err *err)
{
	err->rc = SYNC_OK;
	err->kind = SYNC_ERR_NONE;
	err->msg[0] = '\0';
}

const char *
sync_errkind_name(enum sync_errkind k)
{
	switch (k) {
	case SYNC_ERR_NONE:		return "none";
	case SYNC_ERR_CONFIG:		return "config";
	case SYNC_ERR_AUTH:		return "auth";
	case SYNC_ERR_NETWORK:		return "network";
	case SYNC_ERR_HTTP:		return "http";
	case SYNC_ERR_RATE_LIMIT:	return "rate_limit";
	case SYNC_ERR_PROTOCOL:		return "protocol";
	case SYNC_ERR_DATA:		return "data";
	case SYNC_ERR_DATABASE:		return "database";
	case SYNC_ERR_INTERRUPTED:	return "interrupted";
	}
	return "unknown";
}

int
sync_rc_exit_code(enum sync_rc rc)
{
	switch (rc) {
	case SYNC_OK:		return 0;
	case SYNC_EHELP:	return 0;
	case SYNC_EUSAGE:	return 64;
	case SYNC_EDATA:	return 65;
	case SYNC_EUNAVAIL:	return 69;
	case SYNC_ETEMP:	return 75;
	case SYNC_EPERM:	return 77;
	case SYNC_ECONFIG:	return 78;
	case SYNC_EINTR:	return 130;
	case SYNC_ENOMEM:	return 70;
	}
	return 1;
}
