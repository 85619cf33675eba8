/*
 * tgexport.h -- a streaming reader of Telegram Desktop's machine-readable
 * exports (result.json), and the mapping of what it reads to our rows.
 * Private to lib/ (telegram.c) and the unit tests.  Not installed.
 *
 * The file is read with fread() into a fixed buffer; a small scanner
 * follows the structure above the messages, and each object the caller
 * gets (a message, a contact, personal_information, a chat's header) is
 * collected as text of at most SYNC_TGX_MAX_OBJECT bytes and parsed on its
 * own.  Memory does not grow with the file, whatever its size.
 *
 * Both shapes of export are read: a single chat (the top level is the
 * chat), and a whole account (personal_information, contacts.list,
 * chats.list, left_chats.list; every other key, of any size, is skipped
 * unread).  A chat's header is its keys before "messages" (for a
 * single-chat export, the top level's keys that are not objects or
 * arrays), up to 1 MiB; its keys after "messages" are skipped.  A chat
 * without "messages" is a CHAT and a CHAT_END.  Objects are sanitised
 * before they are parsed (sync_json_sanitize(), and tdesktop's "\xHH"
 * escapes, which are not JSON, made \u00HH); the replacements are counted.
 */
#ifndef SYNC_TGEXPORT_H
#define SYNC_TGEXPORT_H

#include <stddef.h>
#include <stdio.h>

#include "connector.h"

struct cJSON;

/* The largest object (a message, a contact, ...) the reader takes. */
#define SYNC_TGX_MAX_OBJECT	(16 * 1024 * 1024)
/* The deepest nesting inside one object (cJSON allows 1000). */
#define SYNC_TGX_MAX_DEPTH	512

struct sync_tgx;			/* one open export */

enum sync_tgx_kind {
	SYNC_TGX_EOF,		/* the end of the file */
	SYNC_TGX_SELF,		/* personal_information (full export) */
	SYNC_TGX_CONTACT,	/* one entry of contacts.list */
	SYNC_TGX_CHAT,		/* a chat begins: its keys before "messages" */
	SYNC_TGX_MESSAGE,	/* one message of the current chat */
	SYNC_TGX_CHAT_END	/* the current chat's messages ended */
};

/*
 * One item.  Everything it points to is the reader's: json until the next
 * sync_tgx_next(), chat and chat_type until the call after the chat's
 * CHAT_END (so through all of the chat's items).
 */
struct sync_tgx_item {
	enum sync_tgx_kind kind;
	struct cJSON	*json;		/* the object: a message, a contact,
					   personal_information, a chat's
					   header (CHAT and CHAT_END) */
	long long	 chat_id;	/* TDLib chat id of the current chat
					   (CHAT, MESSAGE, CHAT_END), 0 if its
					   type is unknown */
	const char	*chat_type;	/* export type: personal_chat, ... */
	const struct cJSON *chat;	/* the current chat's header */
	long		 line;		/* the line the object starts on */
	long		 sanitized;	/* characters replaced in this object */
	struct sync_tgx	*reader;	/* what sync_tgx_add_*() may use */
};

/*
 * Opens path ("-": standard input) for reading.  NULL and err on failure
 * (SYNC_ECONFIG, kind config: the file cannot be opened, as for the
 * configuration file; SYNC_ENOMEM).  The caller frees the reader with
 * sync_tgx_free().
 */
struct sync_tgx *sync_tgx_open(const char *path, struct sync_err *);
/*
 * The same over a stream the caller opened (and closes, after
 * sync_tgx_free()); name is what errors call it.
 */
struct sync_tgx *sync_tgx_open_stream(FILE *, const char *name,
		    struct sync_err *);
/*
 * The next item, in file order; *item is filled in on SYNC_OK.  After
 * SYNC_TGX_EOF every call returns it again.  SYNC_EDATA (kind data) with
 * "FILE:LINE: why" when the file is not an export or is malformed,
 * truncated, or one object is larger than SYNC_TGX_MAX_OBJECT; SYNC_EDATA
 * "cannot read" on a read error; SYNC_ENOMEM.  After an error the reader
 * returns the same error again.
 */
enum sync_rc	sync_tgx_next(struct sync_tgx *, struct sync_tgx_item *,
		    struct sync_err *);
/* Characters replaced (invalid UTF-8, \u0000, ...) in all objects so far. */
long		sync_tgx_sanitized(const struct sync_tgx *);
void		sync_tgx_free(struct sync_tgx *);	/* NULL-safe */

/* TDLib chat id of an export chat (type, bare id); 0 if unknown type. */
long long	sync_tgx_chat_id(const char *type, long long id);
/*
 * The peer id in an export's from_id or actor_id: "user<N>" is N,
 * "channel<N>" -1000000000000 - N, "chat<N>" -N, and a bare number (older
 * exports) a user id.  0 if it is none of these (or NULL).
 */
long long	sync_tgx_peer_id(const struct cJSON *);

/*
 * Row mapping.  self: the account's user id (from SELF, or 0 when not
 * known).  Each returns 0, 1 when the object was skipped as unusable (no
 * id: counted by the caller), -1 on ENOMEM.  The rows copy what they need:
 * the item may go once they return.
 *
 * sync_tgx_add_message() adds the message to *messages and its sender (a
 * name and an id) to *contacts (if not NULL): once per batch for an
 * unchanged name, and never for a user whose SELF or CONTACT item was
 * added (its row would be replaced by one with a name only).  It sets
 * *tdlib_id (if not NULL) to the message's TDLib id (0 if skipped).  A
 * message of a chat of unknown type (chat_id 0) is skipped.
 */
int	sync_tgx_add_message(const struct sync_tgx_item *, long long self,
	    struct sync_batch *messages, struct sync_batch *contacts,
	    long long *tdlib_id);
int	sync_tgx_add_chat(const struct sync_tgx_item *,
	    struct sync_batch *convs);
int	sync_tgx_add_contact(const struct sync_tgx_item *,
	    struct sync_batch *contacts);

/*
 * The TDLib side (telegram.c): the file a message's content carries
 * (messagePhoto's largest size, messageDocument, ...) as *a, pointing into
 * content, and its TDLib file id (0 if none); 1 if there is one, else 0.
 */
int	sync_tg_content_file(const struct cJSON *content,
	    struct sync_attachment *a, long long *file_id);

#endif /* SYNC_TGEXPORT_H */
