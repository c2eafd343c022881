package names

import "testing"

func TestKey(t *testing.T) {
	same := [][]string{
		{"alice", "ALICE", "Alice", "a1ice", "аlice" /* Cyrillic а */, "alíce" /* i acute */, "al\u200bice" /* zero-width space */},
		{"bob", "b0b", "Βοb" /* Greek Beta, omicron */},
		{"café", "cafe\u0301"},
	}
	for _, set := range same {
		for _, n := range set[1:] {
			if Key(n) != Key(set[0]) {
				t.Errorf("Key(%q) = %q, Key(%q) = %q: want equal", n, Key(n), set[0], Key(set[0]))
			}
		}
	}
	for _, pair := range [][2]string{{"alice", "alicia"}, {"bob", "rob"}, {"user1", "user2"}} {
		if Key(pair[0]) == Key(pair[1]) {
			t.Errorf("%q and %q share key %q", pair[0], pair[1], Key(pair[0]))
		}
	}
	// NFC: the decomposed and precomposed forms are stored alike.
	if Normalize("cafe\u0301") != "café" {
		t.Errorf("Normalize = %q", Normalize("cafe\u0301"))
	}
}
