// Package size reads byte sizes written by people, with one rule for every
// template attribute and command-line flag of cps: the rule of GNU
// coreutils (truncate -s, dd, df -B), where an "i" or a bare letter means
// powers of 1024 and a "B" after the letter means powers of 1000:
//
//	512, 512B           bytes
//	K, M, G, T          1024, 1024², 1024³, 1024⁴ (same as KiB, MiB, GiB, TiB)
//	kB, MB, GB, TB      1000, 1000², 1000³, 1000⁴ (how disks and SD cards are sold)
//
// Units are case-insensitive; a fraction is allowed when the result is a
// whole number of bytes ("1.5GiB", "59.6GB").
package size

import (
	"fmt"
	"math/big"
	"strings"
)

// Help is the rule above for `cpsimage help sizes`.
const Help = `Sizes (template attributes such as size, alignment, memory; flags such as
sdcard resize --size and --align) are bytes, or a number with a unit, with
the rule of GNU coreutils (truncate -s, dd):

  512, 512B        bytes
  K  KiB           1024 bytes
  M  MiB           1024² = 1048576 bytes
  G  GiB           1024³ = 1073741824 bytes
  T  TiB           1024⁴ bytes
  kB KB            1000 bytes
  MB               1000² bytes
  GB               1000³ = 1000000000 bytes (how disks and SD cards are sold)
  TB               1000⁴ bytes

Units are case-insensitive; fractions are allowed when the result is a
whole number of bytes. So "3GiB" and "3G" are 3221225472 bytes, "32GB" is
32000000000 bytes, and a "32 GB" SD card that holds 31998345216 bytes is
best given as that exact number (blockdev --getsize64 /dev/sdX).
`

var units = map[string]int64{
	"": 1, "b": 1,
	"k": 1 << 10, "kib": 1 << 10, "m": 1 << 20, "mib": 1 << 20,
	"g": 1 << 30, "gib": 1 << 30, "t": 1 << 40, "tib": 1 << 40,
	"kb": 1e3, "mb": 1e6, "gb": 1e9, "tb": 1e12,
}

// Parse reads a size by the rule in the package comment.
func Parse(s string) (int64, error) {
	t := strings.TrimSpace(s)
	// "-5GiB" (often a negative variable in "${var.n}GiB") is a sign, not
	// a unit: say what is wrong with it.
	if strings.HasPrefix(t, "-") && len(t) > 1 && (t[1] >= '0' && t[1] <= '9' || t[1] == '.') {
		return 0, fmt.Errorf("%q must be positive", s)
	}
	i := strings.IndexFunc(t, func(r rune) bool { return (r < '0' || r > '9') && r != '.' })
	num, unit := t, ""
	if i >= 0 {
		num, unit = t[:i], strings.TrimSpace(t[i:])
	}
	mult, ok := units[strings.ToLower(unit)]
	if !ok {
		return 0, fmt.Errorf("%q: unknown unit %q; use bytes or K/KiB, M/MiB, G/GiB, T/TiB (powers of 1024), kB, MB, GB, TB (powers of 1000)", s, unit)
	}
	v, ok := new(big.Rat).SetString(num)
	if num == "" || !ok {
		return 0, fmt.Errorf("%q is not a size: write bytes or a number with a unit, such as 3GiB", s)
	}
	v.Mul(v, new(big.Rat).SetInt64(mult))
	if !v.IsInt() {
		return 0, fmt.Errorf("%q is not a whole number of bytes", s)
	}
	n := v.Num()
	if n.Sign() <= 0 {
		return 0, fmt.Errorf("%q must be positive", s)
	}
	if !n.IsInt64() || n.Int64() > 1<<62 {
		return 0, fmt.Errorf("%q is too big", s)
	}
	return n.Int64(), nil
}
