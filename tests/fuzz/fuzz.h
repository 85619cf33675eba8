/*
 * fuzz.h -- what the connectors' fuzz targets share: the input is a list
 * of canned answers (tests/unit/canned.h: answers separated by a line
 * "----", "HTTP <status>" and headers optional), served in order to the
 * connector's begin() and then to the walks the target names.  Any broken
 * rule of ct_check_page() aborts, and so a crash, a leak or undefined
 * behaviour is what libFuzzer reports.
 */
#ifndef FUZZ_H
#define FUZZ_H

#include <stdint.h>

#include "canned.h"

int	LLVMFuzzerInitialize(int *, char ***);
int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

/* One walk of a stream: its mode and stored cursor (NULL: none). */
struct fz_walk {
	const char	*stream;
	enum sync_mode	 mode;
	const char	*from;
};

#define FZ_PAGES	6	/* pages per walk */

static struct sync_config *fz_cfg;

/* Loads the target's configuration once; aborts if it is wrong. */
static CT_UNUSED void
fz_setup(const char *conf)
{
	struct sync_err err;

	if (ct_load(conf, &fz_cfg, &err) != SYNC_OK) {
		fprintf(stderr, "fuzz: bad configuration: %s\n", err.msg);
		abort();
	}
}

/*
 * Runs begin(), the walks, then (if not NULL) more(), and end() over the
 * input's answers.
 */
static CT_UNUSED int
fz_run_then(const struct fz_walk *w, void (*more)(struct ct *),
    const uint8_t *data, size_t size)
{
	struct ct t;
	struct sync_err err;

	if (ct_init(&t, fz_cfg, &err) != SYNC_OK ||
	    ct_answers(&t, (const char *)data, size) == -1) {
		fprintf(stderr, "fuzz: %s\n", err.msg);
		abort();
	}
	if (ct_begin(&t, &err) == SYNC_OK) {
		for (; w->stream != NULL; w++)
			ct_walk(&t, w->stream, w->mode, w->from, FZ_PAGES, NULL, &err);
		if (more != NULL)
			more(&t);
	} else if (err.msg[0] == '\0')
		ct_bad(&t, "begin() failed without a message", NULL);
	if (t.bad[0] != '\0') {
		fprintf(stderr, "fuzz: %s\n", t.bad);
		abort();
	}
	ct_close(&t);
	return 0;
}

static CT_UNUSED int
fz_run(const struct fz_walk *w, const uint8_t *data, size_t size)
{
	return fz_run_then(w, NULL, data, size);
}

#endif /* FUZZ_H */
