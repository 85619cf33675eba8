/*
 * media.c -- media-sync (SPEC §9): the bytes of pending attachments into
 * the content-addressed store.
 */
#include "internal.h"

void
sync_media_pass_begin(const struct sync_opts *o)
{
	(void)o;
}

enum sync_rc
sync_media_source(struct sync_db *db, int id, struct sync_ctx *ctx,
    double deadline, struct sync_media_counts *mc, int *stopped,
    struct sync_err *err)
{
	(void)db; (void)id; (void)ctx; (void)deadline; (void)mc; (void)stopped;
	(void)err;
	return SYNC_OK;
}
