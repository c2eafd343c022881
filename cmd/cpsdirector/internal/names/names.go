// Package names normalises user names: NFC for storage (so "é" typed on
// two keyboards is one name), and a confusable skeleton that makes
// "alice", "ALICE", "a1ice" and "аlice" (Cyrillic а) the same key, so the
// director can refuse look-alike accounts (UTS #39's idea, with a table
// covering the Latin, Greek and Cyrillic letters and digits that pass for
// each other).
package names

import (
	"strings"
	"unicode"

	"golang.org/x/text/unicode/norm"
)

// Normalize is the stored form of a user name.
func Normalize(s string) string { return norm.NFC.String(s) }

// confusable maps a lower-case rune to the Latin letter it passes for.
var confusable = map[rune]rune{
	// Digits and punctuation.
	'0': 'o', '1': 'l', '|': 'l', '5': 's', '$': 's', '@': 'a',
	// Latin look-alikes.
	'ı': 'i', 'ȷ': 'j', 'ɑ': 'a', 'ɡ': 'g', 'ο': 'o',
	// Cyrillic.
	'а': 'a', 'в': 'b', 'е': 'e', 'ё': 'e', 'к': 'k', 'м': 'm', 'н': 'h', 'о': 'o', 'р': 'p', 'с': 'c',
	'т': 't', 'у': 'y', 'х': 'x', 'і': 'i', 'ї': 'i', 'ј': 'j', 'ѕ': 's', 'ԁ': 'd', 'ԛ': 'q', 'ԝ': 'w',
	'һ': 'h', 'ӏ': 'l', 'ɩ': 'i', 'ь': 'b', 'ѵ': 'v',
	// Greek.
	'α': 'a', 'β': 'b', 'ε': 'e', 'ζ': 'z', 'η': 'n', 'ι': 'i', 'κ': 'k', 'μ': 'u', 'ν': 'v',
	'ρ': 'p', 'τ': 't', 'υ': 'u', 'χ': 'x', 'ω': 'w', 'γ': 'y',
}

// Key is the confusable skeleton of a user name: compatibility-decomposed,
// marks and invisible characters dropped, lower-cased, look-alikes mapped to
// one Latin letter.
func Key(s string) string {
	var b strings.Builder
	for _, r := range norm.NFKD.String(s) {
		switch {
		case unicode.Is(unicode.Mn, r), unicode.Is(unicode.Me, r), unicode.Is(unicode.Cf, r):
			continue // combining marks, zero-width joiners and the like
		}
		r = unicode.ToLower(r)
		if m, ok := confusable[r]; ok {
			r = m
		}
		b.WriteRune(r)
	}
	return b.String()
}
