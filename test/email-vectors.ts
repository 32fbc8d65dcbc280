/**
 * The email rule's test vectors, each with where it comes from:
 * [source, what it shows, raw value, the normalised address it must hash ('hash': passes
 * unchanged as a SHA-256; null: invalid)].
 *
 * Sources
 *   criteo-sdk  Criteo's publisher SDK, EmailHasherTest (criteo/android-publisher-sdk), and its
 *               EmailHasher: trim, toLowerCase(Locale.ROOT), UTF-8
 *   criteo      the hashing samples of Criteo's help pages, as ../shared/criteo/README.md quotes them
 *   wpt         web-platform-tests html/semantics/forms/the-input-element/email.html
 *   whatwg      the WHATWG HTML "valid e-mail address" grammar (ASCII)
 *   differs     where the product deliberately differs from WHATWG (and says why)
 *   rfc6531     RFC 6531/6532 internationalised addresses, RFC 5321 lengths (in octets)
 *   unicode     Unicode NFC (UAX #15) and default case mapping (SpecialCasing.txt), lookalikes
 *   hostile     what hides text or no mail system delivers
 */
export type Vector = [source: string, label: string, raw: string | null, expected: string | null];

const a64 = 'a'.repeat(64);

export const VECTORS: Vector[] = [
  ['criteo-sdk', 'plain', 'john.doe@gmail.com', 'john.doe@gmail.com'],
  ['criteo-sdk', 'spaces around', ' john.doe@gmail.com ', 'john.doe@gmail.com'],
  ['criteo-sdk', 'capitals', 'John.Doe@gmail.com', 'john.doe@gmail.com'],
  ['criteo-sdk', 'capitals and spaces', ' John.Doe@gmail.com ', 'john.doe@gmail.com'],
  ['criteo-sdk', 'German', 'Dörte@Sörensen.example.com', 'dörte@sörensen.example.com'],
  ['criteo-sdk', 'German, capitals in the domain', ' dörte@sÖrensen.example.com ', 'dörte@sörensen.example.com'],
  ['criteo-sdk', 'Russian', 'коля@пример.рф', 'коля@пример.рф'],
  ['criteo-sdk', 'Russian, capitals', ' КОЛЯ@ПРИМЕР.РФ ', 'коля@пример.рф'],
  ['criteo-sdk', 'Greek', 'χρήστης@παράδειγμα.ελ', 'χρήστης@παράδειγμα.ελ'],
  ['criteo-sdk', 'Greek, capitals', ' ΧΡήστΗς@πΑράδειγμΑ.ελ ', 'χρήστης@παράδειγμα.ελ'],
  ['criteo', 'German, dotted domain as written', 'Dörte@Sörensen.example', 'dörte@sörensen.example'],
  ['criteo', 'U-label domain, not punycode', 'user@exämle.com', 'user@exämle.com'],
  ['criteo', 'punycode stays punycode (a different identifier)', 'user@xn--exmle-hra.com', 'user@xn--exmle-hra.com'],

  ['wpt', 'valid', 'user4@example.com', 'user4@example.com'],
  ['wpt', 'no @', 'example.com', null],
  ['wpt', 'a trailing line feed is stripped', 'user2@example.com\n', 'user2@example.com'],
  ['wpt', 'a trailing carriage return is stripped', 'user3@example.com\r', 'user3@example.com'],
  ['whatwg', 'mixed case', 'User.Name@Example.COM', 'user.name@example.com'],
  ['whatwg', 'capital I lowercases to i in every locale (a Turkish one too)', 'INFO@EXAMPLE.COM', 'info@example.com'],
  ['whatwg', 'tabs and line breaks around', ' \t user@example.com \r\n', 'user@example.com'],
  ['whatwg', 'plus tags and dots', 'first.last+promo@sub.example.co.uk', 'first.last+promo@sub.example.co.uk'],
  ['whatwg', 'every special of atext', "o'brien#!$%&*/=?^_`{|}~-@example.com", "o'brien#!$%&*/=?^_`{|}~-@example.com"],
  ['whatwg', 'numeric labels', 'user@123.456.com', 'user@123.456.com'],
  ['whatwg', 'a label of 63', `u@${'x'.repeat(63)}.com`, `u@${'x'.repeat(63)}.com`],
  ['whatwg', 'a label of 64', `u@${'x'.repeat(64)}.com`, null],
  ['whatwg', 'label starting with a hyphen', 'user@-example.com', null],
  ['whatwg', 'label ending with a hyphen', 'user@example-.com', null],
  ['whatwg', 'trailing dot', 'user@example.com.', null],
  ['whatwg', 'empty label', 'user@example..com', null],
  ['whatwg', 'underscore in the domain', 'user@exa_mple.com', null],
  ['whatwg', 'space inside', 'user name@example.com', null],
  ['whatwg', 'quoted local part', '"user"@example.com', null],
  ['whatwg', 'two @', 'user@@example.com', null],
  ['whatwg', 'empty local part', '@example.com', null],
  ['whatwg', 'empty domain', 'user@', null],
  ['whatwg', 'SQL fragment', "user@example.com'; DROP TABLE customers;--", null],
  ['differs', 'a domain without a dot (WHATWG accepts; no public mailbox has one)', 'user@localhost', null],
  ['differs', 'a line break inside (browsers strip it anywhere; the job does not guess)', 'user@exam\nple.com', null],
  ['differs', 'a local part of 65 (WHATWG accepts; RFC 5321 allows 64)', `${'a'.repeat(65)}@example.com`, null],
  ['differs', 'non-ASCII local part (WHATWG rejects; RFC 6531 and Criteo accept)', 'usér@example.com', 'usér@example.com'],

  ['rfc6531', 'local part of 64 octets in 32 two-octet letters', `${'ä'.repeat(32)}@example.com`, `${'ä'.repeat(32)}@example.com`],
  ['rfc6531', 'local part of 66 octets in 33 letters', `${'ä'.repeat(33)}@example.com`, null],
  [
    'rfc6531',
    '254 octets in all',
    `${a64}@${'b'.repeat(63)}.${'c'.repeat(63)}.${'d'.repeat(57)}.com`,
    `${a64}@${'b'.repeat(63)}.${'c'.repeat(63)}.${'d'.repeat(57)}.com`,
  ],
  ['rfc6531', '255 octets in all', `${a64}@${'b'.repeat(63)}.${'c'.repeat(63)}.${'d'.repeat(58)}.com`, null],
  ['rfc6531', '255 octets in 254 characters', `${'a'.repeat(63)}@${'b'.repeat(63)}.${'c'.repeat(63)}.${'d'.repeat(58)}.cöm`, null],
  ['rfc6531', 'Chinese', '用户@例子.广告', '用户@例子.广告'],
  ['rfc6531', 'Japanese domain', 'user@例え.jp', 'user@例え.jp'],
  ['rfc6531', 'Hindi', 'उपयोगकर्ता@उदाहरण.कॉम', 'उपयोगकर्ता@उदाहरण.कॉम'],
  ['rfc6531', 'emoji in the local part (a symbol)', 'smile😀@example.com', 'smile😀@example.com'],
  ['rfc6531', 'emoji in the domain (no U-label holds one)', 'user@😀.com', null],
  ['rfc6531', 'Greek without a dot in the domain', 'χρήστης@παράδειγμα', null],
  ['rfc6531', 'label starting with a hyphen, non-ASCII', 'user@-münchen.de', null],
  ['rfc6531', 'label ending with a hyphen, non-ASCII', 'user@münchen-.de', null],
  ['rfc6531', 'label starting with a combining mark', 'user@\u0301abc.de', null],
  ['rfc6531', 'ideographic full stop is not a dot', 'user@例え\u3002jp', null],
  ['rfc6531', 'fullwidth @ is not an @', 'kate\uff20example.com', null],

  ['unicode', 'NFC composes e + combining acute', 'Jose\u0301@example.com', 'josé@example.com'],
  ['unicode', 'KELVIN SIGN is canonically K: kate, as Criteo hashes it', '\u212Aate@example.com', 'kate@example.com'],
  ['unicode', 'ANGSTROM SIGN is canonically Å', '\u212Bngstr\u00f6m@example.se', 'ångström@example.se'],
  ['unicode', 'dotted capital I lowercases to i + combining dot (not Turkish i)', 'İnci@example.com.tr', 'i\u0307nci@example.com.tr'],
  ['unicode', 'dotless i stays', 'ılık@example.com.tr', 'ılık@example.com.tr'],
  ['unicode', 'final sigma', 'ΟΔΥΣΣΕΥΣ@example.gr', 'οδυσσευς@example.gr'],
  ['unicode', 'capital sharp s lowercases to ß', 'STRAẞE@straße.de', 'straße@straße.de'],
  ['unicode', 'Georgian Mtavruli (Unicode 11, newer than some ICU)', 'ᲒᲘᲝᲠᲒᲘ@example.ge', 'გიორგი@example.ge'],
  ['unicode', 'fullwidth letters in the local part are kept (a different mailbox)', 'ＫＡＴＥ@example.com', 'ｋａｔｅ@example.com'],
  ['unicode', 'fullwidth letters in the domain (not a U-label)', 'kate@ｅｘａｍｐｌｅ.com', null],
  ['unicode', 'a ligature in the domain (not NFKC)', 'user@ﬁnance.com', null],
  ['unicode', 'no-break space and ideographic space around are trimmed', '\u00a0kate@example.com\u3000', 'kate@example.com'],

  ['hostile', 'zero-width space', 'ka\u200bte@example.com', null],
  ['hostile', 'zero-width joiner', 'ka\u200dte@example.com', null],
  ['hostile', 'zero-width non-joiner', 'ka\u200cte@example.com', null],
  ['hostile', 'word joiner', 'kate\u2060@example.com', null],
  ['hostile', 'byte-order mark in front', '\ufeffkate@example.com', null],
  ['hostile', 'right-to-left override', 'kate\u202e@example.com', null],
  ['hostile', 'left-to-right isolate', 'kate@\u2066example.com', null],
  ['hostile', 'right-to-left mark', 'kate\u200f@example.com', null],
  ['hostile', 'soft hyphen', 'ka\u00adte@example.com', null],
  ['hostile', 'C1 control', 'ka\u0080te@example.com', null],
  ['hostile', 'next line inside', 'ka\u0085te@example.com', null],
  ['hostile', 'noncharacter U+FDD0', 'ka\ufdd0te@example.com', null],
  ['hostile', 'noncharacter U+FFFE', 'kate\ufffe@example.com', null],
  ['hostile', 'private use', 'ka\ue000te@example.com', null],
  ['hostile', 'Hangul filler (an invisible letter)', 'ka\u3164te@example.com', null],
  ['hostile', 'variation selector', 'kate\ufe0f@example.com', null],
  ['hostile', 'tag character', 'kate\u{e0041}@example.com', null],
  ['hostile', 'no-break space inside', 'ka\u00a0te@example.com', null],
  ['hostile', 'ideographic space inside', 'ka\u3000te@example.com', null],
  ['hostile', 'unassigned code point', 'ka\u0378te@example.com', null],
  ['hostile', 'replacement character in the domain', 'user@\ufffd.com', null],

  ['whatwg', 'NULL', null, null],
  ['whatwg', 'empty', '', null],
  ['whatwg', 'only white space', ' \t\n ', null],
];
