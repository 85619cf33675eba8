/* test_phone -- phone numbers to E.164 (lib/phone.c), real-world forms. */
#include <stdlib.h>

#include "internal.h"
#include "t.h"

static const struct {
	const char	*in;
	long		 cc;		/* identity.default_calling_code */
	const char	*want;		/* NULL: not a phone number */
} cases[] = {
	/* Poland: no trunk prefix. */
	{ "+48 600-100-200", 0, "+48600100200" },
	{ "0048 600 100 200", 0, "+48600100200" },
	{ "600 100 200", 48, "+48600100200" },
	{ "600 100 200", 0, NULL },		/* national, no code: unknown */
	{ "(+48) 600 100 200", 0, NULL },	/* '+' after a bracket */
	/* Germany: trunk 0. */
	{ "0151 1234 5678", 49, "+4915112345678" },
	{ "+49 (0)151 1234 5678", 0, "+4915112345678" },
	{ "030/12345678", 49, "+493012345678" },
	{ "0151 1234 5678", 0, NULL },
	/* United Kingdom. */
	{ "07700 900123", 44, "+447700900123" },
	{ "+44 (0)20 7946 0958", 0, "+442079460958" },
	{ "tel:+44-20-7946-0958", 0, "+442079460958" },
	/* NANP: trunk 1, international prefix 011. */
	{ "(555) 123-4567", 1, "+15551234567" },
	{ "1 (555) 123-4567", 1, "+15551234567" },
	{ "1-800-555-0199", 1, "+18005550199" },
	{ "800.555.0199", 1, "+18005550199" },
	{ "011 48 600 100 200", 1, "+48600100200" },
	{ "+1 555 123 4567", 0, "+15551234567" },
	/* Italy: the 0 is part of the number. */
	{ "06 6982 1234", 39, "+390669821234" },
	{ "+39 06 6982 1234", 0, "+390669821234" },
	/* Russia: trunk 8, international prefix 810. */
	{ "8 (912) 345-67-89", 7, "+79123456789" },
	{ "8 10 48 600 100 200", 7, "+48600100200" },
	/* Hungary: trunk 06. */
	{ "06-30-123-4567", 36, "+36301234567" },
	{ "06 1 234 5678", 36, "+3612345678" },
	/* Australia 0011, Japan 010. */
	{ "0011 48 600 100 200", 61, "+48600100200" },
	{ "0412 345 678", 61, "+61412345678" },
	{ "010 44 20 7946 0958", 81, "+442079460958" },
	{ "03-1234-5678", 81, "+81312345678" },
	/* Brazil: the mobile 9. */
	{ "+55 11 98765-4321", 0, "+5511987654321" },
	{ "+55 11 8765-4321", 0, "+5511987654321" },
	{ "551187654321@s.whatsapp.net", 0, "+5511987654321" },
	{ "+55 11 3456-7890", 0, "+551134567890" },	/* a landline */
	{ "(11) 8765-4321", 55, "+5511987654321" },
	/* WhatsApp ids. */
	{ "48600100200@s.whatsapp.net", 0, "+48600100200" },
	{ "48600100200:12@s.whatsapp.net", 0, "+48600100200" },
	{ "4915112345678@c.us", 0, "+4915112345678" },
	{ "120363041234567890@g.us", 0, NULL },	/* a group */
	{ "48600100200-1596034242@g.us", 0, NULL },
	{ "123456789012345@lid", 0, NULL },
	{ "@s.whatsapp.net", 0, NULL },
	{ "4860x@s.whatsapp.net", 0, NULL },
	/* Telegram's numbers, given their '+' by the connector. */
	{ "+15550009876", 0, "+15550009876" },
	{ "+79123456789", 48, "+79123456789" },
	/* NO-BREAK SPACE and narrow NO-BREAK SPACE between digits. */
	{ "+48\xc2\xa0" "600\xc2\xa0" "100\xc2\xa0" "200", 0, "+48600100200" },
	{ "\xe2\x80\xaf+33 6 12 34 56 78 ", 0, "+33612345678" },
	/* Not phone numbers. */
	{ "12345", 0, NULL },			/* too short */
	{ "+1234567", 0, NULL },		/* 7 digits */
	{ "+1234567890123456", 0, NULL },	/* 16 digits */
	{ "+0123456789", 0, NULL },		/* country code 0 */
	{ "00 0123456789", 0, NULL },
	{ "call me", 0, NULL },
	{ "1-800-FLOWERS", 1, NULL },
	{ "+48 600 100 200 ext. 12", 0, NULL },
	{ "+48 600 100 200;ext=12", 0, NULL },
	{ "++48600100200", 0, NULL },
	{ "48+600100200", 0, NULL },
	{ "Orange", 0, NULL },
	{ "", 0, NULL },
	{ "   ", 48, NULL },
	{ "-", 0, NULL },
	{ "+", 0, NULL },
	{ "\xef\xbc\x94\xef\xbc\x98", 0, NULL },	/* fullwidth digits */
	{ "123456789012345678901234567890123456789", 48, NULL },
};

int
main(void)
{
	char out[20];
	size_t i;
	int r;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		memset(out, 'x', sizeof(out));
		r = sync_phone_e164(cases[i].in, cases[i].cc, out, sizeof(out));
		if (cases[i].want == NULL) {
			if (r != -1)
				fprintf(stderr, "'%s' (cc %ld): got %s\n",
				    cases[i].in, cases[i].cc, out);
			CHECK(r == -1);
		} else {
			if (r != 0)
				fprintf(stderr, "'%s' (cc %ld): refused\n",
				    cases[i].in, cases[i].cc);
			CHECK(r == 0);
			if (r == 0)
				CHECK_STR(out, cases[i].want);
		}
	}
	CHECK(sync_phone_e164(NULL, 48, out, sizeof(out)) == -1);
	CHECK(sync_phone_e164("+48600100200", 0, NULL, 20) == -1);
	CHECK(sync_phone_e164("+48600100200", 0, out, 16) == -1);	/* too small */
	/* Normalising an E.164 number gives it back. */
	CHECK(sync_phone_e164("+5511987654321", 55, out, sizeof(out)) == 0);
	CHECK_STR(out, "+5511987654321");
	return t_done("test_phone");
}
