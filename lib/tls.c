/*
 * tls.c -- extra trusted certificate authorities (ca_file) for libcurl's
 * OpenSSL.  A ca_file adds to the system's CAs, it never replaces them
 * (SPEC §4): its certificates are read once, when a source's HTTP client
 * is set up, and added to the X509 store of every SSL_CTX libcurl makes for
 * that client (http.c's CURLOPT_SSL_CTX_FUNCTION), after libcurl has loaded
 * the system's.  The config loader uses the same reader to refuse a file
 * that cannot be read or holds no certificate.  Only http.c and config.c
 * use this; nothing here knows libcurl.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>

#include "internal.h"

struct sync_tls_cas {
	STACK_OF(X509)	*certs;
};

void
sync_tls_cas_free(struct sync_tls_cas *c)
{
	if (c == NULL)
		return;
	sk_X509_pop_free(c->certs, X509_free);
	free(c);
}

struct sync_tls_cas *
sync_tls_cas_load(const char *path, char *why, size_t n)
{
	struct sync_tls_cas *c;
	X509 *x;
	FILE *f;
	unsigned long e;

	if ((f = fopen(path, "r")) == NULL) {
		snprintf(why, n, "%s", strerror(errno));
		return NULL;
	}
	if ((c = calloc(1, sizeof(*c))) == NULL ||
	    (c->certs = sk_X509_new_null()) == NULL) {
		free(c);
		fclose(f);
		snprintf(why, n, "out of memory");
		return NULL;
	}
	ERR_clear_error();
	while ((x = PEM_read_X509(f, NULL, NULL, NULL)) != NULL)
		if (sk_X509_push(c->certs, x) == 0) {
			X509_free(x);
			snprintf(why, n, "out of memory");
			goto fail;
		}
	/* The loop ends at the end of the file, or at a broken certificate. */
	e = ERR_peek_last_error();
	if (ferror(f)) {
		snprintf(why, n, "%s", strerror(errno != 0 ? errno : EIO));
		goto fail;
	}
	if (e != 0 && !(ERR_GET_LIB(e) == ERR_LIB_PEM &&
	    ERR_GET_REASON(e) == PEM_R_NO_START_LINE)) {
		snprintf(why, n, "certificate %d is not valid PEM (%s)",
		    sk_X509_num(c->certs) + 1, ERR_reason_error_string(e) != NULL ?
		    ERR_reason_error_string(e) : "unknown error");
		goto fail;
	}
	if (sk_X509_num(c->certs) == 0) {
		snprintf(why, n, "no PEM certificate in it");
		goto fail;
	}
	ERR_clear_error();
	fclose(f);
	return c;
fail:
	ERR_clear_error();
	fclose(f);
	sync_tls_cas_free(c);
	return NULL;
}

int
sync_tls_cas_add(const struct sync_tls_cas *c, void *ssl_ctx)
{
	X509_STORE *st;
	unsigned long e;
	int i, r = 0;

	if ((st = SSL_CTX_get_cert_store(ssl_ctx)) == NULL)
		return -1;
	for (i = 0; i < sk_X509_num(c->certs); i++) {
		if (X509_STORE_add_cert(st, sk_X509_value(c->certs, i)) == 1)
			continue;
		/* One that the system already trusts is no failure. */
		e = ERR_peek_last_error();
		if (!(ERR_GET_LIB(e) == ERR_LIB_X509 &&
		    ERR_GET_REASON(e) == X509_R_CERT_ALREADY_IN_HASH_TABLE))
			r = -1;
	}
	ERR_clear_error();
	return r;
}

int
sync_tls_is_ours(const char *ssl_version)
{
	char want[32];

	/*
	 * libcurl's SSL_CTX must be one of the OpenSSL this program calls: the
	 * same major version ("OpenSSL/3.0.19"; a build with several backends
	 * names the others too, and then OpenSSL is not certain to be the one
	 * in use).
	 */
	snprintf(want, sizeof(want), "OpenSSL/%d.", OPENSSL_VERSION_MAJOR);
	return ssl_version != NULL && strncmp(ssl_version, want,
	    strlen(want)) == 0 && strchr(ssl_version, ' ') == NULL;
}
