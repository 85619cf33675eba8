/*
 * link.c -- provider links to files (SPEC §9): credentials removed before
 * a link is stored or printed, and the expiry a link shows in its query.
 * Only bytes: no libcurl, no libpq.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "internal.h"

/* Query parameters that carry a credential, whatever their value. */
static const char *const cred_names[] = {
	"access_token", "access-token", "token", "auth", "auth_token",
	"api_key", "apikey", "api-key", "x-api-key", "key", "password",
	"session", "sessionid", "client_secret", "appsecret_proof", NULL
};

static int
cred_name(const char *p, size_t n)
{
	size_t i;

	for (i = 0; cred_names[i] != NULL; i++)
		if (strlen(cred_names[i]) == n && strncasecmp(cred_names[i], p, n) == 0)
			return 1;
	return 0;
}

/* Whether the value p[0..n) holds a registered secret (as sent or encoded). */
static int
holds_secret(const char *p, size_t n)
{
	char buf[512];

	if (n < SYNC_SECRET_MIN || n >= sizeof(buf))
		return 0;
	memcpy(buf, p, n);
	buf[n] = '\0';
	sync_redact(buf);
	return strncmp(buf, p, n) != 0 || strlen(buf) != n;
}

static int
hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = tolower(c);
	return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* A whole number from p[0..n) in base (10 or 16); -1 if it is not one. */
static long long
number(const char *p, size_t n, int base)
{
	long long v = 0;
	size_t i;

	if (n == 0 || n > 15)
		return -1;
	for (i = 0; i < n; i++) {
		int d = base == 16 ? hexval((unsigned char)p[i]) :
		    isdigit((unsigned char)p[i]) ? p[i] - '0' : -1;

		if (d < 0 || d >= base)
			return -1;
		v = v * base + d;
	}
	return v;
}

/*
 * The expiry a parameter shows: expires, exp, Expires (epoch seconds),
 * oe (Facebook's CDN: hex epoch seconds).  -1: none.
 */
static long long
expiry_of(const char *name, size_t nlen, const char *val, size_t vlen)
{
	long long t = -1;

	if ((nlen == 7 && strncasecmp(name, "expires", 7) == 0) ||
	    (nlen == 3 && strncasecmp(name, "exp", 3) == 0) ||
	    (nlen == 10 && strncasecmp(name, "expires_at", 10) == 0))
		t = number(val, vlen, 10);
	else if (nlen == 2 && strncmp(name, "oe", 2) == 0)
		t = number(val, vlen, 16);
	/* Milliseconds, as some APIs give them. */
	if (t > 100000000000LL)
		t /= 1000;
	return t > 0 ? t : -1;
}

/*
 * Cleans the link url[0..len) in place: every query parameter that carries
 * a credential is removed.  Returns the new length; *stripped is set when
 * something was removed, *expires (may be NULL) to the expiry the link
 * shows (-1 when none).
 */
static size_t
clean_span(char *url, size_t len, int *stripped, long long *expires)
{
	char *q, *end = url + len, *frag, *p, *w;
	int first = 1;

	if (expires != NULL)
		*expires = -1;
	if ((q = memchr(url, '?', len)) == NULL)
		return len;
	frag = memchr(q, '#', (size_t)(end - q));
	if (frag == NULL)
		frag = end;
	w = q + 1;
	for (p = q + 1; p < frag;) {
		char *amp = memchr(p, '&', (size_t)(frag - p)), *eq;
		size_t plen, nlen;

		if (amp == NULL)
			amp = frag;
		plen = (size_t)(amp - p);
		eq = memchr(p, '=', plen);
		nlen = eq != NULL ? (size_t)(eq - p) : plen;
		if (plen > 0 && (cred_name(p, nlen) || (eq != NULL &&
		    holds_secret(eq + 1, (size_t)(amp - eq - 1))))) {
			*stripped = 1;
		} else if (plen > 0) {
			long long t = eq != NULL ? expiry_of(p, nlen, eq + 1,
			    (size_t)(amp - eq - 1)) : -1;

			if (t > 0 && expires != NULL)
				*expires = t;
			if (!first)
				*w++ = '&';
			memmove(w, p, plen);
			w += plen;
			first = 0;
		}
		p = amp < frag ? amp + 1 : frag;
	}
	if (first)
		w = q;			/* nothing left of the query */
	memmove(w, frag, (size_t)(end - frag));
	return (size_t)(w - url) + (size_t)(end - frag);
}

char *
sync_link_clean(const char *url, int *stripped, long long *expires)
{
	char *s;
	size_t n;

	*stripped = 0;
	if (expires != NULL)
		*expires = -1;
	if (url == NULL || (s = strdup(url)) == NULL)
		return NULL;
	n = clean_span(s, strlen(s), stripped, expires);
	s[n] = '\0';
	return s;
}

/*
 * Every http(s) link inside the JSON text b->data[from..len) (as the
 * batch's COPY text holds it: inside a string, up to its closing quote)
 * loses its credentials.  Returns the number of links changed.
 */
long
sync_link_scrub(struct sync_buf *b, size_t from)
{
	size_t i = from;
	long n = 0;

	while (i + 7 < b->len) {
		char *p = memchr(b->data + i, 'h', b->len - i), *e;
		size_t len, nlen;
		int stripped = 0;

		if (p == NULL)
			break;
		i = (size_t)(p - b->data) + 1;
		if (strncmp(p, "http://", 7) != 0 && strncmp(p, "https://", 8) != 0)
			continue;
		/* The link ends at the string's quote, an escape or a tab. */
		for (e = p; e < b->data + b->len && *e != '"' && *e != '\\' &&
		    *e != '\t' && *e != '\n' && *e != ' '; e++)
			;
		len = (size_t)(e - p);
		nlen = clean_span(p, len, &stripped, NULL);
		if (nlen < len) {
			memmove(p + nlen, e, (size_t)(b->data + b->len - e));
			b->len -= len - nlen;
			b->data[b->len] = '\0';
			n++;
		}
		i = (size_t)(p - b->data) + nlen;
	}
	return n;
}

/* "scheme://host[:port]/path" of url, without query or fragment. */
void
sync_link_safe(const char *url, char *out, size_t size)
{
	size_t n;

	if (url == NULL) {
		snprintf(out, size, "(no link)");
		return;
	}
	n = strcspn(url, "?#");
	snprintf(out, size, "%.*s%s", (int)n, url, url[n] != '\0' ? "?..." : "");
	sync_redact(out);
}
