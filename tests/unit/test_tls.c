/* test_tls -- a ca_file's certificates (lib/tls.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>

#include "internal.h"
#include "t.h"

/* Two self-signed CAs (EC P-256, valid until 2126), made for this test. */
#define CA_ONE \
	"-----BEGIN CERTIFICATE-----\n" \
	"MIIBkzCCATmgAwIBAgIUJgp5zYoCYLYtDFwBvJShPmuC2IAwCgYIKoZIzj0EAwIw\n" \
	"HjEcMBoGA1UEAwwTbXNnc3luYyB1bml0IENBIG9uZTAgFw0yNjEyMDUwMTMwNTBa\n" \
	"GA8yMTI2MTExMTAxMzA1MFowHjEcMBoGA1UEAwwTbXNnc3luYyB1bml0IENBIG9u\n" \
	"ZTBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABAy6xwGD5IggX2EQx/Eos17er/Ut\n" \
	"WHFMB7Qc4lVbB6j68wIpfO4FnU8+kLaxZcQgpS/8rzJ4lUS5VlhUPrrJkUijUzBR\n" \
	"MB0GA1UdDgQWBBRAb44PD8TdKOcvtxTnVsaI0hvggDAfBgNVHSMEGDAWgBRAb44P\n" \
	"D8TdKOcvtxTnVsaI0hvggDAPBgNVHRMBAf8EBTADAQH/MAoGCCqGSM49BAMCA0gA\n" \
	"MEUCIDI94DU9y+0+IM8Bq0vmtGSyXh5J0B+wSBOvKVsvFjwQAiEA+K6TtZEhrn0r\n" \
	"enrEwPj9qTAK+wF3se//aJuRxNxe8kw=\n" \
	"-----END CERTIFICATE-----\n"
#define CA_TWO \
	"-----BEGIN CERTIFICATE-----\n" \
	"MIIBlDCCATmgAwIBAgIUPIB45EWa0Rh5Hcn61csHCVoFk38wCgYIKoZIzj0EAwIw\n" \
	"HjEcMBoGA1UEAwwTbXNnc3luYyB1bml0IENBIHR3bzAgFw0yNjEyMDUwMTMwNTBa\n" \
	"GA8yMTI2MTExMTAxMzA1MFowHjEcMBoGA1UEAwwTbXNnc3luYyB1bml0IENBIHR3\n" \
	"bzBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABGJkl3j6f8fJFKLuZ69kyOT3STSM\n" \
	"C1ei98/7WbYLC/ej/QdJTtCCh56NY073/Raf+5mY/dhxGHCgdtSJfHB+EISjUzBR\n" \
	"MB0GA1UdDgQWBBTpQPDpfR1R3VX4hvUhtTJ7NG+jGTAfBgNVHSMEGDAWgBTpQPDp\n" \
	"fR1R3VX4hvUhtTJ7NG+jGTAPBgNVHRMBAf8EBTADAQH/MAoGCCqGSM49BAMCA0kA\n" \
	"MEYCIQDcanUBPhyGOIF7/LeH0PpZoSSRg7WH4MqqKPdbHPK7cAIhAL9pHL70nenq\n" \
	"CSrK1egX9lHaA/2JCXoyrHyUeU66Cogw\n" \
	"-----END CERTIFICATE-----\n"

static char dir[] = "/tmp/test_tls.XXXXXX";

/* Writes text to a file of the test's directory; returns its path. */
static const char *
file(const char *name, const char *text)
{
	static char path[4][256];
	static int i;
	char *p = path[i++ % 4];
	FILE *f;

	snprintf(p, sizeof(path[0]), "%s/%s", dir, name);
	if ((f = fopen(p, "w")) == NULL)
		return p;
	fputs(text, f);
	fclose(f);
	return p;
}

/* How many certificates the store of ctx holds. */
static int
in_store(SSL_CTX *ctx)
{
	STACK_OF(X509_OBJECT) *objs =
	    X509_STORE_get0_objects(SSL_CTX_get_cert_store(ctx));
	int i, n = 0;

	for (i = 0; i < sk_X509_OBJECT_num(objs); i++)
		n += X509_OBJECT_get_type(sk_X509_OBJECT_value(objs, i)) ==
		    X509_LU_X509;
	return n;
}

static void
test_load(void)
{
	struct sync_tls_cas *c;
	char why[256];

	why[0] = '\0';
	CHECK(sync_tls_cas_load(file("none", ""), why, sizeof(why)) == NULL);
	CHECK_STR(why, "no PEM certificate in it");
	CHECK(sync_tls_cas_load("/nonexistent/ca.pem", why, sizeof(why)) == NULL);
	CHECK_STR(why, "No such file or directory");
	CHECK(sync_tls_cas_load(dir, why, sizeof(why)) == NULL);
	CHECK_STR(why, "Is a directory");
	CHECK(sync_tls_cas_load(file("text", "hello\n"), why, sizeof(why)) ==
	    NULL);
	CHECK_STR(why, "no PEM certificate in it");
	/* A good certificate, then a broken one: refused, not half read. */
	CHECK(sync_tls_cas_load(file("broken", CA_ONE
	    "-----BEGIN CERTIFICATE-----\nMIIB!!!\n-----END CERTIFICATE-----\n"),
	    why, sizeof(why)) == NULL);
	CHECK(strncmp(why, "certificate 2 is not valid PEM", 30) == 0);
	/* Text and other blocks around the certificates are skipped. */
	c = sync_tls_cas_load(file("ok", "Our CAs\n" CA_ONE "\n"
	    "-----BEGIN PUBLIC KEY-----\nMFkw\n-----END PUBLIC KEY-----\n"
	    CA_TWO "trailer\n"), why, sizeof(why));
	CHECK(c != NULL);
	sync_tls_cas_free(c);
	sync_tls_cas_free(NULL);
}

static void
test_add(void)
{
	struct sync_tls_cas *one, *both;
	SSL_CTX *ctx;
	char why[256];
	int n;

	one = sync_tls_cas_load(file("one", CA_ONE), why, sizeof(why));
	both = sync_tls_cas_load(file("both", CA_TWO CA_ONE), why, sizeof(why));
	CHECK(one != NULL && both != NULL);
	if ((ctx = SSL_CTX_new(TLS_client_method())) == NULL || one == NULL ||
	    both == NULL) {
		CHECK(ctx != NULL);
		goto out;
	}
	/* Beside what the store holds (here a stand-in for the system's). */
	CHECK(sync_tls_cas_add(one, ctx) == 0);
	n = in_store(ctx);
	CHECK(n == 1);
	/* One already there is no error, and is there once. */
	CHECK(sync_tls_cas_add(both, ctx) == 0);
	CHECK(in_store(ctx) == 2);
	CHECK(sync_tls_cas_add(both, ctx) == 0);
	CHECK(in_store(ctx) == 2);
out:
	SSL_CTX_free(ctx);
	sync_tls_cas_free(one);
	sync_tls_cas_free(both);
}

static void
test_is_ours(void)
{
	char v[64];

	snprintf(v, sizeof(v), "OpenSSL/%d.0.1", OPENSSL_VERSION_MAJOR);
	CHECK(sync_tls_is_ours(v));
	snprintf(v, sizeof(v), "OpenSSL/%d.1.1w", OPENSSL_VERSION_MAJOR + 1);
	CHECK(!sync_tls_is_ours(v));
	CHECK(!sync_tls_is_ours("GnuTLS/3.7.9"));
	CHECK(!sync_tls_is_ours("NSS/3.87"));
	CHECK(!sync_tls_is_ours("(OpenSSL/3.0.19) Schannel"));
	CHECK(!sync_tls_is_ours(NULL));
}

int
main(void)
{
	static const char *const names[] = { "none", "text", "broken", "ok",
	    "one", "both", NULL };
	char p[256];
	int i, rc;

	if (mkdtemp(dir) == NULL) {
		perror("mkdtemp");
		return 1;
	}
	test_load();
	test_add();
	test_is_ours();
	rc = t_done("test_tls");
	for (i = 0; names[i] != NULL; i++) {
		snprintf(p, sizeof(p), "%s/%s", dir, names[i]);
		unlink(p);
	}
	rmdir(dir);
	return rc;
}
