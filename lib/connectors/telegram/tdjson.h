/*
 * tdjson.h -- TDLib's JSON interface, loaded at run time (tdjson.c).
 */
#ifndef SYNC_TDJSON_H
#define SYNC_TDJSON_H

#include "connector.h"


struct sync_td;

/* Called with each update (an object without @extra) a call receives. */
typedef void	(*sync_td_update_fn)(void *arg, const struct cJSON *update);

/*
 * Loads TDLib (path, or NULL: the usual names), quiets its log (verbosity
 * 0..2 from -v), checks its version (written to version) and creates a
 * client.  Errors are config errors naming source `name` and the setting.
 * The caller frees it with sync_td_free().
 */
struct sync_td *sync_td_open(const char *name, const char *path, int verbosity,
		    sync_td_update_fn, void *arg, char *version, size_t,
		    struct sync_err *);
/* The library as loaded. */
const char     *sync_td_path(const struct sync_td *);
/* td_execute(); the caller frees the answer (NULL: none or ENOMEM). */
struct cJSON   *sync_td_execute(struct sync_td *, const struct cJSON *);
/* Sends req (adding its @extra, written to *extra if not NULL). */
enum sync_rc	sync_td_send(struct sync_td *, struct cJSON *req, long *extra,
		    struct sync_err *);
/*
 * Sends req and waits up to timeout seconds for its answer (the caller
 * frees *answer; it may be an error object), passing updates on.
 */
enum sync_rc	sync_td_call(struct sync_td *, struct cJSON *req, double timeout,
		    struct cJSON **answer, struct sync_err *);
/* Waits up to timeout seconds for one object and passes an update on. */
enum sync_rc	sync_td_pump(struct sync_td *, double timeout, struct sync_err *);
/* Closes the client (waits up to timeout s for Closed) and frees it. */
void		sync_td_free(struct sync_td *, double timeout);

#endif /* SYNC_TDJSON_H */
