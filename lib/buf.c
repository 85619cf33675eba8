/*
 * buf.c -- growable buffers with a cap, and the JSON sanitiser.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static int
buf_grow(struct sync_buf *b, size_t need)
{
	size_t ncap;
	char *p;

	if (b->max > 0 && need > b->max)
		return -1;
	if (need + 1 <= b->cap)
		return 0;
	ncap = b->cap ? b->cap : 256;
	while (ncap < need + 1) {
		if (ncap > SIZE_MAX / 2)
			return -1;
		ncap *= 2;
	}
	if ((p = realloc(b->data, ncap)) == NULL)
		return -1;
	b->data = p;
	b->cap = ncap;
	return 0;
}

int
sync_buf_add(struct sync_buf *b, const void *p, size_t n)
{
	if (n > SIZE_MAX - b->len - 1 || buf_grow(b, b->len + n) == -1)
		return -1;
	if (n > 0)
		memcpy(b->data + b->len, p, n);
	b->len += n;
	b->data[b->len] = '\0';
	return 0;
}

int
sync_buf_adds(struct sync_buf *b, const char *s)
{
	return sync_buf_add(b, s, strlen(s));
}

int
sync_buf_addf(struct sync_buf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0 || buf_grow(b, b->len + (size_t)n) == -1)
		return -1;
	va_start(ap, fmt);
	vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
	return 0;
}

char *
sync_strdup(const char *s)
{
	return s != NULL ? strdup(s) : NULL;
}

void
sync_buf_reset(struct sync_buf *b)
{
	b->len = 0;
	if (b->data != NULL)
		b->data[0] = '\0';
}

void
sync_buf_release(struct sync_buf *b)
{
	free(b->data);
	b->data = NULL;
	b->len = b->cap = 0;
}

/* Length of a valid UTF-8 sequence at p (at most n bytes), 0 if invalid. */
static size_t
utf8_seq(const unsigned char *p, size_t n)
{
	unsigned char c = p[0];

	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf)
		return (n >= 2 && (p[1] & 0xc0) == 0x80) ? 2 : 0;
	if (c >= 0xe0 && c <= 0xef) {
		if (n < 3 || (p[1] & 0xc0) != 0x80 || (p[2] & 0xc0) != 0x80)
			return 0;
		if (c == 0xe0 && p[1] < 0xa0)
			return 0;	/* overlong */
		if (c == 0xed && p[1] > 0x9f)
			return 0;	/* surrogate */
		return 3;
	}
	if (c >= 0xf0 && c <= 0xf4) {
		if (n < 4 || (p[1] & 0xc0) != 0x80 || (p[2] & 0xc0) != 0x80 ||
		    (p[3] & 0xc0) != 0x80)
			return 0;
		if (c == 0xf0 && p[1] < 0x90)
			return 0;
		if (c == 0xf4 && p[1] > 0x8f)
			return 0;
		return 4;
	}
	return 0;
}

static int
hex4(const unsigned char *p, size_t n, unsigned *v)
{
	size_t i;

	*v = 0;
	if (n < 4)
		return -1;
	for (i = 0; i < 4; i++) {
		unsigned c = p[i], d;

		if (c >= '0' && c <= '9')
			d = c - '0';
		else if (c >= 'a' && c <= 'f')
			d = c - 'a' + 10;
		else if (c >= 'A' && c <= 'F')
			d = c - 'A' + 10;
		else
			return -1;
		*v = *v * 16 + d;
	}
	return 0;
}

/*
 * One pass over the text: copies into a new buffer only when something has
 * to change, so a clean page costs one scan.
 */
long
sync_json_sanitize(struct sync_buf *b)
{
	static const char repl_utf8[] = "\xef\xbf\xbd";
	static const char repl_esc[] = "\\ufffd";
	struct sync_buf out = SYNC_BUF_INIT(0);
	const unsigned char *p;
	size_t i, n, done = 0, k;
	int instr = 0;
	long count = 0;
	unsigned v, w;

	if (b->data == NULL)
		return 0;
	p = (const unsigned char *)b->data;
	n = b->len;
	for (i = 0; i < n;) {
		const char *rep = NULL;
		size_t skip = 0;

		/* ASCII other than NUL, quote and backslash needs no look. */
		while (i < n && (unsigned)p[i] - 1 < 0x7f && p[i] != '"' &&
		    p[i] != '\\')
			i++;
		if (i == n)
			break;
		if (p[i] >= 0x80) {
			k = utf8_seq(p + i, n - i);
			if (k == 0) {
				rep = repl_utf8;
				skip = 1;
			} else {
				i += k;
				continue;
			}
		} else if (p[i] == '\0') {
			rep = instr ? repl_esc : " ";
			skip = 1;
		} else if (instr && p[i] == '\\' && i + 1 < n) {
			if (p[i + 1] == 'u' && hex4(p + i + 2, n - i - 2, &v) == 0) {
				if (v == 0) {
					rep = repl_esc;
					skip = 6;
				} else if (v >= 0xd800 && v <= 0xdbff) {
					if (i + 11 < n + 0 && p[i + 6] == '\\' &&
					    p[i + 7] == 'u' &&
					    hex4(p + i + 8, n - i - 8, &w) == 0 &&
					    w >= 0xdc00 && w <= 0xdfff) {
						i += 12;
						continue;
					}
					rep = repl_esc;
					skip = 6;
				} else if (v >= 0xdc00 && v <= 0xdfff) {
					rep = repl_esc;
					skip = 6;
				} else {
					i += 6;
					continue;
				}
			} else {
				i += 2;
				continue;
			}
		} else {
			if (p[i] == '"')
				instr = !instr;
			i++;
			continue;
		}
		if (sync_buf_add(&out, p + done, i - done) == -1 ||
		    sync_buf_adds(&out, rep) == -1) {
			sync_buf_release(&out);
			return -1;
		}
		count++;
		i += skip;
		done = i;
	}
	if (count == 0)
		return 0;
	if (sync_buf_add(&out, p + done, n - done) == -1) {
		sync_buf_release(&out);
		return -1;
	}
	out.max = b->max;
	sync_buf_release(b);
	*b = out;
	return count;
}

uint64_t
sync_hash(uint64_t h, const void *p, size_t n)
{
	const unsigned char *c = p;
	size_t i;

	for (i = 0; i < n; i++) {
		h ^= c[i];
		h *= 1099511628211ULL;
	}
	return h;
}

void
sync_hash_hex(uint64_t h, char out[17])
{
	static const char hex[] = "0123456789abcdef";
	int k;

	for (k = 15; k >= 0; k--) {
		out[k] = hex[h & 0xf];
		h >>= 4;
	}
	out[16] = '\0';
}

/*
 * Copies s into out (size bytes, NUL-terminated) as valid UTF-8: an
 * invalid sequence becomes U+FFFD, and a copy cut short ends between two
 * characters, never inside one.
 */
void
sync_utf8_copy(char *out, size_t size, const char *s)
{
	static const char repl[] = "\xef\xbf\xbd";
	const unsigned char *p = (const unsigned char *)s;
	size_t n = strlen(s), i = 0, o = 0, k;

	if (size == 0)
		return;
	while (i < n) {
		k = p[i] < 0x80 ? 1 : utf8_seq(p + i, n - i);
		if (o + (k != 0 ? k : 3) > size - 1)
			break;
		if (k == 0) {
			memcpy(out + o, repl, 3);
			o += 3;
			i++;
		} else {
			memcpy(out + o, p + i, k);
			o += k;
			i += k;
		}
	}
	out[o] = '\0';
}
