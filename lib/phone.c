/*
 * phone.c -- phone numbers to E.164 (SPEC §4 identity, msgsync(7) PEOPLE).
 *
 * What is understood:
 *  - spaces and the punctuation people write between digits: space, tab,
 *    - . ( ) / and NO-BREAK SPACE (U+00A0, U+202F); a "(0)" written inside
 *    an international number ("+44 (0)20 ...") is the national trunk
 *    prefix, dropped;
 *  - "tel:" in front (RFC 3966, without parameters);
 *  - international numbers: a leading "+", "00", or the international
 *    prefix of the default country (011 for 1, 0011 for 61, 010 for 81,
 *    810 for 7);
 *  - WhatsApp ids "<digits>@s.whatsapp.net" and "<digits>@c.us" (also with
 *    a ":<device>" part): their digits are international;
 *  - national numbers, when a default calling code is configured: its
 *    trunk prefix (0; 1 for 1, 8 for 7, 06 for 36, none for 39: Italian
 *    numbers keep their 0) is dropped and the code put in front;
 *  - Brazil: a mobile number in its old 8-digit form (+55, a 2-digit area
 *    code, then 8 digits starting with 6-9; what WhatsApp's ids still
 *    carry) gets the 9 every Brazilian mobile number has had since 2016.
 *
 * The limits: a number is checked only for E.164's shape (8 to 15 digits,
 * a country code that does not start with 0), not against any country's
 * numbering plan, so some national forms are read wrongly (digits written
 * without "+" are national: "48600100200" with code 48 becomes
 * +4848600100200); short numbers (below 8 digits), extensions, letters
 * (vanity numbers, alphanumeric senders), group ids ("...@g.us") and
 * WhatsApp's LIDs ("...@lid") are not phones.
 */
#include <stdio.h>
#include <string.h>

#include "internal.h"

#define MAXDIG	32		/* digits gathered before they are judged */

/* The international prefix of a country other than "00", or NULL. */
static const char *
intl_prefix(long cc)
{
	switch (cc) {
	case 1:		return "011";
	case 7:		return "810";
	case 61:	return "0011";
	case 81:	return "010";
	default:	return NULL;
	}
}

/* The trunk prefix of a country's national numbers ("": none). */
static const char *
trunk_prefix(long cc)
{
	switch (cc) {
	case 1:		return "1";
	case 7:		return "8";
	case 36:	return "06";
	case 39:	return "";
	default:	return "0";
	}
}

static int
has_prefix(const char *s, const char *p)
{
	return strncmp(s, p, strlen(p)) == 0;
}

static int
is_sep(const unsigned char *p, size_t *len)
{
	*len = 1;
	if (*p == ' ' || *p == '\t' || *p == '-' || *p == '.' || *p == '(' ||
	    *p == ')' || *p == '/')
		return 1;
	if (p[0] == 0xc2 && p[1] == 0xa0) {		/* U+00A0 */
		*len = 2;
		return 1;
	}
	if (p[0] == 0xe2 && p[1] == 0x80 && p[2] == 0xaf) {	/* U+202F */
		*len = 3;
		return 1;
	}
	return 0;
}

/* A WhatsApp id's digits into d; 1 if s is one, -1 if it is another id. */
static int
jid_digits(const char *s, char *d, size_t n)
{
	const char *at = strchr(s, '@'), *q;
	size_t len;

	if (at == NULL)
		return 0;
	if (strcmp(at, "@s.whatsapp.net") != 0 && strcmp(at, "@c.us") != 0)
		return -1;			/* @g.us, @lid, @broadcast ... */
	len = strspn(s, "0123456789");
	if (len == 0 || len >= n)
		return -1;
	q = s + len;
	if (*q == ':' && q[1] >= '0' && q[1] <= '9')	/* a device part */
		q += 1 + strspn(q + 1, "0123456789");
	if (q != at)
		return -1;
	memcpy(d, s, len);
	d[len] = '\0';
	return 1;
}

int
sync_phone_e164(const char *in, long cc, char *out, size_t n)
{
	char d[MAXDIG + 1], ccs[8];
	const unsigned char *p;
	const char *nat, *ip, *tp;
	size_t len = 0, k, skip;
	int plus = 0, j;

	if (in == NULL || out == NULL || n < 17 || cc < 0 || cc > 999)
		return -1;
	p = (const unsigned char *)in;
	while (is_sep(p, &skip) && (*p == ' ' || *p == '\t' || skip > 1))
		p += skip;
	if (strncmp((const char *)p, "tel:", 4) == 0 ||
	    strncmp((const char *)p, "TEL:", 4) == 0)
		p += 4;
	if ((j = jid_digits((const char *)p, d, sizeof(d))) == -1)
		return -1;
	if (j == 1) {
		len = strlen(d);
		plus = 1;
	} else {
		if (*p == '+') {
			plus = 1;
			p++;
		}
		while (*p != '\0') {
			if (*p >= '0' && *p <= '9') {
				if (len >= MAXDIG)
					return -1;
				d[len++] = (char)*p++;
			} else if (plus && strncmp((const char *)p, "(0)", 3) == 0)
				p += 3;
			else if (is_sep(p, &skip))
				p += skip;
			else
				return -1;
		}
		d[len] = '\0';
	}
	if (len == 0)
		return -1;
	nat = d;
	if (!plus) {
		ip = intl_prefix(cc);
		if (ip != NULL && has_prefix(d, ip)) {
			nat += strlen(ip);
			plus = 1;
		} else if (has_prefix(d, "00")) {
			nat += 2;
			plus = 1;
		}
	}
	if (plus)
		ccs[0] = '\0';
	else {
		/* A national number: the default country's, if there is one. */
		if (cc == 0)
			return -1;
		tp = trunk_prefix(cc);
		if (*tp != '\0' && has_prefix(d, tp))
			nat += strlen(tp);
		snprintf(ccs, sizeof(ccs), "%ld", cc);
	}
	k = strlen(ccs) + strlen(nat);
	if (k < 8 || k > 15)
		return -1;
	snprintf(out, n, "+%s%s", ccs, nat);
	if (out[1] == '0')
		return -1;
	/* Brazil: +55 AA NNNNNNNN, a mobile in its old form, gets its 9. */
	if (strncmp(out, "+55", 3) == 0 && strlen(out) == 13 &&
	    out[3] != '0' && out[4] != '0' && out[5] >= '6' && out[5] <= '9') {
		memmove(out + 6, out + 5, strlen(out + 5) + 1);
		out[5] = '9';
	}
	return 0;
}
