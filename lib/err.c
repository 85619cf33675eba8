/*
 * err.c -- errors, their exit codes, and the redaction of secrets.
 */
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/*
 * The registry of secrets: every registered secret in each form an
 * upstream or a library may spell it in, longest first (so that a longer
 * form is masked before a shorter one could break it up).  It grows as
 * needed; the mutex makes it safe to use from the pass's threads, though
 * every secret is registered before they start (config.c).
 */
static pthread_mutex_t secrets_mu = PTHREAD_MUTEX_INITIALIZER;
static char	**secrets;
static size_t	  nsecrets, secrets_cap;

/* Adds form s (owned by the registry on success) under the lock; -1 ENOMEM. */
static int
add_form(char *s)
{
	size_t i, n = strlen(s);
	char **v;

	for (i = 0; i < nsecrets; i++)
		if (strcmp(secrets[i], s) == 0) {
			free(s);
			return 0;
		}
	if (nsecrets == secrets_cap) {
		size_t cap = secrets_cap != 0 ? 2 * secrets_cap : 16;

		if ((v = realloc(secrets, cap * sizeof(*v))) == NULL) {
			free(s);
			return -1;
		}
		secrets = v;
		secrets_cap = cap;
	}
	for (i = nsecrets; i > 0 && strlen(secrets[i - 1]) < n; i--)
		secrets[i] = secrets[i - 1];
	secrets[i] = s;
	nsecrets++;
	return 0;
}

/*
 * s as a JSON string's content: '"' and '\' escaped, control characters
 * as \uXXXX or their short forms, '/' as "\/" when slash is set.  NULL on
 * ENOMEM.
 */
static char *
json_form(const char *s, int slash)
{
	struct sync_buf b = SYNC_BUF_INIT(0);
	const unsigned char *p;
	int r = 0;

	for (p = (const unsigned char *)s; *p != '\0' && r == 0; p++) {
		switch (*p) {
		case '"':	r = sync_buf_adds(&b, "\\\""); break;
		case '\\':	r = sync_buf_adds(&b, "\\\\"); break;
		case '\b':	r = sync_buf_adds(&b, "\\b"); break;
		case '\f':	r = sync_buf_adds(&b, "\\f"); break;
		case '\n':	r = sync_buf_adds(&b, "\\n"); break;
		case '\r':	r = sync_buf_adds(&b, "\\r"); break;
		case '\t':	r = sync_buf_adds(&b, "\\t"); break;
		case '/':
			r = sync_buf_adds(&b, slash ? "\\/" : "/");
			break;
		default:
			if (*p < 0x20)
				r = sync_buf_addf(&b, "\\u%04x", *p);
			else
				r = sync_buf_add(&b, p, 1);
		}
	}
	if (r == 0 && b.data == NULL)
		r = sync_buf_adds(&b, "");
	if (r != 0) {
		sync_buf_release(&b);
		return NULL;
	}
	return b.data;
}

/*
 * s URL-encoded: everything but ALPHA, DIGIT and "-._~" as %XX (hex in
 * upper or lower case), a space as "+" when plus is set.  NULL on ENOMEM.
 */
static char *
url_form(const char *s, int lower, int plus)
{
	struct sync_buf b = SYNC_BUF_INIT(0);
	const unsigned char *p;
	int r = 0;

	for (p = (const unsigned char *)s; *p != '\0' && r == 0; p++) {
		if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		    (*p >= '0' && *p <= '9') || strchr("-._~", *p) != NULL)
			r = sync_buf_add(&b, p, 1);
		else if (*p == ' ' && plus)
			r = sync_buf_adds(&b, "+");
		else
			r = sync_buf_addf(&b, lower ? "%%%02x" : "%%%02X", *p);
	}
	if (r == 0 && b.data == NULL)
		r = sync_buf_adds(&b, "");
	if (r != 0) {
		sync_buf_release(&b);
		return NULL;
	}
	return b.data;
}

/*
 * Registers s: a copy of it and of its JSON-escaped and URL-encoded forms
 * (an upstream may echo it so in an error body, a URL carries it so).
 * Secrets shorter than SYNC_SECRET_MIN bytes are not masked (they would
 * mask ordinary words); config.c refuses such tokens.  Returns 0, or -1
 * on ENOMEM (then some of its forms may be missing).
 */
int
sync_secret_add(const char *s)
{
	char *forms[7];
	size_t i, n = 0;
	int rc = 0;

	if (s == NULL || strlen(s) < SYNC_SECRET_MIN)
		return 0;
	forms[n++] = strdup(s);
	forms[n++] = json_form(s, 0);
	forms[n++] = json_form(s, 1);
	forms[n++] = url_form(s, 0, 0);
	forms[n++] = url_form(s, 1, 0);
	forms[n++] = url_form(s, 0, 1);
	forms[n++] = url_form(s, 1, 1);
	pthread_mutex_lock(&secrets_mu);
	for (i = 0; i < n; i++)
		if (forms[i] == NULL || add_form(forms[i]) == -1)
			rc = -1;
	pthread_mutex_unlock(&secrets_mu);
	return rc;
}

void
sync_secrets_clear(void)
{
	pthread_mutex_lock(&secrets_mu);
	while (nsecrets > 0) {
		nsecrets--;
		explicit_bzero(secrets[nsecrets], strlen(secrets[nsecrets]));
		free(secrets[nsecrets]);
	}
	free(secrets);
	secrets = NULL;
	secrets_cap = 0;
	pthread_mutex_unlock(&secrets_mu);
}

/* Replaces every registered secret in s by "***", in place (locked). */
static void
redact_locked(char *s)
{
	size_t i, n;
	char *p;

	for (i = 0; i < nsecrets; i++) {
		n = strlen(secrets[i]);
		while ((p = strstr(s, secrets[i])) != NULL) {
			memcpy(p, "***", 3);
			memmove(p + 3, p + n, strlen(p + n) + 1);
		}
	}
}

void
sync_redact(char *s)
{
	if (s == NULL)
		return;
	pthread_mutex_lock(&secrets_mu);
	redact_locked(s);
	pthread_mutex_unlock(&secrets_mu);
}

/*
 * Cuts s (already redacted) before any tail that begins a secret: what is
 * left when a text was cut before it could be redacted whole.
 */
static void
cut_partial_locked(char *s)
{
	size_t i, k, len = strlen(s), n;

	for (i = 0; i < nsecrets; i++) {
		n = strlen(secrets[i]);
		for (k = n - 1 < len ? n - 1 : len; k > 0; k--)
			if (memcmp(s + len - k, secrets[i], k) == 0) {
				len -= k;
				s[len] = '\0';
				break;
			}
	}
}

void
sync_redact_excerpt(char *out, size_t size, const char *s)
{
	size_t i, n = s != NULL ? strlen(s) : 0;
	char *c;

	if (size == 0)
		return;
	/* Out of memory: what fits, with a secret's cut-off start dropped. */
	if ((c = malloc(n + 1)) == NULL) {
		n = n < size - 1 ? n : size - 1;
		c = out;
	}
	for (i = 0; i < n; i++)
		c[i] = (unsigned char)s[i] < 0x20 || s[i] == 0x7f ? ' ' : s[i];
	c[n] = '\0';
	pthread_mutex_lock(&secrets_mu);
	redact_locked(c);
	if (c == out)
		cut_partial_locked(c);
	pthread_mutex_unlock(&secrets_mu);
	if (c == out)
		return;
	n = strlen(c);
	if (n > size - 1) {
		n = size - 1;
		while (n > 0 && ((unsigned char)c[n] & 0xc0) == 0x80)
			n--;
	}
	memcpy(out, c, n);
	out[n] = '\0';
	explicit_bzero(c, strlen(c));
	free(c);
}

void
sync_vformat_redacted(char *out, size_t size, const char *fmt, va_list ap)
{
	char local[1024], *s = local, *big = NULL;
	va_list aq;
	int len;

	if (size == 0)
		return;
	va_copy(aq, ap);
	len = vsnprintf(local, sizeof(local), fmt, aq);
	va_end(aq);
	if (len < 0)
		local[0] = '\0';
	else if ((size_t)len >= sizeof(local) &&
	    (big = malloc((size_t)len + 1)) != NULL) {
		vsnprintf(big, (size_t)len + 1, fmt, ap);
		s = big;
	}
	pthread_mutex_lock(&secrets_mu);
	redact_locked(s);
	if (len > 0 && (size_t)len >= sizeof(local) && big == NULL)
		cut_partial_locked(s);		/* out of memory: cut short */
	pthread_mutex_unlock(&secrets_mu);
	snprintf(out, size, "%s", s);
	/* Cut short: between two UTF-8 characters, never inside one. */
	if (strlen(s) >= size) {
		size_t n = size - 1;

		while (n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80)
			n--;
		out[n] = '\0';
	}
	if (big != NULL) {
		explicit_bzero(big, (size_t)len);
		free(big);
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
	sync_vformat_redacted(err->msg, sizeof(err->msg), fmt, ap);
	va_end(ap);
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

const char *
sync_signal_name(int signo)
{
	switch (signo) {
	case SIGINT:	return "SIGINT";
	case SIGTERM:	return "SIGTERM";
	case SIGHUP:	return "SIGHUP";
	case SIGQUIT:	return "SIGQUIT";
	}
	return "a signal";
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
